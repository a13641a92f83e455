package envelope_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"zhianhub/crypto"
	"zhianhub/envelope"
)

// payload1KiB is a 1 KiB JSON object.
var payload1KiB = []byte(`{"pad":"` + strings.Repeat("x", 1024-10) + `"}`)

type benchEnv struct {
	sealReuse, sealFresh   *envelope.Sealer
	openCached, openNoCach *envelope.Opener
	sealed                 [][]byte // sealed with reuse (one content key)
	sealedFresh            [][]byte // each with its own content key
	signer                 crypto.Signer
	unwrapper              crypto.KeyUnwrapper
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	aDir, bDir := testNodes(b)
	a, s := mustLoad(b, aDir), mustLoad(b, bDir)
	e := &benchEnv{signer: s.Signer(), unwrapper: a.Unwrappers()[0]}
	var err error
	if e.sealReuse, err = envelope.NewSealer(envelope.SealerConfig{Keys: s}); err != nil {
		b.Fatal(err)
	}
	if e.sealFresh, err = envelope.NewSealer(envelope.SealerConfig{Keys: s, KeyMaxAge: -1}); err != nil {
		b.Fatal(err)
	}
	kinds := envelope.KindSet{"bench": true}
	if e.openCached, err = envelope.NewOpener(envelope.OpenerConfig{Keys: a, Kinds: kinds}); err != nil {
		b.Fatal(err)
	}
	if e.openNoCach, err = envelope.NewOpener(envelope.OpenerConfig{Keys: a, Kinds: kinds, KeyCacheTTL: -1}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		env, _, err := e.sealReuse.Seal(envelope.Outgoing{Kind: "bench", To: a.Node(), Payload: payload1KiB})
		if err != nil {
			b.Fatal(err)
		}
		e.sealed = append(e.sealed, env)
		env, _, err = e.sealFresh.Seal(envelope.Outgoing{Kind: "bench", To: a.Node(), Payload: payload1KiB})
		if err != nil {
			b.Fatal(err)
		}
		e.sealedFresh = append(e.sealedFresh, env)
	}
	return e
}

type benchCase struct {
	name string
	fn   func(b *testing.B, e *benchEnv)
}

func benchCases() []benchCase {
	seal := func(s func(e *benchEnv) *envelope.Sealer) func(*testing.B, *benchEnv) {
		return func(b *testing.B, e *benchEnv) {
			sl := s(e)
			for i := 0; i < b.N; i++ {
				if _, _, err := sl.Seal(envelope.Outgoing{Kind: "bench", To: "310000000000", Payload: payload1KiB}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	open := func(o func(e *benchEnv) *envelope.Opener, set func(e *benchEnv) [][]byte) func(*testing.B, *benchEnv) {
		return func(b *testing.B, e *benchEnv) {
			op, envs := o(e), set(e)
			for i := 0; i < b.N; i++ {
				if _, err := op.Open(envs[i%len(envs)]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return []benchCase{
		{"primitive/SM2-sign", func(b *testing.B, e *benchEnv) {
			msg := payload1KiB[:512]
			for i := 0; i < b.N; i++ {
				if _, err := e.signer.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"primitive/SM2-verify", func(b *testing.B, e *benchEnv) {
			msg := payload1KiB[:512]
			sig, _ := e.signer.Sign(msg)
			v := e.signer.Public()
			for i := 0; i < b.N; i++ {
				if err := v.Verify(msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"primitive/SM2-wrap", func(b *testing.B, e *benchEnv) {
			key := make([]byte, 16)
			w := e.unwrapper.Wrapper()
			for i := 0; i < b.N; i++ {
				if _, err := w.Wrap(key); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"primitive/SM2-unwrap", func(b *testing.B, e *benchEnv) {
			ek, _ := e.unwrapper.Wrapper().Wrap(make([]byte, 16))
			for i := 0; i < b.N; i++ {
				if _, err := e.unwrapper.Unwrap(ek); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"primitive/SM4-GCM-seal-1KiB", func(b *testing.B, e *benchEnv) {
			key := make([]byte, 16)
			rand.Read(key)
			a, _ := crypto.NewAEAD(key)
			nonce := make([]byte, 12)
			b.SetBytes(int64(len(payload1KiB)))
			for i := 0; i < b.N; i++ {
				a.Seal(nil, nonce, payload1KiB, nil)
			}
		}},
		{"primitive/SM3-1KiB", func(b *testing.B, e *benchEnv) {
			b.SetBytes(int64(len(payload1KiB)))
			for i := 0; i < b.N; i++ {
				crypto.SM3(payload1KiB)
			}
		}},
		{"Seal/key-reuse", seal(func(e *benchEnv) *envelope.Sealer { return e.sealReuse })},
		{"Seal/fresh-key", seal(func(e *benchEnv) *envelope.Sealer { return e.sealFresh })},
		{"Open/key-cached", open(func(e *benchEnv) *envelope.Opener { return e.openCached }, func(e *benchEnv) [][]byte { return e.sealed })},
		{"Open/fresh-key", open(func(e *benchEnv) *envelope.Opener { return e.openNoCach }, func(e *benchEnv) [][]byte { return e.sealedFresh })},
	}
}

// BenchmarkEnvelope runs Seal and Open of a 1 KiB payload, with and without
// content-key reuse, beside the raw primitives they are made of, then prints
// one table with each envelope operation's cost relative to the primitives
// it needs (Seal with reuse = SM2 sign + SM4-GCM; Open with cache = SM2
// verify + SM4-GCM; without reuse add one SM2 wrap or unwrap).
func BenchmarkEnvelope(b *testing.B) {
	e := newBenchEnv(b)
	res := map[string]time.Duration{}
	var order []string
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			c.fn(b, e)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			if _, seen := res[c.name]; !seen {
				order = append(order, c.name)
			}
			res[c.name] = b.Elapsed() / time.Duration(b.N)
		})
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation (1 KiB payload)\tµs/op\tmsg/s\tvs primitives\t")
	base := map[string]time.Duration{
		"Seal/key-reuse":  res["primitive/SM2-sign"] + res["primitive/SM4-GCM-seal-1KiB"],
		"Seal/fresh-key":  res["primitive/SM2-sign"] + res["primitive/SM4-GCM-seal-1KiB"] + res["primitive/SM2-wrap"],
		"Open/key-cached": res["primitive/SM2-verify"] + res["primitive/SM4-GCM-seal-1KiB"],
		"Open/fresh-key":  res["primitive/SM2-verify"] + res["primitive/SM4-GCM-seal-1KiB"] + res["primitive/SM2-unwrap"],
	}
	for _, name := range order {
		per := res[name]
		if per <= 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%s\t\n", name, float64(per.Nanoseconds())/1000, 1e9/float64(per.Nanoseconds()), ratioOf(per, base[name]))
	}
	tw.Flush()
	fmt.Fprintf(os.Stdout, "\n%s\n", buf.String())
}

func ratioOf(got, base time.Duration) string {
	if base <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2fx", float64(got)/float64(base))
}

package envelope_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// testNodes creates two fresh key directories that trust each other.
func testNodes(t testing.TB) (a, b string) {
	t.Helper()
	root := t.TempDir()
	a, b = filepath.Join(root, "a"), filepath.Join(root, "b")
	if err := keystore.Generate(a, "310000000000", nil); err != nil {
		t.Fatal(err)
	}
	if err := keystore.Generate(b, "000000000000", nil); err != nil {
		t.Fatal(err)
	}
	trust(t, a, b)
	return a, b
}

// trust installs each directory's public keys in the other's peers/.
func trust(t testing.TB, a, b string) {
	t.Helper()
	if _, err := keystore.ExportPublic(a, keystore.LoadOptions{}, filepath.Join(b, "peers")); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.ExportPublic(b, keystore.LoadOptions{}, filepath.Join(a, "peers")); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t testing.TB, dir string) *keystore.Store {
	t.Helper()
	ks, err := keystore.Load(dir, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingKeys counts unwraps, to observe the receiver's key cache.
type countingKeys struct {
	*keystore.Store
	unwraps *atomic.Int64
}

type countingUnwrapper struct {
	crypto.KeyUnwrapper
	n *atomic.Int64
}

func (c countingUnwrapper) Unwrap(b []byte) ([]byte, error) {
	c.n.Add(1)
	return c.KeyUnwrapper.Unwrap(b)
}

func (k countingKeys) Unwrapper(id crypto.KeyID) (crypto.KeyUnwrapper, bool) {
	u, ok := k.Store.Unwrapper(id)
	if !ok {
		return nil, false
	}
	return countingUnwrapper{u, k.unwraps}, true
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf(`{"ref":"n%d","text":"测试 %d"}`, i, i))
}

func TestSealOpenRoundTrip(t *testing.T) {
	aDir, bDir := testNodes(t)
	a, b := mustLoad(t, aDir), mustLoad(t, bDir)
	clk := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	sealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: b, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var unwraps atomic.Int64
	opener, err := envelope.NewOpener(envelope.OpenerConfig{
		Keys: countingKeys{a, &unwraps}, Kinds: envelope.KindSet{"receipt": true}, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	corr := "01a21a8d-5640-729c-abcc-f81b08095dde"
	env, id, err := sealer.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Corr: corr, Payload: payload(1)})
	if err != nil {
		t.Fatal(err)
	}
	if !envelope.ValidID(id) || !strings.Contains(string(env), `"ts":"2026-11-27T18:00:00.000+08:00"`) {
		t.Fatalf("id %q or ts wrong in %s", id, env)
	}
	msg, err := opener.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	if msg.ID != id || msg.Corr != corr || msg.From != "000000000000" || !bytes.Equal(msg.Payload, payload(1)) {
		t.Fatalf("opened %+v", msg)
	}
	// Members come in the order of the spec's table.
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(env))
	dec.Token()
	for dec.More() {
		tok, _ := dec.Token()
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if got := strings.Join(keys, ","); got != "v,id,kind,from,to,ts,corr,ekid,ek,nonce,ct,skid,sig" {
		t.Errorf("member order %s", got)
	}
	// A resend keeps the id.
	env2, id2, err := sealer.Seal(envelope.Outgoing{ID: id, Kind: "receipt", To: "310000000000", Payload: payload(1)})
	if err != nil || id2 != id {
		t.Fatalf("resend id %s err %v", id2, err)
	}
	if _, err := opener.Open(env2); err != nil {
		t.Fatal(err)
	}
	if n := unwraps.Load(); n != 1 {
		t.Errorf("receiver unwrapped %d times for one content key, want 1", n)
	}
}

// ekOf returns the ek member of an envelope.
func ekOf(t testing.TB, env []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	return m["ek"].(string)
}

func TestContentKeyReuseLimits(t *testing.T) {
	_, bDir := testNodes(t)
	b := mustLoad(t, bDir)
	tests := []struct {
		name     string
		cfg      envelope.SealerConfig
		step     time.Duration
		n        int
		wantKeys int
	}{
		{"reuse within limits", envelope.SealerConfig{}, time.Second, 50, 1},
		{"count limit", envelope.SealerConfig{KeyMaxUses: 10}, 0, 25, 3},
		{"age limit 10 min", envelope.SealerConfig{}, time.Minute, 25, 3}, // keys at 0, 10, 20 min
		{"reuse off", envelope.SealerConfig{KeyMaxAge: -1}, 0, 5, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
			cfg := tc.cfg
			cfg.Keys, cfg.Now = b, clk.Now
			s, err := envelope.NewSealer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			eks := map[string]bool{}
			nonces := map[string]bool{}
			for i := 0; i < tc.n; i++ {
				env, _, err := s.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: payload(i)})
				if err != nil {
					t.Fatal(err)
				}
				eks[ekOf(t, env)] = true
				var m map[string]any
				json.Unmarshal(env, &m)
				if nonces[m["nonce"].(string)] {
					t.Fatal("nonce reused")
				}
				nonces[m["nonce"].(string)] = true
				clk.Add(tc.step)
			}
			if len(eks) != tc.wantKeys {
				t.Errorf("%d content keys, want %d", len(eks), tc.wantKeys)
			}
		})
	}
}

func TestSealerConfigValidate(t *testing.T) {
	_, bDir := testNodes(t)
	b := mustLoad(t, bDir)
	for _, cfg := range []envelope.SealerConfig{
		{},
		{Keys: b, KeyMaxAge: 11 * time.Minute},
		{Keys: b, KeyMaxUses: 100_001},
	} {
		if _, err := envelope.NewSealer(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestTimeWindowBounds(t *testing.T) {
	aDir, bDir := testNodes(t)
	a, b := mustLoad(t, aDir), mustLoad(t, bDir)
	sent := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s, _ := envelope.NewSealer(envelope.SealerConfig{Keys: b, Now: func() time.Time { return sent }})
	env, _, err := s.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: payload(1)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		now  time.Time
		want envelope.Code
	}{
		{sent.Add(-5 * time.Minute), envelope.CodeOK}, // ts exactly 5 min ahead
		{sent.Add(-5*time.Minute - time.Millisecond), envelope.CodeTimestamp},
		{sent.Add(24 * time.Hour), envelope.CodeOK}, // exactly 24 h old
		{sent.Add(24*time.Hour + time.Millisecond), envelope.CodeTimestamp},
	}
	for _, tc := range tests {
		o := newOpener(t, a, tc.now)
		if _, err := o.Open(env); envelope.CodeOf(err) != tc.want {
			t.Errorf("now %s: %v, want %s", tc.now, err, tc.want)
		}
	}
}

// mutate returns env with member name set to value (raw JSON).
func mutate(t testing.TB, env []byte, name, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, name)
	} else {
		m[name] = json.RawMessage(value)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFieldErrors(t *testing.T) {
	aDir, bDir := testNodes(t)
	a, b := mustLoad(t, aDir), mustLoad(t, bDir)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s, _ := envelope.NewSealer(envelope.SealerConfig{Keys: b, Now: func() time.Time { return now }})
	env, _, err := s.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: payload(1)})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := envelope.NewOpener(envelope.OpenerConfig{Keys: a, Kinds: envelope.KindSet{"receipt": true}, Now: func() time.Time { return now }})
	dup := bytes.Replace(env, []byte(`"corr":""`), []byte(`"corr":"","corr":""`), 1)
	tests := []struct {
		name  string
		raw   []byte
		code  envelope.Code
		field string
	}{
		{"not json", []byte("{"), envelope.CodeMalformed, ""},
		{"array", []byte("[]"), envelope.CodeMalformed, ""},
		{"trailing data", append(append([]byte{}, env...), []byte(" {}")...), envelope.CodeMalformed, ""},
		{"not utf-8", append([]byte(`{"x":"`), 0xff, '"', '}'), envelope.CodeMalformed, ""},
		{"duplicate member", dup, envelope.CodeMalformed, "corr"},
		{"missing corr", mutate(t, env, "corr", ""), envelope.CodeMalformed, "corr"},
		{"unknown member", mutate(t, env, "prio", `1`), envelope.CodeMalformed, "prio"},
		{"v as string", mutate(t, env, "v", `"1"`), envelope.CodeMalformed, "v"},
		{"v as float", mutate(t, env, "v", `1.0`), envelope.CodeMalformed, "v"},
		{"v 2", mutate(t, env, "v", `2`), envelope.CodeVersion, "v"},
		{"upper-case id", mutate(t, env, "id", `"01A21A8D-5640-729C-ABCC-F81B08095DDE"`), envelope.CodeMalformed, "id"},
		{"from 11 digits", mutate(t, env, "from", `"00000000000"`), envelope.CodeMalformed, "from"},
		{"ts without millis", mutate(t, env, "ts", `"2026-11-27T10:00:00Z"`), envelope.CodeMalformed, "ts"},
		{"ts not a date", mutate(t, env, "ts", `"2026-02-30T10:00:00.000Z"`), envelope.CodeMalformed, "ts"},
		{"corr not uuid", mutate(t, env, "corr", `"x"`), envelope.CodeMalformed, "corr"},
		{"ekid upper hex", mutate(t, env, "ekid", `"`+strings.Repeat("A", 64)+`"`), envelope.CodeMalformed, "ekid"},
		{"nonce unpadded", mutate(t, env, "nonce", `"AAAAAAAAAAAAAAAAAA"`), envelope.CodeMalformed, "nonce"},
		{"nonce url alphabet", mutate(t, env, "nonce", `"____AAAAAAAAAAAA"`), envelope.CodeMalformed, "nonce"},
		{"ct short", mutate(t, env, "ct", `"AAAA"`), envelope.CodeMalformed, "ct"},
		{"too large", append(bytes.Repeat([]byte(" "), envelope.MaxSize), env...), envelope.CodeMalformed, ""},
		{"unknown signer node", mutate(t, env, "from", `"320000000000"`), envelope.CodeUnknownSigner, "skid"},
		{"kind changed after signing", mutate(t, env, "kind", `"keyperson.register"`), envelope.CodeBadSignature, "sig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := o.Open(tc.raw)
			var e *envelope.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *envelope.Error", err)
			}
			if e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("got %s field %q (%v), want %s field %q", e.Code, e.Field, err, tc.code, tc.field)
			}
		})
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", &envelope.Error{Code: envelope.CodeBadSignature, Step: 2}), envelope.ErrBadSignature) {
		t.Error("errors.Is does not match by code")
	}
}

func TestRotation(t *testing.T) {
	aDir, bDir := testNodes(t)
	// The sender rotates its signing key, the receiver its encryption key.
	if _, _, err := keystore.Rotate(bDir, keystore.KindSign, nil); err != nil {
		t.Fatal(err)
	}
	oldA := mustLoad(t, aDir)
	nEnc, encID, err := keystore.Rotate(aDir, keystore.KindEnc, nil)
	if err != nil || nEnc != 1 {
		t.Fatalf("rotate: n=%d err=%v", nEnc, err)
	}
	trust(t, aDir, bDir)
	a, b := mustLoad(t, aDir), mustLoad(t, bDir)
	if len(b.Signers()) != 2 || len(a.Unwrappers()) != 2 {
		t.Fatalf("signers %d unwrappers %d", len(b.Signers()), len(a.Unwrappers()))
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	o, _ := envelope.NewOpener(envelope.OpenerConfig{Keys: a, Kinds: envelope.KindSet{"receipt": true}, Now: func() time.Time { return now }})
	s, _ := envelope.NewSealer(envelope.SealerConfig{Keys: b, Now: func() time.Time { return now }})
	env, _, err := s.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: payload(1)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := o.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	if msg.EKID != encID {
		t.Errorf("sealed to %s, want the new key %s", msg.EKID, encID)
	}
	if msg.SKID != b.Signer().KeyID() || msg.SKID == b.Signers()[1].KeyID() {
		t.Errorf("signed with %s, want the highest-numbered key", msg.SKID)
	}
	// A message sealed to the receiver's old encryption key still opens.
	bOld, err := keystore.New(b.Node(), b.Signers(), b.Unwrappers(), []*keystore.Peer{{
		Node: "310000000000", Sign: map[crypto.KeyID]crypto.Verifier{}, Enc: oldA.Unwrappers()[0].Wrapper(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := envelope.NewSealer(envelope.SealerConfig{Keys: bOld, Now: func() time.Time { return now }})
	env2, _, _ := s2.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: payload(2)})
	if _, err := o.Open(env2); err != nil {
		t.Fatalf("old encryption key: %v", err)
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	aDir, bDir := testNodes(t)
	a, b := mustLoad(t, aDir), mustLoad(t, bDir)
	s, _ := envelope.NewSealer(envelope.SealerConfig{Keys: b, KeyMaxUses: 7})
	o, _ := envelope.NewOpener(envelope.OpenerConfig{Keys: a, Kinds: envelope.KindSet{"receipt": true}, KeyCacheSize: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				p := payload(g*1000 + i)
				env, _, err := s.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Payload: p})
				if err != nil {
					errs <- err
					return
				}
				msg, err := o.Open(env)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(msg.Payload, p) {
					errs <- fmt.Errorf("payload mixed up: %s vs %s", msg.Payload, p)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestKeystoreLoadErrors(t *testing.T) {
	aDir, _ := testNodes(t)
	write := func(dir, name, content string) string {
		d := t.TempDir()
		copyDir(t, dir, d)
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	offCurve := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=\n-----END PUBLIC KEY-----\n"
	tests := []struct{ name, file, content string }{
		{"bad node", "self/node", "31000\n"},
		{"misnamed key", "self/sign-2.key.pem", "x"},
		{"off-curve peer key", "peers/000000000000/sign.3.pub.pem", offCurve},
		{"garbage key", "self/enc.4.key.pem", "not pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := keystore.Load(write(aDir, tc.file, tc.content), keystore.LoadOptions{}); err == nil {
				t.Fatal("loaded")
			}
		})
	}
}

func TestPassphraseKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	pass := []byte("correct horse")
	if err := keystore.Generate(dir, "310000000000", pass); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "self", "sign.key.pem"))
	if !bytes.Contains(b, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("key not encrypted")
	}
	if _, err := keystore.Load(dir, keystore.LoadOptions{}); !errors.Is(err, crypto.ErrPassphrase) {
		t.Errorf("no passphrase: %v", err)
	}
	if _, err := keystore.Load(dir, keystore.LoadOptions{Passphrase: []byte("wrong")}); !errors.Is(err, crypto.ErrPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	if _, err := keystore.Load(dir, keystore.LoadOptions{Passphrase: pass, RequireEncrypted: true}); err != nil {
		t.Error(err)
	}
	if err := keystore.Generate(dir, "310000000000", pass); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("second Generate: %v", err)
	}
	plain, _ := testNodes(t)
	if _, err := keystore.Load(plain, keystore.LoadOptions{RequireEncrypted: true}); err == nil {
		t.Error("unencrypted keys accepted where encryption is required")
	}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

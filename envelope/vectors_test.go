package envelope_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// vectorsDir is the shared test-vector folder, beside the repository.
var vectorsDir = filepath.Join("..", "..", "shared", "testdata", "envelope")

type manifestCase struct {
	File    string          `json:"file"`
	Kind    string          `json:"kind"`
	Expect  string          `json:"expect"`
	Now     string          `json:"now"`
	Payload json.RawMessage `json:"payload"`
	Step    int             `json:"step"`
	Path    string          `json:"path"`
	Note    string          `json:"note"`
}

type manifest struct {
	Receiver string         `json:"receiver"`
	Keys     string         `json:"keys"`
	Cases    []manifestCase `json:"cases"`
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, "manifest.json"))
	if err != nil {
		t.Fatalf("test vectors: %v", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cases) != 38 {
		t.Fatalf("manifest has %d cases, want 38", len(m.Cases))
	}
	return m
}

// busKinds are the Ministry-bus kinds; the contracts package owns the real
// registry, the envelope tests need only the names.
var busKinds = envelope.KindSet{
	"keyperson.register": true, "keyperson.change": true, "keyperson.cancel": true,
	"keyperson.control": true, "keyperson.release": true, "keyperson.task": true,
	"keyperson.task.sign": true, "receipt": true,
}

func loadKeysErr(name string) (*keystore.Store, error) {
	return keystore.Load(filepath.Join(vectorsDir, "keys", name), keystore.LoadOptions{})
}

func loadKeys(t testing.TB, name string) *keystore.Store {
	t.Helper()
	ks, err := loadKeysErr(name)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func newOpener(t testing.TB, ks *keystore.Store, now time.Time) *envelope.Opener {
	t.Helper()
	o, err := envelope.NewOpener(envelope.OpenerConfig{Keys: ks, Kinds: busKinds, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestVectors opens every case of the shared vectors as Shanghai. Cases of
// steps 1-5, E102 and the non-JSON payload must give their code; valid cases
// their payload. Payload-level cases (E120-E122) need the contract
// validators and are checked through the CLI test.
func TestVectors(t *testing.T) {
	m := loadManifest(t)
	ks := loadKeys(t, "shanghai")
	if ks.Node() != m.Receiver {
		t.Fatalf("key dir node %s, manifest receiver %s", ks.Node(), m.Receiver)
	}
	for _, c := range m.Cases {
		t.Run(c.File, func(t *testing.T) {
			now, err := envelope.ParseTS(c.Now)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(vectorsDir, c.File))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := newOpener(t, ks, now).Open(raw)
			payloadLevel := c.Step == 6 && c.Expect >= "E120" && c.Expect <= "E122"
			switch {
			case c.Expect == "0000":
				if err != nil {
					t.Fatalf("want 0000, got %v", err)
				}
				if msg.Kind != c.Kind {
					t.Errorf("kind %q, want %q", msg.Kind, c.Kind)
				}
				assertSameJSON(t, msg.Payload, c.Payload)
			case payloadLevel:
				if err != nil {
					t.Fatalf("without payload validation the envelope must open, got %v", err)
				}
			default:
				if got := envelope.CodeOf(err); string(got) != c.Expect {
					t.Fatalf("code %s (%v), want %s", got, err, c.Expect)
				}
				var e *envelope.Error
				if !errors.As(err, &e) || e.Step != c.Step {
					t.Errorf("step %d, want %d (%v)", e.Step, c.Step, err)
				}
				// Senders known from step 3 on get a header to answer.
				if c.Step >= 3 && (msg == nil || msg.ID == "") {
					t.Errorf("step %d rejection without header", c.Step)
				}
				if c.Step <= 2 && msg != nil {
					t.Errorf("step %d rejection returned a message", c.Step)
				}
			}
		})
	}
}

func assertSameJSON(t *testing.T, got []byte, want json.RawMessage) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("payload not JSON: %v", err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("payload\n%s\nwant\n%s", got, want)
	}
}

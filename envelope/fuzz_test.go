package envelope_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"zhianhub/envelope"
)

// FuzzOpen checks that Open never panics and fails only with coded errors.
// The checked-in corpus under testdata/fuzz/FuzzOpen holds the shared
// vectors; f.Add adds them again when the shared folder is present.
func FuzzOpen(f *testing.F) {
	if files, err := filepath.Glob(filepath.Join(vectorsDir, "*", "*.json")); err == nil {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	ks, err := loadKeysErr("shanghai")
	if err != nil {
		f.Skip("shared key directory missing:", err)
	}
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	o, err := envelope.NewOpener(envelope.OpenerConfig{Keys: ks, Kinds: busKinds, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := o.Open(raw)
		if err == nil {
			if msg == nil || msg.Payload == nil {
				t.Fatal("success without payload")
			}
			return
		}
		var e *envelope.Error
		if !errors.As(err, &e) {
			t.Fatalf("uncoded error %T: %v", err, err)
		}
		if e.Step < 1 || e.Step > 6 {
			t.Fatalf("step %d", e.Step)
		}
	})
}

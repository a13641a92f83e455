package routes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"zhianhub/contracts/events"
)

// TestRedactedEventMatchesContract checks that the internal event of every
// applied vector (shared valid vectors, as applied by the inbound route)
// satisfies its contract in contracts/events: the contract describes what
// redactedEvent really publishes.
func TestRedactedEventMatchesContract(t *testing.T) {
	reg, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "shared", "testdata", "envelope", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases []struct {
			File    string          `json:"file"`
			Kind    string          `json:"kind"`
			Expect  string          `json:"expect"`
			Payload json.RawMessage `json:"payload"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range m.Cases {
		if c.Expect != "0000" || c.Payload == nil || c.Kind == "receipt" {
			continue
		}
		ev := redactedEvent(newID(), c.Kind, "100000000000", time.Now(), c.Payload)
		if err := reg.Validate(c.Kind, ev); err != nil {
			t.Errorf("%s: %v\n%s", c.File, err, ev)
		}
		seen[c.Kind] = true
	}
	for _, kind := range []string{"keyperson.register", "keyperson.change", "keyperson.control", "keyperson.task"} {
		if !seen[kind] {
			t.Errorf("no vector of %s", kind)
		}
	}
	t.Logf("kinds covered: %v", seen)
}

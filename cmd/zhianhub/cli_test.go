package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var vectorsDir = filepath.Join("..", "..", "..", "shared", "testdata", "envelope")

// runCLI runs the command line in-process and returns exit status, stdout
// and stderr.
func runCLI(t *testing.T, stdin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return env[k] },
	}
	code := run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

// TestEnvelopeOpenVectors runs every shared test vector through
// `zhianhub envelope open`: valid ones print their payload and exit 0, the
// others print their code as the first word of stderr and exit 3.
func TestEnvelopeOpenVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectorsDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Keys  string `json:"keys"`
		Cases []struct {
			File    string          `json:"file"`
			Expect  string          `json:"expect"`
			Now     string          `json:"now"`
			Payload json.RawMessage `json:"payload"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cases) != 38 {
		t.Fatalf("%d cases, want 38", len(m.Cases))
	}
	keys := filepath.Join(vectorsDir, m.Keys)
	for _, c := range m.Cases {
		t.Run(c.File, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", nil, "envelope", "open", "--keys", keys, "--now", c.Now, filepath.Join(vectorsDir, c.File))
			if c.Expect == "0000" {
				if code != 0 {
					t.Fatalf("exit %d, stderr %s", code, stderr)
				}
				var got, want any
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
				}
				json.Unmarshal(c.Payload, &want)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("payload\n%s\nwant\n%s", stdout, c.Payload)
				}
				return
			}
			if code != exitRejected {
				t.Fatalf("exit %d, want %d; stderr %s", code, exitRejected, stderr)
			}
			if first := strings.Fields(stderr); len(first) == 0 || first[0] != c.Expect {
				t.Fatalf("stderr %q does not start with %s", stderr, c.Expect)
			}
			if stdout != "" {
				t.Errorf("stdout %q on rejection", stdout)
			}
		})
	}
}

// TestKeysAndSealCLI generates two nodes with the CLI, seals a payload from
// one to the other, and opens it; then rotates and seals again.
func TestKeysAndSealCLI(t *testing.T) {
	root := t.TempDir()
	hub, peers := filepath.Join(root, "hub"), filepath.Join(root, "peers")
	code, out, errs := runCLI(t, "", nil, "keys", "gen", "--dir", hub, "--node", "310000000000", "--demo-peers", peers)
	if code != 0 {
		t.Fatalf("keys gen: %d %s", code, errs)
	}
	if !strings.Contains(out, "peer 000000000000") || !strings.Contains(out, "peer 310000000001") {
		t.Fatalf("keys gen output lacks the demo peers:\n%s", out)
	}
	if code, _, _ := runCLI(t, "", nil, "keys", "gen", "--dir", hub, "--node", "310000000000"); code == 0 {
		t.Error("second keys gen overwrote keys")
	}
	if code, out, _ := runCLI(t, "", nil, "keys", "gen", "--dir", hub, "--if-missing"); code != 0 || !strings.Contains(out, "nothing generated") {
		t.Errorf("keys gen --if-missing: %d %s", code, out)
	}
	ministry := filepath.Join(peers, "000000000000")
	payload := `{"ref":"01a21a8d-5640-729c-abcc-f81b08095dde","status":"ACCEPTED","code":"0000","reason":"","at":"2026-11-27T10:00:00+08:00"}`
	seal := func() string {
		code, env, errs := runCLI(t, payload, nil, "envelope", "seal", "--keys", ministry, "--to", "310000000000", "--kind", "receipt", "--corr", "01a21a8d-5640-729c-abcc-f81b08095dde", "-")
		if code != 0 {
			t.Fatalf("seal: %d %s", code, errs)
		}
		return env
	}
	open := func(env string) {
		t.Helper()
		code, out, errs := runCLI(t, env, nil, "envelope", "open", "--keys", hub, "-")
		if code != 0 {
			t.Fatalf("open: %d %s", code, errs)
		}
		if strings.TrimSpace(out) != payload {
			t.Fatalf("opened %s", out)
		}
	}
	first := seal()
	open(first)
	// The Ministry rotates its signing key; the hub learns it by export.
	if code, out, errs := runCLI(t, "", nil, "keys", "rotate", "--dir", ministry, "--kind", "sign"); code != 0 || !strings.Contains(out, "sign key 1") {
		t.Fatalf("rotate: %d %s %s", code, out, errs)
	}
	second := seal()
	if code, _, errs := runCLI(t, second, nil, "envelope", "open", "--keys", hub, "-"); code != exitRejected || !strings.HasPrefix(errs, "E111") {
		t.Fatalf("new key before export: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "", nil, "keys", "export", "--dir", ministry, "--out", filepath.Join(hub, "peers")); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	open(second)
	open(first) // the old key still verifies
	if code, out, _ := runCLI(t, "", nil, "keys", "show", "--dir", hub); code != 0 || strings.Count(out, "sign ") != 4 {
		t.Errorf("keys show: %d\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{},
		{"nope"},
		{"envelope"},
		{"envelope", "open"},
		{"envelope", "seal", "--to", "310000000000"},
		{"keys", "frob"},
		{"audit"},
	}
	for _, args := range tests {
		if code, _, _ := runCLI(t, "", nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := runCLI(t, "", nil, "version"); code != 0 || !strings.HasPrefix(out, "zhianhub ") {
		t.Errorf("version: %d %q", code, out)
	}
}

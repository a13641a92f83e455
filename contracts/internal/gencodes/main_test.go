package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate fails when contracts/codes_gen.go or the demo
// category table differ from what the shared code tables generate.
func TestGeneratedUpToDate(t *testing.T) {
	src, cats, err := generate(filepath.Join("..", "..", "..", "..", "shared", "codes"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"codes_gen.go": src, "categories_demo.tsv": cats} {
		got, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("contracts/%s is stale: run go generate ./contracts", name)
		}
	}
}

func TestReadCodesRejectsBadTables(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"header.tsv": "kode\tname\n1\tx\n",
		"width.tsv":  "code\tname\n12\tx\n",
		"dup.tsv":    "code\tname\n1\tx\n1\ty\n",
		"blank.tsv":  "code\tname\n1\t \n",
		"empty.tsv":  "code\tname\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readCodes(p, '\t', []string{"code", "name"}, 1); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

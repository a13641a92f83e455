// Package sheettest opens spreadsheets the way a user's office suite does,
// for tests: LibreOffice Calc, headless, converts a workbook to CSV, and the
// test checks what it reads.
//
// soffice comes from the Debian package libreoffice-calc-nogui: when it is
// missing, Convert installs it once with deploy/install-libreoffice.sh (as
// root, with apt-get; a fresh CI machine does so). If that fails the test
// fails, naming the cause: nothing is skipped.
package sheettest

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// InstallScript is the script that installs soffice, relative to the
// module root.
const InstallScript = "deploy/install-libreoffice.sh"

// Timeouts of the install and of one conversion.
const (
	installTimeout = 20 * time.Minute
	convertTimeout = 3 * time.Minute
)

var (
	installOnce sync.Once
	installErr  error
)

// ensureSoffice returns the path of soffice, installing it first when it
// is missing.
func ensureSoffice() (string, error) {
	if p, err := exec.LookPath("soffice"); err == nil {
		return p, nil
	}
	installOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			installErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, InstallScript))
		out, err := cmd.CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("%s: %w\n%s", InstallScript, err, tail(out, 4000))
		}
	})
	if installErr != nil {
		return "", fmt.Errorf("sheettest: LibreOffice (soffice) is missing and could not be installed: %w", installErr)
	}
	p, err := exec.LookPath("soffice")
	if err != nil {
		return "", fmt.Errorf("sheettest: %s ran but soffice is not on PATH: %w", InstallScript, err)
	}
	return p, nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("sheettest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// csvFilter is LibreOffice's CSV export: comma, double quote, UTF-8 (76),
// from the first row; cells as shown (their number formats applied).
const csvFilter = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true"

// Convert has LibreOffice Calc open the workbook (its bytes; name gives the
// extension, e.g. "export.xlsx") and save its first sheet as CSV, and
// returns the records read back. A workbook LibreOffice cannot open fails
// the test.
func Convert(t testing.TB, name string, data []byte) [][]string {
	t.Helper()
	soffice, err := ensureSoffice()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, name)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	profile := filepath.Join(dir, "profile") // own profile: conversions may run at once
	ctx, cancel := context.WithTimeout(context.Background(), convertTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, soffice, "--headless", "--norestore", "--nolockcheck",
		"-env:UserInstallation=file://"+profile, "--convert-to", csvFilter, "--outdir", outDir, in)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sheettest: soffice --convert-to csv %s: %v\n%s", name, err, tail(out, 4000))
	}
	csvPath := filepath.Join(outDir, strings.TrimSuffix(name, filepath.Ext(name))+".csv")
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatalf("sheettest: LibreOffice did not convert %s (%v); it said:\n%s", name, err, tail(out, 4000))
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("sheettest: the CSV LibreOffice wrote is not CSV: %v\n%s", err, tail(b, 2000))
	}
	return recs
}

package moduleacl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// Runner runs rabbitmqctl with args and stdin; Rabbitmqctl satisfies it.
type Runner interface {
	Run(ctx context.Context, args []string, stdin []byte) ([]byte, error)
}

// Rabbitmqctl runs the rabbitmqctl command of the broker's host.
type Rabbitmqctl struct {
	// Path of the command; default "rabbitmqctl" on PATH.
	Path string
}

// Run runs the command and returns its standard output; a failure carries
// its standard error.
func (r Rabbitmqctl) Run(ctx context.Context, args []string, stdin []byte) ([]byte, error) {
	path := r.Path
	if path == "" {
		path = "rabbitmqctl"
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("rabbitmqctl %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Users lists the broker's users (rabbitmqctl -s list_users).
func Users(ctx context.Context, r Runner) (map[string]bool, error) {
	out, err := r.Run(ctx, []string{"-s", "list_users"}, nil)
	if err != nil {
		return nil, err
	}
	users := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, "\t"); strings.TrimSpace(name) != "" {
			users[strings.TrimSpace(name)] = true
		}
	}
	return users, nil
}

// Apply sets up every module of a: it creates a random password file for
// each module that has none (mode 0600, in passwordDir, created 0700), then
// runs the plan (change_password for users that exist). It returns the
// commands it ran.
func Apply(ctx context.Context, a ACL, passwordDir string, r Runner) ([]Command, error) {
	if err := os.MkdirAll(passwordDir, 0o700); err != nil {
		return nil, fmt.Errorf("moduleacl: %w", err)
	}
	for _, m := range a.Modules {
		if err := ensurePassword(PasswordFile(passwordDir, m.Name)); err != nil {
			return nil, err
		}
	}
	exists, err := Users(ctx, r)
	if err != nil {
		return nil, err
	}
	var done []Command
	for _, c := range a.Plan(passwordDir, exists) {
		var stdin []byte
		if c.Stdin != "" {
			pw, err := os.ReadFile(c.Stdin)
			if err != nil {
				return done, fmt.Errorf("moduleacl: %w", err)
			}
			stdin = append(bytes.TrimRight(pw, "\r\n"), '\n')
		}
		if _, err := r.Run(ctx, c.Args, stdin); err != nil {
			return done, err
		}
		done = append(done, c)
	}
	return done, nil
}

// ensurePassword writes a random password to path unless it exists.
func ensurePassword(path string) error {
	_, err := os.Stat(path)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("moduleacl: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("moduleacl: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("moduleacl: %w", err)
	}
	if _, err := f.WriteString(base64.RawURLEncoding.EncodeToString(b) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("moduleacl: %w", err)
	}
	return f.Close()
}

// ReadPassword returns the password in a password file (without the line
// end), for a module's own connection URL.
func ReadPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("moduleacl: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

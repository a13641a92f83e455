package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// exitRejected is the exit status of `envelope open` for a rejected envelope.
const exitRejected = 3

func runEnvelope(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New("usage: zhianhub envelope open|seal [flags] FILE")}
	}
	switch args[0] {
	case "open":
		return envelopeOpen(env, args[1:])
	case "seal":
		return envelopeSeal(env, args[1:])
	}
	return &exitError{code: 2, err: fmt.Errorf("zhianhub envelope: unknown subcommand %q (open|seal)", args[0])}
}

// readInput reads FILE, or standard input for "-".
func readInput(env *cliEnv, fs interface{ Args() []string }) ([]byte, error) {
	rest := fs.Args()
	if len(rest) != 1 {
		return nil, &exitError{code: 2, err: errors.New("exactly one FILE (or - for standard input) is required")}
	}
	if rest[0] == "-" {
		return io.ReadAll(io.LimitReader(env.stdin, envelope.MaxSize+1))
	}
	return os.ReadFile(rest[0])
}

func envelopeOpen(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "envelope open")
	var kf keyFlags
	kf.register(fs, env)
	fs.StringVar(&kf.dir, "keys", kf.dir, "key directory of the receiving node (alias of --dir)")
	nowFlag := fs.String("now", "", "receiver clock, RFC 3339 (default: the system clock)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	now := time.Now
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339Nano, *nowFlag)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--now: %w", err)}
		}
		now = func() time.Time { return t }
	}
	raw, err := readInput(env, fs)
	if err != nil {
		return err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	ks, err := keystore.Load(kf.dir, keystore.LoadOptions{Passphrase: pass})
	if err != nil {
		return err
	}
	validator, err := newPayloadValidator(env.getenv)
	if err != nil {
		return err
	}
	o, err := envelope.NewOpener(envelope.OpenerConfig{Keys: ks, Kinds: validator, Payload: validator, Now: now})
	if err != nil {
		return err
	}
	msg, err := o.Open(raw)
	if err != nil {
		// The code is the first word of stderr; the rest explains.
		return &exitError{code: exitRejected, err: fmt.Errorf("%s %s", envelope.CodeOf(err), describeRejection(err))}
	}
	if _, err := env.stdout.Write(msg.Payload); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout)
	return nil
}

// describeRejection renders err without repeating its leading code.
func describeRejection(err error) string {
	s := err.Error()
	code := string(envelope.CodeOf(err))
	return strings.TrimSpace(strings.TrimPrefix(s, code))
}

func envelopeSeal(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "envelope seal")
	var kf keyFlags
	kf.register(fs, env)
	fs.StringVar(&kf.dir, "keys", kf.dir, "key directory of the sending node (alias of --dir)")
	to := fs.String("to", "", "recipient node code (12 digits)")
	kind := fs.String("kind", "", "message kind, e.g. keyperson.register")
	id := fs.String("id", "", "message id (default: a new UUIDv7; a resend passes the original)")
	corr := fs.String("corr", "", "id of the message this one answers")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" || *kind == "" {
		return &exitError{code: 2, err: errors.New("zhianhub envelope seal: --to and --kind are required")}
	}
	payload, err := readInput(env, fs)
	if err != nil {
		return err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	ks, err := keystore.Load(kf.dir, keystore.LoadOptions{Passphrase: pass})
	if err != nil {
		return err
	}
	s, err := envelope.NewSealer(envelope.SealerConfig{Keys: ks})
	if err != nil {
		return err
	}
	out, _, err := s.Seal(envelope.Outgoing{ID: *id, Kind: *kind, To: *to, Corr: *corr, Payload: payload})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s\n", out)
	return nil
}

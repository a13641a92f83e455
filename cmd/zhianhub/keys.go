package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"zhianhub/crypto/keystore"
	"zhianhub/store/audit"
)

// Demo nodes for offline integration: the Ministry bus and the city bureau.
var demoPeerNodes = []string{"000000000000", "310000000001"}

func runKeys(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New("usage: zhianhub keys gen|show|rotate|export [flags]")}
	}
	switch args[0] {
	case "gen":
		return keysGen(env, args[1:])
	case "show":
		return keysShow(env, args[1:])
	case "rotate":
		return keysRotate(env, args[1:])
	case "export":
		return keysExport(env, args[1:])
	}
	return &exitError{code: 2, err: fmt.Errorf("zhianhub keys: unknown subcommand %q (gen|show|rotate|export)", args[0])}
}

// keyFlags are the flags every keys subcommand shares.
type keyFlags struct {
	dir            string
	passphraseFile string
}

func (k *keyFlags) register(fs *flag.FlagSet, env *cliEnv) {
	def := env.getenv("ZHIANHUB_KEYS_DIR")
	if def == "" {
		def = "var/keys"
	}
	fs.StringVar(&k.dir, "dir", def, "key directory (env ZHIANHUB_KEYS_DIR)")
	fs.StringVar(&k.passphraseFile, "passphrase-file", env.getenv("ZHIANHUB_KEYS_PASSPHRASE_FILE"), "file holding the private-key passphrase (env ZHIANHUB_KEYS_PASSPHRASE_FILE)")
}

func (k *keyFlags) passphrase() ([]byte, error) {
	return readPassphrase(k.passphraseFile)
}

func readPassphrase(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	p := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(p) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return p, nil
}

func newFlagSet(env *cliEnv, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0, err: errors.New("")}
		}
		return &exitError{code: 2, err: errors.New("")}
	}
	return nil
}

func keysGen(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "keys gen")
	var kf keyFlags
	kf.register(fs, env)
	node := fs.String("node", "310000000000", "this node's 12-digit code")
	demo := fs.String("demo-peers", "", "also create demo key directories for the simulated Ministry bus and city bureau under this folder, each trusting the other side (development only)")
	ifMissing := fs.Bool("if-missing", false, "do nothing when the directory already holds keys")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	if err := keystore.Generate(kf.dir, *node, pass); err != nil {
		if *ifMissing && errors.Is(err, keystore.ErrExists) {
			fmt.Fprintf(env.stdout, "keys exist already in %s: nothing generated\n", kf.dir)
			return nil
		}
		return err
	}
	fmt.Fprintf(env.stdout, "generated signing and encryption keys for node %s in %s\n", *node, kf.dir)
	if *demo != "" {
		for _, peer := range demoPeerNodes {
			pdir := filepath.Join(*demo, peer)
			if err := keystore.Generate(pdir, peer, nil); err != nil && !errors.Is(err, keystore.ErrExists) {
				return err
			}
			if _, err := keystore.ExportPublic(pdir, keystore.LoadOptions{}, filepath.Join(kf.dir, "peers")); err != nil {
				return err
			}
			if _, err := keystore.ExportPublic(kf.dir, keystore.LoadOptions{Passphrase: pass}, filepath.Join(pdir, "peers")); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "generated demo keys for peer node %s in %s; both sides trust each other\n", peer, pdir)
		}
	}
	return showKeys(env, kf.dir, pass)
}

func keysShow(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "keys show")
	var kf keyFlags
	kf.register(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	return showKeys(env, kf.dir, pass)
}

func showKeys(env *cliEnv, dir string, pass []byte) error {
	ks, err := keystore.Load(dir, keystore.LoadOptions{Passphrase: pass})
	if err != nil {
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "node %s (%s)\n", ks.Node(), dir)
	for i, s := range ks.Signers() {
		fmt.Fprintf(w, "  sign %s%s\n", s.KeyID(), activeMark(i))
	}
	for i, u := range ks.Unwrappers() {
		fmt.Fprintf(w, "  enc  %s%s\n", u.KeyID(), activeMark(i))
	}
	for _, node := range ks.Peers() {
		p, _ := ks.Peer(node)
		fmt.Fprintf(w, "peer %s\n", node)
		for id := range p.Sign {
			fmt.Fprintf(w, "  sign %s\n", id)
		}
		for i, e := range p.EncAll {
			fmt.Fprintf(w, "  enc  %s%s\n", e.KeyID(), activeMark(i))
		}
	}
	return nil
}

func activeMark(i int) string {
	if i == 0 {
		return " (current)"
	}
	return ""
}

func keysRotate(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "keys rotate")
	var kf keyFlags
	kf.register(fs, env)
	kind := fs.String("kind", "", "sign or enc")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	n, id, err := keystore.Rotate(kf.dir, *kind, pass)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "added %s key %d (%s); it is now current. Export it to the peers (zhianhub keys export).\n", *kind, n, id)
	auditAdminAction(context.Background(), env, audit.Entry{Action: "key.rotate", Object: *kind + "/" + strconv.Itoa(n), Result: "ok",
		Detail: map[string]any{"kind": *kind, "no": n, "keyId": string(id), "dir": kf.dir}})
	return nil
}

func keysExport(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "keys export")
	var kf keyFlags
	kf.register(fs, env)
	out := fs.String("out", "", "a peer's peers/ folder (writes <out>/<node>/*.pub.pem)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return &exitError{code: 2, err: errors.New("zhianhub keys export: --out is required")}
	}
	pass, err := kf.passphrase()
	if err != nil {
		return err
	}
	node, err := keystore.ExportPublic(kf.dir, keystore.LoadOptions{Passphrase: pass}, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "exported public keys of node %s to %s\n", node, filepath.Join(*out, node))
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"zhianhub/adapters/api"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/crypto/fieldenc"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store"
	"zhianhub/store/audit"
)

const fileUsage = `usage: zhianhub file <kind> FILE|- [--config FILE] [--actor USER] [--corr ID]
kind: keyperson.register|change|cancel|control|release|task|task.sign; FILE holds the payload
(JSON; its seq is assigned by the hub). The record is put in the outbox: the running hub's relay
publishes it. Prints the result as JSON; a refusal prints its code first on stderr and exits 3.`

// runFile files one record up to the Ministry, as POST /api/v1/filings/{kind}
// does: validated, applied to the registry and put in the outbox in one
// transaction.
func runFile(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "file")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	actor := fs.String("actor", "", "who files, for the audit (default: $USER, else operator)")
	corr := fs.String("corr", "", "id of the message this filing answers (keyperson.task.sign: the task's message)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return &exitError{code: 2, err: errors.New(fileUsage)}
	}
	kind, name := pos[0], pos[1]
	payload, err := readPayload(env, name)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	who := audit.Text(strings.TrimSpace(*actor), 64)
	if who == "" {
		who = audit.Text(strings.TrimSpace(env.getenv("USER")), 64)
	}
	if who == "" {
		who = "operator"
	}
	res, err := fileRecord(ctx, env, cfg, routes.FileRequest{Kind: kind, Payload: payload, Corr: *corr, Actor: who})
	if res.ID != "" {
		out, _ := json.Marshal(res)
		fmt.Fprintln(env.stdout, string(out))
	}
	if err != nil {
		if r, ok := api.Refusal(err); ok && res.ID == "" {
			return &exitError{code: exitRejected, err: fmt.Errorf("%s %s", r.Code, r.Message)}
		}
		return err
	}
	return nil
}

// readPayload reads FILE, or standard input for "-".
func readPayload(env *cliEnv, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(io.LimitReader(env.stdin, envelope.MaxSize+1))
		if err == nil && len(b) > envelope.MaxSize {
			err = fmt.Errorf("standard input is larger than %d bytes", envelope.MaxSize)
		}
		return b, err
	}
	return os.ReadFile(name)
}

// fileRecord opens what the filing service needs (keys, database, audit
// chain, field encryption) and files req. It does not migrate the database:
// the hub does at start.
func fileRecord(ctx context.Context, env *cliEnv, cfg config.Config, req routes.FileRequest) (routes.FileResult, error) {
	// Only warnings and errors: stderr must start with the code of a refusal.
	level := cfg.Log.Level
	if l, err := config.ParseLevel(level); err != nil || l < slog.LevelWarn {
		level = "warn"
	}
	logger := config.NewLogger(env.stderr, level)
	ks, err := loadKeystore(cfg)
	if err != nil {
		return routes.FileResult{}, err
	}
	pool, err := store.Open(ctx, cfg.Database.URL, store.PoolConfig{MaxConns: 4})
	if err != nil {
		return routes.FileResult{}, err
	}
	defer pool.Close()
	aw, err := audit.NewWriter(pool, audit.WriterConfig{Signer: ks.Signer(), CheckpointInterval: cfg.Audit.CheckpointInterval, Logger: logger})
	if err != nil {
		return routes.FileResult{}, err
	}
	res, err := func() (routes.FileResult, error) {
		kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), ks)
		if err != nil {
			return routes.FileResult{}, err
		}
		b, err := newBusRoutes(ctx, cfg, logger, ks, pool, aw, kr)
		if err != nil {
			return routes.FileResult{}, err
		}
		return b.filing.File(ctx, req)
	}()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return res, errors.Join(err, aw.Close(cctx))
}

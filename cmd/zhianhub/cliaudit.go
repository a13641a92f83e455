package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto/keystore"
	"zhianhub/store/audit"
)

// cliAuditTimeout bounds recording an offline administrative action.
const cliAuditTimeout = 15 * time.Second

// auditAdminAction records an administrative action done by a command that
// works without the database (keys rotate, modules apply) in the audit
// chain of the configured database, as the operator ($USER). The action
// has happened; when it cannot be recorded now (no database reachable, no
// keys), a warning says so on standard error and the command still
// succeeds: a key rotation is recorded by the hub at its next start
// (key.change) in any case.
func auditAdminAction(ctx context.Context, env *cliEnv, e audit.Entry) {
	if e.Actor == "" {
		e.Actor = audit.Text(strings.TrimSpace(env.getenv("USER")), 64)
		if e.Actor == "" {
			e.Actor = "operator"
		}
	}
	err := func() error {
		cfg, err := loadConfig(env, "")
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, cliAuditTimeout)
		defer cancel()
		return withAuditWriter(cctx, cfg, func(_ *keystore.Store, _ *pgxpool.Pool, w *audit.Writer) error {
			_, err := w.Append(cctx, e)
			return err
		})
	}()
	if err != nil {
		fmt.Fprintf(env.stderr, "warning: %s was done but not audited now: %v\n", e.Action, err)
	}
}

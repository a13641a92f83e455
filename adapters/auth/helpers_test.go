package auth_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/auth"
	"zhianhub/crypto"
	"zhianhub/store/audit"
	"zhianhub/store/storetest"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// auditDB is a fresh database with an audit writer on it.
type auditDB struct {
	pool   *pgxpool.Pool
	writer *audit.Writer
}

func newAuditDB(t *testing.T) *auditDB {
	t.Helper()
	pool := storetest.NewPool(t)
	key, err := crypto.GenerateSM2()
	must(t, err)
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: key})
	must(t, err)
	t.Cleanup(func() { w.Close(context.Background()) })
	return &auditDB{pool: pool, writer: w}
}

// auditRow is one stored audit entry.
type auditRow struct {
	Actor, Unit, Role, Action, Object, Result, Reason string
	Detail                                            map[string]any
}

// entries returns the chained audit entries of action, oldest first.
func (d *auditDB) entries(t *testing.T, action string) []auditRow {
	t.Helper()
	rows, err := d.pool.Query(context.Background(), `SELECT actor, unit, role, action, object, result, reason, detail
		FROM audit_entry WHERE action = $1 ORDER BY seq`, action)
	must(t, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var a auditRow
		must(t, rows.Scan(&a.Actor, &a.Unit, &a.Role, &a.Action, &a.Object, &a.Result, &a.Reason, &a.Detail))
		out = append(out, a)
	}
	must(t, rows.Err())
	return out
}

// whoami answers the identity the middleware put in the context as
// "user|unit|roles|method".
func whoami(w http.ResponseWriter, r *http.Request) {
	id, ok := auth.IdentityFrom(r.Context())
	if !ok {
		http.Error(w, "no identity", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(id.User + "|" + id.Unit + "|" + id.RoleList() + "|" + id.Method))
}

package registry_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"zhianhub/contracts"
	"zhianhub/store"
	"zhianhub/store/registry"
)

// TestBatchMatchesApply applies the same messages (same ids) in one
// transaction to two registries, one with Registry.Apply and one through a
// Batch, and requires the same outcomes and the same records, decrypted.
func TestBatchMatchesApply(t *testing.T) {
	plain, batched := newEnv(t), newEnv(t)
	p1, p2, p3, p4 := personNo(1), personNo(2), personNo(3), personNo(4)
	// p4 is registered before the batch: its register is E130 either way.
	pre := plain.msg(t, contracts.KindRegister, registerB(p4))
	plain.mustApply(t, pre)
	batched.mustApply(t, pre)
	msgs := []registry.Message{
		plain.msg(t, contracts.KindRegister, registerA(p1)),
		plain.msg(t, contracts.KindRegister, registerB(p2)),
		plain.msg(t, contracts.KindControl, controlA(p1, controlNo(1))), // needs p1, held until here
		plain.msg(t, contracts.KindRegister, registerB(p1)),             // E130: registered in this batch
		plain.msg(t, contracts.KindRegister, registerA(p4)),             // E130: registered before
		plain.msg(t, contracts.KindRegister, registerA(p3)),
		plain.msg(t, contracts.KindCancel, cancelA(p3)),
		plain.msg(t, contracts.KindChange, changeA(p2)),
	}
	outcome := func(err error) string {
		if err == nil {
			return "ok"
		}
		code, path := codeOf(err)
		return code + " " + path
	}
	var want, got []string
	err := pgx.BeginFunc(plain.ctx, plain.pool, func(tx pgx.Tx) error {
		for _, m := range msgs {
			want = append(want, outcome(plain.reg.Apply(plain.ctx, tx, m)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = store.BeginPipe(batched.ctx, batched.pool, func(tx *store.Pipe) error {
		b := batched.reg.NewBatch()
		if err := b.Prepare(batched.ctx, tx, []string{p1, p2, p3, p4}); err != nil {
			return err
		}
		for _, m := range msgs {
			got = append(got, outcome(b.Apply(batched.ctx, tx, m)))
		}
		return b.Flush(batched.ctx, tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outcomes through Batch %v, with Apply %v", got, want)
	}
	for _, no := range []string{p1, p2, p3, p4} {
		for _, read := range []struct {
			name string
			get  func(e *env) (any, error)
		}{
			{"person", func(e *env) (any, error) { return e.reg.GetPerson(e.ctx, e.pool, no) }},
			{"history", func(e *env) (any, error) { return e.reg.History(e.ctx, e.pool, no) }},
			{"controls", func(e *env) (any, error) { return e.reg.Controls(e.ctx, e.pool, no) }},
		} {
			w, err := read.get(plain)
			if err != nil {
				t.Fatal(err)
			}
			g, err := read.get(batched)
			if err != nil {
				t.Fatal(err)
			}
			wj, _ := json.Marshal(w)
			gj, _ := json.Marshal(g)
			if string(wj) != string(gj) {
				t.Errorf("%s %s through Batch:\n%s\nwith Apply:\n%s", read.name, no, gj, wj)
			}
		}
	}
}

// TestBatchConcurrentRegistration: another transaction registers the person
// a batch holds a registration for; the batch's transaction fails (unique
// violation), never a second person row.
func TestBatchConcurrentRegistration(t *testing.T) {
	e := newEnv(t)
	no := personNo(9)
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	b := e.reg.NewBatch()
	if err := b.Prepare(e.ctx, tx, []string{no}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(e.ctx, tx, e.msg(t, contracts.KindRegister, registerA(no))); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, e.msg(t, contracts.KindRegister, registerB(no))) // commits first
	err = b.Flush(e.ctx, tx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("flush after a concurrent registration: %v", err)
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM person_history WHERE person_no = $1`, no).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d history rows (%v)", n, err)
	}
}

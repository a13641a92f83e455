package journal_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/store"
	"zhianhub/store/journal"
)

// op is one journal call of a scenario: a Record (m set) or a Transition.
type op struct {
	m                  *journal.Message
	dir                journal.Direction
	state              journal.State
	code, reason       string
	seedBeforeBothRuns bool // Record before the scenario, committed
}

// TestPendingMatchesImmediate runs each scenario twice, once with
// Journal.Record and Journal.Transition and once through a Pending flushed
// in the same transaction, on messages of different ids, and requires the
// same message rows and the same events (times and ids aside).
func TestPendingMatchesImmediate(t *testing.T) {
	j, pool, ctx := newJournal(t)
	rec := func(state journal.State, raw string, code, reason string) op {
		return op{m: &journal.Message{Direction: journal.In, Kind: "keyperson.register", Peer: "100000000000",
			Raw: []byte(raw), State: state, Code: code, Reason: reason, CorrelationID: "c-1"}}
	}
	tr := func(state journal.State, code, reason string) op {
		return op{dir: journal.In, state: state, code: code, reason: reason}
	}
	seed := func(o op) op { o.seedBeforeBothRuns = true; return o }
	scenarios := []struct {
		name string
		ops  []op
	}{
		{"new, opened then applied", []op{rec(journal.StateOpened, "env", "", "cleaned: idNo"), tr(journal.StateApplied, "0000", "")}},
		{"new, rejected in two steps", []op{rec(journal.StateOpened, "env", "", ""), tr(journal.StateRejected, "E120", "idNo：校验位错误"), tr(journal.StateFlagged, "E120", "review")}},
		{"new, recorded only", []op{rec(journal.StateDeadLettered, "\x00\xff", "E110", "bad signature")}},
		{"new, recorded twice with other bytes", []op{rec(journal.StateOpened, "env-1", "", ""), tr(journal.StateApplied, "0000", ""), rec(journal.StateOpened, "env-2", "", "redelivered")}},
		{"new, recorded twice with the same bytes", []op{rec(journal.StateOpened, "env", "", ""), rec(journal.StateOpened, "env", "", "redelivered")}},
		{"existing, received again, same bytes", []op{seed(rec(journal.StateApplied, "env", "0000", "")), rec(journal.StateOpened, "env", "", "redelivered")}},
		{"existing, received again, other bytes", []op{seed(rec(journal.StateApplied, "env", "0000", "")), rec(journal.StateOpened, "env-2", "", "resent")}},
		{"existing, processed afresh", []op{seed(rec(journal.StateRejected, "env", "E112", "stale")), rec(journal.StateOpened, "env-2", "", ""), tr(journal.StateApplied, "0000", "")}},
		{"existing, transitioned only", []op{seed(rec(journal.StateOpened, "env", "", "")), tr(journal.StateApplied, "0000", "")}},
	}
	type result struct {
		msg    journal.Message
		events []journal.Event
	}
	run := func(t *testing.T, ops []op, pending bool) result {
		t.Helper()
		id := uuid.Must(uuid.NewV7())
		for _, o := range ops {
			if o.seedBeforeBothRuns {
				m := *o.m
				m.ID = id
				if _, err := j.Record(ctx, pool, m); err != nil {
					t.Fatal(err)
				}
			}
		}
		err := store.BeginPipe(ctx, pool, func(tx *store.Pipe) error {
			p := journal.NewPending(nil)
			for _, o := range ops {
				if o.seedBeforeBothRuns {
					continue
				}
				var err error
				switch {
				case o.m != nil && pending:
					m := *o.m
					m.ID = id
					err = p.Record(m)
				case o.m != nil:
					m := *o.m
					m.ID = id
					_, err = j.Record(ctx, tx, m)
				case pending:
					err = p.Transition(id, o.dir, o.state, o.code, o.reason)
				default:
					err = j.Transition(ctx, tx, id, o.dir, o.state, o.code, o.reason)
				}
				if err != nil {
					return err
				}
			}
			return p.Flush(ctx, tx)
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := j.Get(ctx, id, journal.In)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := j.Events(ctx, id, journal.In)
		if err != nil {
			t.Fatal(err)
		}
		return result{m, evs}
	}
	describe := func(r result) string {
		s := fmt.Sprintf("message %s %q %q raw=%q corr=%q kind=%q peer=%q\n", r.msg.State, r.msg.Code, r.msg.Reason, r.msg.Raw,
			r.msg.CorrelationID, r.msg.Kind, r.msg.Peer)
		for _, e := range r.events {
			s += fmt.Sprintf("  event %s %q %q raw=%q\n", e.State, e.Code, e.Reason, e.Raw)
		}
		return s
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			want, got := run(t, sc.ops, false), run(t, sc.ops, true)
			if describe(got) != describe(want) {
				t.Fatalf("through Pending:\n%swith Record/Transition:\n%s", describe(got), describe(want))
			}
			for i := 1; i < len(got.events); i++ {
				if got.events[i].At.Before(got.events[i-1].At) || got.events[i].ID <= got.events[i-1].ID {
					t.Fatalf("events out of order: %+v", got.events)
				}
			}
		})
	}
}

func TestPendingTransitionOfUnknownMessage(t *testing.T) {
	j, pool, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())
	p := journal.NewPending(nil)
	if err := p.Transition(id, journal.In, journal.StateApplied, "0000", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx, pool); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if _, err := j.Get(ctx, id, journal.In); err == nil {
		t.Fatal("a transition created a message")
	}
}

func TestPendingOneStatementForABatch(t *testing.T) {
	j, pool, ctx := newJournal(t)
	clock := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	p := journal.NewPending(func() time.Time { clock = clock.Add(time.Millisecond); return clock })
	ids := make([]uuid.UUID, 300)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
		if err := p.Record(journal.Message{ID: ids[i], Direction: journal.In, Kind: "keyperson.register", Peer: "100000000000",
			Raw: bytes.Repeat([]byte{byte(i)}, 2048), State: journal.StateOpened}); err != nil {
			t.Fatal(err)
		}
		if err := p.Transition(ids[i], journal.In, journal.StateApplied, "0000", ""); err != nil {
			t.Fatal(err)
		}
	}
	if p.Len() != 300 {
		t.Fatalf("Len = %d", p.Len())
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		pipe := store.NewPipe(tx)
		if err := p.Flush(ctx, pipe); err != nil {
			return err
		}
		if pipe.Held() != 1 || p.Len() != 0 {
			t.Errorf("held %d statements, %d messages left; want 1 and 0", pipe.Held(), p.Len())
		}
		return pipe.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 299} {
		m, err := j.Get(ctx, ids[i], journal.In)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != journal.StateApplied || !bytes.Equal(m.Raw, bytes.Repeat([]byte{byte(i)}, 2048)) {
			t.Fatalf("message %d: %s, %d bytes", i, m.State, len(m.Raw))
		}
		evs, err := j.Events(ctx, ids[i], journal.In)
		if err != nil || len(evs) != 2 || evs[0].State != journal.StateOpened || evs[1].State != journal.StateApplied ||
			evs[1].At.Sub(evs[0].At) != time.Millisecond {
			t.Fatalf("events of %d: %+v %v", i, evs, err)
		}
	}
}

// TestPendingFlushCheckedRace records one message in two transactions at
// once: the Pending's statement waits for the other transaction's row and
// cannot see it in its snapshot. FlushChecked still journals the second
// copy (StateReceivedAgain); Flush cannot.
func TestPendingFlushCheckedRace(t *testing.T) {
	for _, checked := range []bool{true, false} {
		t.Run(fmt.Sprintf("checked=%v", checked), func(t *testing.T) {
			j, pool, ctx := newJournal(t)
			id := uuid.Must(uuid.NewV7())
			m := journal.Message{ID: id, Direction: journal.Out, Kind: "receipt", Peer: "100000000000", Raw: []byte("payload"), State: journal.StateReceipted}
			first, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Rollback(ctx)
			if _, err := j.Record(ctx, first, m); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				done <- pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					p := journal.NewPending(nil)
					sent := m
					sent.Raw, sent.State = []byte("envelope"), journal.StateSent
					if err := p.Record(sent); err != nil {
						return err
					}
					if checked {
						return p.FlushChecked(ctx, tx)
					}
					return p.Flush(ctx, tx)
				})
			}()
			// Wait until the second transaction waits for the first one's row.
			for deadline := time.Now().Add(10 * time.Second); ; {
				var waiting int
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the second transaction never waited")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := first.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			evs, err := j.Events(ctx, id, journal.Out)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if checked {
				want = 2
			}
			if len(evs) != want || checked && (evs[1].State != journal.StateReceivedAgain || string(evs[1].Raw) != "envelope") {
				t.Fatalf("events %+v, want %d", evs, want)
			}
		})
	}
}

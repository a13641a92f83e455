package journal_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store/journal"
	"zhianhub/store/storetest"
)

func newJournal(t *testing.T) (*journal.Journal, *pgxpool.Pool, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool := storetest.NewPool(t)
	return journal.New(pool), pool, ctx
}

// allBytes is every byte value, including NUL and invalid UTF-8.
func allBytes() []byte {
	b := make([]byte, 512)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestRecordAndGet(t *testing.T) {
	j, q, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())
	tests := []struct {
		name string
		m    journal.Message
		want journal.Message // Raw, State, Code... as read back
	}{
		{
			name: "inbound with correlation",
			m: journal.Message{ID: id, Direction: journal.In, Kind: "keyperson.register", Peer: "310000000000",
				Raw: []byte(`{"v":1}`), State: journal.StateReceived, CorrelationID: "0190a0b0-0000-7000-8000-000000000001"},
		},
		{
			name: "outbound, same id",
			m: journal.Message{ID: id, Direction: journal.Out, Kind: "receipt", Peer: "100000000000",
				Raw: []byte("out"), State: journal.StateQueued},
		},
		{
			name: "raw bytes kept exactly",
			m: journal.Message{ID: uuid.Must(uuid.NewV7()), Direction: journal.In, Raw: allBytes(),
				State: journal.StateDeadLettered, Code: "E100", Reason: "not JSON"},
		},
		{
			name: "empty raw",
			m:    journal.Message{ID: uuid.Must(uuid.NewV7()), Direction: journal.In, Raw: nil, State: journal.StateDeadLettered},
			want: journal.Message{Raw: []byte{}},
		},
		{
			name: "text sanitized",
			m: journal.Message{ID: uuid.Must(uuid.NewV7()), Direction: journal.In, Kind: "bad\x00kind\xff",
				Raw: []byte{0}, State: journal.StateDeadLettered, Reason: "nul\x00"},
			want: journal.Message{Kind: "bad\uFFFDkind\uFFFD", Reason: "nul\uFFFD"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dup, err := j.Record(ctx, q, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if dup {
				t.Fatal("first Record reported a duplicate")
			}
			got, err := j.Get(ctx, tt.m.ID, tt.m.Direction)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.m
			if tt.want.Raw != nil {
				want.Raw = tt.want.Raw
			}
			if tt.want.Kind != "" {
				want.Kind = tt.want.Kind
			}
			if tt.want.Reason != "" {
				want.Reason = tt.want.Reason
			}
			if got.ID != want.ID || got.Direction != want.Direction || got.Kind != want.Kind || got.Peer != want.Peer ||
				!bytes.Equal(got.Raw, want.Raw) || got.Raw == nil || got.State != want.State || got.Code != want.Code ||
				got.Reason != want.Reason || got.CorrelationID != want.CorrelationID {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
			if got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) {
				t.Errorf("times: created %v updated %v", got.CreatedAt, got.UpdatedAt)
			}
			events, err := j.Events(ctx, tt.m.ID, tt.m.Direction)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 || events[0].State != tt.m.State || events[0].Code != tt.m.Code || events[0].Raw != nil ||
				!events[0].At.Equal(got.CreatedAt) {
				t.Fatalf("events = %+v", events)
			}
		})
	}
}

func TestRecordDuplicate(t *testing.T) {
	j, q, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())
	first := journal.Message{ID: id, Direction: journal.In, Kind: "k", Peer: "310000000000", Raw: []byte("first"), State: journal.StateReceived}
	if _, err := j.Record(ctx, q, first); err != nil {
		t.Fatal(err)
	}
	if err := j.Transition(ctx, q, id, journal.In, journal.StateApplied, "0000", ""); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		raw     []byte
		wantRaw []byte // in the received_again event
	}{
		{name: "same bytes", raw: []byte("first"), wantRaw: nil},
		{name: "resend with other bytes", raw: []byte("resealed"), wantRaw: []byte("resealed")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			again := first
			again.Raw = tt.raw
			again.State = journal.StateReceived
			again.Reason = "duplicate"
			dup, err := j.Record(ctx, q, again)
			if err != nil {
				t.Fatal(err)
			}
			if !dup {
				t.Fatal("second Record did not report a duplicate")
			}
			got, err := j.Get(ctx, id, journal.In)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != journal.StateApplied || !bytes.Equal(got.Raw, []byte("first")) {
				t.Fatalf("duplicate changed the message: %+v", got)
			}
			events, err := j.Events(ctx, id, journal.In)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 3+i {
				t.Fatalf("%d events, want %d", len(events), 3+i)
			}
			last := events[len(events)-1]
			if last.State != journal.StateReceivedAgain || last.Reason != "duplicate" || !bytes.Equal(last.Raw, tt.wantRaw) {
				t.Fatalf("last event = %+v", last)
			}
		})
	}
}

func TestRecordDuplicateConcurrent(t *testing.T) {
	j, q, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())
	const n = 8
	var wg sync.WaitGroup
	dups := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			dups[i], errs[i] = j.Record(ctx, q, journal.Message{ID: id, Direction: journal.In, Raw: []byte("x"), State: journal.StateReceived})
		})
	}
	wg.Wait()
	firsts := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("record %d: %v", i, errs[i])
		}
		if !dups[i] {
			firsts++
		}
	}
	if firsts != 1 {
		t.Fatalf("%d Records were first, want 1", firsts)
	}
	events, err := j.Events(ctx, id, journal.In)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Fatalf("%d events, want %d", len(events), n)
	}
}

func TestTransitions(t *testing.T) {
	j, q, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())
	if _, err := j.Record(ctx, q, journal.Message{ID: id, Direction: journal.Out, Kind: "k", Raw: []byte("r"), State: journal.StateQueued}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		state        journal.State
		code, reason string
	}{
		{journal.StateSent, "", ""},
		{journal.StateConfirmed, "", "broker ack"},
		{journal.StateReceipted, "E130", "state conflict"},
		{journal.StateFlagged, "E130", "needs review"},
	}
	for i, s := range steps {
		if err := j.Transition(ctx, q, id, journal.Out, s.state, s.code, s.reason); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := j.Get(ctx, id, journal.Out)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != s.state || got.Code != s.code || got.Reason != s.reason || !got.UpdatedAt.After(got.CreatedAt) {
			t.Fatalf("step %d: got %+v", i, got)
		}
	}
	events, err := j.Events(ctx, id, journal.Out)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(steps)+1 {
		t.Fatalf("%d events", len(events))
	}
	for i, s := range steps {
		e := events[i+1]
		if e.State != s.state || e.Code != s.code || e.Reason != s.reason || e.Direction != journal.Out || e.MessageID != id {
			t.Errorf("event %d = %+v", i+1, e)
		}
		if !e.At.After(events[i].At) || e.ID <= events[i].ID {
			t.Errorf("event %d not after event %d", i+1, i)
		}
	}
	// The inbound twin of the id does not exist.
	if _, err := j.Get(ctx, id, journal.In); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("Get(in) = %v, want ErrNotFound", err)
	}
}

func TestErrors(t *testing.T) {
	j, q, ctx := newJournal(t)
	known := uuid.Must(uuid.NewV7())
	if _, err := j.Record(ctx, q, journal.Message{ID: known, Direction: journal.In, State: journal.StateReceived}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"record nil id", func() error {
			_, err := j.Record(ctx, q, journal.Message{Direction: journal.In, State: journal.StateReceived})
			return err
		}, journal.ErrInvalid},
		{"record bad direction", func() error {
			_, err := j.Record(ctx, q, journal.Message{ID: uuid.New(), Direction: "sideways", State: journal.StateReceived})
			return err
		}, journal.ErrInvalid},
		{"record bad state", func() error {
			_, err := j.Record(ctx, q, journal.Message{ID: uuid.New(), Direction: journal.In, State: "lost"})
			return err
		}, journal.ErrInvalid},
		{"record received_again", func() error {
			_, err := j.Record(ctx, q, journal.Message{ID: uuid.New(), Direction: journal.In, State: journal.StateReceivedAgain})
			return err
		}, journal.ErrInvalid},
		{"transition unknown", func() error {
			return j.Transition(ctx, q, uuid.New(), journal.In, journal.StateOpened, "", "")
		}, journal.ErrNotFound},
		{"transition bad state", func() error {
			return j.Transition(ctx, q, known, journal.In, journal.StateReceivedAgain, "", "")
		}, journal.ErrInvalid},
		{"transition bad direction", func() error {
			return j.Transition(ctx, q, known, "", journal.StateOpened, "", "")
		}, journal.ErrInvalid},
		{"get unknown", func() error { _, err := j.Get(ctx, uuid.New(), journal.In); return err }, journal.ErrNotFound},
		{"events unknown", func() error { _, err := j.Events(ctx, uuid.New(), journal.In); return err }, journal.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestInCallerTransaction checks that journal writes join the caller's
// transaction: rolled back, they leave nothing.
func TestInCallerTransaction(t *testing.T) {
	j, pool, ctx := newJournal(t)
	id := uuid.Must(uuid.NewV7())

	tests := []struct {
		name   string
		commit bool
	}{
		{"rollback", false},
		{"commit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			if _, err := j.Record(ctx, tx, journal.Message{ID: id, Direction: journal.In, Raw: []byte("r"), State: journal.StateReceived}); err != nil {
				t.Fatal(err)
			}
			if err := j.Transition(ctx, tx, id, journal.In, journal.StateOpened, "", ""); err != nil {
				t.Fatal(err)
			}
			// Not visible outside the transaction yet.
			if _, err := j.Get(ctx, id, journal.In); !errors.Is(err, journal.ErrNotFound) {
				t.Fatalf("visible before commit: %v", err)
			}
			if tt.commit {
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			} else if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			_, err = j.Get(ctx, id, journal.In)
			if tt.commit != (err == nil) {
				t.Fatalf("after %s: Get err = %v", tt.name, err)
			}
		})
	}
}

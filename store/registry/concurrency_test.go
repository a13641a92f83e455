package registry_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"zhianhub/contracts"
	"zhianhub/store/registry"
)

// TestSerializePerPerson holds the lock of person A in one transaction and
// shows that a second writer to A waits for it while a writer to B does not.
func TestSerializePerPerson(t *testing.T) {
	e := newEnv(t)
	a, b := personNo(1), personNo(2)
	e.mustApply(t, e.msg(t, contracts.KindRegister, registerA(a)), e.msg(t, contracts.KindRegister, registerB(b)))

	tx1, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(e.ctx)
	change := e.msg(t, contracts.KindChange, changeA(a))
	if err := e.reg.Apply(e.ctx, tx1, change); err != nil {
		t.Fatal(err)
	}

	control := e.msg(t, contracts.KindControl, controlA(a, controlNo(1)))
	waiting := make(chan error, 1)
	go func() {
		tx2, err := e.pool.Begin(e.ctx)
		if err != nil {
			waiting <- err
			return
		}
		defer tx2.Rollback(e.ctx)
		if err := e.reg.Apply(e.ctx, tx2, control); err != nil {
			waiting <- err
			return
		}
		waiting <- tx2.Commit(e.ctx)
	}()
	controlB := e.msg(t, contracts.KindControl, controlA(b, controlNo(2)))
	other := make(chan error, 1)
	go func() {
		tx3, err := e.pool.Begin(e.ctx)
		if err != nil {
			other <- err
			return
		}
		defer tx3.Rollback(e.ctx)
		if err := e.reg.Apply(e.ctx, tx3, controlB); err != nil {
			other <- err
			return
		}
		other <- tx3.Commit(e.ctx)
	}()

	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("writer to B: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer to B blocked by the lock of A")
	}
	select {
	case err := <-waiting:
		t.Fatalf("second writer to A did not wait: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx1.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("second writer to A: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second writer to A still blocked")
	}
	h, err := e.reg.History(e.ctx, e.pool, a)
	if err != nil || len(h) != 3 || h[1].MsgID != change.ID || h[2].MsgID != control.ID {
		t.Fatalf("history: %+v %v", h, err)
	}
}

// race runs fs at the same moment and returns their errors.
func race(fs ...func() error) []error {
	errs := make([]error, len(fs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func TestConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	applyTx := func(m registry.Message) func() error {
		return func() error {
			tx, err := e.pool.Begin(e.ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(e.ctx)
			if err := e.reg.Apply(e.ctx, tx, m); err != nil {
				return err
			}
			return tx.Commit(e.ctx)
		}
	}
	for i := 1; i <= 8; i++ {
		base := i * 10
		// The same register twice at once: one effect, one ErrAlreadyApplied.
		reg := e.msg(t, contracts.KindRegister, registerA(personNo(base)))
		errs := race(applyTx(reg), applyTx(reg))
		if !(errs[0] == nil && errors.Is(errs[1], registry.ErrAlreadyApplied) || errs[1] == nil && errors.Is(errs[0], registry.ErrAlreadyApplied)) {
			t.Fatalf("same register twice: %v", errs)
		}
		// Two registers of one personNo: one effect, one E130.
		errs = race(applyTx(e.msg(t, contracts.KindRegister, registerB(personNo(base+1)))), applyTx(e.msg(t, contracts.KindRegister, registerA(personNo(base+1)))))
		c0, _ := codeOf(errs[0])
		c1, _ := codeOf(errs[1])
		if !(c0 == "0000" && c1 == "E130" || c0 == "E130" && c1 == "0000") {
			t.Fatalf("two registers: %v", errs)
		}
		// The same change twice at once.
		chg := e.msg(t, contracts.KindChange, changeA(personNo(base)))
		errs = race(applyTx(chg), applyTx(chg))
		if !(errs[0] == nil && errors.Is(errs[1], registry.ErrAlreadyApplied) || errs[1] == nil && errors.Is(errs[0], registry.ErrAlreadyApplied)) {
			t.Fatalf("same change twice: %v", errs)
		}
		// Cancel against a new control: never an open control of a
		// cancelled person.
		errs = race(
			applyTx(e.msg(t, contracts.KindCancel, cancelA(personNo(base)))),
			applyTx(e.msg(t, contracts.KindControl, controlA(personNo(base), controlNo(base)))),
		)
		if errs[0] != nil {
			t.Fatalf("cancel: %v", errs[0])
		}
		if c, _ := codeOf(errs[1]); c != "0000" && c != "E130" {
			t.Fatalf("control: %v", errs[1])
		}
		cs, err := e.reg.Controls(e.ctx, e.pool, personNo(base))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.State == registry.ControlOpen {
				t.Fatalf("open control %s of a cancelled person", c.ControlNo)
			}
		}
		h, _ := e.reg.History(e.ctx, e.pool, personNo(base))
		if want := 3 + len(cs); len(h) != want {
			t.Fatalf("history has %d rows, want %d", len(h), want)
		}
	}
}

// TestExpireAgainstCancel runs the holder's expiry and cancellations of the
// same persons at once: no deadlock, each control closed exactly once.
func TestExpireAgainstCancel(t *testing.T) {
	e := newEnv(t)
	var fs []func() error
	const n = 6
	for i := 1; i <= n; i++ {
		no := personNo(i)
		e.mustApply(t, e.msg(t, contracts.KindRegister, registerA(no)))
		for j := 0; j < 3; j++ {
			e.mustApply(t, e.msg(t, contracts.KindControl, controlDoc(no, controlNo(i*10+j), "2026-06-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00")))
		}
		cancel := e.msg(t, contracts.KindCancel, cancelA(no))
		fs = append(fs, func() error {
			tx, err := e.pool.Begin(e.ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(e.ctx)
			if err := e.reg.Apply(e.ctx, tx, cancel); err != nil {
				return err
			}
			return tx.Commit(e.ctx)
		})
	}
	expired := make(chan int, 2)
	expire := func() error {
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(e.ctx)
		cs, err := e.reg.ExpireControls(e.ctx, tx, now)
		if err != nil {
			return err
		}
		expired <- len(cs)
		return tx.Commit(e.ctx)
	}
	fs = append(fs, expire, expire)
	for _, err := range race(fs...) {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(expired)
	total := 0
	for k := range expired {
		total += k
	}
	var closedExpired, closedCancelled, open int
	err := e.pool.QueryRow(e.ctx, `SELECT count(*) FILTER (WHERE state = 'EXPIRED'), count(*) FILTER (WHERE state = 'CANCELLED'),
		count(*) FILTER (WHERE state = 'OPEN') FROM control`).Scan(&closedExpired, &closedCancelled, &open)
	if err != nil {
		t.Fatal(err)
	}
	if open != 0 || closedExpired+closedCancelled != 3*n || total != closedExpired {
		t.Fatalf("expired %d (reported %d), cancelled %d, open %d", closedExpired, total, closedCancelled, open)
	}
}

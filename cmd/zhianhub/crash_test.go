//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/registry"
	"zhianhub/store/storetest"
	"zhianhub/transforms"
)

// Traffic of TestCrashSIGKILL: crashDownPersons persons sent down by the
// Ministry (six messages each), crashUpPersons persons filed up by the hub
// (six filings each), and a task.sign filed up for the downward task of the
// first crashSigns downward persons: 600 + 360 + 40 = 1,000 business
// messages, each answered by one receipt.
const (
	crashDownPersons = 100
	crashUpPersons   = 60
	crashSigns       = 40
	crashDrain       = 90 * time.Second
)

// crashKinds are the kinds of a person's six messages, seq 1..6, with the
// shared valid vector each is made from.
var crashKinds = []struct{ kind, vector string }{
	{"keyperson.register", "01-keyperson.register.json"},
	{"keyperson.change", "02-keyperson.change.json"},
	{"keyperson.control", "03-keyperson.control.json"},
	{"keyperson.release", "04-keyperson.release.json"},
	{"keyperson.task", "05-keyperson.task.json"},
	{"keyperson.cancel", "06-keyperson.cancel.json"},
}

// crashSendOrders are the orders (seq) in which a downward person's six
// messages are published, by person index mod 4: some arrive ahead of a gap
// and wait in the resequencer.
var crashSendOrders = [][]int64{
	{1, 2, 3, 4, 5, 6},
	{1, 3, 2, 4, 5, 6},
	{1, 2, 3, 5, 4, 6},
	{2, 1, 3, 4, 6, 5},
}

type crashDownMsg struct {
	person   int
	personNo string
	seq      int64
	kind     string
	id       string
	payload  []byte
}

// TestCrashSIGKILL runs the hub as a separate process while 1,000 mixed
// messages flow both ways, SIGKILLs it at a random point, restarts it with
// the same environment and checks, once everything drained, that every
// message had exactly one effect and exactly one receipt and that the
// per-person order held (issue: "Crash test").
func TestCrashSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and runs the hub against PostgreSQL and RabbitMQ")
	}
	began := time.Now()
	ctx := context.Background()
	tmp := t.TempDir()
	bin := crashBuildHub(t, tmp)

	// Keys of the hub and of the Ministry, each knowing the other's public keys.
	hubDir, minDir := filepath.Join(tmp, "keys-hub"), filepath.Join(tmp, "keys-ministry")
	crashMust(t, keystore.Generate(hubDir, mpsbus.NodeShanghai, nil))
	crashMust(t, keystore.Generate(minDir, mpsbus.NodeMinistry, nil))
	_, err := keystore.ExportPublic(hubDir, keystore.LoadOptions{}, filepath.Join(minDir, "peers"))
	crashMust(t, err)
	_, err = keystore.ExportPublic(minDir, keystore.LoadOptions{}, filepath.Join(hubDir, "peers"))
	crashMust(t, err)
	hubKeys, err := keystore.Load(hubDir, keystore.LoadOptions{})
	crashMust(t, err)
	minKeys, err := keystore.Load(minDir, keystore.LoadOptions{})
	crashMust(t, err)

	dbURL := storetest.NewDatabase(t)
	bus := newCrashBus(t)
	addr := freeAddr(t)
	hub := newCrashHub(t, bin, tmp, addr, map[string]string{
		"ZHIANHUB_DATABASE_URL": dbURL,
		"ZHIANHUB_AMQP_URL":     testAMQPURL,
		"ZHIANHUB_KEYS_DIR":     hubDir,
		"ZHIANHUB_HTTP_ADDR":    addr,
		"ZHIANHUB_MPS_EXCHANGE": bus.exchange,
		// Short resends: filings whose receipt waits in the queue while the
		// hub is down are resent at the restart, so that ACCEPTED and
		// DUPLICATE answers to one filing reach the hub together.
		"ZHIANHUB_RESEND_INITIAL": "1s",
		"ZHIANHUB_RESEND_MAX":     "2s",
		"ZHIANHUB_RESEND_GIVEUP":  "10m",
		"ZHIANHUB_GAP_TIMEOUT":    "10m",
		"ZHIANHUB_LOG_LEVEL":      "info",
	})
	failed := true
	defer func() {
		if failed || t.Failed() {
			if dir := hub.keepLogs(); dir != "" {
				t.Logf("hub logs kept in %s", dir)
			}
			t.Logf("hub log tails:\n%s", hub.logTail(30))
		}
	}()
	hub.start(60 * time.Second)
	t.Logf("hub run 1 ready (pid %d) after %s", hub.pid(), time.Since(began).Round(time.Millisecond))

	// The filing service in this process, on the same database, as the CLI
	// or the API would file (after the hub created the data keys).
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	validator, err := contracts.NewValidator(contracts.Config{})
	crashMust(t, err)
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), hubKeys)
	crashMust(t, err)
	reg, err := registry.New(registry.Config{Keyring: kr, Validator: validator})
	crashMust(t, err)
	aw, err := audit.NewWriter(pool, audit.WriterConfig{Signer: hubKeys.Signer()})
	crashMust(t, err)
	t.Cleanup(func() { aw.Close(context.Background()) })
	filing, err := routes.NewFiling(routes.FilingConfig{Pool: pool, Self: mpsbus.NodeShanghai, To: mpsbus.NodeMinistry,
		Exchange: bus.exchange, RoutingKey: mpsbus.RoutingKey, Payloads: transforms.Checker{Validator: validator},
		Registry: reg, Cipher: kr, Audit: aw})
	crashMust(t, err)

	// The Ministry.
	kinds := envelope.KindSet(kindSet())
	minSealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: minKeys})
	crashMust(t, err)
	minOpener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: minKeys, Kinds: kinds})
	crashMust(t, err)
	ministry := newCrashMinistry(t, bus, minSealer, minOpener)

	// Downward traffic.
	vectors := crashVectors(t)
	down, downByID := crashDownward(t, vectors)
	// Upward filings: persons filed by the hub, then a task.sign for the
	// downward tasks of the first persons once they are applied.
	upPersons := make([]string, crashUpPersons)
	for i := range upPersons {
		upPersons[i] = fmt.Sprintf("31010420261127%06d", 100000+i)
	}
	signs := make(chan string, crashDownPersons)
	ministry.onReceipt = func(ref, status string) {
		if m, ok := downByID[ref]; ok && m.kind == "keyperson.task" && m.person < crashSigns && status == routes.StatusAccepted {
			signs <- ref
		}
	}

	consumeCtx, stopConsume := context.WithCancel(ctx)
	consumed := make(chan struct{})
	go func() { defer close(consumed); ministry.consume(consumeCtx) }()
	defer func() { stopConsume(); <-consumed }()

	// Kill the hub when a random share (30-60%) of the downward receipts
	// arrived; restart it after a random pause, while traffic goes on.
	share := 0.3 + 0.3*rand.Float64()
	killAt := int(share * float64(len(down)))
	pause := time.Duration(200+rand.IntN(1300)) * time.Millisecond
	t.Logf("SIGKILL after %d of %d downward receipts (%.0f%%), restart after %s", killAt, len(down), share*100, pause)

	// The traffic goroutines stop early if the test fails before they end.
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	var wg sync.WaitGroup
	var sentDown atomic.Int64
	var downErr atomic.Value
	wg.Add(1)
	go func() { // the Ministry sends down, paced: ~10 messages every 40 ms
		defer wg.Done()
		for i, m := range down {
			if trafficCtx.Err() != nil {
				return
			}
			if err := ministry.down(m.kind, m.id, m.payload); err != nil {
				downErr.Store(fmt.Sprintf("publish %s %s: %v", m.kind, m.id, err))
				return
			}
			sentDown.Add(1)
			if i%10 == 9 {
				time.Sleep(40 * time.Millisecond)
			}
		}
	}()

	type filed struct {
		res  routes.FileResult
		corr string
	}
	var filedMu sync.Mutex
	var filings []filed
	var fileErrs []string
	file := func(kind string, payload []byte, corr string) {
		res, err := filing.File(ctx, routes.FileRequest{Kind: kind, Payload: payload, Corr: corr, Actor: "crash-test"})
		filedMu.Lock()
		defer filedMu.Unlock()
		if err != nil {
			fileErrs = append(fileErrs, fmt.Sprintf("file %s %s: %v", kind, corr, err))
			return
		}
		filings = append(filings, filed{res, corr})
	}
	signOf := func(taskID string) []byte {
		m := downByID[taskID]
		p := crashClone(vectors["08-keyperson.task.sign.json"])
		p["personNo"] = m.personNo
		p["taskNo"] = crashTaskNo("320106", m.person)
		b, _ := json.Marshal(p)
		return b
	}
	wg.Add(1)
	go func() { // the hub files up, person by person in rounds, plus the signs
		defer wg.Done()
		signed := 0
		drainSigns := func() {
			for {
				select {
				case id := <-signs:
					file("keyperson.task.sign", signOf(id), id)
					signed++
				default:
					return
				}
			}
		}
		for seq := range crashKinds {
			for i, personNo := range upPersons {
				if trafficCtx.Err() != nil {
					return
				}
				file(crashKinds[seq].kind, crashUpPayload(vectors, crashKinds[seq].vector, personNo, i), "")
				if i%10 == 9 {
					drainSigns()
					time.Sleep(30 * time.Millisecond)
				}
			}
		}
		deadline := time.After(crashDrain)
		for signed < crashSigns {
			select {
			case id := <-signs:
				file("keyperson.task.sign", signOf(id), id)
				signed++
			case <-deadline:
				return
			case <-trafficCtx.Done():
				return
			}
		}
	}()

	// Wait for the kill point, kill, pause, restart.
	killDeadline := time.Now().Add(60 * time.Second)
	for {
		n, _ := ministry.counts()
		if n >= killAt {
			break
		}
		if time.Now().After(killDeadline) {
			t.Fatalf("only %d downward receipts after 60s (kill point %d)", n, killAt)
		}
		select {
		case <-ministry.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	nRec, nFil := ministry.counts()
	filedMu.Lock()
	nFiled := len(filings)
	filedMu.Unlock()
	hub.kill()
	killedAt := time.Now()
	t.Logf("SIGKILL pid %d at %s: %d/%d sent down, %d downward receipts, %d filed, %d filings seen by the Ministry",
		hub.cmd.Process.Pid, killedAt.Sub(began).Round(time.Millisecond), sentDown.Load(), len(down), nRec, nFiled, nFil)
	time.Sleep(pause)
	hub.start(60 * time.Second)
	t.Logf("hub run 2 ready (pid %d) %s after the kill", hub.pid(), time.Since(killedAt).Round(time.Millisecond))

	wg.Wait()
	if e := downErr.Load(); e != nil {
		t.Fatal(e)
	}
	filedMu.Lock()
	totalFilings := len(filings)
	errs := slices.Clone(fileErrs)
	filedMu.Unlock()
	for _, e := range errs {
		t.Errorf("filing refused: %s", e)
	}
	if want := crashUpPersons*len(crashKinds) + crashSigns; totalFilings != want {
		t.Errorf("%d filings, want %d", totalFilings, want)
	}

	// Drain: every downward message receipted, every filing seen by the
	// Ministry and receipted in the outbox, nothing pending or held.
	drainStart := time.Now()
	var last string
	for {
		r, f := ministry.counts()
		var notReceipted, pending, held int
		err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM outbox WHERE needs_receipt AND state <> 'receipted'),
			(SELECT count(*) FROM outbox WHERE state = 'pending'),
			(SELECT count(*) FROM reseq_held)`).Scan(&notReceipted, &pending, &held)
		crashMust(t, err)
		last = fmt.Sprintf("%d/%d downward receipts, %d/%d filings seen by the Ministry, %d filings not receipted, %d outbox rows pending, %d held",
			r, len(down), f, totalFilings, notReceipted, pending, held)
		if r == len(down) && f == totalFilings && notReceipted == 0 && pending == 0 && held == 0 {
			break
		}
		if time.Since(drainStart) > crashDrain {
			t.Fatalf("not drained after %s: %s", crashDrain, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // late copies (re-published after the crash) still arrive
	t.Logf("drained %s after the restart: %s", time.Since(drainStart).Round(time.Millisecond), last)
	stopConsume()
	<-consumed

	// The consumer has stopped: the Ministry's records are read without its lock.
	for _, p := range ministry.problems {
		t.Errorf("ministry: %s", p)
	}

	// (2) Exactly one receipt per downward message on the Ministry's side,
	// ACCEPTED; copies of the same receipt id (re-published after the
	// crash) are tolerated and counted.
	receiptCopies := 0
	for _, m := range down {
		byID := ministry.receipts[m.id]
		switch {
		case len(byID) == 0:
			t.Errorf("no receipt for %s seq %d (%s)", m.personNo, m.seq, m.kind)
		case len(byID) > 1:
			t.Errorf("%d different receipts for %s %s seq %d: %v", len(byID), m.kind, m.personNo, m.seq, crashDescribe(byID))
		}
		for _, r := range byID {
			receiptCopies += r.Copies - 1
			if r.Status != routes.StatusAccepted || r.Code != "0000" {
				t.Errorf("receipt for %s %s seq %d: %s %s %s", m.kind, m.personNo, m.seq, r.Status, r.Code, r.Reason)
			}
		}
	}
	for ref := range ministry.receipts {
		if _, ok := downByID[ref]; !ok {
			t.Errorf("receipt for %s, which the Ministry never sent", ref)
		}
	}

	// The hub's filings as the Ministry saw them.
	filingCopies, dupAnswers := 0, 0
	byFiling := map[string]filed{}
	for _, f := range filings {
		byFiling[f.res.ID] = f
		s := ministry.filings[f.res.ID]
		if s == nil {
			t.Errorf("filing %s %s seq %d never reached the Ministry", f.res.Kind, f.res.PersonNo, f.res.Seq)
			continue
		}
		filingCopies += s.Copies - 1
		if s.Copies > 1 {
			dupAnswers += s.Copies - 1
		}
		if s.Kind != f.res.Kind || s.PersonNo != f.res.PersonNo || s.Seq != f.res.Seq || s.Corr != f.corr {
			t.Errorf("filing %s arrived as %s %s seq %d corr %s, filed as %s %s seq %d corr %s",
				f.res.ID, s.Kind, s.PersonNo, s.Seq, s.Corr, f.res.Kind, f.res.PersonNo, f.res.Seq, f.corr)
		}
	}
	for id := range ministry.filings {
		if _, ok := byFiling[id]; !ok {
			t.Errorf("the Ministry got filing %s, which was never filed", id)
		}
	}
	inversions := 0
	for personNo, seqs := range ministry.upOrder {
		if !sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] }) {
			inversions++
			t.Logf("filings of %s first arrived in seq order %v (the Ministry resequences)", personNo, seqs)
		}
	}

	// (1) and (3): one effect per downward message, applied in seq order.
	type histRow struct {
		msgID, kind string
		seq         int64
	}
	readHistory := func(direction string) map[string][]histRow {
		rows, err := pool.Query(ctx, `SELECT person_no, msg_id::text, kind, (detail->>'seq')::bigint FROM person_history
			WHERE direction = $1 ORDER BY id`, direction)
		crashMust(t, err)
		out := map[string][]histRow{}
		var personNo string
		var h histRow
		_, err = pgx.ForEachRow(rows, []any{&personNo, &h.msgID, &h.kind, &h.seq}, func() error {
			out[personNo] = append(out[personNo], h)
			return nil
		})
		crashMust(t, err)
		return out
	}
	histIn := readHistory("in")
	effects := map[string]int{}
	for _, hs := range histIn {
		for _, h := range hs {
			effects[h.msgID]++
		}
	}
	for _, m := range down {
		if n := effects[m.id]; n != 1 {
			t.Errorf("%s %s seq %d has %d effects, want 1", m.kind, m.personNo, m.seq, n)
		}
	}
	for i := range crashDownPersons {
		personNo := crashDownPersonNo(i)
		hs := histIn[personNo]
		var seqs []int64
		for j, h := range hs {
			seqs = append(seqs, h.seq)
			if j < len(crashKinds) {
				if h.seq != int64(j+1) || h.kind != crashKinds[j].kind || downByID[h.msgID] == nil || downByID[h.msgID].seq != h.seq {
					t.Errorf("person %s: history entry %d is %s seq %d (msg %s), want %s seq %d", personNo, j+1, h.kind, h.seq, h.msgID, crashKinds[j].kind, j+1)
				}
			}
		}
		if len(hs) != len(crashKinds) {
			t.Errorf("person %s: %d history entries (seqs %v), want %d", personNo, len(hs), seqs, len(crashKinds))
		}
	}

	// (4) Every filing receipted once in the outbox, one effect each, in
	// seq order per person.
	type outRow struct{ state, status, code string }
	outbox := map[string]outRow{}
	rows, err := pool.Query(ctx, `SELECT id::text, state, receipt_status, receipt_code FROM outbox WHERE needs_receipt`)
	crashMust(t, err)
	var oid string
	var o outRow
	_, err = pgx.ForEachRow(rows, []any{&oid, &o.state, &o.status, &o.code}, func() error { outbox[oid] = o; return nil })
	crashMust(t, err)
	if len(outbox) != len(filings) {
		t.Errorf("%d filings in the outbox, %d filed", len(outbox), len(filings))
	}
	dupStatus := 0
	for id, f := range byFiling {
		o, ok := outbox[id]
		switch {
		case !ok:
			t.Errorf("filing %s not in the outbox", id)
		case o.state != "receipted" || o.code != "0000" || (o.status != routes.StatusAccepted && o.status != routes.StatusDuplicate):
			t.Errorf("filing %s %s seq %d: outbox %+v", f.res.Kind, f.res.PersonNo, f.res.Seq, o)
		case o.status == routes.StatusDuplicate:
			dupStatus++
		}
	}
	histOut := readHistory("out")
	outEffects := map[string]int{}
	for personNo, hs := range histOut {
		for j, h := range hs {
			outEffects[h.msgID]++
			if h.seq != int64(j+1) {
				t.Errorf("person %s: filed history entry %d has seq %d", personNo, j+1, h.seq)
			}
		}
	}
	for id, f := range byFiling {
		if n := outEffects[id]; n != 1 {
			t.Errorf("filing %s %s seq %d has %d effects, want 1", f.res.Kind, f.res.PersonNo, f.res.Seq, n)
		}
	}

	// On the hub's side too: one receipt row per downward message.
	var receiptRows, multi int
	crashMust(t, pool.QueryRow(ctx, `SELECT count(*), count(*) - count(DISTINCT corr) FROM outbox WHERE kind = 'receipt'`).Scan(&receiptRows, &multi))
	if receiptRows != len(down) || multi != 0 {
		t.Errorf("outbox: %d receipt rows (%d beyond one per message), want %d", receiptRows, multi, len(down))
	}
	var inboxNotDone int
	crashMust(t, pool.QueryRow(ctx, `SELECT count(*) FROM inbox WHERE state <> 'done' OR code <> '0000'`).Scan(&inboxNotDone))
	if inboxNotDone != 0 {
		t.Errorf("%d inbox rows not done with 0000", inboxNotDone)
	}

	// (5) The journal has every message, and nothing is a dead letter.
	journal := map[string]string{} // "id/direction" -> state
	rows, err = pool.Query(ctx, `SELECT id::text || '/' || direction, state FROM message`)
	crashMust(t, err)
	var key, state string
	_, err = pgx.ForEachRow(rows, []any{&key, &state}, func() error { journal[key] = state; return nil })
	crashMust(t, err)
	expectJournal := func(id, dir, want, what string) {
		if got, ok := journal[id+"/"+dir]; !ok {
			t.Errorf("journal lacks %s %s (%s)", dir, id, what)
		} else if got != want {
			t.Errorf("journal: %s %s (%s) is %s, want %s", dir, id, what, got, want)
		}
	}
	for _, m := range down {
		expectJournal(m.id, "in", "applied", m.kind)
		for rid := range ministry.receipts[m.id] {
			expectJournal(rid, "out", "sent", "receipt for "+m.kind)
		}
	}
	for id, f := range byFiling {
		expectJournal(id, "out", "receipted", "filing "+f.res.Kind)
	}
	// Every answer of the Ministry journaled and applied (the last
	// DUPLICATE answers may still be on their way).
	var answersIn, answersApplied int
	wantAnswers := len(filings) + dupAnswers
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		crashMust(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'applied') FROM message
			WHERE direction = 'in' AND kind = 'receipt'`).Scan(&answersIn, &answersApplied))
		if answersApplied >= wantAnswers || time.Now().After(deadline) {
			break
		}
	}
	if answersIn != wantAnswers || answersApplied != answersIn {
		t.Errorf("journal: %d receipts from the Ministry (%d applied), want %d", answersIn, answersApplied, wantAnswers)
	}
	var dead int
	crashMust(t, pool.QueryRow(ctx, `SELECT count(*) FROM dead_letter`).Scan(&dead))
	if dead != 0 {
		t.Errorf("%d dead letters, want none: %s", dead, crashDeadLetters(ctx, pool))
	}

	// The hub stops cleanly and its audit chain verifies.
	if err := hub.stop(40 * time.Second); err != nil {
		t.Errorf("hub run 2 stop: %v", err)
	}
	crashMust(t, aw.Close(ctx))
	if code, out, errs := runCLI(t, "", map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": hubDir}, "audit", "verify"); code != 0 {
		t.Errorf("audit verify after the crash: exit %d: %s %s", code, out, errs)
	} else {
		t.Logf("audit verify: %s", strings.TrimSpace(out))
	}
	for _, p := range hub.problems() {
		switch {
		case strings.Contains(p, "DATA RACE"), strings.Contains(p, "deadlock detected"):
			t.Errorf("hub log: %.400s", p)
		case !strings.Contains(p, "amqp dial failed"):
			t.Logf("hub log: %.300s", p)
		}
	}
	t.Logf("%d downward messages, %d filings; copies of a receipt id re-published: %d; filings resent: %d (answered DUPLICATE); filings whose first recorded receipt is the DUPLICATE: %d; persons whose filings arrived out of seq order: %d; total %s",
		len(down), len(filings), receiptCopies, filingCopies, dupStatus, inversions, time.Since(began).Round(time.Millisecond))
	failed = false
}

func crashMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func crashDescribe(byID map[string]*seenReceipt) string {
	var parts []string
	for id, r := range byID {
		parts = append(parts, fmt.Sprintf("%s: %s %s x%d", id, r.Status, r.Code, r.Copies))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func crashDeadLetters(ctx context.Context, pool *pgxpool.Pool) string {
	rows, err := pool.Query(ctx, `SELECT kind, message_id, code, reason FROM dead_letter ORDER BY id LIMIT 10`)
	if err != nil {
		return err.Error()
	}
	var out []string
	var kind, id, code, reason string
	_, _ = pgx.ForEachRow(rows, []any{&kind, &id, &code, &reason}, func() error {
		out = append(out, fmt.Sprintf("%s %s %s %s", kind, id, code, reason))
		return nil
	})
	return strings.Join(out, "; ")
}

// crashVectors returns the payloads of the shared valid vectors by file name.
func crashVectors(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, "manifest.json"))
	crashMust(t, err)
	var m struct {
		Cases []struct {
			File    string         `json:"file"`
			Payload map[string]any `json:"payload"`
		} `json:"cases"`
	}
	crashMust(t, json.Unmarshal(b, &m))
	out := map[string]map[string]any{}
	for _, c := range m.Cases {
		if c.Payload != nil {
			out[filepath.Base(c.File)] = c.Payload
		}
	}
	for _, k := range crashKinds {
		if out[k.vector] == nil {
			t.Fatalf("vector %s missing", k.vector)
		}
	}
	return out
}

func crashClone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func crashDownPersonNo(i int) string { return fmt.Sprintf("32010620261126%06d", 100000+i) }
func crashControlNo(region string, i int) string {
	return fmt.Sprintf("%s20261127%06d", region, 200000+i)
}
func crashTaskNo(region string, i int) string { return fmt.Sprintf("%s20261127%06d", region, 300000+i) }

// crashPayload makes a person's message from a vector: its own personNo,
// controlNo and taskNo, and seq.
func crashPayload(vectors map[string]map[string]any, vector, region, personNo string, i int, seq int64) map[string]any {
	p := crashClone(vectors[vector])
	p["personNo"], p["seq"] = personNo, seq
	if _, ok := p["controlNo"]; ok {
		p["controlNo"] = crashControlNo(region, i)
	}
	if _, ok := p["taskNo"]; ok {
		p["taskNo"] = crashTaskNo(region, i)
	}
	return p
}

func crashUpPayload(vectors map[string]map[string]any, vector, personNo string, i int) []byte {
	b, _ := json.Marshal(crashPayload(vectors, vector, "310104", personNo, i, 1)) // seq assigned by the filing
	return b
}

// crashDownward returns the downward messages in publishing order (rounds
// over the persons, each person in its send order), and by id.
func crashDownward(t *testing.T, vectors map[string]map[string]any) ([]crashDownMsg, map[string]*crashDownMsg) {
	t.Helper()
	per := make([][]crashDownMsg, crashDownPersons)
	for i := range per {
		personNo := crashDownPersonNo(i)
		for j, k := range crashKinds {
			seq := int64(j + 1)
			b, err := json.Marshal(crashPayload(vectors, k.vector, "320106", personNo, i, seq))
			crashMust(t, err)
			per[i] = append(per[i], crashDownMsg{person: i, personNo: personNo, seq: seq, kind: k.kind,
				id: uuid.Must(uuid.NewV7()).String(), payload: b})
		}
	}
	var out []crashDownMsg
	for r := range crashKinds {
		for i := range per {
			seq := crashSendOrders[i%len(crashSendOrders)][r]
			out = append(out, per[i][seq-1])
		}
	}
	byID := map[string]*crashDownMsg{}
	for i := range out {
		byID[out[i].id] = &out[i]
	}
	return out, byID
}

package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/store"
)

// Apply applies message m to the registry inside tx, following the state
// machine per personNo of shared/specs/mps-bus.md:
//
//   - register of an existing personNo: E130;
//   - change, cancel, control, task of an unknown personNo: E131, of a
//     cancelled one: E130; a duplicate controlNo or taskNo: E130;
//   - release of an unknown controlNo (or one of another person): E131, of a
//     control no longer open: E130;
//   - task.sign of an unknown taskNo (or one of another person): E131, of a
//     signed task: E130;
//   - cancel closes every open control of the person (state CANCELLED);
//   - change merges the changes into the stored person and validates the
//     result as a register payload: a failure is the validator's
//     *contracts.FieldError with its path prefixed "changes.".
//
// Refusals are *StateError (or the *contracts.FieldError of a change); a
// message (ID, Direction) applied before gives ErrAlreadyApplied; anything
// else is an internal error. On a refusal or ErrAlreadyApplied nothing was
// written and tx stays usable: every check precedes the first write, so no
// savepoint is needed (a savepoint per message cost two round trips, and
// more than 64 subtransactions in one batch transaction overflow
// PostgreSQL's subtransaction cache, which slows every snapshot of every
// session). After an internal error tx may be aborted: the caller rolls it
// back. Every applied message writes one
// person_history row. The person row is locked (SELECT ... FOR NO KEY
// UPDATE) so that writers serialize per person until tx ends; controls are
// locked in controlNo order, as ExpireControls locks them.
func (r *Registry) Apply(ctx context.Context, tx pgx.Tx, m Message) error {
	a, err := r.newApplier(m)
	if err != nil {
		return err
	}
	a.q = tx
	return a.run(ctx)
}

// applier applies one message.
type applier struct {
	r        *Registry
	q        pgx.Tx
	m        Message
	id       uuid.UUID
	personNo string
	seq      int64
	now      time.Time

	person *personRow    // locked row; nil when the person is unknown
	pii    *PersonRecord // decrypted person, for redaction
}

func (r *Registry) newApplier(m Message) (*applier, error) {
	id, err := uuid.Parse(m.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: message id %q: %w", ErrInvalid, m.ID, err)
	}
	if m.Direction != In && m.Direction != Out {
		return nil, fmt.Errorf("%w: direction %q", ErrInvalid, m.Direction)
	}
	if !digits(m.Node, 12) {
		return nil, fmt.Errorf("%w: node %q is not 12 digits", ErrInvalid, m.Node)
	}
	if m.At.IsZero() {
		return nil, fmt.Errorf("%w: message %s has no time", ErrInvalid, m.ID)
	}
	p, err := payloadOf(m.Kind, m.Payload)
	if err != nil {
		return nil, err
	}
	h := p.Ordering()
	if !digits(h.PersonNo, 20) {
		return nil, fmt.Errorf("%w: personNo %q is not 20 digits", ErrInvalid, h.PersonNo)
	}
	m.Payload = p
	return &applier{r: r, m: m, id: id, personNo: h.PersonNo, seq: h.Seq, now: r.now()}, nil
}

// payloadOf checks that payload is the type of kind and returns it as a
// pointer.
func payloadOf(kind string, payload any) (contracts.Ordered, error) {
	var p contracts.Ordered
	switch v := payload.(type) {
	case *contracts.Person:
		p = nilIf(v, kind == contracts.KindRegister)
	case contracts.Person:
		p = nilIf(&v, kind == contracts.KindRegister)
	case *contracts.Change:
		p = nilIf(v, kind == contracts.KindChange)
	case contracts.Change:
		p = nilIf(&v, kind == contracts.KindChange)
	case *contracts.Cancel:
		p = nilIf(v, kind == contracts.KindCancel)
	case contracts.Cancel:
		p = nilIf(&v, kind == contracts.KindCancel)
	case *contracts.Control:
		p = nilIf(v, kind == contracts.KindControl)
	case contracts.Control:
		p = nilIf(&v, kind == contracts.KindControl)
	case *contracts.Release:
		p = nilIf(v, kind == contracts.KindRelease)
	case contracts.Release:
		p = nilIf(&v, kind == contracts.KindRelease)
	case *contracts.Task:
		p = nilIf(v, kind == contracts.KindTask)
	case contracts.Task:
		p = nilIf(&v, kind == contracts.KindTask)
	case *contracts.TaskSign:
		p = nilIf(v, kind == contracts.KindTaskSign)
	case contracts.TaskSign:
		p = nilIf(&v, kind == contracts.KindTaskSign)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: payload %T does not fit kind %q (receipts do not change the registry)", ErrInvalid, payload, kind)
	}
	return p, nil
}

// nilIf returns p when ok and p is not nil, else a nil interface.
func nilIf[T any, P interface {
	*T
	contracts.Ordered
}](p P, ok bool) contracts.Ordered {
	if !ok || p == nil {
		return nil
	}
	return p
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (a *applier) run(ctx context.Context) error {
	// FOR NO KEY UPDATE serializes the writers of one person without
	// blocking the key-share locks of foreign-key checks (ExpireControls
	// inserts history rows of persons whose controls it has locked; FOR
	// UPDATE here would deadlock against it).
	// The same statement tells whether this message was applied before:
	// its history row exists (history rows need their person row, so an
	// unknown person has none) — in the statement's snapshot, which misses
	// a transaction that committed while this one waited for the lock; the
	// locked row is the latest version, though, and its last_msg_id names
	// the message that transaction applied. In the rarer case of two
	// transactions passing the lock meanwhile, the unique key of the
	// history row fails this transaction: never a second effect.
	var applied bool
	row := a.q.QueryRow(ctx, `SELECT `+personCols+`, EXISTS (SELECT 1 FROM person_history h WHERE h.msg_id = $2 AND h.direction = $3)
		FROM person WHERE person_no = $1 FOR NO KEY UPDATE`, a.personNo, a.id, a.m.Direction)
	p, err := scanPerson(extraCols{row, []any{&applied}})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("registry: lock person %s: %w", a.personNo, err)
	case applied:
		return fmt.Errorf("%w: %s %s", ErrAlreadyApplied, a.m.Direction, a.id)
	default:
		a.person = p
	}
	if a.person != nil && a.person.LastMsgID == a.id.String() {
		// Applied by a transaction this one waited for (or in the other
		// direction): ask again with a fresh snapshot.
		if err := a.checkNotApplied(ctx); err != nil {
			return err
		}
	}
	var fields []string
	var detail map[string]any
	err = fmt.Errorf("%w: payload %T", ErrInvalid, a.m.Payload)
	switch p := a.m.Payload.(type) {
	case *contracts.Person:
		fields, detail, err = a.register(ctx, p)
	case *contracts.Change:
		fields, detail, err = a.change(ctx, p)
	case *contracts.Cancel:
		fields, detail, err = a.cancel(ctx, p)
	case *contracts.Control:
		fields, detail, err = a.control(ctx, p)
	case *contracts.Release:
		fields, detail, err = a.release(ctx, p)
	case *contracts.Task:
		fields, detail, err = a.task(ctx, p)
	case *contracts.TaskSign:
		fields, detail, err = a.taskSign(ctx, p)
	}
	if err != nil {
		return err
	}
	return a.record(ctx, fields, detail)
}

// checkNotApplied returns ErrAlreadyApplied when (id, direction) has a
// history row.
func (a *applier) checkNotApplied(ctx context.Context) error {
	var n int
	err := a.q.QueryRow(ctx, `SELECT count(*) FROM person_history WHERE msg_id = $1 AND direction = $2`, a.id, a.m.Direction).Scan(&n)
	if err != nil {
		return fmt.Errorf("registry: check history: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s %s", ErrAlreadyApplied, a.m.Direction, a.id)
	}
	return nil
}

// record writes the history row and marks the person's last message.
func (a *applier) record(ctx context.Context, fields []string, detail map[string]any) error {
	fields, detail = a.historyOf(fields, detail)
	// Under the person lock no other transaction applies this message: a
	// unique violation here is an internal error (the transaction fails),
	// never a second effect. Both writes may be held back (store.ExecLater).
	err := store.ExecLater(ctx, a.q, `INSERT INTO person_history (person_no, msg_id, direction, node, kind, at, fields, detail, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		a.personNo, a.id, a.m.Direction, a.m.Node, a.m.Kind, a.m.At, fields, detail, a.now)
	if err != nil {
		return fmt.Errorf("registry: write history: %w", err)
	}
	if _, isRegister := a.m.Payload.(*contracts.Person); isRegister {
		return nil // the new row has last_msg_id and updated_at already
	}
	if err := store.ExecLater(ctx, a.q, `UPDATE person SET last_msg_id = $2, updated_at = $3 WHERE person_no = $1`, a.personNo, a.id, a.now); err != nil {
		return fmt.Errorf("registry: update person %s: %w", a.personNo, err)
	}
	return nil
}

// historyOf completes the fields and detail of this message's history row.
func (a *applier) historyOf(fields []string, detail map[string]any) ([]string, map[string]any) {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["seq"] = a.seq
	if a.m.Corr != "" {
		detail["corr"] = a.m.Corr
	}
	if fields == nil {
		fields = []string{}
	}
	return fields, detail
}

// extraCols scans a row whose last columns follow the ones its caller knows.
type extraCols struct {
	pgx.Row
	dest []any
}

func (r extraCols) Scan(dest ...any) error { return r.Row.Scan(append(dest, r.dest...)...) }

// active refuses a message for an unknown (E131) or cancelled (E130)
// person; what names the action in Chinese.
func (a *applier) active(what string) error {
	switch {
	case a.person == nil:
		return unknown("重点人员编号 %s 未登记，不能%s", a.personNo, what)
	case a.person.State == PersonCancelled:
		return conflict("重点人员编号 %s 已注销，不能%s", a.personNo, what)
	}
	return nil
}

// redact masks the person's ID number and name in a free text.
func (a *applier) redact(text string) (string, error) {
	if text == "" {
		return "", nil
	}
	if a.pii == nil {
		if a.person == nil {
			return text, nil
		}
		rec, err := a.r.decrypt(a.person)
		if err != nil {
			return "", err
		}
		a.pii = rec
	}
	return redact(text, a.pii.IDNo, a.pii.Name), nil
}

// personInsert is a new person row.
type personInsert struct {
	personNo, sourceNode, origin, idType string
	idNoEnc, idNoBidx, nameEnc           []byte
	sex                                  string
	birth                                time.Time
	hukouRegion                          string
	hukouAddrEnc                         []byte
	residRegion                          string
	residAddrEnc                         []byte
	categories                           []string
	basis                                contracts.Basis
	review                               time.Time
	unit, officer                        string
	registeredAt                         time.Time
	lastMsg                              uuid.UUID
	now                                  time.Time
}

// registerRow validates and seals a register payload into its row, with
// the history fields and detail of the registration.
func (a *applier) registerRow(p *contracts.Person) (personInsert, []string, map[string]any, error) {
	r, no := a.r, a.personNo
	row := personInsert{personNo: no, sourceNode: a.m.Node, origin: a.m.Direction, idType: p.IDType, sex: p.Sex,
		hukouRegion: p.HukouRegion, residRegion: p.ResidRegion, categories: p.Categories, basis: p.Basis,
		unit: p.Unit, officer: p.Officer, registeredAt: p.RegisteredAt, lastMsg: a.id, now: a.now}
	var err error
	if row.birth, err = parseDate("birthDate", p.BirthDate); err != nil {
		return row, nil, nil, err
	}
	if row.review, err = parseDate("reviewBy", p.ReviewBy); err != nil {
		return row, nil, nil, err
	}
	if row.idNoEnc, err = r.seal(colIDNo, no, p.IDNo); err != nil {
		return row, nil, nil, err
	}
	if row.nameEnc, err = r.seal(colName, no, p.Name); err != nil {
		return row, nil, nil, err
	}
	if row.hukouAddrEnc, err = r.sealOptional(colHukouAddr, no, p.HukouAddr); err != nil {
		return row, nil, nil, err
	}
	if row.residAddrEnc, err = r.sealOptional(colResidAddr, no, p.ResidAddr); err != nil {
		return row, nil, nil, err
	}
	row.idNoBidx = r.idNoIndex(p.IDNo)
	fields := []string{"idType", "idNo", "name", "sex", "birthDate", "hukouRegion"}
	if p.HukouAddr != "" {
		fields = append(fields, "hukouAddr")
	}
	if p.ResidRegion != "" {
		fields = append(fields, "residRegion")
	}
	if p.ResidAddr != "" {
		fields = append(fields, "residAddr")
	}
	fields = append(fields, "categories", "basis", "reviewBy", "unit", "officer", "registeredAt")
	return row, fields, map[string]any{"unit": p.Unit, "reviewBy": p.ReviewBy, "registeredAt": p.RegisteredAt}, nil
}

func (a *applier) register(ctx context.Context, p *contracts.Person) ([]string, map[string]any, error) {
	if a.person != nil {
		return nil, nil, conflict("重点人员编号 %s 已登记，不能重复登记", a.personNo)
	}
	row, fields, detail, err := a.registerRow(p)
	if err != nil {
		return nil, nil, err
	}
	tag, err := a.q.Exec(ctx, `INSERT INTO person (person_no, source_node, origin, state, id_type, id_no_enc, id_no_bidx,
		name_enc, sex, birth_date, hukou_region, hukou_addr_enc, resid_region, resid_addr_enc, categories, basis,
		review_by, unit, officer, registered_at, last_msg_id, created_at, updated_at)
		VALUES ($1, $2, $3, 'ACTIVE', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $21)
		ON CONFLICT (person_no) DO NOTHING`,
		row.personNo, row.sourceNode, row.origin, row.idType, row.idNoEnc, row.idNoBidx,
		row.nameEnc, row.sex, row.birth, row.hukouRegion, row.hukouAddrEnc, row.residRegion, row.residAddrEnc, row.categories, row.basis,
		row.review, row.unit, row.officer, row.registeredAt, row.lastMsg, row.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: insert person %s: %w", row.personNo, err)
	}
	if tag.RowsAffected() == 0 { // registered concurrently
		if err := a.checkNotApplied(ctx); err != nil {
			return nil, nil, err
		}
		return nil, nil, conflict("重点人员编号 %s 已登记，不能重复登记", row.personNo)
	}
	return fields, detail, nil
}

func (a *applier) change(ctx context.Context, c *contracts.Change) ([]string, map[string]any, error) {
	if err := a.active("变更"); err != nil {
		return nil, nil, err
	}
	stored, err := a.r.decrypt(a.person)
	if err != nil {
		return nil, nil, err
	}
	merged, names := merge(stored.wire(1), &c.Changes)
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: change %s sets no field", ErrInvalid, a.m.ID)
	}
	doc, err := json.Marshal(merged)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: encode merged person: %w", err)
	}
	out, err := a.r.v.ValidatePayload(contracts.KindRegister, doc)
	if err != nil {
		var fe *contracts.FieldError
		if errors.As(err, &fe) {
			return nil, nil, fmt.Errorf("registry: person %s after the change: %w", a.personNo, underChanges(fe))
		}
		return nil, nil, fmt.Errorf("registry: validate merged person %s: %w", a.personNo, err)
	}
	p := out.(*contracts.Person)
	r, no := a.r, a.personNo
	birth, err := parseDate("birthDate", p.BirthDate)
	if err != nil {
		return nil, nil, err
	}
	review, err := parseDate("reviewBy", p.ReviewBy)
	if err != nil {
		return nil, nil, err
	}
	// Only changed personal values are sealed again.
	nameEnc, hukouEnc, residEnc := a.person.NameEnc, a.person.HukouAddrEnc, a.person.ResidAddrEnc
	if c.Changes.Name != nil {
		if nameEnc, err = r.seal(colName, no, p.Name); err != nil {
			return nil, nil, err
		}
	}
	if c.Changes.HukouAddr != nil {
		if hukouEnc, err = r.sealOptional(colHukouAddr, no, p.HukouAddr); err != nil {
			return nil, nil, err
		}
	}
	if c.Changes.ResidAddr != nil {
		if residEnc, err = r.sealOptional(colResidAddr, no, p.ResidAddr); err != nil {
			return nil, nil, err
		}
	}
	_, err = a.q.Exec(ctx, `UPDATE person SET name_enc = $2, sex = $3, birth_date = $4, hukou_region = $5,
		hukou_addr_enc = $6, resid_region = $7, resid_addr_enc = $8, categories = $9, basis = $10,
		review_by = $11, unit = $12, officer = $13, registered_at = $14, updated_at = $15
		WHERE person_no = $1`,
		no, nameEnc, p.Sex, birth, p.HukouRegion, hukouEnc, p.ResidRegion, residEnc, p.Categories, p.Basis,
		review, p.Unit, p.Officer, p.RegisteredAt, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: update person %s: %w", no, err)
	}
	// Mask the old and the new name.
	reason := redact(redact(c.Reason, stored.IDNo, stored.Name), stored.IDNo, p.Name)
	return names, map[string]any{"reason": reason, "changedAt": c.ChangedAt}, nil
}

// underChanges returns fe with its path under "changes." when it names a
// field a change can set.
func underChanges(fe *contracts.FieldError) *contracts.FieldError {
	head := fe.Path
	if i := strings.IndexAny(head, ".["); i >= 0 {
		head = head[:i]
	}
	switch head {
	case "personNo", "seq", "idType", "idNo":
		return fe
	}
	out := *fe
	out.Path = "changes." + fe.Path
	if strings.HasPrefix(fe.Reason, fe.Path) {
		out.Reason = "changes." + fe.Reason
	}
	return &out
}

func (a *applier) cancel(ctx context.Context, c *contracts.Cancel) ([]string, map[string]any, error) {
	if err := a.active("注销"); err != nil {
		return nil, nil, err
	}
	reason, err := a.redact(c.Reason)
	if err != nil {
		return nil, nil, err
	}
	_, err = a.q.Exec(ctx, `UPDATE person SET state = 'CANCELLED', cancelled_at = $2, cancel_reason = $3,
		cancel_basis = $4, updated_at = $5 WHERE person_no = $1`,
		a.personNo, c.CancelledAt, reason, c.Basis, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: cancel person %s: %w", a.personNo, err)
	}
	// Lock in control_no order, as ExpireControls does.
	rows, err := a.q.Query(ctx, `WITH due AS (
			SELECT control_no FROM control WHERE person_no = $1 AND state = 'OPEN' ORDER BY control_no FOR UPDATE)
		UPDATE control c SET state = 'CANCELLED', closed_at = $2, close_reason = $3, closed_by_msg = $4, updated_at = $5
		FROM due WHERE c.control_no = due.control_no RETURNING c.control_no`,
		a.personNo, c.CancelledAt, "人员登记已注销："+reason, a.id, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: close controls of %s: %w", a.personNo, err)
	}
	closed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("registry: close controls of %s: %w", a.personNo, err)
	}
	if closed == nil {
		closed = []string{}
	}
	return []string{"state"}, map[string]any{"reason": reason, "cancelledAt": c.CancelledAt, "basis": c.Basis, "closedControls": closed}, nil
}

func (a *applier) control(ctx context.Context, c *contracts.Control) ([]string, map[string]any, error) {
	if err := a.active("布控"); err != nil {
		return nil, nil, err
	}
	tag, err := a.q.Exec(ctx, `INSERT INTO control (control_no, person_no, level, measures, regions, valid_from, valid_to,
		basis, state, opened_by_msg, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'OPEN', $9, $10, $10) ON CONFLICT (control_no) DO NOTHING`,
		c.ControlNo, a.personNo, c.Level, c.Measures, c.Regions, c.ValidFrom, c.ValidTo, c.Basis, a.id, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: insert control %s: %w", c.ControlNo, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, nil, conflict("布控编号 %s 已存在，不能重复布控", c.ControlNo)
	}
	return nil, map[string]any{"controlNo": c.ControlNo, "level": c.Level, "validFrom": c.ValidFrom, "validTo": c.ValidTo}, nil
}

func (a *applier) release(ctx context.Context, rel *contracts.Release) ([]string, map[string]any, error) {
	if a.person == nil {
		return nil, nil, unknown("重点人员编号 %s 未登记，布控编号 %s 不存在", a.personNo, rel.ControlNo)
	}
	var owner, state string
	err := a.q.QueryRow(ctx, `SELECT person_no, state FROM control WHERE control_no = $1 FOR UPDATE`, rel.ControlNo).Scan(&owner, &state)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || err == nil && owner != a.personNo:
		return nil, nil, unknown("布控编号 %s 不存在或不属于重点人员 %s", rel.ControlNo, a.personNo)
	case err != nil:
		return nil, nil, fmt.Errorf("registry: lock control %s: %w", rel.ControlNo, err)
	}
	switch state {
	case ControlReleased:
		return nil, nil, conflict("布控编号 %s 已解控", rel.ControlNo)
	case ControlExpired:
		return nil, nil, conflict("布控编号 %s 已因期限届满关闭", rel.ControlNo)
	case ControlCancelled:
		return nil, nil, conflict("布控编号 %s 已随人员登记注销关闭", rel.ControlNo)
	}
	reason, err := a.redact(rel.Reason)
	if err != nil {
		return nil, nil, err
	}
	_, err = a.q.Exec(ctx, `UPDATE control SET state = 'RELEASED', closed_at = $2, close_reason = $3, closed_by_msg = $4,
		updated_at = $5 WHERE control_no = $1`, rel.ControlNo, rel.ReleasedAt, reason, a.id, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: release control %s: %w", rel.ControlNo, err)
	}
	return nil, map[string]any{"controlNo": rel.ControlNo, "reason": reason, "releasedAt": rel.ReleasedAt}, nil
}

func (a *applier) task(ctx context.Context, t *contracts.Task) ([]string, map[string]any, error) {
	if err := a.active("下发核实任务"); err != nil {
		return nil, nil, err
	}
	note, err := a.redact(t.Note)
	if err != nil {
		return nil, nil, err
	}
	tag, err := a.q.Exec(ctx, `INSERT INTO task (task_no, person_no, items, assigned_unit, deadline, note, state,
		issued_msg_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'ISSUED', $7, $8, $8) ON CONFLICT (task_no) DO NOTHING`,
		t.TaskNo, a.personNo, t.Items, t.AssignedUnit, t.Deadline, note, a.id, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: insert task %s: %w", t.TaskNo, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, nil, conflict("任务编号 %s 已存在，不能重复下发", t.TaskNo)
	}
	return nil, map[string]any{"taskNo": t.TaskNo, "assignedUnit": t.AssignedUnit, "deadline": t.Deadline}, nil
}

func (a *applier) taskSign(ctx context.Context, s *contracts.TaskSign) ([]string, map[string]any, error) {
	if a.person == nil {
		return nil, nil, unknown("重点人员编号 %s 未登记，任务编号 %s 不存在", a.personNo, s.TaskNo)
	}
	var owner, state string
	err := a.q.QueryRow(ctx, `SELECT person_no, state FROM task WHERE task_no = $1 FOR UPDATE`, s.TaskNo).Scan(&owner, &state)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || err == nil && owner != a.personNo:
		return nil, nil, unknown("任务编号 %s 不存在或不属于重点人员 %s", s.TaskNo, a.personNo)
	case err != nil:
		return nil, nil, fmt.Errorf("registry: lock task %s: %w", s.TaskNo, err)
	case state == TaskSigned:
		return nil, nil, conflict("任务编号 %s 已签收", s.TaskNo)
	}
	_, err = a.q.Exec(ctx, `UPDATE task SET state = 'SIGNED', signed_unit = $2, signed_officer = $3, signed_at = $4,
		sign_msg_id = $5, updated_at = $6 WHERE task_no = $1`, s.TaskNo, s.Unit, s.Officer, s.SignedAt, a.id, a.now)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: sign task %s: %w", s.TaskNo, err)
	}
	return nil, map[string]any{"taskNo": s.TaskNo, "unit": s.Unit, "officer": s.Officer, "signedAt": s.SignedAt}, nil
}

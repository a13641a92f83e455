package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/store"
)

// Batch applies the messages of one transaction with fewer statements. A
// registration of a person the registry does not hold (Prepare found none)
// is checked and sealed at once but written at Flush, with the others, in
// one statement for the persons and one for their history rows. Everything
// else goes through Registry.Apply; a message about a person registered
// earlier in the batch first sends the registrations held so far, so that
// it sees them.
//
// The state machine is the same: a person Prepare did not find cannot have
// been registered, nor have history, before this transaction. A person
// registered concurrently by another transaction makes Flush fail with a
// unique violation (the caller's transaction fails; retried one message at
// a time, Registry.Apply then answers E130 or ErrAlreadyApplied).
//
// A Batch is not safe for concurrent use; use one per transaction.
type Batch struct {
	r       *Registry
	checked map[string]bool // persons Prepare looked up
	present map[string]bool // persons found by Prepare
	held    map[string]bool // registered in this batch, not written yet
	persons []personInsert
	history []historyInsert
}

type historyInsert struct {
	personNo   string
	msgID      uuid.UUID
	direction  string
	node, kind string
	at         time.Time
	fields     []string
	detail     map[string]any
	recordedAt time.Time
}

// NewBatch returns an empty batch.
func (r *Registry) NewBatch() *Batch {
	return &Batch{r: r, checked: map[string]bool{}, present: map[string]bool{}, held: map[string]bool{}}
}

// Prepare notes which of personNos the registry holds (in tx's view).
func (b *Batch) Prepare(ctx context.Context, q store.Querier, personNos []string) error {
	if len(personNos) == 0 {
		return nil
	}
	for _, no := range personNos {
		b.checked[no] = true
	}
	rows, err := q.Query(ctx, `SELECT person_no FROM person WHERE person_no = ANY($1)`, personNos)
	if err != nil {
		return fmt.Errorf("registry: look up %d persons: %w", len(personNos), err)
	}
	defer rows.Close()
	for rows.Next() {
		var no string
		if err := rows.Scan(&no); err != nil {
			return fmt.Errorf("registry: look up persons: %w", err)
		}
		b.present[no] = true
	}
	return rows.Err()
}

// Apply applies m like Registry.Apply, holding back the registration of a
// person Prepare looked up and did not find.
func (b *Batch) Apply(ctx context.Context, tx pgx.Tx, m Message) error {
	a, err := b.r.newApplier(m)
	if err != nil {
		return err
	}
	p, isRegister := a.m.Payload.(*contracts.Person)
	if isRegister && b.checked[a.personNo] && !b.present[a.personNo] && !b.held[a.personNo] {
		row, fields, detail, err := a.registerRow(p)
		if err != nil {
			return err
		}
		fields, detail = a.historyOf(fields, detail)
		b.persons = append(b.persons, row)
		b.history = append(b.history, historyInsert{personNo: a.personNo, msgID: a.id, direction: a.m.Direction, node: a.m.Node,
			kind: a.m.Kind, at: a.m.At, fields: fields, detail: detail, recordedAt: a.now})
		b.held[a.personNo] = true
		return nil
	}
	if b.held[a.personNo] {
		if err := b.Flush(ctx, tx); err != nil {
			return err
		}
	}
	return b.r.Apply(ctx, tx, m)
}

// Flush writes the held registrations (store.ExecLater: with a store.Pipe
// they travel with the next statement).
func (b *Batch) Flush(ctx context.Context, q store.Querier) error {
	if len(b.persons) == 0 {
		return nil
	}
	n := len(b.persons)
	nos, srcs, origins, idTypes := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	idEnc, bidx, nameEnc := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	sexes, births, hukouRegions := make([]string, n), make([]time.Time, n), make([]string, n)
	hukouEnc, residRegions, residEnc := make([][]byte, n), make([]string, n), make([][]byte, n)
	cats, bases, reviews := make([]string, n), make([]string, n), make([]time.Time, n)
	units, officers, regAt, lastMsgs, nows := make([]string, n), make([]string, n), make([]time.Time, n), make([]string, n), make([]time.Time, n)
	for i, p := range b.persons {
		basis, err := json.Marshal(p.basis)
		if err != nil {
			return fmt.Errorf("registry: encode basis of %s: %w", p.personNo, err)
		}
		for _, c := range p.categories {
			if strings.Contains(c, ",") {
				return fmt.Errorf("registry: category code %q of %s holds a comma", c, p.personNo)
			}
		}
		nos[i], srcs[i], origins[i], idTypes[i] = p.personNo, p.sourceNode, p.origin, p.idType
		idEnc[i], bidx[i], nameEnc[i] = p.idNoEnc, p.idNoBidx, p.nameEnc
		sexes[i], births[i], hukouRegions[i] = p.sex, p.birth, p.hukouRegion
		hukouEnc[i], residRegions[i], residEnc[i] = p.hukouAddrEnc, p.residRegion, p.residAddrEnc
		cats[i], bases[i], reviews[i] = strings.Join(p.categories, ","), string(basis), p.review
		units[i], officers[i], regAt[i], lastMsgs[i], nows[i] = p.unit, p.officer, p.registeredAt, p.lastMsg.String(), p.now
	}
	err := store.ExecLater(ctx, q, `INSERT INTO person (person_no, source_node, origin, state, id_type, id_no_enc, id_no_bidx,
		name_enc, sex, birth_date, hukou_region, hukou_addr_enc, resid_region, resid_addr_enc, categories, basis,
		review_by, unit, officer, registered_at, last_msg_id, created_at, updated_at)
		SELECT no, src, origin, 'ACTIVE', id_type, id_enc, bidx, name_enc, sex, birth, hukou_region, hukou_enc, resid_region, resid_enc,
			string_to_array(cats, ','), basis::jsonb, review, unit, officer, reg_at, last_msg::uuid, now, now
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::text[], $9::date[],
			$10::text[], $11::bytea[], $12::text[], $13::bytea[], $14::text[], $15::text[], $16::date[], $17::text[], $18::text[],
			$19::timestamptz[], $20::text[], $21::timestamptz[])
		AS u(no, src, origin, id_type, id_enc, bidx, name_enc, sex, birth, hukou_region, hukou_enc, resid_region, resid_enc,
			cats, basis, review, unit, officer, reg_at, last_msg, now)`,
		nos, srcs, origins, idTypes, idEnc, bidx, nameEnc, sexes, births, hukouRegions, hukouEnc, residRegions, residEnc,
		cats, bases, reviews, units, officers, regAt, lastMsgs, nows)
	if err != nil {
		return fmt.Errorf("registry: insert %d persons: %w", n, err)
	}
	h := len(b.history)
	hNos, hIDs, hDirs, hNodes, hKinds := make([]string, h), make([]string, h), make([]string, h), make([]string, h), make([]string, h)
	hAt, hFields, hDetail, hRec := make([]time.Time, h), make([]string, h), make([]string, h), make([]time.Time, h)
	for i, r := range b.history {
		d, err := json.Marshal(r.detail)
		if err != nil {
			return fmt.Errorf("registry: encode history detail: %w", err)
		}
		hNos[i], hIDs[i], hDirs[i], hNodes[i], hKinds[i] = r.personNo, r.msgID.String(), r.direction, r.node, r.kind
		hAt[i], hFields[i], hDetail[i], hRec[i] = r.at, strings.Join(r.fields, ","), string(d), r.recordedAt
	}
	err = store.ExecLater(ctx, q, `INSERT INTO person_history (person_no, msg_id, direction, node, kind, at, fields, detail, recorded_at)
		SELECT no, id::uuid, dir, node, kind, at, string_to_array(fields, ','), detail::jsonb, rec
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::timestamptz[])
		AS u(no, id, dir, node, kind, at, fields, detail, rec)`,
		hNos, hIDs, hDirs, hNodes, hKinds, hAt, hFields, hDetail, hRec)
	if err != nil {
		return fmt.Errorf("registry: insert %d history rows: %w", h, err)
	}
	for _, p := range b.persons {
		b.present[p.personNo] = true
	}
	b.persons, b.history, b.held = nil, nil, map[string]bool{}
	return nil
}

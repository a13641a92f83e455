package registry

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/transforms"
)

// Encrypted columns of person.
const (
	colIDNo      = "id_no"
	colName      = "name"
	colHukouAddr = "hukou_addr"
	colResidAddr = "resid_addr"
)

// aad binds an encrypted value to its column and person.
func aad(column, personNo string) []byte {
	return []byte("person." + column + "/" + personNo)
}

func (r *Registry) seal(column, personNo, value string) ([]byte, error) {
	ct, err := r.kr.Encrypt([]byte(value), aad(column, personNo))
	if err != nil {
		return nil, fmt.Errorf("registry: encrypt %s: %w", column, err)
	}
	return ct, nil
}

// sealOptional encrypts an optional value; "" is stored as NULL.
func (r *Registry) sealOptional(column, personNo, value string) ([]byte, error) {
	if value == "" {
		return nil, nil
	}
	return r.seal(column, personNo, value)
}

func (r *Registry) open(column, personNo string, ct []byte) (string, error) {
	if ct == nil {
		return "", nil
	}
	pt, err := r.kr.Decrypt(ct, aad(column, personNo))
	if err != nil {
		return "", fmt.Errorf("registry: decrypt %s of %s: %w", column, personNo, err)
	}
	return string(pt), nil
}

// idNoIndex is the blind index of an ID number.
func (r *Registry) idNoIndex(idNo string) []byte {
	return r.kr.BlindIndex(IDNoDomain, []byte(transforms.NormalizeIDNo(idNo)))
}

// personRow is a person row as stored.
type personRow struct {
	PersonNo, SourceNode, Origin, State, IDType string
	IDNoEnc, IDNoBidx, NameEnc                  []byte
	Sex                                         string
	BirthDate                                   time.Time
	HukouRegion                                 string
	HukouAddrEnc                                []byte
	ResidRegion                                 string
	ResidAddrEnc                                []byte
	Categories                                  []string
	Basis                                       contracts.Basis
	ReviewBy                                    time.Time
	Unit, Officer                               string
	RegisteredAt                                time.Time
	CancelledAt                                 *time.Time
	CancelReason                                *string
	CancelBasis                                 *contracts.Basis
	LastMsgID                                   string
	CreatedAt, UpdatedAt                        time.Time
}

const personCols = `person_no, source_node, origin, state, id_type, id_no_enc, id_no_bidx, name_enc,
	sex, birth_date, hukou_region, hukou_addr_enc, resid_region, resid_addr_enc, categories, basis,
	review_by, unit, officer, registered_at, cancelled_at, cancel_reason, cancel_basis,
	last_msg_id::text, created_at, updated_at`

func scanPerson(row pgx.Row) (*personRow, error) {
	var p personRow
	err := row.Scan(&p.PersonNo, &p.SourceNode, &p.Origin, &p.State, &p.IDType, &p.IDNoEnc, &p.IDNoBidx, &p.NameEnc,
		&p.Sex, &p.BirthDate, &p.HukouRegion, &p.HukouAddrEnc, &p.ResidRegion, &p.ResidAddrEnc, &p.Categories, &p.Basis,
		&p.ReviewBy, &p.Unit, &p.Officer, &p.RegisteredAt, &p.CancelledAt, &p.CancelReason, &p.CancelBasis,
		&p.LastMsgID, &p.CreatedAt, &p.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// decrypt returns the record of row with its personal data decrypted.
func (r *Registry) decrypt(p *personRow) (*PersonRecord, error) {
	rec := &PersonRecord{
		PersonNo: p.PersonNo, SourceNode: p.SourceNode, Origin: p.Origin, State: p.State, IDType: p.IDType,
		Sex: p.Sex, BirthDate: p.BirthDate.Format(time.DateOnly), HukouRegion: p.HukouRegion,
		ResidRegion: p.ResidRegion, Categories: p.Categories, Basis: p.Basis,
		ReviewBy: p.ReviewBy.Format(time.DateOnly), Unit: p.Unit, Officer: p.Officer,
		RegisteredAt: p.RegisteredAt, CancelledAt: p.CancelledAt, CancelBasis: p.CancelBasis,
		LastMsgID: p.LastMsgID, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	if p.CancelReason != nil {
		rec.CancelReason = *p.CancelReason
	}
	var err error
	if rec.IDNo, err = r.open(colIDNo, p.PersonNo, p.IDNoEnc); err != nil {
		return nil, err
	}
	if rec.Name, err = r.open(colName, p.PersonNo, p.NameEnc); err != nil {
		return nil, err
	}
	if rec.HukouAddr, err = r.open(colHukouAddr, p.PersonNo, p.HukouAddrEnc); err != nil {
		return nil, err
	}
	if rec.ResidAddr, err = r.open(colResidAddr, p.PersonNo, p.ResidAddrEnc); err != nil {
		return nil, err
	}
	return rec, nil
}

// wire returns the record as a register payload (the canonical form the
// validator checks), with header seq.
func (p *PersonRecord) wire(seq int64) *contracts.Person {
	return &contracts.Person{
		Header: contracts.Header{PersonNo: p.PersonNo, Seq: seq},
		IDType: p.IDType, IDNo: p.IDNo, Name: p.Name, Sex: p.Sex, BirthDate: p.BirthDate,
		HukouRegion: p.HukouRegion, HukouAddr: p.HukouAddr, ResidRegion: p.ResidRegion, ResidAddr: p.ResidAddr,
		Categories: p.Categories, Basis: p.Basis, ReviewBy: p.ReviewBy, Unit: p.Unit, Officer: p.Officer,
		RegisteredAt: p.RegisteredAt,
	}
}

// merge applies the set fields of c to a copy of p and returns the copy and
// the names of the fields set, in the order of the spec table.
func merge(p *contracts.Person, c *contracts.PersonChanges) (*contracts.Person, []string) {
	m := *p
	var names []string
	setStr := func(name string, dst *string, v *string) {
		if v != nil {
			*dst = *v
			names = append(names, name)
		}
	}
	setStr("name", &m.Name, c.Name)
	setStr("sex", &m.Sex, c.Sex)
	setStr("birthDate", &m.BirthDate, c.BirthDate)
	setStr("hukouRegion", &m.HukouRegion, c.HukouRegion)
	setStr("hukouAddr", &m.HukouAddr, c.HukouAddr)
	setStr("residRegion", &m.ResidRegion, c.ResidRegion)
	setStr("residAddr", &m.ResidAddr, c.ResidAddr)
	if c.Categories != nil {
		m.Categories = c.Categories
		names = append(names, "categories")
	}
	if c.Basis != nil {
		m.Basis = *c.Basis
		names = append(names, "basis")
	}
	setStr("reviewBy", &m.ReviewBy, c.ReviewBy)
	setStr("unit", &m.Unit, c.Unit)
	setStr("officer", &m.Officer, c.Officer)
	if c.RegisteredAt != nil {
		m.RegisteredAt = *c.RegisteredAt
		names = append(names, "registeredAt")
	}
	return &m, names
}

// parseDate parses a payload date (validated upstream).
func parseDate(field, s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q is not a date", ErrInvalid, field, s)
	}
	return t, nil
}

// redact masks the person's ID number and name where they occur in a free
// text (a reason, a note) before it is stored. A one-character name is not
// searched for (it would mask unrelated text).
func redact(text, idNo, name string) string {
	if idNo != "" {
		text = strings.ReplaceAll(text, idNo, MaskIDNo(idNo))
	}
	if len([]rune(name)) >= 2 {
		text = strings.ReplaceAll(text, name, MaskName(name))
	}
	return text
}

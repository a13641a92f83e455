package api

import (
	"encoding/json"
	"time"

	"zhianhub/contracts"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// shanghai is the zone of the times the API writes (UTC+08:00, no DST
// since 1991).
var shanghai = time.FixedZone("CST", 8*3600)

func local(t time.Time) time.Time { return t.In(shanghai) }

func localPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	l := local(*t)
	return &l
}

// Address masking.
const (
	// AddressKeep is how many leading characters of an address stay
	// visible (province, city and district: no finer than the region code
	// shown beside it).
	AddressKeep = 6
	// AddressMask replaces the rest, whatever its length (the length of
	// an address is not shown either).
	AddressMask = "＊＊＊＊"
)

// MaskAddress masks an address for display: its first AddressKeep
// characters followed by AddressMask; an address of at most AddressKeep
// characters is masked entirely; "" stays "".
func MaskAddress(s string) string {
	r := []rune(s)
	switch {
	case len(r) == 0:
		return ""
	case len(r) <= AddressKeep:
		return AddressMask
	}
	return string(r[:AddressKeep]) + AddressMask
}

// MaskBirthDate keeps the year of a YYYY-MM-DD date ("1986-**-**"): the
// full date is part of the ID number that MaskIDNo hides.
func MaskBirthDate(s string) string {
	if len(s) != len("2006-01-02") {
		return "****-**-**"
	}
	return s[:4] + "-**-**"
}

// personView is a person record as the API shows it.
type personView struct {
	PersonNo     string     `json:"personNo"`
	State        string     `json:"state"`
	Origin       string     `json:"origin"`
	SourceNode   string     `json:"sourceNode"`
	Masked       bool       `json:"masked"`
	IDType       string     `json:"idType"`
	IDNo         string     `json:"idNo"`
	Name         string     `json:"name"`
	Sex          string     `json:"sex"`
	BirthDate    string     `json:"birthDate"`
	HukouRegion  string     `json:"hukouRegion"`
	HukouAddr    string     `json:"hukouAddr,omitempty"`
	ResidRegion  string     `json:"residRegion,omitempty"`
	ResidAddr    string     `json:"residAddr,omitempty"`
	Categories   []string   `json:"categories"`
	Basis        basisView  `json:"basis"`
	ReviewBy     string     `json:"reviewBy"`
	Unit         string     `json:"unit"`
	Officer      string     `json:"officer"`
	RegisteredAt time.Time  `json:"registeredAt"`
	CancelledAt  *time.Time `json:"cancelledAt,omitempty"`
	CancelReason string     `json:"cancelReason,omitempty"`
	CancelBasis  *basisView `json:"cancelBasis,omitempty"`
	LastMsgID    string     `json:"lastMsgId"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
}

type basisView struct {
	DocNo      string    `json:"docNo"`
	ApprovedBy string    `json:"approvedBy"`
	ApprovedAt time.Time `json:"approvedAt"`
	Legal      string    `json:"legal"`
}

func basisOf(b contracts.Basis) basisView {
	return basisView{DocNo: b.DocNo, ApprovedBy: b.ApprovedBy, ApprovedAt: local(b.ApprovedAt), Legal: b.Legal}
}

func viewPerson(p *registry.PersonRecord, masked bool) personView {
	v := personView{
		PersonNo: p.PersonNo, State: p.State, Origin: p.Origin, SourceNode: p.SourceNode, Masked: masked,
		IDType: p.IDType, IDNo: p.IDNo, Name: p.Name, Sex: p.Sex, BirthDate: p.BirthDate,
		HukouRegion: p.HukouRegion, HukouAddr: p.HukouAddr, ResidRegion: p.ResidRegion, ResidAddr: p.ResidAddr,
		Categories: p.Categories, Basis: basisOf(p.Basis), ReviewBy: p.ReviewBy, Unit: p.Unit, Officer: p.Officer,
		RegisteredAt: local(p.RegisteredAt), CancelledAt: localPtr(p.CancelledAt), CancelReason: p.CancelReason,
		LastMsgID: p.LastMsgID, CreatedAt: local(p.CreatedAt), UpdatedAt: local(p.UpdatedAt),
	}
	if v.Categories == nil {
		v.Categories = []string{}
	}
	if p.CancelBasis != nil {
		b := basisOf(*p.CancelBasis)
		v.CancelBasis = &b
	}
	if masked {
		v.IDNo, v.Name = registry.MaskIDNo(p.IDNo), registry.MaskName(p.Name)
		v.BirthDate = MaskBirthDate(p.BirthDate)
		v.HukouAddr, v.ResidAddr = MaskAddress(p.HukouAddr), MaskAddress(p.ResidAddr)
	}
	return v
}

// summaryView is a masked person for search results.
type summaryView struct {
	PersonNo     string    `json:"personNo"`
	State        string    `json:"state"`
	IDType       string    `json:"idType"`
	IDNoMasked   string    `json:"idNoMasked"`
	NameMasked   string    `json:"nameMasked"`
	Unit         string    `json:"unit"`
	Officer      string    `json:"officer"`
	ReviewBy     string    `json:"reviewBy"`
	RegisteredAt time.Time `json:"registeredAt"`
}

func viewSummary(s registry.PersonSummary) summaryView {
	return summaryView{PersonNo: s.PersonNo, State: s.State, IDType: s.IDType, IDNoMasked: s.IDNoMasked,
		NameMasked: s.NameMasked, Unit: s.Unit, Officer: s.Officer, ReviewBy: s.ReviewBy, RegisteredAt: local(s.RegisteredAt)}
}

type controlView struct {
	ControlNo   string     `json:"controlNo"`
	PersonNo    string     `json:"personNo"`
	Level       int        `json:"level"`
	Measures    []string   `json:"measures"`
	Regions     []string   `json:"regions"`
	ValidFrom   time.Time  `json:"validFrom"`
	ValidTo     time.Time  `json:"validTo"`
	Basis       basisView  `json:"basis"`
	State       string     `json:"state"`
	ClosedAt    *time.Time `json:"closedAt,omitempty"`
	CloseReason string     `json:"closeReason,omitempty"`
	OpenedByMsg string     `json:"openedByMsg"`
	ClosedByMsg string     `json:"closedByMsg,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
}

func viewControl(c registry.ControlRecord) controlView {
	return controlView{ControlNo: c.ControlNo, PersonNo: c.PersonNo, Level: c.Level, Measures: nonNil(c.Measures),
		Regions: nonNil(c.Regions), ValidFrom: local(c.ValidFrom), ValidTo: local(c.ValidTo), Basis: basisOf(c.Basis),
		State: c.State, ClosedAt: localPtr(c.ClosedAt), CloseReason: c.CloseReason, OpenedByMsg: c.OpenedByMsg,
		ClosedByMsg: c.ClosedByMsg, CreatedAt: local(c.CreatedAt), UpdatedAt: local(c.UpdatedAt)}
}

type taskView struct {
	TaskNo        string     `json:"taskNo"`
	PersonNo      string     `json:"personNo"`
	Items         []string   `json:"items"`
	AssignedUnit  string     `json:"assignedUnit"`
	Deadline      time.Time  `json:"deadline"`
	Note          string     `json:"note,omitempty"`
	State         string     `json:"state"`
	IssuedMsgID   string     `json:"issuedMsgId"`
	SignedUnit    string     `json:"signedUnit,omitempty"`
	SignedOfficer string     `json:"signedOfficer,omitempty"`
	SignedAt      *time.Time `json:"signedAt,omitempty"`
	SignMsgID     string     `json:"signMsgId,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	UpdatedAt     time.Time  `json:"updatedAt"`
}

func viewTask(t registry.TaskRecord) taskView {
	return taskView{TaskNo: t.TaskNo, PersonNo: t.PersonNo, Items: nonNil(t.Items), AssignedUnit: t.AssignedUnit,
		Deadline: local(t.Deadline), Note: t.Note, State: t.State, IssuedMsgID: t.IssuedMsgID, SignedUnit: t.SignedUnit,
		SignedOfficer: t.SignedOfficer, SignedAt: localPtr(t.SignedAt), SignMsgID: t.SignMsgID,
		CreatedAt: local(t.CreatedAt), UpdatedAt: local(t.UpdatedAt)}
}

// filingView is a filing (an outbox message that needs a receipt), without
// its payload (which holds personal data in clear).
type filingView struct {
	ID            string       `json:"id"`
	Kind          string       `json:"kind"`
	PersonNo      string       `json:"personNo"`
	Seq           int64        `json:"seq"`
	To            string       `json:"to"`
	Corr          string       `json:"corr,omitempty"`
	Actor         string       `json:"actor"`
	State         string       `json:"state"`
	Attempts      int          `json:"attempts"`
	NextAttemptAt *time.Time   `json:"nextAttemptAt,omitempty"`
	FirstSentAt   *time.Time   `json:"firstSentAt,omitempty"`
	LastSentAt    *time.Time   `json:"lastSentAt,omitempty"`
	LastError     string       `json:"lastError,omitempty"`
	Receipt       *receiptView `json:"receipt,omitempty"`
	CreatedAt     time.Time    `json:"createdAt"`
	// Events is the exchange history from the journal (GET by id only).
	Events []eventView `json:"events,omitempty"`
}

type receiptView struct {
	Status string     `json:"status"`
	Code   string     `json:"code"`
	Reason string     `json:"reason,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

func viewFiling(o exchange.Out) filingView {
	v := filingView{ID: o.ID, Kind: o.Kind, PersonNo: o.PersonNo, Seq: o.Seq, To: o.ToNode, Corr: o.Corr, Actor: o.Actor,
		State: o.State, Attempts: o.Attempts, FirstSentAt: localPtr(o.FirstSentAt), LastSentAt: localPtr(o.LastSentAt),
		LastError: o.LastError, CreatedAt: local(o.CreatedAt)}
	if o.State == exchange.OutPending || o.State == exchange.OutSent {
		v.NextAttemptAt = localPtr(&o.NextAttemptAt)
	}
	if o.ReceiptStatus != "" {
		v.Receipt = &receiptView{Status: o.ReceiptStatus, Code: o.ReceiptCode, Reason: o.ReceiptReason, At: localPtr(o.ReceiptAt)}
	}
	return v
}

// eventView is one state of a message in the journal.
type eventView struct {
	State  string    `json:"state"`
	At     time.Time `json:"at"`
	Code   string    `json:"code,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func viewEvents(es []journal.Event) []eventView {
	out := make([]eventView, 0, len(es))
	for _, e := range es {
		out = append(out, eventView{State: string(e.State), At: local(e.At), Code: e.Code, Reason: e.Reason})
	}
	return out
}

// historyView is one effect on a person with the exchange history of its
// message.
type historyView struct {
	ID         int64           `json:"id"`
	MsgID      string          `json:"msgId,omitempty"`
	Direction  string          `json:"direction"`
	Node       string          `json:"node,omitempty"`
	Kind       string          `json:"kind"`
	At         time.Time       `json:"at"`
	Fields     []string        `json:"fields"`
	Detail     json.RawMessage `json:"detail"`
	RecordedAt time.Time       `json:"recordedAt"`
	// Exchange is nil for the holder's own actions (direction local).
	Exchange *exchangeView `json:"exchange,omitempty"`
}

// exchangeView is the journal of one message: its current state, last
// code and every state it went through; for a filing also its outbox row.
type exchangeView struct {
	Journaled bool        `json:"journaled"`
	State     string      `json:"state,omitempty"`
	Code      string      `json:"code,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Peer      string      `json:"peer,omitempty"`
	Corr      string      `json:"corr,omitempty"`
	Events    []eventView `json:"events"`
	Filing    *filingView `json:"filing,omitempty"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// MaskText masks the identifiers recognisable in a free text (a lead's
// account) for display, leaving the rest as written:
//
//   - 18-character ID numbers (GB 11643: a 6-digit region not starting
//     with 0, a birth date 18xx-20xx with a valid month and day, a 3-digit
//     serial and a check digit or X) keep their first 6 and last 4
//     characters, as MaskIDNo;
//   - 11-digit mobile numbers (1, then 3-9, then 9 digits; optionally
//     written 3-4-4 with single hyphens or spaces) keep their first 3 and
//     last 4 digits.
//
// Full-width digits, letters, hyphens and the ideographic space count as
// their ASCII forms (NFKC), so "３１０１…" is masked too. A number directly
// preceded or followed by another digit is part of a longer number (a lead
// or case number) and left alone. Names and addresses are not recognised
// in free text: they are not masked.
func MaskText(s string) string {
	r := []rune(s)
	f := make([]rune, len(r)) // r folded to ASCII where NFKC would
	for i, c := range r {
		switch {
		case c >= 0xFF01 && c <= 0xFF5E:
			f[i] = c - 0xFEE0
		case c == 0x3000:
			f[i] = ' '
		default:
			f[i] = c
		}
	}
	masked := false
	for i := 0; i < len(f); i++ {
		if !isDigitRune(f[i]) || i > 0 && isDigitRune(f[i-1]) {
			continue
		}
		if n := matchIDNo(f[i:]); n > 0 && (i+n == len(f) || !isDigitRune(f[i+n])) {
			for j := i + 6; j < i+n-4; j++ {
				r[j] = '*'
			}
			masked, i = true, i+n-1
			continue
		}
		if n := matchMobile(f[i:]); n > 0 && (i+n == len(f) || !isDigitRune(f[i+n])) {
			d := 0
			for j := i; j < i+n; j++ {
				if isDigitRune(f[j]) {
					if d >= 3 && d < 7 {
						r[j] = '*'
					}
					d++
				}
			}
			masked, i = true, i+n-1
		}
	}
	if !masked {
		return s
	}
	return string(r)
}

func isDigitRune(c rune) bool { return c >= '0' && c <= '9' }

func twoDigits(f []rune) int { return int(f[0]-'0')*10 + int(f[1]-'0') }

// matchIDNo returns 18 if f starts with an 18-character ID number
// (GB 11643), else 0.
func matchIDNo(f []rune) int {
	if len(f) < 18 || f[0] == '0' {
		return 0
	}
	for _, c := range f[:17] {
		if !isDigitRune(c) {
			return 0
		}
	}
	if c := f[17]; !isDigitRune(c) && c != 'X' && c != 'x' {
		return 0
	}
	century, month, day := twoDigits(f[6:8]), twoDigits(f[10:12]), twoDigits(f[12:14])
	if century < 18 || century > 20 || month < 1 || month > 12 || day < 1 || day > 31 {
		return 0
	}
	return 18
}

// matchMobile returns the length of the mobile number f starts with
// (11 digits, or 13 characters written 3-4-4), else 0.
func matchMobile(f []rune) int {
	if len(f) < 11 || f[0] != '1' || f[1] < '3' || f[1] > '9' || !isDigitRune(f[2]) {
		return 0
	}
	n := 3
	for range 2 {
		if n < len(f) && (f[n] == '-' || f[n] == ' ') {
			n++
		}
		if n+4 > len(f) {
			return 0
		}
		for _, c := range f[n : n+4] {
			if !isDigitRune(c) {
				return 0
			}
		}
		n += 4
	}
	return n
}

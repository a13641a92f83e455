// Package registry is the key-person registry (重点人员登记库) of the hub: the
// records it holds, received from the Ministry bus or filed by the hub itself,
// with their controls (布控), verification tasks (核实任务) and the history of
// the messages applied to them. Apply runs the state machine per personNo of
// shared/specs/mps-bus.md.
//
// Personal data (ID number, name, household and residence addresses) is
// stored only encrypted with the field encryption (crypto/fieldenc); the
// additional data binds each value to "person.<column>/<personNo>". The ID
// number is also stored as a keyed blind index (domain "id_no", value the
// number normalized by transforms.NormalizeIDNo) for equality lookups.
// History rows name changed fields only and carry no plaintext personal data;
// free-text reasons are stored with any occurrence of the person's ID number
// or name masked.
//
// Nothing here filters, scores, routes or counts people by ethnicity,
// religion or health (the payloads carry no such data). Controls past their
// validity are closed and returned for reporting (ExpireControls), never
// extended; overdue reviews are listed (OverdueReviews), never moved.
//
// Writes take the caller's pgx.Tx so that an effect commits together with
// its journal entry and receipt; reads take any store.Querier.
package registry

import (
	"errors"
	"fmt"
	"time"

	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
)

// Message directions.
const (
	In  = "in"  // received from the bus
	Out = "out" // filed by this hub
)

// Person states.
const (
	PersonActive    = "ACTIVE"
	PersonCancelled = "CANCELLED"
)

// Control states.
const (
	ControlOpen      = "OPEN"
	ControlReleased  = "RELEASED"  // by a release message
	ControlExpired   = "EXPIRED"   // closed by the holder past validTo
	ControlCancelled = "CANCELLED" // closed by the person's cancellation
)

// Task states.
const (
	TaskIssued = "ISSUED"
	TaskSigned = "SIGNED"
)

// State refusal codes (shared/specs/envelope.md).
const (
	CodeConflict = "E130" // state conflict
	CodeUnknown  = "E131" // unknown record
)

// HistoryKindExpired is the kind of the history row written when the holder
// closes a control past its validity (direction "local", no message).
const HistoryKindExpired = "control.expired"

// DirectionLocal is the direction of history rows of the holder's own
// actions.
const DirectionLocal = "local"

// IDNoDomain is the blind-index domain of ID numbers.
const IDNoDomain = "id_no"

var (
	// ErrAlreadyApplied reports a message (id, direction) that already took
	// effect; nothing was changed.
	ErrAlreadyApplied = errors.New("registry: message already applied")
	// ErrNotFound reports an unknown person or task in a query.
	ErrNotFound = errors.New("registry: not found")
	// ErrInvalid reports an argument the registry refuses (a caller's bug,
	// not a bus outcome: answer E199).
	ErrInvalid = errors.New("registry: invalid argument")
)

// StateError is a message refused by the state machine: Code is E130 (state
// conflict) or E131 (unknown record), Reason the Chinese text for the
// receipt.
type StateError struct {
	Code   string
	Reason string
}

func (e *StateError) Error() string { return "registry: " + e.Code + " " + e.Reason }

// ResultCode returns the bus result code.
func (e *StateError) ResultCode() string { return e.Code }

func conflict(format string, args ...any) *StateError {
	return &StateError{Code: CodeConflict, Reason: fmt.Sprintf(format, args...)}
}

func unknown(format string, args ...any) *StateError {
	return &StateError{Code: CodeUnknown, Reason: fmt.Sprintf(format, args...)}
}

// Config configures a Registry.
type Config struct {
	// Keyring encrypts and blind-indexes personal data. Required.
	Keyring *fieldenc.Keyring
	// Validator re-validates a person merged with a change. Required.
	Validator *contracts.Validator
	// Now is the clock of recorded times and ExpiringControls. Default
	// time.Now.
	Now func() time.Time
	// Location is the zone of calendar dates (OverdueReviews). Default
	// Asia/Shanghai, or a fixed UTC+08:00 zone without tzdata.
	Location *time.Location
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = shanghai()
	}
}

// Validate reports whether the configuration can be used.
func (c Config) Validate() error {
	var errs []error
	if c.Keyring == nil {
		errs = append(errs, errors.New("Keyring is required"))
	}
	if c.Validator == nil {
		errs = append(errs, errors.New("Validator is required"))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("Now is required"))
	}
	if c.Location == nil {
		errs = append(errs, errors.New("Location is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registry: invalid config: %w", err)
	}
	return nil
}

func shanghai() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}

// Registry applies bus messages to the key-person records and answers
// queries on them. It is safe for concurrent use.
type Registry struct {
	kr  *fieldenc.Keyring
	v   *contracts.Validator
	now func() time.Time
	loc *time.Location
}

// New returns a Registry for cfg after applying its defaults.
func New(cfg Config) (*Registry, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Registry{kr: cfg.Keyring, v: cfg.Validator, now: cfg.Now, loc: cfg.Location}, nil
}

// Message is one bus message to apply.
type Message struct {
	// ID is the envelope id (a UUID).
	ID string
	// Direction is In (received from the bus) or Out (filed by this hub).
	Direction string
	// Node is the peer: the sender of an inbound message, the recipient of
	// an outbound one (12 digits).
	Node string
	// Kind is the payload kind (contracts.KindRegister ...; not receipt).
	Kind string
	// Corr is the envelope corr ("" when none).
	Corr string
	// Payload is the validated payload as contracts.ValidatePayload returns
	// it: *contracts.Person for a register and so on.
	Payload any
	// At is when the message was sent or received (the history time).
	At time.Time
}

// PersonRecord is a decrypted person record.
type PersonRecord struct {
	PersonNo     string
	SourceNode   string // peer of the register message
	Origin       string // In or Out
	State        string // PersonActive or PersonCancelled
	IDType       string
	IDNo         string
	Name         string
	Sex          string
	BirthDate    string // YYYY-MM-DD
	HukouRegion  string
	HukouAddr    string
	ResidRegion  string
	ResidAddr    string
	Categories   []string
	Basis        contracts.Basis
	ReviewBy     string // YYYY-MM-DD
	Unit         string
	Officer      string
	RegisteredAt time.Time
	CancelledAt  *time.Time
	CancelReason string
	CancelBasis  *contracts.Basis
	LastMsgID    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Summary returns the record with its ID number and name masked.
func (p *PersonRecord) Summary() PersonSummary {
	return PersonSummary{
		PersonNo: p.PersonNo, State: p.State, IDType: p.IDType,
		IDNoMasked: MaskIDNo(p.IDNo), NameMasked: MaskName(p.Name),
		Unit: p.Unit, Officer: p.Officer, ReviewBy: p.ReviewBy, RegisteredAt: p.RegisteredAt,
	}
}

// PersonSummary is a person for lists and reports, with masked identity.
type PersonSummary struct {
	PersonNo     string
	State        string
	IDType       string
	IDNoMasked   string
	NameMasked   string
	Unit         string
	Officer      string
	ReviewBy     string // YYYY-MM-DD
	RegisteredAt time.Time
}

// ControlRecord is a control (布控).
type ControlRecord struct {
	ControlNo   string
	PersonNo    string
	Level       int
	Measures    []string
	Regions     []string
	ValidFrom   time.Time
	ValidTo     time.Time
	Basis       contracts.Basis
	State       string // ControlOpen ...
	ClosedAt    *time.Time
	CloseReason string
	OpenedByMsg string
	ClosedByMsg string // "" when open or expired
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// TaskRecord is a verification task (核实登记任务).
type TaskRecord struct {
	TaskNo        string
	PersonNo      string
	Items         []string
	AssignedUnit  string
	Deadline      time.Time
	Note          string
	State         string // TaskIssued or TaskSigned
	IssuedMsgID   string
	SignedUnit    string
	SignedOfficer string
	SignedAt      *time.Time
	SignMsgID     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// HistoryEntry is one effect on a person: an applied message or an action
// of the holder (Direction DirectionLocal, MsgID "").
type HistoryEntry struct {
	ID         int64
	PersonNo   string
	MsgID      string
	Direction  string
	Node       string
	Kind       string
	At         time.Time
	Fields     []string // names of the fields set or changed
	Detail     []byte   // JSON object without plaintext personal data
	RecordedAt time.Time
}

// TaskFilter selects tasks for ListTasks.
type TaskFilter struct {
	State string // "" any, TaskIssued or TaskSigned
	Unit  string // assigned unit; "" any
	Limit int    // 0: DefaultTaskLimit; at most MaxTaskLimit
	After string // keyset cursor: tasks with task_no > After
}

// Task list limits.
const (
	DefaultTaskLimit = 100
	MaxTaskLimit     = 1000
)

// MaskIDNo masks an identity-document number for display: an 18-character
// resident number keeps its first 6 and last 4 characters
// ("310101********123X"); any number of 11 or more characters likewise;
// shorter ones keep their first and last character; 1-2 characters are masked
// entirely.
func MaskIDNo(s string) string {
	r := []rune(s)
	keepHead, keepTail := 6, 4
	switch n := len(r); {
	case n == 0:
		return ""
	case n <= 2:
		keepHead, keepTail = 0, 0
	case n < 11:
		keepHead, keepTail = 1, 1
	}
	for i := keepHead; i < len(r)-keepTail; i++ {
		r[i] = '*'
	}
	return string(r)
}

// MaskName keeps the first character of a name and masks the others
// ("张测试" → "张**"); a one-character name is masked entirely.
func MaskName(s string) string {
	r := []rune(s)
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	}
	for i := 1; i < len(r); i++ {
		r[i] = '*'
	}
	return string(r)
}

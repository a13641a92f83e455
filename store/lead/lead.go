// Package lead keeps the leads (信息线索) registered through the API or
// taken in from the internal bus (lead.registered), and merges duplicates
// by content.
//
// Decisions:
//
//   - Merging: two leads are duplicates when their category and region are
//     equal, their registration times lie within Config.Window of each
//     other, and their contents are equal after Normalize: Unicode NFKC
//     (full-width letters, digits and punctuation fold to their usual
//     forms, e.g. "１２３，ＡＢ" → "123,AB"), every whitespace character
//     removed (spaces, ideographic spaces U+3000, line breaks, tabs), and
//     lower case. The SM3 digest of the normalized text is stored
//     (content_hash) and compared. A new lead that matches a primary lead
//     is stored as its duplicate (mergedInto = the primary's number, the
//     earliest match); the primary lists every duplicate with the unit
//     and officer that registered it and how (api or bus). Nothing is
//     deleted: each duplicate keeps its own number, text and registrant.
//     Registrations of one (category, region, digest) are serialized by a
//     transaction-scoped advisory lock, so concurrent duplicates (in
//     several processes) are merged too. Words are not stemmed, nor
//     punctuation dropped: a lead that differs in more than layout and
//     width is a new lead.
//   - The text is stored as given (not normalized, not masked, not
//     encrypted): it is an officer's or a citizen's account, which the
//     receiving unit reads whole; the normalized form exists only as its
//     digest. Nothing here filters, scores or counts people by ethnicity,
//     religion or health; the text is not analysed beyond the digest.
//   - Numbers of leads registered through the API: the registering unit's
//     county (first 6 digits), the date (China Standard Time, 8 digits)
//     and a serial of 6 digits from 900001 up (lead_serial). Modules
//     number their own leads (the bus gives leadId); the 9xxxxx serials
//     are the portal's, so that the two do not meet. A bus lead whose
//     number exists with other content is refused (ErrConflict); with the
//     same content it is a redelivery and has no effect.
//   - Data scope: a lead belongs to its registering unit; a caller sees
//     the leads of the units of their subtree. A primary's list of
//     duplicates names every registrant (unit and officer number) even
//     outside the caller's scope: the content is the same by definition.
package lead

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/text/unicode/norm"

	"zhianhub/store"
	"zhianhub/store/audit"
)

// Sources of a lead (the lead.registered contract).
var Sources = []string{"hotline", "walk-in", "online", "patrol", "transfer", "other"}

// SourceNames are the Chinese names of the sources.
var SourceNames = map[string]string{
	"hotline": "110 报警", "walk-in": "来访", "online": "网上举报", "patrol": "巡逻发现", "transfer": "移交", "other": "其他",
}

// Ways a lead arrives.
const (
	ViaAPI = "api"
	ViaBus = "bus"
)

// Errors.
var (
	ErrNotFound = errors.New("lead: not found")
	// ErrConflict: a lead number exists with other content.
	ErrConflict = errors.New("lead: number exists with other content")
	// ErrInvalid wraps an *InvalidError.
	ErrInvalid = errors.New("lead: invalid")
)

// InvalidError is a refused registration with its Chinese reason.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "lead: invalid: " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Lead is one stored lead.
type Lead struct {
	LeadID       string
	Source       string
	Category     string
	Content      string
	Region       string
	Unit         string
	Officer      string
	RegisteredAt time.Time
	// MergedInto is the primary lead of a duplicate ("" for a primary).
	MergedInto string
	Via        string
	Actor      string
	CreatedAt  time.Time
	// Duplicates are the leads merged into a primary (Get only).
	Duplicates []Link
}

// Link is a duplicate of a primary lead: who registered it, when, how.
type Link struct {
	LeadID       string
	Unit         string
	Officer      string
	Source       string
	Via          string
	RegisteredAt time.Time
}

// Normalize returns the form of a lead's text that duplicates share: NFKC,
// no whitespace, lower case.
func Normalize(s string) string {
	s = norm.NFKC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if !unicode.IsSpace(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// Digest is the SM3 digest of Normalize(s).
func Digest(s string) []byte {
	h := sm3.Sum([]byte(Normalize(s)))
	return h[:]
}

// DefaultWindow is the default merge window.
const DefaultWindow = 7 * 24 * time.Hour

// Config configures the Service.
type Config struct {
	Pool *pgxpool.Pool
	// Now is the clock of registrations. Default time.Now.
	Now func() time.Time
	// Window: leads registered further apart are never merged. Default
	// DefaultWindow.
	Window time.Duration
	// AuditNotify wakes the audit writer after a commit (optional).
	AuditNotify func()
	Logger      *slog.Logger
}

// Validate reports a missing dependency or a bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.Pool == nil {
		errs = append(errs, errors.New("lead: Config.Pool is required"))
	}
	if c.Window < 0 {
		errs = append(errs, errors.New("lead: Config.Window must not be negative"))
	}
	return errors.Join(errs...)
}

// Service registers and merges leads.
type Service struct{ cfg Config }

// New returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.AuditNotify == nil {
		cfg.AuditNotify = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg}, nil
}

// Registration is a lead to register.
type Registration struct {
	// LeadID is given by the bus; "" numbers it here.
	LeadID   string
	Source   string
	Category string
	Content  string
	// Region defaults to the unit's first 6 digits.
	Region  string
	Unit    string
	Officer string
	// RegisteredAt defaults to now.
	RegisteredAt time.Time
	Via          string // ViaAPI or ViaBus
	MessageID    string // the lead.registered event (bus)
	// Who registers it, for the audit: a user (API) or a module (bus).
	Actor, ActorUnit, Role, CorrelationID string
}

func digits(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// check validates a registration as the lead.registered contract does.
func check(r *Registration) error {
	switch {
	case r.LeadID != "" && !digits(r.LeadID, 20, 20):
		return invalid("leadId：须为 20 位数字")
	case !contains(Sources, r.Source):
		return invalid("source：须为 hotline、walk-in、online、patrol、transfer 或 other")
	case !digits(r.Category, 4, 4):
		return invalid("category：须为 4 位类别代码")
	case strings.TrimSpace(r.Content) == "":
		return invalid("content：不能为空")
	case utf8.RuneCountInString(r.Content) > 2000 || !utf8.ValidString(r.Content):
		return invalid("content：不能超过 2000 个字符")
	case strings.IndexFunc(r.Content, func(c rune) bool {
		return c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c >= 0x7f && c <= 0x9f
	}) >= 0:
		return invalid("content：不能含控制字符")
	case !digits(r.Unit, 12, 12):
		return invalid("unit：须为 12 位机构代码")
	case !digits(r.Officer, 6, 8):
		return invalid("officer：须为 6-8 位数字的警号")
	case r.Via != ViaAPI && r.Via != ViaBus:
		return invalid("via %q", r.Via)
	}
	if r.Region == "" {
		r.Region = r.Unit[:6]
	}
	if !digits(r.Region, 6, 6) {
		return invalid("region：须为 6 位行政区划代码")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var shanghai = time.FixedZone("CST", 8*3600)

// Register registers a lead in its own transaction (the API's).
func (s *Service) Register(ctx context.Context, r Registration) (Lead, bool, error) {
	var l Lead
	var created bool
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		l, created, err = s.RegisterTx(ctx, tx, r)
		return err
	})
	if err != nil {
		return Lead{}, false, err
	}
	if created {
		s.cfg.AuditNotify()
	}
	return l, created, nil
}

// RegisterTx registers a lead in the caller's transaction (the bus
// consumer's), merging it into a primary lead with the same content. It
// returns the stored lead and whether it is new: a bus lead whose number
// exists with the same content is a redelivery (false, no effect); with
// other content ErrConflict.
func (s *Service) RegisterTx(ctx context.Context, tx pgx.Tx, r Registration) (Lead, bool, error) {
	if err := check(&r); err != nil {
		return Lead{}, false, err
	}
	if r.RegisteredAt.IsZero() {
		r.RegisteredAt = s.cfg.Now()
	}
	hash := Digest(r.Content)
	if r.LeadID != "" {
		old, err := get(ctx, tx, r.LeadID)
		switch {
		case err == nil:
			if old.Source == r.Source && old.Category == r.Category && old.Content == r.Content && old.Unit == r.Unit && old.Officer == r.Officer {
				return old, false, nil
			}
			return Lead{}, false, fmt.Errorf("%w: %s", ErrConflict, r.LeadID)
		case !errors.Is(err, ErrNotFound):
			return Lead{}, false, err
		}
	}
	// Serialize the registrations that could be duplicates of each other.
	key := r.Category + "/" + r.Region + "/" + hex.EncodeToString(hash)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, key); err != nil {
		return Lead{}, false, fmt.Errorf("lead: lock: %w", err)
	}
	var primary *string
	err := tx.QueryRow(ctx, `SELECT lead_id FROM lead WHERE merged_into IS NULL AND category = $1 AND region = $2 AND content_hash = $3
		AND registered_at BETWEEN $4::timestamptz - $5::interval AND $4::timestamptz + $5::interval
		ORDER BY registered_at, lead_id LIMIT 1`, r.Category, r.Region, hash, r.RegisteredAt, s.cfg.Window).Scan(&primary)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Lead{}, false, fmt.Errorf("lead: find duplicates: %w", err)
	}
	if r.LeadID == "" {
		if r.LeadID, err = nextNumber(ctx, tx, r.Unit[:6]+r.RegisteredAt.In(shanghai).Format("20060102")); err != nil {
			return Lead{}, false, err
		}
	}
	var msgID *string
	if r.MessageID != "" {
		msgID = &r.MessageID
	}
	tag, err := tx.Exec(ctx, `INSERT INTO lead (lead_id, source, category, content, content_hash, region, unit, officer, registered_at,
			merged_into, via, actor, message_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::uuid) ON CONFLICT DO NOTHING`,
		r.LeadID, r.Source, r.Category, r.Content, hash, r.Region, r.Unit, r.Officer, r.RegisteredAt, primary, r.Via, r.Actor, msgID)
	if err != nil {
		return Lead{}, false, fmt.Errorf("lead: insert %s: %w", r.LeadID, err)
	}
	if tag.RowsAffected() == 0 { // the event's messageId is known: a redelivery
		l, err := get(ctx, tx, r.LeadID)
		return l, false, err
	}
	action := "lead.register"
	if r.Via == ViaBus {
		action = "lead.intake"
	}
	detail := map[string]any{"unit": r.Unit, "category": r.Category, "region": r.Region, "source": r.Source}
	if primary != nil {
		detail["mergedInto"] = *primary
	}
	if err := audit.Stage(ctx, tx, audit.Entry{Actor: r.Actor, Unit: r.ActorUnit, Role: r.Role, Action: action, Object: r.LeadID,
		Result: "ok", CorrelationID: r.CorrelationID, Detail: detail}); err != nil {
		return Lead{}, false, err
	}
	l, err := Get(ctx, tx, r.LeadID, nil)
	return l, true, err
}

// nextNumber takes the next portal serial (900001 up) of prefix.
func nextNumber(ctx context.Context, tx pgx.Tx, prefix string) (string, error) {
	var n int64
	err := tx.QueryRow(ctx, `INSERT INTO lead_serial (prefix, next) VALUES ($1, 900002)
		ON CONFLICT (prefix) DO UPDATE SET next = lead_serial.next + 1 RETURNING next - 1`, prefix).Scan(&n)
	if err != nil {
		return "", fmt.Errorf("lead: number: %w", err)
	}
	if n > 999999 {
		return "", fmt.Errorf("lead: the serials of %s are used up", prefix)
	}
	return fmt.Sprintf("%s%06d", prefix, n), nil
}

const columns = `lead_id, source, category, content, region, unit, officer, registered_at, coalesce(merged_into, ''), via, actor, created_at`

func scan(r pgx.Row) (Lead, error) {
	var l Lead
	err := r.Scan(&l.LeadID, &l.Source, &l.Category, &l.Content, &l.Region, &l.Unit, &l.Officer, &l.RegisteredAt, &l.MergedInto,
		&l.Via, &l.Actor, &l.CreatedAt)
	return l, err
}

func get(ctx context.Context, q store.Querier, id string) (Lead, error) {
	l, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM lead WHERE lead_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Lead{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Lead{}, fmt.Errorf("lead: get %s: %w", id, err)
	}
	return l, nil
}

// Get returns a lead with its duplicates; scope (nil = all) must contain
// its unit, else ErrNotFound.
func Get(ctx context.Context, q store.Querier, id string, scope []string) (Lead, error) {
	l, err := get(ctx, q, id)
	if err != nil {
		return Lead{}, err
	}
	if scope != nil && !contains(scope, l.Unit) {
		return Lead{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	rows, err := q.Query(ctx, `SELECT lead_id, unit, officer, source, via, registered_at FROM lead
		WHERE merged_into = $1 ORDER BY registered_at, lead_id`, id)
	if err != nil {
		return Lead{}, fmt.Errorf("lead: duplicates of %s: %w", id, err)
	}
	l.Duplicates, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Link, error) {
		var k Link
		return k, r.Scan(&k.LeadID, &k.Unit, &k.Officer, &k.Source, &k.Via, &k.RegisteredAt)
	})
	if err != nil {
		return Lead{}, fmt.Errorf("lead: duplicates of %s: %w", id, err)
	}
	return l, nil
}

// Filter selects leads.
type Filter struct {
	Scope    []string // the caller's units; nil = all, empty = none
	Category string
	// Primary lists primary leads only (duplicates are reached through
	// their primary).
	Primary bool
	Before  string // keyset: leads with a lower number
	Limit   int    // default 100, at most 1000
}

// List returns the leads f selects, highest number first, without their
// duplicates.
func List(ctx context.Context, q store.Querier, f Filter) ([]Lead, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	if f.Scope != nil && len(f.Scope) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM lead
		WHERE ($1::text[] IS NULL OR unit = ANY($1)) AND ($2 = '' OR category = $2) AND (NOT $3 OR merged_into IS NULL)
			AND ($4 = '' OR lead_id < $4)
		ORDER BY lead_id DESC LIMIT $5`, f.Scope, f.Category, f.Primary, f.Before, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("lead: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lead, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("lead: list: %w", err)
	}
	return out, nil
}

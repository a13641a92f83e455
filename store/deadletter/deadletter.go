// Package deadletter keeps the messages the hub could not process or deliver:
// every envelope rejected without an answer (envelope.md steps 1-2: malformed,
// unknown signing key, bad signature) and every message that could not be
// handled or delivered, with its exact bytes, the code and the reason. Nothing
// received is ever dropped silently.
//
// Operators list, inspect, resolve and replay dead letters (zhianhub dlq).
// Replay republishes the exact bytes to the route recorded with the letter,
// so the message goes through the hub's normal inbound path again, where inbox
// de-duplication makes a replay safe.
//
// Put writes a letter with any store.Querier, so that a caller can make it
// part of its own transaction. A letter with Security set must also raise a
// security event in the audit chain: Record does both; a caller that used
// Put in its own transaction calls RaiseSecurityEvent after the commit.
//
// The raw bytes are personal data at rest: besides sealed envelopes (already
// encrypted), a letter may hold a module's plain JSON event rejected by the
// ingress, portal or push route (a lead's free text, names, ID numbers). Put
// stores them only encrypted with the hub's field encryption (Config.Cipher,
// SM4-GCM, additional data RawAAD(id)); Get, and so Replay and
// "zhianhub dlq show", decrypt them. Everything else of a letter (source,
// route, envelope id, sender, kind, code, reason) is metadata and stays in
// clear, so that List, Count and Stats need no key.
//
// Decisions:
//   - Put takes the letter's id from the id sequence before it inserts, so
//     that the ciphertext is bound to its row: a ciphertext copied to another
//     row does not decrypt. The insert is then a write nobody reads the
//     result of (store.ExecLater): in a pipelined transaction Put still
//     costs one round trip, outside one two, and letters are rare.
//   - Every letter is encrypted, envelopes too: telling personal data from
//     the rest would mean parsing hostile bytes, and a letter's bytes are
//     whatever arrived.
//   - raw_size keeps the size of the message itself, so that Size (List) is
//     the message's size, not the ciphertext's. Letters stored before the
//     encryption (raw_encrypted false, migration 00021) are read as they are.
//   - The security event of a letter (SecurityEntry) records the size and the
//     SM3 hash of the plaintext bytes, as before: it is computed from the
//     letter as given to Put.
//   - Has, the de-duplication of redelivered messages, cannot compare the
//     bytes in SQL any more (each encryption differs): it selects the letters
//     with the same metadata and size and decrypts those, few in practice.
package deadletter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"zhianhub/crypto"
	"zhianhub/store"
	"zhianhub/store/audit"
)

// Errors.
var (
	// ErrNotFound reports an id with no dead letter.
	ErrNotFound = errors.New("deadletter: not found")
	// ErrInvalidLetter reports a letter that Put refuses.
	ErrInvalidLetter = errors.New("deadletter: invalid letter")
	// ErrNoRoute reports a letter recorded without a route (its bytes could
	// not be read, or it did not come from a bus): it cannot be replayed.
	ErrNoRoute = errors.New("deadletter: letter has no route and cannot be replayed")
	// ErrAlreadyResolved reports a Resolve of a resolved letter.
	ErrAlreadyResolved = errors.New("deadletter: already resolved")
	// ErrNoAuditor reports a security event with no Auditor configured.
	ErrNoAuditor = errors.New("deadletter: no auditor configured for security events")
)

// Field limits. Longer values are cut (at a UTF-8 boundary) by Put rather
// than refused, so that a hostile message can always be recorded.
const (
	// MaxIdentLen bounds Source, Exchange, RoutingKey, MessageID, Sender and
	// Kind, in bytes (AMQP short strings are at most 255 bytes).
	MaxIdentLen = 255
	// MaxTextLen bounds Reason, Note and ResolvedBy, in bytes.
	MaxTextLen = 8192
)

// Security event of the audit chain.
const (
	// ActionSecurity is the audit action of a security dead letter.
	ActionSecurity = "security.dead_letter"
)

var codeRe = regexp.MustCompile(`^E[0-9]{3}$`)

// SecurityCode reports whether code is one of the envelope checks of steps
// 1-2 (E100 malformed, E101 version, E110 bad signature, E111 unknown signing
// key): such an envelope is not answered, and its dead letter is a security
// event.
func SecurityCode(code string) bool {
	switch code {
	case "E100", "E101", "E110", "E111":
		return true
	}
	return false
}

// Letter is one dead letter.
type Letter struct {
	// ID is assigned by Put.
	ID int64 `json:"id"`
	// At is when the letter was recorded; the database clock when zero.
	At time.Time `json:"at"`
	// Source says where the message came from, e.g. "amqp:node.310000000000".
	Source string `json:"source"`
	// Exchange and RoutingKey are where a replay publishes the message
	// (e.g. "mps.bus", "to.310000000000.keyperson.register"); both empty
	// when it cannot be replayed.
	Exchange   string `json:"exchange"`
	RoutingKey string `json:"routing_key"`
	// MessageID is the envelope id if it could be read, else "".
	MessageID string `json:"message_id"`
	// Sender is the envelope's from if it could be read, else "".
	Sender string `json:"sender"`
	// Kind is the envelope's kind if it could be read, else "".
	Kind string `json:"kind"`
	// Raw is the message exactly as received or sent. List leaves it nil;
	// Get loads it (decrypted). It is stored only encrypted.
	Raw []byte `json:"raw,omitempty"`
	// Size is len(Raw), the message's size, also set by List.
	Size int `json:"size"`
	// Code is the error code, E100-E199.
	Code string `json:"code"`
	// Reason explains Code; required.
	Reason string `json:"reason"`
	// Security marks a failure of envelope steps 1-2 (see SecurityCode).
	Security bool `json:"security"`
	// ReplayCount counts successful replays; LastReplayedAt is the last one.
	ReplayCount    int       `json:"replay_count"`
	LastReplayedAt time.Time `json:"last_replayed_at,omitzero"`
	// ResolvedAt, ResolvedBy and Note record an operator closing the letter.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// Resolved reports whether an operator closed the letter.
func (l Letter) Resolved() bool { return !l.ResolvedAt.IsZero() }

// HasRoute reports whether the letter can be replayed.
func (l Letter) HasRoute() bool { return l.Exchange != "" || l.RoutingKey != "" }

// Filter selects letters for List and Count. Zero fields select everything.
type Filter struct {
	// Code selects one error code.
	Code string
	// Since (inclusive) and Until (exclusive) bound At.
	Since, Until time.Time
	// Unresolved selects the letters not yet resolved.
	Unresolved bool
	// Security, when set, selects security letters (true) or the others.
	Security *bool
	// Limit is the most letters List returns: DefaultLimit when 0, at most
	// MaxLimit. Count ignores it.
	Limit int
	// BeforeID selects letters with a smaller id: pass the last id of a page
	// to get the next one.
	BeforeID int64
}

// List limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Cipher encrypts the raw bytes at rest, each value bound to its place by
// aad; *fieldenc.Keyring (SM4-GCM under the hub's data keys) satisfies it.
type Cipher interface {
	Encrypt(plaintext, aad []byte) ([]byte, error)
	Decrypt(ciphertext, aad []byte) ([]byte, error)
}

// RawAAD is the additional data binding the encrypted raw bytes of letter id
// to its row.
func RawAAD(id int64) []byte { return []byte("dead_letter.raw/" + strconv.FormatInt(id, 10)) }

// Auditor appends to the audit chain; *audit.Writer satisfies it.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
}

// Config configures a Store.
type Config struct {
	// Cipher encrypts the raw bytes of every letter Put stores and decrypts
	// them for Get; required.
	Cipher Cipher
	// Auditor receives the security events; optional, but RaiseSecurityEvent
	// and Record of a security letter fail without it.
	Auditor Auditor
	// Actor is the audit actor of security events, normally this node's
	// code. Default "system".
	Actor string
}

func (c *Config) setDefaults() {
	if c.Actor == "" {
		c.Actor = "system"
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Cipher == nil {
		return errors.New("deadletter: invalid config: Cipher is required (the raw bytes are stored encrypted)")
	}
	if strings.TrimSpace(c.Actor) == "" {
		return errors.New("deadletter: invalid config: Actor must not be blank")
	}
	return nil
}

// Store reads and writes dead letters.
type Store struct {
	db  store.Querier
	cfg Config
}

// New returns a Store on db (normally a *pgxpool.Pool).
func New(db store.Querier, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("deadletter: nil database")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{db: db, cfg: cfg}, nil
}

// Put records l with q, which may be a transaction of the caller, and returns
// its id. Code must be E followed by three digits and Reason must not be
// blank; the other text fields are made storable (invalid UTF-8 and NUL
// replaced, over-long values cut) rather than refused. The raw bytes are
// stored encrypted (RawAAD of the new id). The insert may be held back
// (store.ExecLater, when q is a store.Pipe): its error then surfaces at the
// next statement of the transaction. Put raises no security event: see
// RaiseSecurityEvent and Record.
func (s *Store) Put(ctx context.Context, q store.Querier, l Letter) (int64, error) {
	if !codeRe.MatchString(l.Code) {
		return 0, fmt.Errorf("%w: code %q is not E followed by three digits", ErrInvalidLetter, l.Code)
	}
	if strings.TrimSpace(l.Reason) == "" {
		return 0, fmt.Errorf("%w: reason is required", ErrInvalidLetter)
	}
	raw := l.Raw
	if raw == nil {
		raw = []byte{} // an empty body is still a message
	}
	var at *time.Time
	if !l.At.IsZero() {
		at = &l.At
	}
	var id int64
	if err := q.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('dead_letter', 'id'))`).Scan(&id); err != nil {
		return 0, fmt.Errorf("deadletter: put: take an id: %w", err)
	}
	sealed, err := s.cfg.Cipher.Encrypt(raw, RawAAD(id))
	if err != nil {
		return 0, fmt.Errorf("deadletter: put: encrypt the raw bytes: %w", err)
	}
	err = store.ExecLater(ctx, q, `
		INSERT INTO dead_letter (id, at, source, exchange, routing_key, message_id, sender, kind, raw, raw_encrypted, raw_size,
			code, reason, security)
		VALUES ($1, coalesce($2, clock_timestamp()), $3, $4, $5, $6, $7, $8, $9, true, $10, $11, $12, $13)`,
		id, at, clean(l.Source, MaxIdentLen), clean(l.Exchange, MaxIdentLen), clean(l.RoutingKey, MaxIdentLen),
		clean(l.MessageID, MaxIdentLen), clean(l.Sender, MaxIdentLen), clean(l.Kind, MaxIdentLen),
		sealed, len(raw), l.Code, clean(l.Reason, MaxTextLen), l.Security,
	)
	if err != nil {
		return 0, fmt.Errorf("deadletter: put: %w", err)
	}
	return id, nil
}

// Record puts l with the Store's database and, if l.Security, raises the
// security event. If the letter was stored but the event failed, Record
// returns its id with the error.
func (s *Store) Record(ctx context.Context, l Letter) (int64, error) {
	id, err := s.Put(ctx, s.db, l)
	if err != nil {
		return 0, err
	}
	if l.Security {
		if err := s.RaiseSecurityEvent(ctx, id, l); err != nil {
			return id, err
		}
	}
	return id, nil
}

// RaiseSecurityEvent appends the security event of letter id (l as given to
// Put) to the audit chain.
func (s *Store) RaiseSecurityEvent(ctx context.Context, id int64, l Letter) error {
	if s.cfg.Auditor == nil {
		return fmt.Errorf("%w (dead letter %d)", ErrNoAuditor, id)
	}
	if _, err := s.cfg.Auditor.Append(ctx, SecurityEntry(s.cfg.Actor, id, l)); err != nil {
		return fmt.Errorf("deadletter: security event for dead letter %d: %w", id, err)
	}
	return nil
}

// SecurityEntry is the audit entry of the security event of letter id: the
// code as result, the reason, the envelope id as correlation id, and in
// the detail where it came from and the SM3 hash of its bytes.
func SecurityEntry(actor string, id int64, l Letter) audit.Entry {
	return audit.Entry{
		Actor:         actor,
		Action:        ActionSecurity,
		Object:        strconv.FormatInt(id, 10),
		Result:        l.Code,
		Reason:        clean(l.Reason, MaxTextLen),
		CorrelationID: clean(l.MessageID, MaxIdentLen),
		Detail: map[string]any{
			"source":      clean(l.Source, MaxIdentLen),
			"sender":      clean(l.Sender, MaxIdentLen),
			"kind":        clean(l.Kind, MaxIdentLen),
			"exchange":    clean(l.Exchange, MaxIdentLen),
			"routing_key": clean(l.RoutingKey, MaxIdentLen),
			"size":        len(l.Raw),
			"sm3":         crypto.SM3Hex(l.Raw),
		},
	}
}

const columns = `id, at, source, exchange, routing_key, message_id, sender, kind, coalesce(raw_size, octet_length(raw)), code, reason,
	security, replay_count, last_replayed_at, resolved_at, resolved_by, note`

func scanLetter(row pgx.Row, l *Letter, extra ...any) error {
	var replayed, resolved *time.Time
	dst := append([]any{&l.ID, &l.At, &l.Source, &l.Exchange, &l.RoutingKey, &l.MessageID, &l.Sender, &l.Kind, &l.Size,
		&l.Code, &l.Reason, &l.Security, &l.ReplayCount, &replayed, &resolved, &l.ResolvedBy, &l.Note}, extra...)
	if err := row.Scan(dst...); err != nil {
		return err
	}
	if replayed != nil {
		l.LastReplayedAt = *replayed
	}
	if resolved != nil {
		l.ResolvedAt = *resolved
	}
	return nil
}

// Get returns letter id with its raw bytes, decrypted.
func (s *Store) Get(ctx context.Context, id int64) (Letter, error) {
	var l Letter
	var encrypted bool
	err := scanLetter(s.db.QueryRow(ctx, `SELECT `+columns+`, raw, raw_encrypted FROM dead_letter WHERE id = $1`, id),
		&l, &l.Raw, &encrypted)
	if errors.Is(err, pgx.ErrNoRows) {
		return Letter{}, fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("deadletter: get %d: %w", id, err)
	}
	if l.Raw, err = s.open(id, l.Raw, encrypted); err != nil {
		return Letter{}, fmt.Errorf("deadletter: get %d: %w", id, err)
	}
	return l, nil
}

// open returns the raw bytes of letter id as stored: decrypted when
// encrypted, never nil (an empty body is still a message).
func (s *Store) open(id int64, stored []byte, encrypted bool) ([]byte, error) {
	if !encrypted {
		if stored == nil {
			stored = []byte{}
		}
		return stored, nil
	}
	raw, err := s.cfg.Cipher.Decrypt(stored, RawAAD(id))
	if err != nil {
		return nil, fmt.Errorf("decrypt the raw bytes: %w", err)
	}
	if raw == nil {
		raw = []byte{}
	}
	return raw, nil
}

// Has reports whether a letter like l is stored already: the same source,
// route, envelope id, sender, kind and code (as Put would store them) and
// the same raw bytes. The routes use it not to keep a message twice when the
// broker redelivers it. It reads with q, which may be a transaction of the
// caller. A stored letter whose bytes do not decrypt is not like l (a second
// letter is harmless; failing would hold the message back).
func (s *Store) Has(ctx context.Context, q store.Querier, l Letter) (bool, error) {
	rows, err := q.Query(ctx, `
		SELECT id, raw, raw_encrypted FROM dead_letter
		WHERE source = $1 AND exchange = $2 AND routing_key = $3 AND message_id = $4 AND sender = $5 AND kind = $6
		  AND code = $7 AND coalesce(raw_size, octet_length(raw)) = $8
		ORDER BY id DESC`,
		clean(l.Source, MaxIdentLen), clean(l.Exchange, MaxIdentLen), clean(l.RoutingKey, MaxIdentLen),
		clean(l.MessageID, MaxIdentLen), clean(l.Sender, MaxIdentLen), clean(l.Kind, MaxIdentLen),
		l.Code, len(l.Raw))
	if err != nil {
		return false, fmt.Errorf("deadletter: lookup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var stored []byte
		var encrypted bool
		if err := rows.Scan(&id, &stored, &encrypted); err != nil {
			return false, fmt.Errorf("deadletter: lookup: %w", err)
		}
		raw, err := s.open(id, stored, encrypted)
		if err == nil && bytes.Equal(raw, l.Raw) {
			return true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("deadletter: lookup: %w", err)
	}
	return false, nil
}

// where renders the conditions of f.
func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Code != "" {
		add("code = ?", f.Code)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until)
	}
	if f.Unresolved {
		conds = append(conds, "resolved_at IS NULL")
	}
	if f.Security != nil {
		add("security = ?", *f.Security)
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// List returns the letters f selects, newest (highest id) first, without
// their raw bytes (Size is set). For the next page set f.BeforeID to the
// last id returned.
func (s *Store) List(ctx context.Context, f Filter) ([]Letter, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("deadletter: list: negative limit %d", limit)
	case limit == 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	where, args := f.where()
	args = append(args, limit)
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM dead_letter`+where+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("deadletter: list: %w", err)
	}
	defer rows.Close()
	var out []Letter
	for rows.Next() {
		var l Letter
		if err := scanLetter(rows, &l); err != nil {
			return nil, fmt.Errorf("deadletter: list: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deadletter: list: %w", err)
	}
	return out, nil
}

// Count returns how many letters f selects (f.Limit is ignored).
func (s *Store) Count(ctx context.Context, f Filter) (int64, error) {
	where, args := f.where()
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM dead_letter`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("deadletter: count: %w", err)
	}
	return n, nil
}

// Stats returns the numbers to watch for dead-letter growth: all letters,
// the unresolved ones, and those recorded in the last hour (database clock).
func (s *Store) Stats(ctx context.Context) (total, unresolved, lastHour int64, err error) {
	err = s.db.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE resolved_at IS NULL),
		       count(*) FILTER (WHERE at >= clock_timestamp() - interval '1 hour')
		FROM dead_letter`).Scan(&total, &unresolved, &lastHour)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("deadletter: stats: %w", err)
	}
	return total, unresolved, lastHour, nil
}

// MarkReplayed counts one successful replay of letter id.
func (s *Store) MarkReplayed(ctx context.Context, id int64) error {
	_, _, err := s.markReplayed(ctx, id)
	return err
}

func (s *Store) markReplayed(ctx context.Context, id int64) (count int, at time.Time, err error) {
	err = s.db.QueryRow(ctx, `
		UPDATE dead_letter SET replay_count = replay_count + 1, last_replayed_at = clock_timestamp()
		WHERE id = $1 RETURNING replay_count, last_replayed_at`, id).Scan(&count, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("deadletter: mark %d replayed: %w", id, err)
	}
	return count, at, nil
}

// Resolve closes letter id: by (required) is who, note why. A resolved
// letter stays resolved: resolving it again is ErrAlreadyResolved.
func (s *Store) Resolve(ctx context.Context, id int64, by, note string) error {
	if strings.TrimSpace(by) == "" {
		return fmt.Errorf("deadletter: resolve %d: who resolves is required", id)
	}
	tag, err := s.db.Exec(ctx, `
		UPDATE dead_letter SET resolved_at = clock_timestamp(), resolved_by = $2, note = $3
		WHERE id = $1 AND resolved_at IS NULL`,
		id, clean(by, MaxTextLen), clean(note, MaxTextLen))
	if err != nil {
		return fmt.Errorf("deadletter: resolve %d: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dead_letter WHERE id = $1)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("deadletter: resolve %d: %w", id, err)
	}
	if !exists {
		return fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	return fmt.Errorf("%w: id %d", ErrAlreadyResolved, id)
}

// clean makes s storable as PostgreSQL text: invalid UTF-8 and NUL become
// U+FFFD, and s is cut to at most max bytes at a rune boundary.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

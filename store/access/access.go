// Package access keeps the hub's local access control (migration 00008):
// certificate bindings (an officer certificate's serial and issuer DN to a
// user id and unit, managed by the security administrator), locally granted
// roles, and locked accounts.
//
// Writes take the caller's transaction so that the change commits together
// with its audit entry (audit.Stage); reads take any store.Querier.
package access

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"zhianhub/store"
)

var (
	// ErrNotFound reports an unknown binding.
	ErrNotFound = errors.New("access: not found")
	// ErrConflict reports a change that conflicts with the stored state: a
	// certificate bound already, a binding revoked already.
	ErrConflict = errors.New("access: conflict")
	// ErrInvalid reports an argument the tables refuse.
	ErrInvalid = errors.New("access: invalid argument")
)

var (
	userRe   = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	unitRe   = regexp.MustCompile(`^[0-9]{12}$`)
	roleRe   = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
	serialRe = regexp.MustCompile(`^[0-9A-F]{1,64}$`)
)

// NormalizeSerial returns a certificate serial number as stored: upper-case
// hex without leading zeros. It accepts hex with optional "0x", colons or
// spaces; "" when s is not such a number.
func NormalizeSerial(s string) string {
	s = strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = strings.ToUpper(strings.TrimLeft(s, "0"))
	if s == "" {
		s = "0"
	}
	if !serialRe.MatchString(s) {
		return ""
	}
	return s
}

// SerialHex renders a certificate serial number as stored.
func SerialHex(n *big.Int) string {
	if n == nil || n.Sign() < 0 {
		return ""
	}
	return strings.ToUpper(n.Text(16))
}

// Binding binds a certificate (serial, issuer DN) to a user.
type Binding struct {
	ID           int64
	Serial       string
	Issuer       string
	User         string
	Unit         string
	Note         string
	CreatedBy    string
	CreatedAt    time.Time
	RevokedAt    *time.Time
	RevokedBy    string
	RevokeReason string
}

// Active reports whether the binding is in force.
func (b Binding) Active() bool { return b.RevokedAt == nil }

const bindingCols = `id, serial, issuer, user_id, unit, note, created_by, created_at, revoked_at,
	coalesce(revoked_by, ''), coalesce(revoke_reason, '')`

func scanBinding(row pgx.CollectableRow) (Binding, error) {
	var b Binding
	err := row.Scan(&b.ID, &b.Serial, &b.Issuer, &b.User, &b.Unit, &b.Note, &b.CreatedBy, &b.CreatedAt, &b.RevokedAt,
		&b.RevokedBy, &b.RevokeReason)
	return b, err
}

func validBinding(b Binding) error {
	var errs []error
	if !serialRe.MatchString(b.Serial) {
		errs = append(errs, fmt.Errorf("serial %q is not upper-case hex", b.Serial))
	}
	if b.Issuer == "" || len(b.Issuer) > 1024 {
		errs = append(errs, errors.New("issuer must be 1-1024 bytes"))
	}
	if !userRe.MatchString(b.User) {
		errs = append(errs, fmt.Errorf("user %q is not a user id", b.User))
	}
	if !unitRe.MatchString(b.Unit) {
		errs = append(errs, fmt.Errorf("unit %q is not 12 digits", b.Unit))
	}
	if b.CreatedBy == "" {
		errs = append(errs, errors.New("created by nobody"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// ActiveBinding returns the binding in force of the certificate (serial
// normalized, issuer DN), or ErrNotFound.
func ActiveBinding(ctx context.Context, q store.Querier, serial, issuer string) (Binding, error) {
	rows, _ := q.Query(ctx, `SELECT `+bindingCols+` FROM cert_binding
		WHERE serial = $1 AND issuer = $2 AND revoked_at IS NULL`, serial, issuer)
	b, err := pgx.CollectExactlyOneRow(rows, scanBinding)
	if errors.Is(err, pgx.ErrNoRows) {
		return Binding{}, ErrNotFound
	}
	if err != nil {
		return Binding{}, fmt.Errorf("access: binding: %w", err)
	}
	return b, nil
}

// GetBinding returns the binding id, in force or not, or ErrNotFound.
func GetBinding(ctx context.Context, q store.Querier, id int64) (Binding, error) {
	rows, _ := q.Query(ctx, `SELECT `+bindingCols+` FROM cert_binding WHERE id = $1`, id)
	b, err := pgx.CollectExactlyOneRow(rows, scanBinding)
	if errors.Is(err, pgx.ErrNoRows) {
		return Binding{}, ErrNotFound
	}
	if err != nil {
		return Binding{}, fmt.Errorf("access: binding %d: %w", id, err)
	}
	return b, nil
}

// BindingFilter selects bindings for ListBindings.
type BindingFilter struct {
	User          string // "" any
	IncludeRevoke bool   // also revoked bindings
	Limit         int    // 0: 100; at most 1000
	After         int64  // keyset cursor: id > After
}

// ListBindings returns bindings by id.
func ListBindings(ctx context.Context, q store.Querier, f BindingFilter) ([]Binding, error) {
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, f.Limit)
	}
	rows, _ := q.Query(ctx, `SELECT `+bindingCols+` FROM cert_binding
		WHERE ($1 = '' OR user_id = $1) AND ($2 OR revoked_at IS NULL) AND id > $3
		ORDER BY id LIMIT $4`, f.User, f.IncludeRevoke, f.After, f.Limit)
	out, err := pgx.CollectRows(rows, scanBinding)
	if err != nil {
		return nil, fmt.Errorf("access: list bindings: %w", err)
	}
	return out, nil
}

// CreateBinding stores b (ID, RevokedAt… ignored) in force from b.CreatedAt.
// A certificate that has a binding in force already is ErrConflict.
func CreateBinding(ctx context.Context, tx pgx.Tx, b Binding) (Binding, error) {
	if err := validBinding(b); err != nil {
		return Binding{}, err
	}
	rows, _ := tx.Query(ctx, `INSERT INTO cert_binding (serial, issuer, user_id, unit, note, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+bindingCols,
		b.Serial, b.Issuer, b.User, b.Unit, b.Note, b.CreatedBy, b.CreatedAt)
	out, err := pgx.CollectExactlyOneRow(rows, scanBinding)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return Binding{}, fmt.Errorf("%w: the certificate is bound already", ErrConflict)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("access: create binding: %w", err)
	}
	return out, nil
}

// RevokeBinding ends binding id: ErrNotFound if there is none,
// ErrConflict if it is revoked already.
func RevokeBinding(ctx context.Context, tx pgx.Tx, id int64, by, reason string, at time.Time) (Binding, error) {
	if by == "" || reason == "" {
		return Binding{}, fmt.Errorf("%w: a revocation needs who and why", ErrInvalid)
	}
	rows, _ := tx.Query(ctx, `UPDATE cert_binding SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
		WHERE id = $1 AND revoked_at IS NULL RETURNING `+bindingCols, id, at, by, reason)
	out, err := pgx.CollectExactlyOneRow(rows, scanBinding)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := GetBinding(ctx, tx, id); gerr != nil {
			return Binding{}, gerr
		}
		return Binding{}, fmt.Errorf("%w: binding %d is revoked already", ErrConflict, id)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("access: revoke binding %d: %w", id, err)
	}
	return out, nil
}

// Grant is a locally granted role.
type Grant struct {
	User      string
	Role      string
	GrantedBy string
	GrantedAt time.Time
	Reason    string
}

func scanGrant(row pgx.CollectableRow) (Grant, error) {
	var g Grant
	err := row.Scan(&g.User, &g.Role, &g.GrantedBy, &g.GrantedAt, &g.Reason)
	return g, err
}

// Grants returns the roles granted to user ("" every user's), by user and
// role.
func Grants(ctx context.Context, q store.Querier, user string) ([]Grant, error) {
	rows, _ := q.Query(ctx, `SELECT user_id, role, granted_by, granted_at, reason FROM user_role
		WHERE $1 = '' OR user_id = $1 ORDER BY user_id, role LIMIT 10000`, user)
	out, err := pgx.CollectRows(rows, scanGrant)
	if err != nil {
		return nil, fmt.Errorf("access: grants: %w", err)
	}
	return out, nil
}

// LockUser serializes the role changes of one user until tx ends, so that
// rules across a user's roles (GrantRole's callers check them) hold under
// concurrency.
func LockUser(ctx context.Context, tx pgx.Tx, user string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('zhianhub.user_role/' || $1, 0))`, user); err != nil {
		return fmt.Errorf("access: lock user: %w", err)
	}
	return nil
}

// GrantRole grants role to g.User; granting a role held already is
// ErrConflict.
func GrantRole(ctx context.Context, tx pgx.Tx, g Grant) error {
	if !userRe.MatchString(g.User) || !roleRe.MatchString(g.Role) || g.GrantedBy == "" {
		return fmt.Errorf("%w: grant %q to %q by %q", ErrInvalid, g.Role, g.User, g.GrantedBy)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO user_role (user_id, role, granted_by, granted_at, reason) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT DO NOTHING`, g.User, g.Role, g.GrantedBy, g.GrantedAt, g.Reason)
	if err != nil {
		return fmt.Errorf("access: grant: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s holds %s already", ErrConflict, g.User, g.Role)
	}
	return nil
}

// RevokeRole takes role from user and returns the grant it ends, or
// ErrNotFound.
func RevokeRole(ctx context.Context, tx pgx.Tx, user, role string) (Grant, error) {
	rows, _ := tx.Query(ctx, `DELETE FROM user_role WHERE user_id = $1 AND role = $2
		RETURNING user_id, role, granted_by, granted_at, reason`, user, role)
	g, err := pgx.CollectExactlyOneRow(rows, scanGrant)
	if errors.Is(err, pgx.ErrNoRows) {
		return Grant{}, ErrNotFound
	}
	if err != nil {
		return Grant{}, fmt.Errorf("access: revoke role: %w", err)
	}
	return g, nil
}

// Lock is a locked account.
type Lock struct {
	User     string
	Reason   string
	LockedBy string
	LockedAt time.Time
}

func scanLock(row pgx.CollectableRow) (Lock, error) {
	var l Lock
	err := row.Scan(&l.User, &l.Reason, &l.LockedBy, &l.LockedAt)
	return l, err
}

// Locks returns the locked accounts by user.
func Locks(ctx context.Context, q store.Querier) ([]Lock, error) {
	rows, _ := q.Query(ctx, `SELECT user_id, reason, locked_by, locked_at FROM account_lock ORDER BY user_id LIMIT 10000`)
	out, err := pgx.CollectRows(rows, scanLock)
	if err != nil {
		return nil, fmt.Errorf("access: locks: %w", err)
	}
	return out, nil
}

// LockAccount locks l.User; a locked account is ErrConflict.
func LockAccount(ctx context.Context, tx pgx.Tx, l Lock) error {
	if !userRe.MatchString(l.User) || l.Reason == "" || l.LockedBy == "" {
		return fmt.Errorf("%w: lock %q by %q", ErrInvalid, l.User, l.LockedBy)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO account_lock (user_id, reason, locked_by, locked_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, l.User, l.Reason, l.LockedBy, l.LockedAt)
	if err != nil {
		return fmt.Errorf("access: lock: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s is locked already", ErrConflict, l.User)
	}
	return nil
}

// UnlockAccount unlocks user and returns the lock it ends, or ErrNotFound.
func UnlockAccount(ctx context.Context, tx pgx.Tx, user string) (Lock, error) {
	rows, _ := tx.Query(ctx, `DELETE FROM account_lock WHERE user_id = $1 RETURNING user_id, reason, locked_by, locked_at`, user)
	l, err := pgx.CollectExactlyOneRow(rows, scanLock)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lock{}, ErrNotFound
	}
	if err != nil {
		return Lock{}, fmt.Errorf("access: unlock: %w", err)
	}
	return l, nil
}

// Of returns user's local roles and lock ("" reason when not locked) in
// one query.
func Of(ctx context.Context, q store.Querier, user string) (roles []string, lockReason string, locked bool, err error) {
	var reason *string
	err = q.QueryRow(ctx, `SELECT coalesce((SELECT array_agg(role ORDER BY role) FROM user_role WHERE user_id = $1), '{}'),
		(SELECT reason FROM account_lock WHERE user_id = $1)`, user).Scan(&roles, &reason)
	if err != nil {
		return nil, "", false, fmt.Errorf("access: of %s: %w", user, err)
	}
	if reason != nil {
		return roles, *reason, true, nil
	}
	return roles, "", false, nil
}

// Package inbox keeps the portal's message reminders (消息提醒): items
// addressed to one user or to a unit, each user's read marks, unread counts,
// and a notification at commit for live streams.
//
// Producers call Deliver in their own transaction (a dispatch order and the
// reminders of its target units commit together). Delivery is idempotent:
// an item whose (recipient, DedupKey) exists already is skipped, so that a
// redelivered message or a repeated rule evaluation never reminds twice.
//
// A unit's item is seen by the users whose own unit it is (not by the units
// above: the inbox is a to-do list, not a view of the unit tree), or, when
// it names audience roles, by those of them holding one of the roles. Each
// user marks items read for themselves. Withdraw hides the items about an
// object (a withdrawn notice) without deleting them: their dedup keys stay
// taken, so that a repeated delivery does not bring them back.
//
// Listener is the one PostgreSQL connection of a process that listens on
// Channel and wakes the live streams of the viewers a delivery concerns.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// Recipient kinds.
const (
	ToUser = "user"
	ToUnit = "unit"
)

// Channel is the PostgreSQL notification channel of deliveries; the payload
// is "<recipient kind>:<recipient>".
const Channel = "inbox"

// Item is one reminder.
type Item struct {
	ID            int64
	RecipientKind string // ToUser or ToUnit
	Recipient     string // a user id or a unit code
	Kind          string // what it is about: "notice", "dispatch", "warning", "push", …
	Ref           string // the number of the object it is about
	Title         string // zh-CN, 1-200 characters
	Body          string
	Level         int // 0 (none) or 1-4
	// DedupKey makes delivery idempotent per recipient; default Kind+":"+Ref.
	DedupKey string
	// Roles, for a unit's item, limits it to the users of the unit holding
	// one of them (empty: every user of the unit).
	Roles     []string
	CreatedAt time.Time

	// Read is set by List for the viewing user.
	Read bool
}

// ErrInvalid wraps an item that cannot be delivered.
var ErrInvalid = errors.New("inbox: invalid item")

func (it *Item) check() error {
	if it.DedupKey == "" && it.Ref != "" {
		it.DedupKey = it.Kind + ":" + it.Ref
	}
	switch {
	case it.RecipientKind != ToUser && it.RecipientKind != ToUnit:
		return fmt.Errorf("%w: recipient kind %q", ErrInvalid, it.RecipientKind)
	case it.Recipient == "":
		return fmt.Errorf("%w: no recipient", ErrInvalid)
	case it.Kind == "":
		return fmt.Errorf("%w: no kind", ErrInvalid)
	case it.Title == "" || utf8.RuneCountInString(it.Title) > 200:
		return fmt.Errorf("%w: title must be 1-200 characters", ErrInvalid)
	case it.Level < 0 || it.Level > 4:
		return fmt.Errorf("%w: level %d", ErrInvalid, it.Level)
	case it.DedupKey == "":
		return fmt.Errorf("%w: no dedup key and no ref", ErrInvalid)
	case len(it.Roles) > 0 && it.RecipientKind != ToUnit:
		return fmt.Errorf("%w: audience roles on a user's item", ErrInvalid)
	}
	for _, r := range it.Roles {
		if r == "" || strings.Contains(r, ",") {
			return fmt.Errorf("%w: role %q", ErrInvalid, r)
		}
	}
	return nil
}

// Deliver adds items in the caller's transaction and returns the ids of
// those that were new (in the order given); existing ones are skipped. Each
// new item notifies Channel at commit.
func Deliver(ctx context.Context, q store.Querier, items ...Item) ([]int64, error) {
	if len(items) == 0 {
		return nil, nil
	}
	n := len(items)
	kinds, recips, ks, refs, titles, bodies, keys, roles := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	levels := make([]int16, n)
	for i := range items {
		it := items[i]
		if err := it.check(); err != nil {
			return nil, err
		}
		kinds[i], recips[i], ks[i], refs[i], titles[i], bodies[i], keys[i], levels[i], roles[i] =
			it.RecipientKind, it.Recipient, it.Kind, it.Ref, it.Title, it.Body, it.DedupKey, int16(it.Level), strings.Join(it.Roles, ",")
	}
	rows, err := q.Query(ctx, `WITH ins AS (
		INSERT INTO inbox_item (recipient_kind, recipient, kind, ref, title, body, level, dedup_key, audience_roles)
		SELECT a, b, c, d, e, f, g, h, coalesce(string_to_array(nullif(r, ''), ','), '{}')
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::text[], $9::text[]) WITH ORDINALITY AS u(a, b, c, d, e, f, g, h, r, ord)
		ORDER BY ord
		ON CONFLICT (recipient_kind, recipient, dedup_key) DO NOTHING
		RETURNING id, recipient_kind, recipient)
	SELECT id, pg_notify('`+Channel+`', recipient_kind || ':' || recipient) IS NULL FROM ins ORDER BY id`,
		kinds, recips, ks, refs, titles, bodies, levels, keys, roles)
	if err != nil {
		return nil, fmt.Errorf("inbox: deliver: %w", err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (int64, error) {
		var id int64
		var ignored bool
		return id, r.Scan(&id, &ignored)
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: deliver: %w", err)
	}
	return ids, nil
}

// Viewer is whose inbox is read: a user, their own unit and their roles
// (for the unit's items addressed to some roles only).
type Viewer struct {
	User  string
	Unit  string
	Roles []string
}

func (v Viewer) args() []any {
	roles := v.Roles
	if roles == nil {
		roles = []string{}
	}
	return []any{v.User, v.Unit, roles}
}

// Filter selects items of a viewer's inbox.
type Filter struct {
	UnreadOnly bool
	Kind       string // "" = any
	Before     int64  // keyset paging: items with id < Before; 0 = newest
	After      int64  // items with id > After, oldest first (a live stream catching up); not with Before
	Limit      int    // default 50, at most 500
}

// visible is the viewer's part of inbox_item ($1 user, $2 unit, $3 roles).
const visible = `i.withdrawn_at IS NULL AND ((i.recipient_kind = 'user' AND i.recipient = $1)
	OR (i.recipient_kind = 'unit' AND i.recipient = $2 AND (i.audience_roles = '{}' OR i.audience_roles && $3::text[])))`

// List returns the viewer's items, newest first (oldest first with
// f.After), with their read marks.
func List(ctx context.Context, q store.Querier, v Viewer, f Filter) ([]Item, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 500)
	if f.Before > 0 && f.After > 0 {
		return nil, fmt.Errorf("%w: filter with both Before and After", ErrInvalid)
	}
	var where []string
	args := v.args()
	if f.UnreadOnly {
		where = append(where, "r.item_id IS NULL")
	}
	if f.Kind != "" {
		args = append(args, f.Kind)
		where = append(where, fmt.Sprintf("i.kind = $%d", len(args)))
	}
	if f.Before > 0 {
		args = append(args, f.Before)
		where = append(where, fmt.Sprintf("i.id < $%d", len(args)))
	}
	order := "DESC"
	if f.After > 0 {
		args = append(args, f.After)
		where = append(where, fmt.Sprintf("i.id > $%d", len(args)))
		order = "ASC"
	}
	args = append(args, f.Limit)
	sql := `SELECT i.id, i.recipient_kind, i.recipient, i.kind, i.ref, i.title, i.body, i.level, i.dedup_key, i.audience_roles, i.created_at, r.item_id IS NOT NULL
		FROM inbox_item i LEFT JOIN inbox_read r ON r.item_id = i.id AND r.user_id = $1
		WHERE ` + visible
	for _, w := range where {
		sql += " AND " + w
	}
	sql += fmt.Sprintf(" ORDER BY i.id %s LIMIT $%d", order, len(args))
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("inbox: list: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) {
		var it Item
		var level int16
		err := r.Scan(&it.ID, &it.RecipientKind, &it.Recipient, &it.Kind, &it.Ref, &it.Title, &it.Body, &level, &it.DedupKey, &it.Roles, &it.CreatedAt, &it.Read)
		it.Level = int(level)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: list: %w", err)
	}
	return items, nil
}

// Unread counts the viewer's unread items by kind; the total is the sum.
func Unread(ctx context.Context, q store.Querier, v Viewer) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT i.kind, count(*) FROM inbox_item i
		WHERE `+visible+` AND NOT EXISTS (SELECT 1 FROM inbox_read r WHERE r.item_id = i.id AND r.user_id = $1)
		GROUP BY i.kind`, v.args()...)
	if err != nil {
		return nil, fmt.Errorf("inbox: unread: %w", err)
	}
	out := map[string]int{}
	var kind string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&kind, &n}, func() error { out[kind] = n; return nil }); err != nil {
		return nil, fmt.Errorf("inbox: unread: %w", err)
	}
	return out, nil
}

// MarkRead marks the given items of the viewer's inbox read (ids that are
// not in the viewer's inbox are ignored) and returns how many were newly
// marked. No ids marks every item read.
func MarkRead(ctx context.Context, q store.Querier, v Viewer, ids ...int64) (int, error) {
	sql := `INSERT INTO inbox_read (item_id, user_id)
		SELECT i.id, $1 FROM inbox_item i WHERE ` + visible
	args := v.args()
	if len(ids) > 0 {
		sql += ` AND i.id = ANY($4)`
		args = append(args, ids)
	}
	sql += ` ON CONFLICT DO NOTHING`
	tag, err := q.Exec(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("inbox: mark read: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Withdraw hides the items of kind about ref (every recipient's) and
// returns how many it hid. Hidden items stay, with their dedup keys.
func Withdraw(ctx context.Context, q store.Querier, kind, ref string) (int, error) {
	if kind == "" || ref == "" {
		return 0, fmt.Errorf("%w: withdraw needs a kind and a ref", ErrInvalid)
	}
	tag, err := q.Exec(ctx, `UPDATE inbox_item SET withdrawn_at = clock_timestamp()
		WHERE kind = $1 AND ref = $2 AND ref <> '' AND withdrawn_at IS NULL`, kind, ref)
	if err != nil {
		return 0, fmt.Errorf("inbox: withdraw: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ParseNotification splits the payload of a Channel notification.
func ParseNotification(payload string) (kind, recipient string, ok bool) {
	kind, recipient, ok = strings.Cut(payload, ":")
	return kind, recipient, ok && (kind == ToUser || kind == ToUnit) && recipient != ""
}

// Concerns reports whether a notification payload concerns viewer v.
func (v Viewer) Concerns(payload string) bool {
	kind, r, ok := ParseNotification(payload)
	return ok && ((kind == ToUser && r == v.User) || (kind == ToUnit && r == v.Unit))
}

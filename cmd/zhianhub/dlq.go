package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/crypto"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
)

const dlqUsage = `usage:
  zhianhub dlq list [--code E110] [--since RFC3339|DURATION] [--until RFC3339] [--unresolved] [--security] [--limit 50] [--before ID] [--json]
  zhianhub dlq show ID [--raw] [--json]
  zhianhub dlq replay ID | --all-unresolved [--code E199]
  zhianhub dlq resolve ID --note TEXT
every subcommand takes --config FILE (default: env ZHIANHUB_CONFIG, else none)`

// Audit actions of the dlq commands.
const (
	actionDLQReplay  = "dlq.replay"
	actionDLQResolve = "dlq.resolve"
)

// dlqCloseTimeout bounds flushing the audit writer when a command ends.
const dlqCloseTimeout = 30 * time.Second

func runDLQ(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(dlqUsage)}
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, env, args[1:])
	case "show":
		return dlqShow(ctx, env, args[1:])
	case "replay":
		return dlqReplay(ctx, env, args[1:])
	case "resolve":
		return dlqResolve(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, dlqUsage)
		return nil
	}
	return &exitError{code: 2, err: fmt.Errorf("zhianhub dlq: unknown subcommand %q\n%s", args[0], dlqUsage)}
}

func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf("zhianhub dlq: "+format+"\n"+dlqUsage, a...)}
}

// parseInterspersed parses flags placed anywhere among the arguments
// ("show 12 --raw" as well as "show --raw 12") and returns the others.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // everything after -- is positional
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseID parses the one positional argument ID.
func parseID(pos []string) (int64, error) {
	if len(pos) != 1 {
		return 0, usageError("want exactly one dead-letter ID, got %d arguments", len(pos))
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError("ID %q is not a positive number", pos[0])
	}
	return id, nil
}

var dlqCodeRe = regexp.MustCompile(`^E[0-9]{3}$`)

// dlqEnv is what a dlq subcommand opened: close releases it.
type dlqEnv struct {
	pool    *pgxpool.Pool
	letters *deadletter.Store
	audit   *audit.Writer // nil unless requested
	cfg     config.Config
	node    string
	actor   string
}

// dlqNeeds says what a command opens besides the database: the field
// encryption keys to read the raw bytes of letters (stored encrypted), and
// the audit writer. Either needs the node's key store.
type dlqNeeds struct {
	raw   bool
	audit bool
}

// errNoRawKeys reports a command that opened no keys reading raw bytes.
var errNoRawKeys = errors.New("the raw bytes of dead letters are encrypted and this command opened no keys")

// noRawKeys is the cipher of a command that reads no raw bytes (dlq list,
// admins): such a command needs no key store, and a read of raw bytes is
// refused rather than shown encrypted.
type noRawKeys struct{}

func (noRawKeys) Encrypt([]byte, []byte) ([]byte, error) { return nil, errNoRawKeys }
func (noRawKeys) Decrypt([]byte, []byte) ([]byte, error) { return nil, errNoRawKeys }

// openDLQ loads the configuration and opens the database and, as needs
// says, the field encryption keys (fieldenc, on the database's data keys)
// and the audit writer signing with the node's key.
func openDLQ(ctx context.Context, env *cliEnv, cfgPath string, needs dlqNeeds) (*dlqEnv, error) {
	cfg, err := loadConfig(env, cfgPath)
	if err != nil {
		return nil, err
	}
	d := &dlqEnv{cfg: cfg, actor: audit.Text(strings.TrimSpace(env.getenv("USER")), 64)}
	if d.actor == "" {
		d.actor = "operator"
	}
	var ks *keystore.Store
	if needs.raw || needs.audit {
		if ks, err = loadKeystore(cfg); err != nil {
			return nil, err
		}
		d.node = ks.Node()
	}
	if d.pool, err = store.Open(ctx, cfg.Database.URL, store.PoolConfig{MaxConns: 4}); err != nil {
		return nil, err
	}
	var cipher deadletter.Cipher = noRawKeys{}
	if needs.raw {
		kr, err := fieldenc.Open(ctx, store.NewDataKeys(d.pool), ks)
		if err != nil {
			d.pool.Close()
			return nil, err
		}
		cipher = kr
	}
	if d.letters, err = deadletter.New(d.pool, deadletter.Config{Cipher: cipher, Actor: d.node}); err != nil {
		d.pool.Close()
		return nil, err
	}
	if needs.audit {
		if d.audit, err = audit.NewWriter(d.pool, audit.WriterConfig{
			Signer:             ks.Signer(),
			CheckpointInterval: cfg.Audit.CheckpointInterval,
		}); err != nil {
			d.pool.Close()
			return nil, err
		}
	}
	return d, nil
}

// close flushes and seals the audit chain, then closes the database.
func (d *dlqEnv) close(ctx context.Context) error {
	var err error
	if d.audit != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dlqCloseTimeout)
		err = d.audit.Close(cctx)
		cancel()
	}
	d.pool.Close()
	return err
}

// record appends one operator action to the audit chain.
func (d *dlqEnv) record(ctx context.Context, action string, id int64, l deadletter.Letter, opErr error, reason string, detail map[string]any) error {
	result := "ok"
	if opErr != nil {
		result, reason = "error", opErr.Error()
	}
	if detail == nil {
		detail = map[string]any{}
	}
	detail["node"] = d.node
	if l.ID != 0 {
		detail["code"] = l.Code
	}
	// The action happened (or was tried): record it even when ctx ends now.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dlqCloseTimeout)
	defer cancel()
	_, err := d.audit.Append(actx, audit.Entry{
		Actor:         d.actor,
		Action:        action,
		Object:        strconv.FormatInt(id, 10),
		Result:        result,
		Reason:        audit.Text(reason, maxAuditReason),
		CorrelationID: l.MessageID,
		Detail:        detail,
	})
	if err != nil {
		return fmt.Errorf("audit %s of dead letter %d: %w", action, id, err)
	}
	return nil
}

// maxAuditReason bounds the reason of an audit entry, in bytes (the chain
// takes up to audit.MaxFieldSize).
const maxAuditReason = 8 << 10

// parseSince accepts RFC 3339 or a duration back from now ("2h").
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
}

func dlqList(ctx context.Context, env *cliEnv, args []string) (err error) {
	fs := newFlagSet(env, "dlq list")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	code := fs.String("code", "", "only this error code, e.g. E110")
	since := fs.String("since", "", "only letters recorded at or after this time (RFC 3339, or a duration back from now such as 24h)")
	until := fs.String("until", "", "only letters recorded before this time (RFC 3339)")
	unresolved := fs.Bool("unresolved", false, "only letters not yet resolved")
	security := fs.Bool("security", false, "only security letters (envelope steps 1-2)")
	limit := fs.Int("limit", 50, fmt.Sprintf("most letters shown (at most %d)", deadletter.MaxLimit))
	before := fs.Int64("before", 0, "only letters with a smaller id (the next page)")
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("list takes no arguments, got %q", pos)
	}
	f := deadletter.Filter{Code: *code, Unresolved: *unresolved, Limit: *limit, BeforeID: *before}
	if f.Code != "" && !dlqCodeRe.MatchString(f.Code) {
		return usageError("--code %q is not E followed by three digits", f.Code)
	}
	if f.Since, err = parseSince(*since, time.Now()); err != nil {
		return usageError("--since: %v", err)
	}
	if *until != "" {
		if f.Until, err = time.Parse(time.RFC3339Nano, *until); err != nil {
			return usageError("--until: %q is not an RFC 3339 time", *until)
		}
	}
	if *security {
		f.Security = security
	}
	if f.Limit < 1 || f.Limit > deadletter.MaxLimit {
		return usageError("--limit must be 1-%d, not %d", deadletter.MaxLimit, f.Limit)
	}
	if f.BeforeID < 0 {
		return usageError("--before must not be negative")
	}

	d, err := openDLQ(ctx, env, *cfgPath, dlqNeeds{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close(ctx)) }()
	letters, err := d.letters.List(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		if letters == nil {
			letters = []deadletter.Letter{}
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(letters)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tCODE\tSTATE\tSENDER\tKIND\tMESSAGE ID\tREASON")
	for _, l := range letters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, formatTime(l.At), l.Code, state(l),
			cell(l.Sender, 20), cell(l.Kind, 32), cell(l.MessageID, 40), cell(l.Reason, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(letters) == f.Limit {
		total, err := d.letters.Count(ctx, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "%d of %d shown; next page: --before %d\n", len(letters), total, letters[len(letters)-1].ID)
	}
	return nil
}

func state(l deadletter.Letter) string {
	s := "open"
	if l.Resolved() {
		s = "resolved"
	}
	if l.Security {
		s += ",security"
	}
	if l.ReplayCount > 0 {
		s += ",replayed"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

// cell renders untrusted text on one table line: control and bidi
// characters escaped, cut to max runes, "-" when empty.
func cell(s string, max int) string {
	s = printable(s)
	if s == "" {
		return "-"
	}
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max-1]) + "…"
	}
	return s
}

// printable escapes what could disturb a terminal or hide text: control
// characters (tabs and newlines included), bidi overrides and other format
// characters. The text comes from untrusted messages.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			if r <= 0xff {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// rawText returns raw as text when it is valid UTF-8 without control
// characters other than tab, CR and LF, which is safe to print.
func rawText(raw []byte) (string, bool) {
	if !utf8.Valid(raw) {
		return "", false
	}
	s := string(raw)
	for _, r := range s {
		if r == '\t' || r == '\n' || r == '\r' {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", false
		}
	}
	return s, true
}

func dlqShow(ctx context.Context, env *cliEnv, args []string) (err error) {
	fs := newFlagSet(env, "dlq show")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	withRaw := fs.Bool("raw", false, "also print the raw bytes: as text when they are printable UTF-8, else base64")
	asJSON := fs.Bool("json", false, "print JSON (raw, base64, only with --raw)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	id, err := parseID(pos)
	if err != nil {
		return err
	}
	d, err := openDLQ(ctx, env, *cfgPath, dlqNeeds{raw: true, audit: *withRaw})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close(ctx)) }()
	l, err := d.letters.Get(ctx, id)
	if err != nil {
		return err
	}
	if *withRaw {
		// The raw bytes may hold personal data (an internal event's text):
		// their read is audited before they are shown.
		if err := d.record(ctx, "deadletter.read", l.ID, l, nil, "raw bytes shown",
			map[string]any{"kind": l.Kind, "source": l.Source, "size": len(l.Raw), "messageId": l.MessageID}); err != nil {
			return err
		}
	}
	if *asJSON {
		out := struct {
			deadletter.Letter
			SM3 string `json:"sm3"`
		}{l, crypto.SM3Hex(l.Raw)}
		if !*withRaw {
			out.Raw = nil
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	route := "(none: cannot be replayed)"
	if l.HasRoute() {
		route = fmt.Sprintf("exchange %s routing key %s", strconv.Quote(l.Exchange), strconv.Quote(l.RoutingKey))
	}
	security := "no"
	if l.Security {
		security = "yes (envelope steps 1-2: not answered)"
	}
	replays := "never"
	if l.ReplayCount > 0 {
		replays = fmt.Sprintf("%d, last %s", l.ReplayCount, formatTime(l.LastReplayedAt))
	}
	resolved := "no"
	if l.Resolved() {
		resolved = fmt.Sprintf("%s by %s", formatTime(l.ResolvedAt), printable(l.ResolvedBy))
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 1, ' ', 0)
	for _, kv := range [][2]string{
		{"id", strconv.FormatInt(l.ID, 10)},
		{"at", formatTime(l.At)},
		{"source", printable(l.Source)},
		{"route", route},
		{"message id", printable(l.MessageID)},
		{"sender", printable(l.Sender)},
		{"kind", printable(l.Kind)},
		{"code", l.Code},
		{"reason", printable(l.Reason)},
		{"security", security},
		{"size", fmt.Sprintf("%d bytes", len(l.Raw))},
		{"sm3", crypto.SM3Hex(l.Raw)},
		{"replays", replays},
		{"resolved", resolved},
		{"note", printable(l.Note)},
	} {
		v := kv[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if *withRaw {
		writeRaw(env.stdout, l.Raw)
	}
	return nil
}

func writeRaw(w io.Writer, raw []byte) {
	if s, ok := rawText(raw); ok {
		fmt.Fprintf(w, "raw (text):\n%s", s)
		if !strings.HasSuffix(s, "\n") {
			fmt.Fprintln(w)
		}
		return
	}
	fmt.Fprintln(w, "raw (base64, not printable UTF-8):")
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		fmt.Fprintln(w, enc[:76])
		enc = enc[76:]
	}
	fmt.Fprintln(w, enc)
}

func dlqReplay(ctx context.Context, env *cliEnv, args []string) (err error) {
	fs := newFlagSet(env, "dlq replay")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	all := fs.Bool("all-unresolved", false, "replay every unresolved letter that has a route, oldest first")
	code := fs.String("code", "", "with --all-unresolved: only this error code")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	var id int64
	switch {
	case *all && len(pos) > 0:
		return usageError("give an ID or --all-unresolved, not both")
	case *all:
		if *code != "" && !dlqCodeRe.MatchString(*code) {
			return usageError("--code %q is not E followed by three digits", *code)
		}
	default:
		if *code != "" {
			return usageError("--code goes with --all-unresolved")
		}
		if id, err = parseID(pos); err != nil {
			return err
		}
	}

	d, err := openDLQ(ctx, env, *cfgPath, dlqNeeds{raw: true, audit: true})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close(ctx)) }()
	conn, err := amqp.DialConfig(d.cfg.AMQP.URL, amqp.Config{
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "zhianhub-dlq-replay"},
	})
	if err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	defer conn.Close()
	pub := newReplayPublisher(conn)

	if !*all {
		l, err := d.letters.Replay(ctx, id, pub)
		if aerr := d.record(ctx, actionDLQReplay, id, l, err, "", replayDetail(l)); aerr != nil {
			return errors.Join(err, aerr)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "replayed %d to %s %s (replay %d)\n", id, l.Exchange, l.RoutingKey, l.ReplayCount)
		return nil
	}

	// Take the list first, so that letters recorded while replaying (a
	// replay that fails again) are not replayed in this run.
	var ids []int64
	f := deadletter.Filter{Code: *code, Unresolved: true, Limit: deadletter.MaxLimit}
	for {
		page, err := d.letters.List(ctx, f)
		if err != nil {
			return err
		}
		for _, l := range page {
			if l.HasRoute() {
				ids = append(ids, l.ID)
			} else {
				fmt.Fprintf(env.stderr, "skipped %d: no route, cannot be replayed\n", l.ID)
			}
		}
		if len(page) < f.Limit {
			break
		}
		f.BeforeID = page[len(page)-1].ID
	}
	var replayed, failed int
	for i := len(ids) - 1; i >= 0; i-- { // oldest first
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stopped after %d replayed, %d failed: %w", replayed, failed, err)
		}
		l, err := d.letters.Replay(ctx, ids[i], pub)
		if aerr := d.record(ctx, actionDLQReplay, ids[i], l, err, "all-unresolved", replayDetail(l)); aerr != nil {
			return errors.Join(err, aerr)
		}
		if err != nil {
			failed++
			fmt.Fprintf(env.stderr, "failed %d: %v\n", ids[i], err)
			continue
		}
		replayed++
		fmt.Fprintf(env.stdout, "replayed %d to %s %s (replay %d)\n", l.ID, l.Exchange, l.RoutingKey, l.ReplayCount)
	}
	fmt.Fprintf(env.stdout, "%d replayed, %d failed\n", replayed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d replays failed", failed, len(ids))
	}
	return nil
}

func replayDetail(l deadletter.Letter) map[string]any {
	return map[string]any{"exchange": l.Exchange, "routing_key": l.RoutingKey, "replay_count": l.ReplayCount}
}

func dlqResolve(ctx context.Context, env *cliEnv, args []string) (err error) {
	fs := newFlagSet(env, "dlq resolve")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	note := fs.String("note", "", "why the letter is closed (required)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	id, err := parseID(pos)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*note) == "" {
		return usageError("resolve needs --note")
	}
	d, err := openDLQ(ctx, env, *cfgPath, dlqNeeds{raw: true, audit: true})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close(ctx)) }()
	err = d.letters.Resolve(ctx, id, d.actor, *note)
	var l deadletter.Letter
	if err == nil {
		l, _ = d.letters.Get(ctx, id) // for the audit entry's message id and code
	}
	if aerr := d.record(ctx, actionDLQResolve, id, l, err, *note, nil); aerr != nil {
		return errors.Join(err, aerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "resolved %d by %s\n", id, d.actor)
	return nil
}

// replayPublisher implements deadletter.Publisher with mpsbus publishers:
// confirm mode, mandatory, an unroutable message is an error. Each publish
// uses a new channel, so that a channel closed by the broker (a missing
// exchange) does not fail the next replay; an operator's replay is rare.
type replayPublisher struct {
	conn    *amqp.Connection
	checked map[string]bool // exchanges known to exist
}

func newReplayPublisher(conn *amqp.Connection) *replayPublisher {
	return &replayPublisher{conn: conn, checked: map[string]bool{}}
}

func (p *replayPublisher) Publish(ctx context.Context, exchange, routingKey string, msg amqp.Publishing) error {
	if exchange == "" {
		return errors.New("replay to the default exchange is not supported: the route names no exchange")
	}
	if !p.checked[exchange] {
		if err := p.checkExchange(exchange); err != nil {
			return err
		}
		p.checked[exchange] = true
	}
	pub, err := mpsbus.NewPublisher(p.conn, mpsbus.PublisherConfig{Exchange: exchange, MaxInFlight: 1})
	if err != nil {
		return err
	}
	defer pub.Close()
	return pub.Publish(ctx, routingKey, msg)
}

// checkExchange checks passively that exchange exists, on a channel of its
// own (the broker closes it when the exchange is missing), so that a
// missing exchange is named rather than reported as a closed channel.
func (p *replayPublisher) checkExchange(exchange string) error {
	ch, err := p.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %q: %w", exchange, err)
	}
	return nil
}

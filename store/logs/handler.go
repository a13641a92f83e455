package logs

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// HandlerOptions configures a Handler.
type HandlerOptions struct {
	// Level is the least level stored in the system log; default info.
	Level slog.Leveler
	// RequestID returns the request id of ctx, when the record's attributes
	// carry none ("request_id"). Default: none.
	RequestID func(context.Context) string
}

// Handler passes every record to an inner handler (the process's JSON log
// on standard error) and queues the records at or above its level for the
// system log. The attributes "component", "request_id" and "message_id"
// fill their own columns (and stay in the attributes); groups are flattened
// with dots.
type Handler struct {
	inner  slog.Handler
	w      *Writer
	opts   HandlerOptions
	attrs  map[string]any
	prefix string // the open groups, "a.b."
	comp   string
	req    string
	msgID  string
}

// NewHandler returns a handler teeing inner into w.
func NewHandler(inner slog.Handler, w *Writer, opts HandlerOptions) *Handler {
	if opts.Level == nil {
		opts.Level = slog.LevelInfo
	}
	return &Handler{inner: inner, w: w, opts: opts}
}

// Enabled reports whether either destination takes records of level l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.opts.Level.Level() || h.inner.Enabled(ctx, l)
}

// Handle writes r to the inner handler (when it takes its level) and
// queues it for the system log (when at or above the level).
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level < h.opts.Level.Level() {
		return err
	}
	rec := SystemRecord{At: r.Time, Level: r.Level, Msg: r.Message, Component: h.comp, RequestID: h.req, MessageID: h.msgID}
	if rec.At.IsZero() {
		rec.At = time.Now()
	}
	attrs := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for k, v := range h.attrs {
		attrs[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(attrs, h.prefix, a)
		return true
	})
	if h.prefix == "" {
		rec.Component = stringOr(attrs["component"], rec.Component)
		rec.RequestID = stringOr(attrs["request_id"], rec.RequestID)
		rec.MessageID = stringOr(attrs["message_id"], rec.MessageID)
	}
	if rec.RequestID == "" && h.opts.RequestID != nil {
		rec.RequestID = h.opts.RequestID(ctx)
	}
	if len(attrs) > 0 {
		rec.Attrs = attrs
	}
	h.w.System(rec)
	return err
}

// WithAttrs returns a handler whose records carry as.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithAttrs(as)
	h2.attrs = make(map[string]any, len(h.attrs)+len(as))
	for k, v := range h.attrs {
		h2.attrs[k] = v
	}
	for _, a := range as {
		addAttr(h2.attrs, h.prefix, a)
	}
	if h.prefix == "" {
		h2.comp = stringOr(h2.attrs["component"], h.comp)
		h2.req = stringOr(h2.attrs["request_id"], h.req)
		h2.msgID = stringOr(h2.attrs["message_id"], h.msgID)
	}
	return &h2
}

// WithGroup returns a handler whose further attributes are in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithGroup(name)
	h2.prefix = h.prefix + name + "."
	return &h2
}

func addAttr(m map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return
	}
	switch v.Kind() {
	case slog.KindGroup:
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			addAttr(m, p, g)
		}
	case slog.KindTime:
		m[prefix+a.Key] = v.Time().Format(time.RFC3339Nano)
	case slog.KindDuration:
		m[prefix+a.Key] = v.Duration().String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			m[prefix+a.Key] = x.Error()
		case interface{ String() string }:
			m[prefix+a.Key] = x.String()
		default:
			m[prefix+a.Key] = x
		}
	default:
		m[prefix+a.Key] = v.Any()
	}
}

func stringOr(v any, def string) string {
	if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
		return s
	}
	return def
}

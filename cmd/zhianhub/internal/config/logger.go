package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel parses a log level: debug, info, warn or error (any case).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("must be debug, info, warn or error, not %q", s)
}

// NewLogger returns a logger writing one JSON object per line to w at the
// given level. An unknown level means info (Validate rejects it earlier).
func NewLogger(w io.Writer, level string) *slog.Logger {
	lvl, _ := ParseLevel(level)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// LogValue renders the configuration as a log group, without secrets.
func (c Config) LogValue() slog.Value {
	pairs := c.redactedPairs()
	attrs := make([]slog.Attr, 0, len(pairs))
	for _, kv := range pairs {
		attrs = append(attrs, slog.String(kv[0], kv[1]))
	}
	return slog.GroupValue(attrs...)
}

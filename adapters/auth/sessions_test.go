package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s := NewSessions(3, time.Hour)
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	steps := []struct {
		session string
		expires time.Time
		at      time.Time
		first   bool
	}{
		{"bearer:a", m(30), m(0), true},
		{"bearer:a", m(30), m(1), false},
		{"bearer:a", m(30), m(31), true}, // expired: a new login (and forgotten at once)
		{"dev:li", time.Time{}, m(32), true},
		{"dev:li", time.Time{}, m(80), false},  // kept while in use
		{"dev:li", time.Time{}, m(130), false}, // (the TTL counts from the last use)
		{"dev:li", time.Time{}, m(191), true},  // idle past the TTL
		{"gateway:x", t0.Add(24 * time.Hour), m(192), true},
		{"gateway:y", t0.Add(24 * time.Hour), m(193), true}, // full (3): the expired bearer:a goes, not a live one
		{"gateway:x", t0.Add(24 * time.Hour), m(194), false},
		{"dev:li", time.Time{}, m(195), false},
	}
	for i, st := range steps {
		if got := s.First(st.session, st.expires, st.at); got != st.first {
			t.Fatalf("step %d %s at %s: First = %v, want %v", i, st.session, st.at.Format(time.Kitchen), got, st.first)
		}
	}
	if len(s.seen) > 3 {
		t.Errorf("%d sessions kept, max 3", len(s.seen))
	}
	s.Forget("gateway:x")
	if !s.First("gateway:x", t0.Add(24*time.Hour), m(196)) {
		t.Error("a forgotten session is not a new login")
	}
	// Full of live sessions: one is forgotten, never more than max kept.
	for i := range 10 {
		s.First(fmt.Sprintf("bearer:%d", i), t0.Add(24*time.Hour), m(197))
	}
	if len(s.seen) > 3 {
		t.Errorf("%d sessions kept, max 3", len(s.seen))
	}
}

func TestSessionDigest(t *testing.T) {
	d := sessionDigest("eyJhbGciOiJSUzI1NiJ9.secret.sig")
	if len(d) != 32 || d == sessionDigest("eyJhbGciOiJSUzI1NiJ9.secret.sig2") {
		t.Errorf("digest %q", d)
	}
}

package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s := NewSessions(3, time.Hour)
	steps := []struct {
		session string
		expires time.Time
		at      time.Time
		first   bool
	}{
		{"bearer:a", t0.Add(30 * time.Minute), t0, true},
		{"bearer:a", t0.Add(30 * time.Minute), t0.Add(time.Minute), false},
		{"bearer:a", t0.Add(30 * time.Minute), t0.Add(31 * time.Minute), true}, // expired: a new login
		{"dev:li", time.Time{}, t0, true},
		{"dev:li", time.Time{}, t0.Add(50 * time.Minute), false}, // kept while in use
		{"dev:li", time.Time{}, t0.Add(100 * time.Minute), false},
		{"dev:li", time.Time{}, t0.Add(161 * time.Minute), true}, // idle past the TTL
		{"gateway:x", t0.Add(24 * time.Hour), t0, true},
		{"gateway:y", t0.Add(24 * time.Hour), t0, true}, // full (3): the expired bearer:a goes
		{"gateway:x", t0.Add(24 * time.Hour), t0.Add(time.Minute), false},
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
	if !s.First("gateway:x", t0.Add(24*time.Hour), t0.Add(2*time.Minute)) {
		t.Error("a forgotten session is not a new login")
	}
	// Full of live sessions: one is forgotten, never more than max kept.
	for i := range 10 {
		s.First(fmt.Sprintf("bearer:%d", i), t0.Add(time.Hour), t0)
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

package auth

import (
	"encoding/hex"
	"sync"
	"time"

	"zhianhub/crypto"
)

// ActionLogin is the audit action of a credential's first use at this hub
// process: a login (a token or a certificate presented for the first time).
const ActionLogin = "auth.login"

// sessionDigest names a credential without revealing it: the first 16
// bytes of its SM3, in hex.
func sessionDigest(s string) string {
	sum := crypto.SM3([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// Sessions remembers the credentials seen, so that the first use of each is
// audited as a login and later uses are not. A credential is forgotten
// when it expires (Identity.Expires; DefaultSessionTTL after its last use
// when it does not say); at most MaxSessions are kept, the expired ones
// purged first. Each hub process keeps its own: behind a load balancer, a
// user's first call to each process is a login there.
type Sessions struct {
	mu   sync.Mutex
	seen map[string]time.Time // session → forget after
	max  int
	ttl  time.Duration
}

// Defaults of NewSessions.
const (
	DefaultMaxSessions = 100_000
	DefaultSessionTTL  = 12 * time.Hour
)

// NewSessions returns an empty set; max and ttl 0 take the defaults.
func NewSessions(max int, ttl time.Duration) *Sessions {
	if max <= 0 {
		max = DefaultMaxSessions
	}
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	return &Sessions{seen: map[string]time.Time{}, max: max, ttl: ttl}
}

// First records the use of session at now and reports whether it is the
// first (or the first since it was forgotten).
func (s *Sessions) First(session string, expires, now time.Time) bool {
	forget := expires
	if forget.IsZero() {
		forget = now.Add(s.ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.seen[session]; ok && now.Before(until) {
		if expires.IsZero() {
			s.seen[session] = forget // kept while in use
		}
		return false
	}
	if len(s.seen) >= s.max {
		for k, until := range s.seen {
			if !now.Before(until) {
				delete(s.seen, k)
			}
		}
		for k := range s.seen { // still full: forget any (its next use is a login again)
			if len(s.seen) < s.max {
				break
			}
			delete(s.seen, k)
		}
	}
	s.seen[session] = forget
	return true
}

// Forget drops session (its login could not be recorded: the next use
// tries again).
func (s *Sessions) Forget(session string) {
	s.mu.Lock()
	delete(s.seen, session)
	s.mu.Unlock()
}

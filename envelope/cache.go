package envelope

import (
	"crypto/cipher"
	"sync"
	"time"
)

type aeadT = cipher.AEAD

// cacheKey identifies a wrapped content key: (ekid, SM3(ek)).
type cacheKey struct {
	ekid string
	ek   [32]byte
}

type cacheEntry struct {
	aead    cipher.AEAD
	expires time.Time
}

// keyCache keeps unwrapped content keys for ttl after their first unwrap,
// at most size of them; when full, the oldest entry goes first (FIFO), so a
// flood of new keys cannot grow memory.
type keyCache struct {
	mu    sync.RWMutex
	size  int
	ttl   time.Duration
	items map[cacheKey]cacheEntry
	order []cacheKey // ring of insertion order
	next  int
}

func newKeyCache(size int, ttl time.Duration) *keyCache {
	return &keyCache{size: size, ttl: ttl, items: make(map[cacheKey]cacheEntry, size), order: make([]cacheKey, 0, size)}
}

func (c *keyCache) get(k cacheKey, now time.Time) (cipher.AEAD, bool) {
	c.mu.RLock()
	e, ok := c.items[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.aead, true
}

func (c *keyCache) put(k cacheKey, a cipher.AEAD, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		c.items[k] = cacheEntry{aead: a, expires: now.Add(c.ttl)}
		return
	}
	if len(c.order) < c.size {
		c.order = append(c.order, k)
	} else {
		delete(c.items, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % c.size
	}
	c.items[k] = cacheEntry{aead: a, expires: now.Add(c.ttl)}
}

func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.items)
}

package dataverse

import (
	"maps"
	"sync"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// ttlCache maps a normalized identifier to the records found for it, each
// entry until its expiry. Slices handed out are shared and must not be
// modified.
type ttlCache struct {
	mu   sync.Mutex
	m    map[string]cacheEntry
	max  int
	peak int // the most entries m has held: a map keeps the table of its peak
}

// minShrink is the smallest peak of a cache worth rebuilding its map for.
const minShrink = 1024

type cacheEntry struct {
	recs []bridge.Record
	at   time.Time // when the request that read it went out
	exp  time.Time
}

func newTTLCache(max int) *ttlCache { return &ttlCache{m: make(map[string]cacheEntry), max: max} }

// get returns k's records, unless they expired or were stored before
// since.
func (c *ttlCache) get(k string, now, since time.Time) ([]bridge.Record, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.exp) || e.at.Before(since) {
		return nil, false
	}
	return e.recs, true
}

func (c *ttlCache) put(k string, recs []bridge.Record, exp, at, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.sweepLocked(now)
		// Still full: drop a tenth, in map order (random enough).
		for k := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = cacheEntry{recs: recs, at: at, exp: exp}
	c.peak = max(c.peak, len(c.m))
}

func (c *ttlCache) del(k string) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

func (c *ttlCache) sweep(now time.Time) {
	c.mu.Lock()
	c.sweepLocked(now)
	c.mu.Unlock()
}

func (c *ttlCache) sweepLocked(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.exp) {
			delete(c.m, k)
		}
	}
	// A Go map never gives back its table: after a storm of callers it
	// would keep the storm's size, all of it pointers the collector marks
	// on every cycle, for the life of the process. Once it holds under a
	// quarter of its peak, a fresh one is made (a copy of at most a
	// quarter of what the loop above just walked).
	if c.peak >= minShrink && len(c.m) < c.peak/4 {
		m := make(map[string]cacheEntry, len(c.m))
		maps.Copy(m, c.m)
		c.m, c.peak = m, len(m)
	}
}

func (c *ttlCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

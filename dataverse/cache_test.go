package dataverse

import (
	"fmt"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// TestTTLCache_SweepDropsExpiredKeepsLive: the client sweeps its caches
// every minute, and operations.md (section 8, what the daemon keeps)
// promises that the expired answers, callers' numbers and emails as keys,
// are then gone, while docs/dataverse.md ("Caches") promises a found answer
// is kept SCREENPOP_CACHE_TTL: a sweep must not drop a live one (the next
// pop of that caller would wait for Dataverse again).
func TestTTLCache_SweepDropsExpiredKeepsLive(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)
	c := newTTLCache(100)
	recs := []bridge.Record{{Entity: "contact", ID: "c0c0c0c0-0000-4000-8000-000000000001", Name: "Jane Doe"}}
	c.put("p:+13175550123", recs, t0.Add(5*time.Minute), t0, t0)
	c.put("p:+13175550124", nil, t0.Add(30*time.Second), t0, t0)

	c.sweep(t0.Add(time.Minute))
	if n := c.len(); n != 1 {
		t.Fatalf("after a sweep a minute on: %d entries, want 1 (the expired one dropped, the live one kept)", n)
	}
	if _, ok := c.get("p:+13175550123", t0.Add(time.Minute), time.Time{}); !ok {
		t.Fatal("the live answer (5 min TTL) was swept after a minute")
	}
	c.sweep(t0.Add(5 * time.Minute))
	if n := c.len(); n != 0 {
		t.Fatalf("after its TTL: %d entries kept, want 0", n)
	}
}

// TestTTLCache_StaysWithinItsBound: architecture.md and operations.md
// promise at most 100,000 entries per cache (MaxCacheEntries): a burst of
// callers that are all still live must not grow it past its bound.
func TestTTLCache_StaysWithinItsBound(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)
	const max = 50
	c := newTTLCache(max)
	for i := range 10 * max {
		c.put(fmt.Sprintf("p:+1317555%04d", i), nil, t0.Add(time.Hour), t0, t0)
		if n := c.len(); n > max {
			t.Fatalf("after %d live entries put: %d held, want at most %d", i+1, n, max)
		}
	}
	// The newest answer is always kept.
	if _, ok := c.get(fmt.Sprintf("p:+1317555%04d", 10*max-1), t0, time.Time{}); !ok {
		t.Fatal("the answer just put is not in the cache")
	}
}

package dataverse_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// fakeClock is a settable clock for the client's caches.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestClient_RecordsChangedWhileCached: what a lookup answers while the
// records it found (or did not find) change in Dynamics, as
// docs/dataverse.md ("Caches") tells the admin: a found answer is what the
// caller's pops get for SCREENPOP_CACHE_TTL, whatever happens to the
// records; a not-found answer for SCREENPOP_NEGATIVE_CACHE_TTL; the first
// lookup after that reads Dynamics as it is. And Key.Since (the resolver's,
// for a conversation's later legs) takes no answer cached before it.
func TestClient_RecordsChangedWhileCached(t *testing.T) {
	const num = "+13175550142"
	for _, tc := range []struct {
		name   string
		before int // records found before the change
		change func(srv *dataversetest.Server, a string) (after []string)
		ttl    time.Duration // how long the answer before the change is kept
	}{
		{"CreatedAfterNone", 0, func(srv *dataversetest.Server, _ string) []string {
			// The agent saves the create pop's form, prefilled with the
			// caller's number in E.164.
			return []string{srv.AddContact(dataversetest.Contact{FirstName: "New", LastName: "Caller", Telephone1: num})}
		}, dataverse.DefaultNegativeCacheTTL},
		{"Deleted", 1, func(srv *dataversetest.Server, a string) []string {
			must(t, srv.DeleteRecord("contacts", a))
			return nil
		}, dataverse.DefaultCacheTTL},
		{"Deactivated", 1, func(srv *dataversetest.Server, a string) []string {
			must(t, srv.UpdateRecord("contacts", a, map[string]any{"statecode": 1, "statuscode": 2}))
			return nil
		}, dataverse.DefaultCacheTTL},
		{"MergedAwayNumberOnLoser", 1, func(srv *dataversetest.Server, a string) []string {
			// The winner lacks the number; the loser keeps it, inactive.
			srv.AddContact(dataversetest.Contact{FirstName: "Winner", LastName: "Caller", Telephone1: "+13175550999"})
			must(t, srv.UpdateRecord("contacts", a, map[string]any{"statecode": 1, "statuscode": 2}))
			return nil
		}, dataverse.DefaultCacheTTL},
		{"NumberMoved", 1, func(srv *dataversetest.Server, a string) []string {
			must(t, srv.UpdateRecord("contacts", a, map[string]any{"telephone1": nil}))
			return []string{srv.AddContact(dataversetest.Contact{FirstName: "Bea", LastName: "Other", MobilePhone: "(317) 555-0142"})}
		}, dataverse.DefaultCacheTTL},
		{"SecondRecord", 1, func(srv *dataversetest.Server, a string) []string {
			return []string{a, srv.AddContact(dataversetest.Contact{FirstName: "Bea", LastName: "Same", Telephone2: "317-555-0142"})}
		}, dataverse.DefaultCacheTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = clock.Now })
			var a string
			var was []string
			if tc.before > 0 {
				a = srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "First", Telephone1: "(317) 555-0142"})
				was = []string{a}
			}
			ids := func(k bridge.Key) []string {
				t.Helper()
				recs, err := c.Lookup(ctxT(t, 5*time.Second), k)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, r := range recs {
					out = append(out, r.ID)
				}
				slices.Sort(out)
				return out
			}
			if got := ids(phone(num)); !slices.Equal(got, was) {
				t.Fatalf("before the change: %v, want %v", got, was)
			}
			changedAt := clock.Now().Add(time.Second)
			clock.Add(time.Second)
			want := tc.change(srv, a)
			slices.Sort(want)
			clock.Add(tc.ttl - 2*time.Second)
			if got := ids(phone(num)); !slices.Equal(got, was) {
				t.Fatalf("within the TTL (%v): %v, want the cached %v", tc.ttl, got, was)
			}
			if got := ids(bridge.Key{Kind: bridge.KeyPhone, Value: num, Since: changedAt}); !slices.Equal(got, want) {
				t.Fatalf("within the TTL, an answer since the change asked for: %v, want %v", got, want)
			}
			// The fresh answer is cached in its turn.
			srv.ResetLog()
			if got := ids(phone(num)); !slices.Equal(got, want) || srv.HTTPRequests() != 0 {
				t.Fatalf("after a fresh answer: %v (%d requests), want %v from the cache", got, srv.HTTPRequests(), want)
			}
		})
		t.Run(tc.name+"/AfterTTL", func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = clock.Now })
			var a string
			if tc.before > 0 {
				a = srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "First", Telephone1: "(317) 555-0142"})
			}
			if _, err := c.Lookup(ctxT(t, 5*time.Second), phone(num)); err != nil {
				t.Fatal(err)
			}
			want := tc.change(srv, a)
			slices.Sort(want)
			clock.Add(tc.ttl)
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(num))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("once the TTL (%v) is over: %v, want %v", tc.ttl, got, want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestClient_PrefetchSince: with SCREENPOP_POP_ON=connected the resolver
// prefetches a later leg's caller at alerting with the same Since as the
// lookup at connected: one request for the two, made at alerting.
func TestClient_PrefetchSince(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = clock.Now })
	warm(t, srv, c)
	id := srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "First", Telephone1: "+13175550142"})
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550142")); err != nil {
		t.Fatal(err)
	}
	clock.Add(10 * time.Second)
	k := bridge.Key{Kind: bridge.KeyPhone, Value: "+13175550142", Since: clock.Now()}
	clock.Add(time.Second)
	c.Prefetch(k)
	if err := srv.AwaitRequests(ctxT(t, 5*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Lookup(ctxT(t, 5*time.Second), k)
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("got %+v, %v", recs, err)
	}
	if n := srv.HTTPRequests(); n != 2 {
		t.Fatalf("%d requests for a lookup, then a prefetch and a lookup since a later time, want 2", n)
	}
}

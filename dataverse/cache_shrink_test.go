package dataverse_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/testenv"
)

// TestLookupCache_MemoryComesBackAfterAStorm: a storm of calls from callers
// Dataverse does not know (10x the callers of a normal negative-cache TTL)
// fills the negative cache; once those answers have expired and are swept
// (here by the put that finds the cache full; Run's minute sweep drops
// them the same way), the cache holds as many answers as before the storm,
// and the live heap it holds must come back with them (within 2x), not stay
// at the storm's peak for the life of the process: every entry of the table
// holds pointers, and the collector marks all of it on every cycle.
func TestLookupCache_MemoryComesBackAfterAStorm(t *testing.T) {
	const (
		normal = 500
		storm  = 10 * normal
	)
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	now := time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)
	ec := srv.Config()
	c, err := dataverse.New(dataverse.Config{
		URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: srv.TokenURL(), AppID: appID,
		MaxCacheEntries: normal + storm, // the storm fills it: the next answer stored sweeps it
		Now:             func() time.Time { return now },
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t, 5*time.Minute)
	heap := func() uint64 {
		srv.ResetLog() // the emulator's log of the requests, not the client's
		return testenv.LiveHeap()
	}
	next := 0
	callers := func(n int) {
		t.Helper()
		for range n {
			next++
			if recs, err := c.Lookup(ctx, phone(fmt.Sprintf("+1512%07d", 2000000+next))); err != nil || len(recs) != 0 {
				t.Fatal(recs, err)
			}
		}
	}
	callers(1) // the token, the connection
	h0 := heap()
	callers(normal - 1)
	hBefore := heap()
	callers(storm)
	hPeak := heap()
	now = now.Add(dataverse.DefaultNegativeCacheTTL + time.Second) // every answer so far has expired
	callers(normal)
	hAfter := heap()
	runtime.KeepAlive(c)

	kb := func(h uint64) float64 { return float64(int64(h)-int64(h0)) / 1024 }
	t.Logf("%d callers cached: %.0f KB; %d after the storm: %.0f KB; %d again once the storm's answers expired: %.0f KB (%.1fx before)",
		normal, kb(hBefore), normal+storm, kb(hPeak), normal, kb(hAfter), kb(hAfter)/kb(hBefore))
	if kb(hAfter) > 2*kb(hBefore) {
		t.Errorf("once the storm's answers expired the lookup cache holds %.0f KB of live heap for %d callers, %.1fx the %.0f KB it held for as many before the storm (%.0f KB at its peak)",
			kb(hAfter), normal, kb(hAfter)/kb(hBefore), kb(hBefore), kb(hPeak))
	}
}

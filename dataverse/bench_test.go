package dataverse_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// BenchmarkLookup_CacheHit: a lookup answered from the positive cache.
func BenchmarkLookup_CacheHit(b *testing.B) {
	srv, c := MustEnv(b, nil)
	srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "(317) 555-0123"})
	ctx := ctxT(b, time.Minute)
	if recs, err := c.Lookup(ctx, phone("+13175550123")); err != nil || len(recs) != 1 {
		b.Fatal(recs, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(ctx, phone("+13175550123")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookup_Miss: a cache miss over the three default entities, one
// $batch to the emulator over loopback, including the emulator's filter
// parsing and its scan of 300 seeded records.
func BenchmarkLookup_Miss(b *testing.B) {
	srv, c := MustEnv(b, nil)
	srv.Seed(300, rand.New(rand.NewPCG(5, 6)))
	warm(b, srv, c)
	ctx := ctxT(b, time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Lookup(ctx, phone(fmt.Sprintf("+1512%07d", 2000000+i))); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := srv.HTTPRequests(); n != i {
		b.Fatalf("%d requests for %d misses", n, i)
	}
}

package dataverse_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestClient_InflightRequestsWhileThrottled: on a 429 the client "sends no
// request at all" until Retry-After has elapsed (dataverse.md §5). The
// gauge screenpop_dataverse_inflight_requests ("Dataverse requests in
// flight"; operations.md: "stuck at SCREENPOP_DATAVERSE_CONCURRENCY:
// Dataverse slower than the call rate") and /status requests_in_flight
// must then say none are in flight, not that every request slot is taken
// by a slow Dataverse.
func TestClient_InflightRequestsWhileThrottled(t *testing.T) {
	reg := prometheus.NewRegistry()
	const slots = 4
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Registerer = reg
		cfg.Concurrency = slots
	})
	warm(t, srv, c)
	srv.ThrottleNext(1, 4*time.Second)
	// The first lookup gets the 429; the flight waits out Retry-After.
	c.Prefetch(phone("+13175550100"))
	deadline := time.Now().Add(5 * time.Second)
	for c.Status().(dataverse.Status).ThrottledUntil == nil {
		if time.Now().After(deadline) {
			t.Fatal("never throttled")
		}
		time.Sleep(5 * time.Millisecond) // polling the status
	}
	// More callers ring meanwhile: their lookups wait for the window too.
	for i := 1; i <= slots; i++ {
		c.Prefetch(phone(fmt.Sprintf("+131755501%02d", i)))
	}
	time.Sleep(500 * time.Millisecond) // well inside the 4 s window
	sent := srv.HTTPRequests()
	st := c.Status().(dataverse.Status)
	g := testutil.ToFloat64(gaugeOf(t, reg, "screenpop_dataverse_inflight_requests"))
	if st.ThrottledUntil == nil {
		t.Fatal("the throttling window ended early")
	}
	if g != 0 || st.RequestsInFlight != 0 {
		t.Errorf("throttled (no request sent until %s; %d requests reached Dataverse, the one answered 429): inflight_requests = %v, /status requests_in_flight = %d; want 0: the on-call reads every slot taken by a slow Dataverse",
			st.ThrottledUntil.Format(time.TimeOnly), sent, g, st.RequestsInFlight)
	}
}

// gaugeOf returns the current value of the single-series gauge name in reg
// as a collector testutil can read.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "v"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("%s not registered", name)
	return nil
}

// TestClient_ALookupOnTheWireOutlivesAnothersRetryAfter: a 429 holds back
// the requests not yet sent (dataverse.md §5), and a lookup gives up at
// once only when its own request is held past its deadline. Caller A's
// request is on its way (Dataverse answers it in 300 ms) when caller B's
// request gets a 429 with Retry-After 30 s: A's answer still comes in
// time, and A must get it, not a ThrottledError and a search pop.
func TestClient_ALookupOnTheWireOutlivesAnothersRetryAfter(t *testing.T) {
	srv, c := MustEnv(t, nil)
	srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "Onthewire", Telephone1: "+13175550181"})
	warm(t, srv, c)
	srv.SetLatency(300 * time.Millisecond)
	type answer struct {
		recs []bridge.Record
		err  error
	}
	a := make(chan answer, 1)
	go func() {
		recs, err := c.Lookup(ctxT(t, 2*time.Second), phone("+13175550181"))
		a <- answer{recs, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Arrived() < 1 { // A's request has reached Dataverse, past its throttle check
		if time.Now().After(deadline) {
			t.Fatal("A's request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	srv.ThrottleNext(1, 30*time.Second)
	if _, err := c.Lookup(ctxT(t, 2*time.Second), phone("+13175550182")); !errors.As(err, new(*dataverse.ThrottledError)) {
		t.Fatalf("B: %v, want a ThrottledError (its own request got the 429)", err)
	}
	got := <-a
	if got.err != nil || len(got.recs) != 1 {
		t.Fatalf("A: %d records, %v; want its record: its request was answered within its deadline, only B's was throttled", len(got.recs), got.err)
	}
}

// TestClient_ALongRetryAfterIsNoOutage: Dataverse may ask for up to five
// minutes (Retry-After), longer than a background lookup lives
// (FlightTimeout, 60 s). The lookups that meet that wait send nothing and
// give up; they say nothing of whether Dataverse answers, so they must not
// open the circuit breaker, whose "circuit breaker open" line and
// breaker_state 1 send the on-call engineer to an outage (operations.md)
// rather than to the throttling the warn line names.
func TestClient_ALongRetryAfterIsNoOutage(t *testing.T) {
	srv, c := MustEnv(t, nil)
	warm(t, srv, c)
	srv.ThrottleNext(1, 90*time.Second)
	for i := range 8 {
		_, err := c.Lookup(ctxT(t, 2*time.Second), phone(fmt.Sprintf("+1317555%04d", 300+i)))
		if !errors.As(err, new(*dataverse.ThrottledError)) {
			t.Fatalf("lookup %d: %v, want a ThrottledError", i, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Status().(dataverse.Status).LookupsInFlight > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the background lookups give up
	}
	if st := c.Status().(dataverse.Status); st.Breaker != "closed" {
		t.Fatalf("breaker %s after %d consecutive failures, with %d request sent (answered 429): throttling told as an outage", st.Breaker, st.ConsecutiveFailures, srv.HTTPRequests())
	}
}

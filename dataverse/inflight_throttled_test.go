package dataverse_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/dataverse"
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

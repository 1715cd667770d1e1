package dataverse_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// lateFirstBatch delays the answer to the first $batch by d once
// Dataverse has read it: its request asked at once, its answer comes late.
type lateFirstBatch struct {
	rt    http.RoundTripper
	first atomic.Bool
	d     time.Duration
}

func (l *lateFirstBatch) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, "/$batch") && l.first.CompareAndSwap(false, true) {
		time.Sleep(l.d)
	}
	return resp, err
}

// TestClient_ALookupSinceASaveGetsNoAnswerReadBeforeIt: a caller's first
// leg asks Dataverse, which finds no contact, and its answer comes late,
// after that pop's deadline (a create pop). The agent saves the caller;
// the conversation's next leg (a transfer) asks for an answer read since
// (Key.Since). It must not join the first leg's lookup, still on its way:
// that one read Dataverse before the save, and its "none" would make a
// second create pop, and a duplicate contact. Nor may that late "none",
// arriving after, replace the record in the cache.
func TestClient_ALookupSinceASaveGetsNoAnswerReadBeforeIt(t *testing.T) {
	const num = "+13175550874"
	reg := prometheus.NewRegistry()
	late := &lateFirstBatch{rt: http.DefaultTransport, d: 800 * time.Millisecond}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Registerer = reg
		cfg.HTTPClient = &http.Client{Transport: late}
	})
	warm(t, srv, c)
	if _, err := c.Lookup(ctxT(t, 50*time.Millisecond), phone(num)); err == nil {
		t.Fatal("the first leg's lookup answered within 50 ms; want it late")
	}
	id := srv.AddContact(dataversetest.Contact{FirstName: "Saved", LastName: "Meanwhile", Telephone1: num})
	since := time.Now()
	recs, err := c.Lookup(ctxT(t, 2*time.Second), bridge.Key{Kind: bridge.KeyPhone, Value: num, Since: since})
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("the next leg's lookup since the save: %+v, %v; want the contact saved (%s), not the first leg's answer read before it", recs, err, id)
	}
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(t, reg, "screenpop_dataverse_lookups_total", map[string]string{"kind": "phone", "result": "none"}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first leg's lookup never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if recs, err := c.Lookup(ctxT(t, 2*time.Second), phone(num)); err != nil || len(recs) != 1 {
		t.Fatalf("once the first leg's late answer came: %d records, %v; want the contact: an answer read earlier replaced a later one", len(recs), err)
	}
}

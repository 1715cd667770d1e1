package dataverse_test

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// popDeadline is what the resolver gives a lookup (SCREENPOP_POP_DEADLINE).
const popDeadline = 2 * time.Second

// burst looks n distinct unknown callers up at once, each under the pop
// deadline, as the resolver does for a burst of alerting calls, and waits
// for every lookup to return.
func burst(t *testing.T, c *dataverse.Client, n, base int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _ = c.Lookup(ctxT(t, popDeadline), phone(fmt.Sprintf("+1317555%04d", base+i)))
		})
	}
	wg.Wait()
}

// A burst of cache misses far above what Dataverse can answer in time
// (slow, 1 s a request) turns into search pops, as documented. Once it is
// over, a caller Dataverse can answer within the deadline is looked up
// again: the lookups nobody waits for any more (their pops went out as
// search) do not queue ahead of it for up to FlightTimeout (60 s), each
// holding a goroutine (operations.md 6: go_goroutines grows with agents,
// not with traffic).
func TestClient_BurstOfMissesLeavesNoBacklog(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Concurrency = 4 })
	id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175559990"})
	warm(t, srv, c)
	srv.SetLatency(time.Second)
	before := runtime.NumGoroutine()

	burst(t, c, 120, 0)

	// The pops of the burst are out (search). The next caller arrives a
	// deadline later.
	time.Sleep(popDeadline)
	start := time.Now()
	recs, err := c.Lookup(ctxT(t, popDeadline), phone("+13175559990"))
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Errorf("lookup %v after the burst: got %v, %v; want the contact (Dataverse answers in 1 s, the deadline is %v): "+
			"it waited behind %d lookups of the burst nobody waits for", time.Since(start).Round(time.Millisecond), recs, err, popDeadline,
			c.Status().(dataverse.Status).LookupsInFlight)
	}
	if n := runtime.NumGoroutine(); n > before+20 {
		t.Errorf("%d goroutines %v after a burst that ended, %d before it", n, time.Since(start).Round(time.Millisecond)+popDeadline, before)
	}
}

// Lookups that never left screenpop (they waited for one of the
// SCREENPOP_DATAVERSE_CONCURRENCY request slots until their flight's time
// was up) are not Dataverse failing: they must not open the circuit
// breaker, which would turn every pop into search for 30 s after the burst
// and tell on-call "Dataverse failing or unreachable" (operations.md,
// breaker_state) while every request Dataverse got was answered 200.
func TestClient_BurstDoesNotOpenTheBreaker(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Concurrency = 2
		cfg.FlightTimeout = 3 * time.Second // the default is 60 s: the same, later
	})
	id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175559991"})
	warm(t, srv, c)
	srv.SetLatency(time.Second)

	burst(t, c, 40, 0)
	// Let the flights of the burst end (FlightTimeout) before looking.
	time.Sleep(2 * time.Second)
	srv.SetLatency(0)

	for _, r := range srv.Requests() {
		if r.Status != http.StatusOK {
			t.Fatalf("Dataverse answered %d to a request: the test wants a slow, healthy Dataverse", r.Status)
		}
	}
	if st := c.Status().(dataverse.Status); st.Breaker != "closed" {
		t.Errorf("breaker %s (%d consecutive failures) after a burst Dataverse answered 200 to every request of", st.Breaker, st.ConsecutiveFailures)
	}
	recs, err := c.Lookup(ctxT(t, popDeadline), phone("+13175559991"))
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Errorf("lookup after the burst: got %v, %v; want the contact", recs, err)
	}
}

// While a Retry-After runs past the pop deadline, every lookup gives up at
// once (dataverse.md 5: "A lookup whose pop deadline falls inside the wait
// gives up at once (search pop, outcome lookup_error)"), not only those
// whose flight holds one of the request slots: the others would hold their
// resolver worker, and their agent's search pop, for the whole deadline.
func TestClient_ThrottledBurstGivesUpAtOnce(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Concurrency = 2 })
	warm(t, srv, c)
	srv.ThrottleNext(1, 5*time.Second)
	// The 429 that starts the wait.
	_, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550001"))
	var te *dataverse.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("first lookup: %v, want a ThrottledError", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	slow := 0
	for i := range 10 {
		wg.Go(func() {
			start := time.Now()
			_, err := c.Lookup(ctxT(t, popDeadline), phone(fmt.Sprintf("+1317555%04d", 100+i)))
			took := time.Since(start)
			if !errors.As(err, new(*dataverse.ThrottledError)) || took > popDeadline/3 {
				mu.Lock()
				slow++
				mu.Unlock()
				t.Logf("lookup %d: %v after %v", i, err, took.Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	if slow > 0 {
		t.Errorf("%d of 10 lookups during a Retry-After past their deadline did not give up at once", slow)
	}
}

// A half-open breaker's probe that is never sent (ErrBusy) does not leave
// the breaker waiting for its outcome for good: the next lookup probes.
func TestClient_BusyProbeLetsTheNextOneProbe(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Concurrency = 1
		cfg.MaxAttempts = 1
		cfg.BreakerCooldown = 500 * time.Millisecond
		cfg.QueueTimeout = 200 * time.Millisecond
	})
	id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175559992"})
	warm(t, srv, c)
	srv.FailNext(5, http.StatusServiceUnavailable)
	for i := range 5 {
		_, _ = c.Lookup(ctxT(t, popDeadline), phone(fmt.Sprintf("+1317555%04d", 500+i)))
	}
	if st := c.Status().(dataverse.Status); st.Breaker != "open" {
		t.Fatalf("breaker %s after 5 failed lookups", st.Breaker)
	}
	time.Sleep(600 * time.Millisecond) // the cooldown
	// Something else holds the only request slot: the probe cannot go.
	srv.SetLatency(time.Second)
	held := make(chan struct{})
	go func() { defer close(held); _ = c.Check(ctxT(t, 5*time.Second)) }()
	// Until the check's request is out it does not hold the slot, and the
	// probe would take it.
	for deadline := time.Now().Add(5 * time.Second); c.Status().(dataverse.Status).RequestsInFlight != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the check's request did not take the slot within 5 s")
		}
	}
	if _, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550600")); !errors.Is(err, dataverse.ErrBusy) {
		t.Fatalf("probe while the slot is held: %v, want ErrBusy", err)
	}
	<-held
	srv.SetLatency(0)
	recs, err := c.Lookup(ctxT(t, popDeadline), phone("+13175559992"))
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("lookup after the busy probe: %v, %v; want the contact", recs, err)
	}
	if st := c.Status().(dataverse.Status); st.Breaker != "closed" {
		t.Fatalf("breaker %s after a successful probe", st.Breaker)
	}
}

// Lookups let through before the breaker opened send nothing more once it
// is open: neither their retries nor, for those that waited for a request
// slot, their first request. They went on to MaxAttempts against a
// Dataverse the breaker had just judged down, each request holding one of
// the few slots. Here Dataverse hangs (each request times out after
// 200 ms) and the slot is one: the first lookup to fail its two attempts
// opens the breaker, by when each other lookup has sent one request at
// most, and one more may have taken the slot that lookup's last request
// let go before its failure was recorded; the rest are not sent (8
// before).
func TestClient_OpenBreakerStopsLookupsInFlight(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Concurrency, cfg.QueueTimeout, cfg.RequestTimeout = 1, 10*time.Second, 200*time.Millisecond
		cfg.MaxAttempts, cfg.BreakerFailures, cfg.BreakerCooldown = 2, 1, time.Minute
	})
	warm(t, srv, c)
	srv.SetLatency(time.Hour)
	const lookups = 4
	var wg sync.WaitGroup
	for i := range lookups {
		wg.Go(func() {
			if _, err := c.Lookup(ctxT(t, 10*time.Second), phone(fmt.Sprintf("+13175550%03d", 400+i))); err == nil {
				t.Errorf("lookup %d against a failing Dataverse succeeded", i)
			}
		})
	}
	wg.Wait()
	if st := c.Status().(dataverse.Status).Breaker; st != "open" {
		t.Fatalf("breaker %s, want open (or the test proves nothing)", st)
	}
	if most := 2 + (lookups - 1) + 1; srv.Arrived() > most {
		t.Fatalf("%d requests for %d lookups of 2 attempts each; want at most %d: none sent once the breaker opened", srv.Arrived(), lookups, most)
	}
}

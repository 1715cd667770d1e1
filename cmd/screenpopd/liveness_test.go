package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The liveness check (systemd's watchdog pings, /healthz) goes on while
// every part answers for its state, and stops, naming the part, when one
// never returns, as a component deadlocked on its own lock does. Here the
// part is the test's: a real component cannot be deadlocked from outside
// its package. TestMain_SystemdNotify runs the check on the real ones.
func TestLiveness_StopsAtAPartThatDoesNotAnswer(t *testing.T) {
	w := newWedgeable("push server", "genesys client", "push server", "resolver")
	l, pings := w.l, &w.pings
	if part, _ := l.stuck(time.Now().Add(time.Hour)); part != "" {
		t.Fatalf("stuck in %q before the check began: Open may take minutes", part)
	}
	w.run(t)

	waitFor(t, 5*time.Second, "three checks", func() bool { return pings.Load() >= 3 })
	if part, _ := l.stuck(time.Now()); part != "" {
		t.Fatalf("stuck in %q while every part answers", part)
	}

	w.wedge() // the push server deadlocks
	time.Sleep(2 * l.period)
	n := pings.Load()
	waitFor(t, 5*time.Second, "stuck", func() bool { p, _ := l.stuck(time.Now()); return p != "" })
	if got := pings.Load(); got > n {
		t.Errorf("%d pings while the push server held its lock: systemd would not restart the daemon", got-n)
	}
	part, since := l.stuck(time.Now())
	if part != "push server" || since < 3*l.period {
		t.Errorf("stuck in %q for %v, want the push server for at least %v", part, since, 3*l.period)
	}
	if msg := stuckError(part, since); !strings.Contains(msg, "push server") || !strings.Contains(msg, "kill -ABRT") {
		t.Errorf("/healthz answer %q does not name the part and the next step", msg)
	}

	w.free() // it recovers
	waitFor(t, 5*time.Second, "pings again", func() bool { return pings.Load() > n+1 })
	if part, _ := l.stuck(time.Now()); part != "" {
		t.Errorf("still stuck in %q after the part answered", part)
	}
}

// A stuck daemon is taken out of the load balancer too: the agent port's
// /healthz, which the balancer probes, answers 503 like the admin
// listener's, so agents reconnect to the other instance instead of
// waiting on one whose pops have stopped. Only the liveness check is the
// test's, as above; the daemon, its listeners and the handlers are real.
func TestMain_StuckDaemonLeavesTheLoadBalancer(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	agent, admin := d.Main.AgentURL(), "http://"+d.Main.AdminAddr()
	if code, body := get(agent); code != http.StatusOK {
		t.Fatalf("agent /healthz of a ready daemon: %d %q", code, body)
	}

	w := newWedgeable("resolver", "resolver")
	w.run(t)
	waitFor(t, 5*time.Second, "a completed check", func() bool { return w.pings.Load() > 0 })
	d.Main.live.Store(w.l)
	w.wedge() // the resolver deadlocks
	waitFor(t, 5*time.Second, "the admin /healthz to fail", func() bool { code, _ := get(admin); return code == http.StatusServiceUnavailable })
	code, body := get(agent)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("agent /healthz of a stuck daemon: %d %q, want 503: the load balancer keeps sending agents to it", code, body)
	}
	if strings.Contains(body, "resolver") {
		t.Errorf("agent /healthz names the part (%q): anyone can ask it; the admin listener says which", body)
	}

	w.free() // it recovers
	waitFor(t, 5*time.Second, "agent /healthz ok again", func() bool { code, _ := get(agent); return code == http.StatusOK })
}

// wedgeable is a liveness check over parts of the test's, every 20 ms,
// one of which (wedged) answers only while its lock is free, as a
// component deadlocked on its own lock does not.
type wedgeable struct {
	l     *liveness
	pings atomic.Int64 // the check's completed rounds
	mu    sync.Mutex   // the wedged part's lock, and what it guards
	asked int
	held  bool
}

func newWedgeable(wedged string, parts ...string) *wedgeable {
	w := &wedgeable{l: &liveness{period: 20 * time.Millisecond}}
	for _, p := range parts {
		ask := func() {}
		if p == wedged {
			ask = func() { w.mu.Lock(); w.asked++; w.mu.Unlock() }
		}
		w.l.parts = append(w.l.parts, livePart{p, ask})
	}
	return w
}

// run runs the check until the test ends (freeing the part first).
func (w *wedgeable) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.l.run(ctx, func() { w.pings.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		w.free()
		<-done
	})
}

func (w *wedgeable) wedge() { w.mu.Lock(); w.held = true }

func (w *wedgeable) free() {
	if w.held {
		w.held = false
		w.mu.Unlock()
	}
}

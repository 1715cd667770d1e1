package main

import (
	"context"
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
	var mu sync.Mutex // the wedged component's lock, and what it guards
	asked := 0
	l := &liveness{period: 20 * time.Millisecond, parts: []livePart{
		{"genesys client", func() {}},
		{"push server", func() { mu.Lock(); asked++; mu.Unlock() }},
		{"resolver", func() {}},
	}}
	if part, _ := l.stuck(time.Now().Add(time.Hour)); part != "" {
		t.Fatalf("stuck in %q before the check began: Open may take minutes", part)
	}
	var pings atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx, func() { pings.Add(1) }) }()
	held := false
	t.Cleanup(func() {
		cancel()
		if held {
			mu.Unlock()
		}
		<-done
	})

	waitFor(t, 5*time.Second, "three checks", func() bool { return pings.Load() >= 3 })
	if part, _ := l.stuck(time.Now()); part != "" {
		t.Fatalf("stuck in %q while every part answers", part)
	}

	mu.Lock() // the push server deadlocks
	held = true
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

	mu.Unlock() // it recovers
	held = false
	waitFor(t, 5*time.Second, "pings again", func() bool { return pings.Load() > n+1 })
	if part, _ := l.stuck(time.Now()); part != "" {
		t.Errorf("still stuck in %q after the part answered", part)
	}
}

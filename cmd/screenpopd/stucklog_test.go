package main

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// stuckLog is the daemon's stderr as a log reader that stops reading sees
// it: journald hung on a slow disk, a container runtime whose log copier
// stalled, a `screenpopd run | tee` whose reader is suspended. Until
// stick, it keeps what is written; after it, every Write blocks until
// unstick.
type stuckLog struct {
	syncbuf.Buffer
	mu      sync.Mutex
	stuck   bool
	release chan struct{}
}

func newStuckLog() *stuckLog { return &stuckLog{release: make(chan struct{})} }

func (s *stuckLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	stuck, release := s.stuck, s.release
	s.mu.Unlock()
	if stuck {
		<-release
	}
	return s.Buffer.Write(p)
}

func (s *stuckLog) stick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stuck {
		s.stuck = true
		s.release = make(chan struct{})
	}
}

func (s *stuckLog) unstick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stuck {
		s.stuck = false
		close(s.release)
	}
}

// A log reader that stops reading must not stop the pops: every stage
// writes its lines (the agent's connection, the pop line), and a write
// that blocks held each of them, so that no agent connected and no call
// popped, for every agent, until the reader read again. Nor may it hold
// the stop past its budget. Lines the reader did not take in time are
// dropped, and a line says how many once it reads again.
func TestRun_AStuckLogReaderStopsNoPop(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["LOG_LEVEL"] = "info"
	stderr := newStuckLog()
	t.Cleanup(stderr.unstick)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run"}, env(vars), &syncbuf.Buffer{}, stderr) }()
	waitFor(t, 30*time.Second, "screenpopd ready", func() bool { return strings.Contains(stderr.String(), "screenpopd ready") })

	stderr.stick()
	agent := demoAgents[0].ID
	page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(agent))
	// More calls than the resolver has workers (64): each pop line
	// written held its worker.
	for i := range 80 {
		call := alertCall(d, agent)
		if page.waitPop(call.ID(), 10*time.Second).IsZero() {
			t.Errorf("call %d: no pop within 10 s while the log's reader is stuck", i+1)
			break
		}
		call.Disconnect()
	}

	// The reader reads again: the lines held meanwhile (the buffer had
	// room for them all) reach it, none dropped.
	stderr.unstick()
	waitFor(t, 10*time.Second, "the 80 calls' pop lines", func() bool {
		return strings.Count(stderr.String(), `"message":"pop"`) >= 80
	})
	if strings.Contains(stderr.String(), "log lines dropped") {
		t.Errorf("lines dropped though the buffer had room:\n%s", logLines(&stderr.Buffer, "log lines dropped"))
	}
	admin := regexp.MustCompile(`"admin_listen":"([^"]+)"`).FindStringSubmatch(stderr.String())
	if admin == nil {
		t.Fatal("no admin_listen in the start line")
	}
	if got, ok := scrapeAdmin(t, admin[1]).sum("screenpop_log_lines_dropped_total", nil); !ok || got != 0 {
		t.Errorf("screenpop_log_lines_dropped_total = %v (on /metrics: %v), want 0", got, ok)
	}

	// And stuck again for the stop.
	stderr.stick()

	stop := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("run exited %d", code)
		}
	case <-time.After(shutdownBudget):
		stderr.unstick()
		<-done
		t.Fatalf("run did not return within %v of the stop while the log's reader was stuck", shutdownBudget)
	}
	t.Logf("stopped in %v", time.Since(stop).Round(time.Millisecond))
}

// A daemon that fails (here at start: its NATS refuses connections) ends
// with its error on stderr and exit 1, for systemd to restart it. With the
// log's reader stuck, that last write blocked, and the process never
// ended: no restart, no exit status, a daemon neither up nor down.
func TestRun_AStuckLogReaderDoesNotHoldTheExit(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["NATS_URL"] = "nats://" + freeLoopbackAddr(t) // nothing listens there
	stderr := newStuckLog()
	stderr.stick()
	t.Cleanup(stderr.unstick)
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), []string{"run"}, env(vars), &syncbuf.Buffer{}, stderr) }()
	select {
	case code := <-done:
		if code != 1 {
			t.Errorf("run exited %d, want 1", code)
		}
	case <-time.After(shutdownBudget):
		t.Fatalf("run did not return within %v of failing while the log's reader was stuck", shutdownBudget)
	}
}

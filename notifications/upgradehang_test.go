package notifications_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestClient_AStopDuringAnUnansweredSocketUpgradeReturnsAtOnce: the
// streaming host accepts the connection and the socket's upgrade request,
// and then says nothing (a load balancer whose backend hangs, a proxy that
// lets the tunnel through and stalls). The daemon is told to stop
// meanwhile: its whole stop has 8 s (shutdownBudget, for systemd's 10 s),
// and the Genesys input is the first stage of it. Run must return at once,
// as it does while a REST call or a proxy's CONNECT hangs: nothing is left
// to wait for. gorilla's DialContext bounds the upgrade's answer by the
// context's deadline alone (it sets the deadline on the connection, and
// reads the answer without watching the context), so the stop waited out
// the whole HTTPTimeout (15 s by default), past the stop's budget.
func TestClient_AStopDuringAnUnansweredSocketUpgradeReturnsAtOnce(t *testing.T) {
	as := agents(1)
	emu := notificationstest.New(notificationstest.Config{Agents: as})
	defer emu.Close()
	var upgrades atomic.Int64
	hung := make(chan struct{})
	defer close(hung)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/channels/") {
			upgrades.Add(1) // accepted, read, never answered
			select {
			case <-hung:
			case <-r.Context().Done():
			}
			return
		}
		emu.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	cfg := compressed(srv.URL)
	cfg.Agents = ids(as)
	cfg.HTTPTimeout = 15 * time.Second // the default
	cfg.Registerer = prometheus.NewRegistry()
	log, _ := newLog(t)
	out := make(chan bridge.Snapshot, 64)
	c, err := notifications.New(cfg, log, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, 10*time.Second, "the socket's upgrade request", func() bool { return upgrades.Load() > 0 })
	time.Sleep(200 * time.Millisecond) // the dial is waiting for the answer

	stopped := time.Now()
	cancel()
	// Correct code returns within milliseconds; 2 s is generous, and a
	// quarter of the daemon's whole stop budget.
	select {
	case err := <-done:
		if took := time.Since(stopped); took > 2*time.Second {
			t.Fatalf("Run returned %v %v after the stop, want within 2 s (the daemon's whole stop has 8 s)", err, took.Round(time.Millisecond))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s of the stop")
	}
}

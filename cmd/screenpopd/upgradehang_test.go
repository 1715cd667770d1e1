package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The Genesys streaming host (or a load balancer in front of it) accepts
// the socket's connection and its upgrade request and then says nothing:
// the sockets dropped, the daemon redials, and its dial waits for an answer
// that does not come. A SIGTERM then must stop the daemon within its
// budget (8 s, for systemd's 10 s) with the later stages given their time,
// as it does while a REST call to Genesys hangs: the redial was bounded
// only by its deadline (the HTTP timeout, 15 s), so the Genesys input held
// the stop for all of it and the stop was cut short at the budget, exit 1
// ("the genesys input had not stopped").
func TestDaemon_AnUnansweredSocketUpgradeDoesNotHoldTheStop(t *testing.T) {
	cfg, g, _, _ := emulatedConfig(t, 2, 730, notificationstest.Config{}, nil)
	var hang atomic.Bool
	var upgrades atomic.Int64
	released := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() && strings.HasPrefix(r.URL.Path, "/channels/") {
			upgrades.Add(1) // accepted and read, never answered
			select {
			case <-released:
			case <-r.Context().Done():
			}
			return
		}
		g.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	t.Cleanup(func() { close(released) })
	cfg.GenesysAPIURL = front.URL
	logs := &syncbuf.Buffer{}
	_, stop := runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))

	hang.Store(true)
	if g.DropConnections() == 0 {
		t.Fatal("no Genesys socket to drop")
	}
	waitFor(t, 10*time.Second, "the daemon's redial of the socket", func() bool { return upgrades.Load() > 0 })
	time.Sleep(200 * time.Millisecond) // the redial waits for the answer

	begun := time.Now()
	stop() // fails the test when Run returns an error (a stop cut short) or takes 15 s
	took := time.Since(begun)
	t.Logf("stopped in %v", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Errorf("the stop took %v, want well within the 8 s budget (it takes a second or two)", took.Round(time.Millisecond))
	}
	if t.Failed() {
		t.Logf("log:\n%s", logLines(logs, "stop", `"level":"error"`))
	}
}

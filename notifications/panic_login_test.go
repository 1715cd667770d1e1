package notifications_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A token endpoint (or a gateway in front of it) that answers a login
// with a 2xx whose body is the JSON null: the SDK's login decodes it into
// a nil *AuthResponse (200) or *AuthErrorResponse (another 2xx) and reads
// a field of it (platformclientv2 configuration.go
// AuthorizeClientCredentials), a nil dereference in the auth loop's
// goroutine, which has no recover: the whole daemon stops. The login must
// fail like any other odd answer and be tried again.
func TestClient_LoginAnsweredWithNullDoesNotPanic(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusCreated} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			as := agents(1)
			emu := notificationstest.New(notificationstest.Config{Agents: as})
			var odd atomic.Int32
			odd.Store(2)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/oauth/token" && odd.Add(-1) >= 0 {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(status)
					_, _ = w.Write([]byte("null"))
					return
				}
				emu.Handler().ServeHTTP(w, r)
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: h}
			go func() { _ = srv.Serve(ln) }()
			defer func() { _ = srv.Close(); emu.Close() }()

			cfg := compressed("http://" + ln.Addr().String())
			cfg.Agents = ids(as)
			cfg.Registerer = prometheus.NewRegistry()
			log, _ := newLog(t)
			out := make(chan bridge.Snapshot, 16)
			c, err := notifications.New(cfg, log, out)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			waitFor(t, 10*time.Second, "client ready after the odd login answers", c.Ready)
			cancel()
			go func() {
				for range out {
				}
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
			close(out)
		})
	}
}

// An API answer other than 2xx whose body is the JSON null (a gateway's
// 502 or 503 in front of Genesys): the SDK decodes it into a nil
// *APIError and sets its ContextID (platformclientv2 apiresponse.go
// NewAPIResponse), a nil dereference in whichever goroutine made the call
// (a shard creating its channel, the auth loop asking tokens/me, the
// reconciliation), none of which recovers: the daemon stops. The call
// must fail as the outage it is and be tried again.
func TestClient_APIErrorAnsweredWithNullDoesNotPanic(t *testing.T) {
	as := agents(1)
	emu := notificationstest.New(notificationstest.Config{Agents: as})
	var odd atomic.Int32
	odd.Store(2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/v2/notifications/channels" && odd.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("null"))
			return
		}
		emu.Handler().ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close(); emu.Close() }()

	cfg := compressed("http://" + ln.Addr().String())
	cfg.Agents = ids(as)
	cfg.Registerer = prometheus.NewRegistry()
	log, _ := newLog(t)
	out := make(chan bridge.Snapshot, 16)
	c, err := notifications.New(cfg, log, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, 10*time.Second, "client ready after the odd channel answers", c.Ready)
	if odd.Load() >= 0 {
		t.Errorf("the odd answers were not all given")
	}
	cancel()
	go func() {
		for range out {
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return")
	}
	close(out)
}

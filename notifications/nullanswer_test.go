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

// Genesys answers (or a gateway's in front of it) whose body is the JSON
// null. The SDK decodes such a body into a nil pointer and dereferences
// it, in whichever goroutine made the call, none of which recovers: the
// whole daemon stops. Each must fail like any other odd answer and be
// tried again, so the client becomes ready.
//   - A login answered 2xx: a nil *AuthResponse (200) or
//     *AuthErrorResponse (another 2xx), read by platformclientv2
//     configuration.go AuthorizeClientCredentials in the auth loop.
//   - An API call answered with an error status (a gateway's 502 or 503):
//     a nil *APIError whose ContextID NewAPIResponse sets (apiresponse.go),
//     in a shard creating its channel, the auth loop asking tokens/me, the
//     reconciliation.
func TestClient_AnswerOfNullDoesNotPanic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		path   string
		status int
	}{
		{"LoginOK", http.MethodPost, "/oauth/token", http.StatusOK},
		{"LoginCreated", http.MethodPost, "/oauth/token", http.StatusCreated},
		{"ChannelBadGateway", http.MethodPost, "/api/v2/notifications/channels", http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agents(1)
			emu := notificationstest.New(notificationstest.Config{Agents: as})
			var odd atomic.Int32
			odd.Store(2)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == tc.method && r.URL.Path == tc.path && odd.Add(-1) >= 0 {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
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
			waitFor(t, 10*time.Second, "client ready after the odd answers", c.Ready)
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
		})
	}
}

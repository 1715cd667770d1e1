package notifications_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Genesys Cloud's API speaks HTTP/2, so every agent token check of the
// push server rides one connection. When that connection goes silent (a
// load balancer or NAT on the path forgets it, the front end behind it
// vanishes: no FIN, no RST), pages get in again within seconds, over a
// new connection, rather than every page's hello waiting out its check
// on the dead one (and being told to try again) until the kernel gives
// up on it, about 15 minutes, or never behind a proxy that still
// acknowledges. The emulator serves HTTPS with HTTP/2; a TCP proxy
// between them black-holes the live connection.
func TestAuthenticator_HTTP2DeadConnection(t *testing.T) {
	emu := notificationstest.New(notificationstest.Config{})
	var mu sync.Mutex
	protos := map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
		emu.Handler().ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); emu.Close() })
	proxy := testenv.StartProxy(t, srv.Listener.Addr().String())

	logs := &syncbuf.Buffer{}
	auth, err := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: "https://" + proxy.Addr(), OrgID: emu.Config().OrgID},
		zerolog.New(logs).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	notifications.TrustRoots(auth, srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs)
	t.Cleanup(func() { notifications.CloseIdleConnections(auth) })

	n := 0
	check := func(timeout time.Duration) error {
		n++ // a new agent each time: no answer from the cache
		agent := fmt.Sprintf("5e1f0a1c-0000-4000-8000-%012d", n)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		got, _, err := auth.Authenticate(ctx, emu.AgentToken(agent))
		if err == nil && string(got) != agent {
			return fmt.Errorf("token of %s answered as %s", agent, got)
		}
		return err
	}
	for range 3 {
		if err := check(10 * time.Second); err != nil {
			t.Fatalf("before: %v", err)
		}
	}
	mu.Lock()
	h2 := protos["HTTP/2.0"]
	mu.Unlock()
	if h2 != 3 || proxy.Dials() != 1 {
		t.Fatalf("setup: %d of 3 checks over HTTP/2, %d connections; want 3 on one", h2, proxy.Dials())
	}

	proxy.Blackhole()
	blackholed := time.Now()
	const recoverWithin = 40 * time.Second
	failed := 0
	var firstErr error
	for {
		// A page's hello waits up to 10 s for its check (AuthConfig.Timeout).
		err := check(10 * time.Second)
		if err == nil {
			break
		}
		failed++
		if firstErr == nil {
			firstErr = err
		}
		if time.Since(blackholed) > recoverWithin {
			t.Fatalf("after the connection went dead, %d token checks in a row failed for %v: no page gets in; first error %v; connections dialled: %d",
				failed, recoverWithin, firstErr, proxy.Dials())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("a check succeeded %v after the blackhole, %d failed meanwhile (first error: %v); %d connections",
		time.Since(blackholed).Round(100*time.Millisecond), failed, firstErr, proxy.Dials())
	for i := range 5 {
		if err := check(10 * time.Second); err != nil {
			t.Errorf("check %d after recovery: %v", i, err)
		}
	}
	if d := proxy.Dials(); d != 2 {
		t.Errorf("%d connections, want 2: the dead one and its replacement", d)
	}
	t.Logf("log:\n%s", logs.String())
}

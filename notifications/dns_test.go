package notifications_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/dnstest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

// The Genesys hosts in these tests: the emulator serves them all on one
// loopback port, found through the test's DNS server.
const (
	apiHost       = "api.example.test"
	loginHost     = "login.example.test"
	streamingHost = "streaming.example.test"
)

var genesysHosts = []string{apiHost, loginHost, streamingHost}

// genesysByName serves the emulator on loopback, to be reached as
// http://api.example.test:PORT (its login and streaming hosts on the same
// port). keepAlive(false) closes the idle HTTP connections to it and makes
// every later request open its own (so each needs its host's name): a
// Genesys front end that closed them, as when the path to it blinked.
type genesysByName struct {
	emu  *notificationstest.Emulator
	srv  *http.Server
	port string
}

func serveByName(t *testing.T, ecfg notificationstest.Config) *genesysByName {
	t.Helper()
	emu := notificationstest.New(ecfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: emu.Handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); emu.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &genesysByName{emu: emu, srv: srv, port: port}
}

func (g *genesysByName) apiURL() string { return "http://" + apiHost + ":" + g.port }

// startByName starts a client with the daemon's retry timings for agents
// against g, reached through the test's DNS server.
func startByName(t *testing.T, g *genesysByName, agentIDs []string) (*harness, *collector) {
	t.Helper()
	cfg := compressed(g.apiURL())
	cfg.Agents = agentIDs
	cfg.BackoffMin, cfg.BackoffMax = 0, 0 // the defaults: how the daemon retries
	cfg.Registerer = prometheus.NewRegistry()
	log, lb := newLog(t)
	out := make(chan bridge.Snapshot, 64)
	c, err := notifications.New(cfg, log, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, emu: g.emu, client: c, out: out, logs: lb, cancel: cancel, done: make(chan error, 1), reg: cfg.Registerer.(*prometheus.Registry)}
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(h.stop)
	return h, collect(out)
}

// warnLines returns the warn and error lines of lines, decoded.
func warnLines(lines []string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if m["level"] == "warn" || m["level"] == "error" {
			out = append(out, m)
		}
	}
	return out
}

// TestClient_DNS: the names of Genesys' hosts (login, api, streaming) stop
// resolving while the client needs them: its token runs out (a login), its
// socket is lost (a redial, then a new channel: creation, subscription),
// a call rings meanwhile (the gap's reconciliation). For as long as DNS
// fails, each retry loop warns once (docs/operations.md: once every 30 s;
// Go writes a failed query's own local port into the error's text, which
// must not make each retry a warning) with an error that says the name did
// not resolve; once DNS is back, the call that rang is heard within twice
// the pop deadline (retries a second apart in an outage, nothing cached).
func TestClient_DNS(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(*dnstest.Server)
		says string // in every warning of a failed lookup
	}{
		// The host's resolver is not running (a stub such as
		// systemd-resolved stopped): each query refused at once, its
		// error naming the query's local port.
		{"ResolverDown", func(d *dnstest.Server) { d.Down(true) }, "lookup "},
		{"NXDOMAIN", func(d *dnstest.Server) { d.Set(dnstest.NXDomain, genesysHosts...) }, "no such host"},
		{"SERVFAIL", func(d *dnstest.Server) { d.Set(dnstest.ServFail, genesysHosts...) }, "server misbehaving"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns := dnstest.Start(t)
			dns.Set(dnstest.OK, genesysHosts...)
			as := agents(1)
			g := serveByName(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: 3 * time.Second})
			h, col := startByName(t, g, ids(as))
			c, lb := h.client, h.logs
			h.awaitStartupReconciliation()
			_ = lb.lines()

			// DNS fails; Genesys' front end closes the connections and the
			// socket; the token (3 s) runs out during the outage.
			tc.fail(dns)
			g.srv.SetKeepAlivesEnabled(false)
			g.emu.DropConnections()
			began := time.Now()
			conv := g.emu.InboundCall(as[0].ID, "+13175550190", notificationstest.Options{}).Alert()
			waitFor(t, 10*time.Second, "a login failed for DNS", func() bool {
				st := c.Status().(notifications.Status)
				return strings.Contains(st.LoginError, "lookup "+loginHost)
			})
			st := c.Status().(notifications.Status)
			if len(st.Channels) == 0 || !strings.Contains(st.Channels[0].LastError, "lookup ") {
				t.Errorf("/status of the channel during the DNS failure: %+v, want its lastError to say the name did not resolve", st.Channels)
			}
			for time.Since(began) < 6*time.Second {
				time.Sleep(50 * time.Millisecond)
			}
			g.srv.SetKeepAlivesEnabled(true)
			dns.Down(false)
			dns.Set(dnstest.OK, genesysHosts...)
			back := time.Now()
			t.Logf("outage %v", back.Sub(began).Round(time.Millisecond))
			col.awaitSoon(t, "the call that rang during the DNS failure", conv, as[0].ID, back,
				"the retries must not wait out a backoff grown during the outage, nor a cached failure")

			perMsg := map[string]int{}
			for _, w := range warnLines(lb.lines()) {
				e, _ := w["error"].(string)
				if e == "" {
					e, _ = w["reason"].(string)
				}
				if !strings.Contains(e, "lookup ") && !strings.Contains(e, "no such host") {
					t.Logf("other %s: %s (%s)", w["level"], w["message"], e)
					continue
				}
				msg := w["message"].(string)
				perMsg[msg]++
				t.Logf("on-call reads: %s: %s", msg, e)
				if !strings.Contains(e, tc.says) || !strings.Contains(e, ".example.test") {
					t.Errorf("%s: %q does not say that a Genesys host's name did not resolve (%q)", msg, e, tc.says)
				}
			}
			if len(perMsg) == 0 {
				t.Errorf("no warning of the DNS failure")
			}
			for msg, n := range perMsg {
				if n > 1 {
					t.Errorf("%d warnings %q in %v of one DNS failure, want 1 (once every 30 s)", n, msg, back.Sub(began).Round(time.Second))
				}
			}
		})
	}
}

// TestPushGenesysAuth_DNS: the agent token check (users/me on the API
// host) cannot resolve the host. A page saying hello is answered 1013 (try
// again later), not 4401 (which sends the agent to sign in again), the
// failure is not remembered as a refusal, and the warning says it is DNS,
// once however many pages fail; once DNS is back the same token is let
// in at once. A slow resolver holds the hello no longer than the lookup
// takes.
func TestPushGenesysAuth_DNS(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Set(dnstest.OK, genesysHosts...)
	g := serveByName(t, notificationstest.Config{})
	auth, err := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: g.apiURL(), OrgID: g.emu.Config().OrgID}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	// Tokens are checked again every 2 s: a page let in keeps its socket
	// through a DNS failure at its re-check.
	_, wsURL := startGenesysPush(t, push.Config{Revalidate: 2 * time.Second}, auth, zerolog.New(&logs))

	// hello says hello with token and returns the first frame's type and,
	// for an error frame (sent before the close) or a close, its code.
	hello := func(token string) (string, int, time.Duration) {
		t.Helper()
		start := time.Now()
		ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteJSON(map[string]any{"type": "hello", "token": token}); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		var m struct {
			Type string
			Code int
		}
		err = ws.ReadJSON(&m)
		took := time.Since(start)
		if ce, ok := err.(*websocket.CloseError); ok {
			return "", ce.Code, took
		}
		if err != nil {
			t.Fatalf("hello: %v", err)
		}
		if m.Type == "error" {
			// The close that follows must carry the same code.
			_, _, err = ws.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != m.Code {
				t.Errorf("error frame of code %d followed by %v", m.Code, err)
			}
		}
		return m.Type, m.Code, took
	}

	for _, tc := range []struct {
		name string
		fail func()
		says string
	}{
		{"ResolverDown", func() { dns.Down(true) }, "lookup " + apiHost},
		{"NXDOMAIN", func() { dns.Set(dnstest.NXDomain, genesysHosts...) }, "no such host"},
		{"SERVFAIL", func() { dns.Set(dnstest.ServFail, genesysHosts...) }, "server misbehaving"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A token of its own: push trusts an answer for 5 minutes.
			token := g.emu.AgentToken("agent-dns-" + strings.ToLower(tc.name))
			mark := len(logs.String())
			notifications.CloseIdleConnections(auth)
			tc.fail()
			for i := range 5 {
				typ, code, _ := hello(token)
				if code != push.CloseTryAgainLater {
					t.Fatalf("hello %d while %s does not resolve: frame %q, close %d; want close %d (try again later), not %d (sign in again)",
						i+1, apiHost, typ, code, push.CloseTryAgainLater, push.CloseInvalidToken)
				}
			}
			// What the warning (once a minute: the first subtest's) says.
			_, _, aerr := auth.Authenticate(context.Background(), token)
			if aerr == nil || errors.Is(aerr, bridge.ErrInvalidToken) || !strings.Contains(aerr.Error(), tc.says) {
				t.Errorf("Authenticate while %s does not resolve: %v; want an error, not the token's refusal, saying %q", apiHost, aerr, tc.says)
			}
			var warns []map[string]any
			for _, l := range warnLines(strings.Split(logs.String()[mark:], "\n")) {
				if l["message"] == "websocket closed: token could not be checked" {
					warns = append(warns, l)
				}
			}
			if len(warns) > 1 {
				t.Errorf("%d warnings for 5 pages refused in one DNS failure, want at most 1 (once a minute)", len(warns))
			}
			for _, w := range warns {
				t.Logf("on-call reads: %s", w["error"])
				if e, _ := w["error"].(string); !strings.Contains(e, tc.says) {
					t.Errorf("warning %q does not say the name did not resolve (%q)", e, tc.says)
				}
			}
			dns.Down(false)
			dns.Set(dnstest.OK, genesysHosts...)
			if typ, code, took := hello(token); typ != "ready" {
				t.Fatalf("hello once DNS is back: frame %q, close %d; want ready", typ, code)
			} else {
				t.Logf("ready %v after DNS came back", took.Round(time.Millisecond))
			}
		})
	}
	t.Run("RecheckKeepsTheSocket", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteJSON(map[string]any{"type": "hello", "token": g.emu.AgentToken("agent-dns-recheck")}); err != nil {
			t.Fatal(err)
		}
		var m struct{ Type string }
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := ws.ReadJSON(&m); err != nil || m.Type != "ready" {
			t.Fatalf("hello: %q %v", m.Type, err)
		}
		closed := make(chan error, 1)
		go func() {
			_ = ws.SetReadDeadline(time.Time{})
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					closed <- err
					return
				}
			}
		}()
		mark := len(logs.String())
		notifications.CloseIdleConnections(auth)
		dns.Down(true)
		waitFor(t, 10*time.Second, "the token's re-check to fail", func() bool {
			return strings.Contains(logs.String()[mark:], "token revalidation failed; retrying")
		})
		select {
		case err := <-closed:
			t.Fatalf("the socket closed at a token re-check that failed for DNS: %v; want it kept", err)
		case <-time.After(500 * time.Millisecond):
		}
		dns.Down(false)
		ws.Close()
		<-closed
	})
	t.Run("SlowResolver", func(t *testing.T) {
		notifications.CloseIdleConnections(auth)
		dns.SetDelay(2 * time.Second)
		dns.Set(dnstest.Slow, genesysHosts...)
		typ, code, took := hello(g.emu.AgentToken("agent-dns-slow"))
		if typ != "ready" || took > 5*time.Second {
			t.Errorf("hello behind a 2 s resolver: frame %q, close %d after %v; want ready after about 2 s", typ, code, took.Round(time.Millisecond))
		}
		t.Logf("ready after %v behind a 2 s resolver", took.Round(time.Millisecond))
		dns.Set(dnstest.OK, genesysHosts...)
	})
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/chromiumtest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// listenIPv6 listens on [::1]:0, skipping the test where the host has no
// IPv6 loopback.
func listenIPv6(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	return ln
}

// ipv6Env starts both emulators on [::1] and returns the environment of
// `screenpopd run` an admin would write for them, with every listener on
// [::1].
func ipv6Env(t *testing.T) (map[string]string, *notificationstest.Emulator, *dataversetest.Server) {
	t.Helper()
	agent := demoAgents[0]
	g := notificationstest.New(notificationstest.Config{Agents: []notificationstest.AgentSpec{agent}})
	gln := listenIPv6(t)
	go func() { _ = g.Serve(context.Background(), gln) }()
	t.Cleanup(g.Close)
	dv := dataversetest.New(dataversetest.Config{})
	dln := listenIPv6(t)
	go func() { _ = dv.Serve(context.Background(), dln) }()
	t.Cleanup(func() { dv.Close() })
	waitFor(t, 5*time.Second, "emulators serving", func() bool { return g.URL() != "" && dv.URL() != "" })
	if !strings.HasPrefix(g.URL(), "http://[::1]:") || !strings.HasPrefix(dv.URL(), "http://[::1]:") {
		t.Fatalf("emulators on %s and %s, want http://[::1]:port", g.URL(), dv.URL())
	}
	gc, dc := g.Config(), dv.Config()
	return map[string]string{
		"SCREENPOP_LISTEN":        "[::1]:0",
		"SCREENPOP_ADMIN_LISTEN":  "[::1]:0",
		"SCREENPOP_NATS_LISTEN":   "[::1]:0",
		"SCREENPOP_DATA_DIR":      t.TempDir(),
		"GENESYS_API_URL":         g.URL(),
		"GENESYS_CLIENT_ID":       gc.ClientID,
		"GENESYS_CLIENT_SECRET":   gc.ClientSecret,
		"GENESYS_AGENTS":          agent.ID,
		"DATAVERSE_URL":           dv.URL(),
		"DATAVERSE_TOKEN_URL":     dv.TokenURL(),
		"DATAVERSE_TENANT_ID":     dc.TenantID,
		"DATAVERSE_CLIENT_ID":     dc.ClientID,
		"DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
		"DATAVERSE_APP_ID":        "00000000-0000-4000-8000-0000000000de",
		"LOG_FORMAT":              "json",
		// A page on another IPv6 origin (as Dynamics is, on its own host).
		"SCREENPOP_ALLOWED_ORIGINS": "http://[::1]:5555",
	}, g, dv
}

// ipv6Started is the "screenpopd started" line's addresses.
type ipv6Started struct {
	Message     string `json:"message"`
	AgentListen string `json:"agent_listen"`
	AdminListen string `json:"admin_listen"`
	NatsURL     string `json:"nats_url"`
}

func startedOf(t *testing.T, logs *syncbuf.Buffer) ipv6Started {
	t.Helper()
	for _, l := range strings.Split(logs.String(), "\n") {
		var s ipv6Started
		if json.Unmarshal([]byte(l), &s) == nil && s.Message == "screenpopd started" {
			return s
		}
	}
	t.Fatalf("no screenpopd started line in %s", logs.String())
	return ipv6Started{}
}

// An admin on an IPv6-only loopback host gives every address as [::1]:
// the daemon starts, its started line names addresses a client can dial
// (agent and admin host:port, the embedded NATS URL), a browser page on
// the agent listener's own origin opens its websocket, and a call pops
// the right record with a record URL on the Dataverse given.
func TestDaemon_IPv6LoopbackEndToEnd(t *testing.T) {
	vars, g, dv := ipv6Env(t)
	ipv6PopFlow(t, vars, g, dv, true)
}

// The same with an external NATS server listening on [::1]
// (NATS_URL=nats://[::1]:port).
func TestDaemon_IPv6ExternalNATS(t *testing.T) {
	vars, g, dv := ipv6Env(t)
	ns := startNATSWith(t, &server.Options{JetStream: true, Host: "::1"})
	if !strings.HasPrefix(ns.ClientURL(), "nats://[::1]:") {
		t.Fatalf("external nats on %s, want nats://[::1]:port", ns.ClientURL())
	}
	vars["NATS_URL"] = ns.ClientURL()
	delete(vars, "SCREENPOP_NATS_LISTEN")
	ipv6PopFlow(t, vars, g, dv, false)
}

func ipv6PopFlow(t *testing.T, vars map[string]string, g *notificationstest.Emulator, dv *dataversetest.Server, embedded bool) {
	t.Helper()
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	logs := &syncbuf.Buffer{}
	m, _ := runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	waitFor(t, 5*time.Second, "started line", func() bool { return strings.Contains(logs.String(), "screenpopd started") })
	st := startedOf(t, logs)

	for name, addr := range map[string]string{"agent_listen": st.AgentListen, "admin_listen": st.AdminListen} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "::1" {
			t.Fatalf("%s %q: want [::1]:port (%v)", name, addr, err)
		}
	}
	resp, err := http.Get("http://" + st.AdminListen + "/readyz")
	if err != nil {
		t.Fatalf("admin listener at the logged address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d", resp.StatusCode)
	}
	if embedded {
		u, err := url.Parse(st.NatsURL)
		if err != nil || u.Hostname() != "::1" || u.Port() == "" {
			t.Fatalf("nats_url %q: want nats://[::1]:port (%v)", st.NatsURL, err)
		}
		nc, err := nats.Connect(st.NatsURL, nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatalf("another service connecting to the logged nats_url %s: %v", st.NatsURL, err)
		}
		nc.Close()
	} else if st.NatsURL != "" {
		t.Fatalf("nats_url %q with external NATS, want empty", st.NatsURL)
	}

	// A browser page served by the agent listener: its Origin is the
	// listener's own, as screenpop.js builds the socket URL from
	// location.host.
	base := m.AgentURL()
	if base != "http://"+st.AgentListen {
		t.Fatalf("AgentURL %q, want http://%s", base, st.AgentListen)
	}
	agent := demoAgents[0].ID
	contactID := dv.AddContact(dataversetest.Contact{FirstName: "Pat", LastName: "Lee", Telephone1: "(317) 555-0123"})
	h := http.Header{"Origin": {base}}
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+st.AgentListen+"/v1/ws", h)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("websocket from the page's own origin %s: %v (status %d)", base, err, code)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]any{"type": "hello", "token": g.AgentToken(agent)}); err != nil {
		t.Fatal(err)
	}
	var ready struct{ Type string }
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" {
		t.Fatalf("ready: %+v %v", ready, err)
	}
	call := g.InboundCall(agent, "+13175550123", notificationstest.Options{})
	call.Alert()
	p := readPop(t, ws)
	if p.Target.Action != "open" || p.Target.ID != contactID {
		t.Fatalf("pop target %+v, want open contact %s", p.Target, contactID)
	}
	if !strings.HasPrefix(p.Target.URL, dv.URL()+"/main.aspx?") {
		t.Fatalf("record URL %q, want it on %s", p.Target.URL, dv.URL())
	}
	// The allowed IPv6 origin is admitted, a foreign one still refused.
	other, _, err := websocket.DefaultDialer.Dial("ws://"+st.AgentListen+"/v1/ws", http.Header{"Origin": {"http://[::1]:5555"}})
	if err != nil {
		t.Fatalf("websocket from the allowed origin http://[::1]:5555: %v", err)
	}
	other.Close()
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+st.AgentListen+"/v1/ws", http.Header{"Origin": {"http://[::2]:1"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v, want 403", resp, err)
	}
}

// `screenpopd check` on the same IPv6 configuration: every probe passes,
// alone and next to the running daemon (its listeners in use, found by
// its admin listener's /status on [::1]).
func TestCheck_IPv6Loopback(t *testing.T) {
	vars, g, dv := ipv6Env(t)
	vars["GENESYS_AGENTS"] = checkAgent
	r := &checkRig{genesys: g, dataverse: dv, agent: checkAgent, vars: vars}
	if code, out := r.check(t); code != 0 {
		t.Fatalf("check on [::1] exited %d:\n%s", code, out)
	}
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := runDaemonLog(t, cfg, zerolog.Nop())
	vars["SCREENPOP_LISTEN"] = m.agentLn.Addr().String()
	vars["SCREENPOP_ADMIN_LISTEN"] = m.AdminAddr()
	vars["SCREENPOP_NATS_LISTEN"] = strings.TrimPrefix(m.Bus.ClientURL(), "nats://")
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("check next to a daemon on [::1] exited %d", code)
	}
	wantLine(t, out, "ok   listen agent:", "in use by the running screenpopd (its /status lists it)")
	wantLine(t, out, "ok   listen admin:", "in use by the running screenpopd (its /status lists it)")
	wantLine(t, out, "ok   listen nats:", "in use by the running screenpopd (its /status lists it)")
}

// A real browser on the daemon's own page at http://[::1]:port: the page
// builds its socket URL from location.host, the daemon's same-origin
// check admits it, and a call pops on the page.
func TestBrowser_IPv6DemoPagePops(t *testing.T) {
	vars, g, dv := ipv6Env(t)
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := runDaemonLog(t, cfg, zerolog.Nop())
	agent := demoAgents[0].ID
	dv.AddContact(dataversetest.Contact{FirstName: "Pat", LastName: "Lee", Telephone1: "(317) 555-0123"})

	ctx := chromiumtest.Start(t)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond))
	}
	if err := chromedp.Do(tctx,
		chromedp.Navigate(m.AgentURL()+"/web/demo.html#token="+url.QueryEscape(g.AgentToken(agent))),
		poll(`document.getElementById('status').dataset.state === 'ready'`),
	); err != nil {
		t.Fatalf("demo page at %s: %v", m.AgentURL(), err)
	}
	call := g.InboundCall(agent, "+13175550123", notificationstest.Options{})
	call.Alert()
	if err := chromedp.Do(tctx, poll(`!!document.querySelector('#pops li')`)); err != nil {
		t.Fatalf("no pop on the page: %v", err)
	}
}

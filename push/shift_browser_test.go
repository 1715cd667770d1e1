package push

import (
	"context"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// An agent's shift with the Dynamics page open: expiring tokens, a laptop
// that sleeps, a daemon that restarts, a network that drops.

// shiftPages serves the test pages with the push base read at each request,
// so that the push server can be started (and restarted) after it.
func shiftPages(t *testing.T) (*httptest.Server, *atomic.Pointer[string]) {
	t.Helper()
	var base atomic.Pointer[string]
	mux := http.NewServeMux()
	for _, name := range []string{"webresource.html", "uci.html", "uci-form.html"} {
		tpl := template.Must(template.ParseFiles("testdata/" + name))
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = tpl.Execute(w, map[string]string{"Push": *base.Load()})
		})
	}
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts, &base
}

// shiftServer serves the shift pages and a push server for them (cfg with
// the pages' origin allowed, over st), pointed at each other. It returns
// the pages, the server and cfg as the server has it, to start another on
// its address.
func shiftServer(t *testing.T, cfg Config, st bridge.PopStore, auth bridge.AgentAuthenticator) (*httptest.Server, *env, Config) {
	t.Helper()
	pages, base := shiftPages(t)
	cfg.AllowedOrigins = append(cfg.AllowedOrigins, pages.URL)
	e := startEnvAt(t, cfg, st, auth, "127.0.0.1:0")
	base.Store(&e.base)
	return pages, e, cfg
}

// startEnvAt is startEnv listening on addr (a daemon restarted on its
// address), waiting until it is ready.
func startEnvAt(t *testing.T, cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator, addr string) *env {
	t.Helper()
	e := &env{t: t, store: store}
	if cfg.Auth == "" {
		cfg.Auth, cfg.JWTSecret = AuthJWT, testSecret
	}
	srv, err := New(cfg, store, auth, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	var ln net.Listener
	waitFor(t, 10*time.Second, "listen on "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	e.ln = ln
	e.base = "http://" + ln.Addr().String()
	e.wsURL = "ws://" + ln.Addr().String() + "/v1/ws"
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- srv.Run(ctx, ln) }()
	t.Cleanup(e.stop)
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	return e
}

// netPath is a TCP proxy between the browser and the push server standing
// for the agent's network. cut makes the connections open now dead: what
// they carry is dropped and they are never closed (a laptop that sleeps,
// a path that is gone). New connections pass, unless swallow is set.
type netPath struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*pathConn
	wg     sync.WaitGroup
	// swallow makes new connections dead from the start: accepted, never
	// answered (a route not back yet after a wake, a hung proxy).
	swallow   atomic.Bool
	swallowed atomic.Int32
}

type pathConn struct {
	a, b net.Conn
	mu   sync.Mutex
	dead bool
}

func newNetPath(t *testing.T, target string) *netPath {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netPath{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			if p.swallow.Load() {
				p.swallowed.Add(1)
				c := &pathConn{a: a, b: a, dead: true}
				p.mu.Lock()
				p.conns = append(p.conns, c)
				p.mu.Unlock()
				p.wg.Add(1)
				go func() { defer p.wg.Done(); c.pipe(a, a) }()
				continue
			}
			b, err := net.Dial("tcp", p.target)
			if err != nil {
				a.Close()
				continue
			}
			c := &pathConn{a: a, b: b}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); c.pipe(b, a) }()
			go func() { defer p.wg.Done(); c.pipe(a, b) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.a.Close()
			c.b.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (c *pathConn) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.mu.Lock()
			dead := c.dead
			c.mu.Unlock()
			if !dead {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			if !c.isDead() { // a dead path carries no close either
				dst.Close()
			}
			return
		}
	}
}

func (c *pathConn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (p *netPath) url() string { return "ws://" + p.ln.Addr().String() + "/v1/ws" }

func (p *netPath) open() []*pathConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*pathConn(nil), p.conns...)
}

// cut makes every open connection dead.
func (p *netPath) cut() {
	for _, c := range p.open() {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
	}
}

// openedIDs is the entity ids of the page's openForm calls, in order.
func openedIDs(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var ids []string
	for _, c := range eval[[]formCall](t, ctx, `window.__calls`) {
		ids = append(ids, c.Options.EntityID)
	}
	return ids
}

func shiftPop(agent bridge.AgentID, n int) *bridge.Pop {
	p := testPop(agent, fmt.Sprintf("conv-%s-%d", agent, n))
	p.Target.ID = fmt.Sprintf("ffffffff-0000-4000-8000-%012d", n)
	return p
}

// genesys mode: the agent's Genesys token expires mid-shift. The daemon
// closes the socket with 4401 at its next check; the page asks the agent to
// sign in (once) instead of reconnecting with the dead token, and after the
// sign-in the pops of the meantime open once.
func TestBrowser_ShiftGenesysTokenExpires(t *testing.T) {
	var expired atomic.Bool
	var checks atomic.Int32
	auth := authFunc(func(_ context.Context, token string) (bridge.AgentID, time.Time, error) {
		checks.Add(1)
		switch {
		case token == "genesys-1" && !expired.Load(), token == "genesys-2":
			return "agent-g", time.Now().Add(time.Hour), nil
		}
		return "", time.Time{}, fmt.Errorf("genesys answered 401: %w", bridge.ErrInvalidToken)
	})
	st := newMemStore()
	pages, e, _ := shiftServer(t, Config{Auth: AuthGenesys, Revalidate: 300 * time.Millisecond}, st, auth)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`ScreenPop.Dynamics.start({url: %q, lockMs: 1500, onState: onState, loginURL: 'https://login.example.test', clientId: 'browser-client'})`, e.wsURL)),
		poll(`document.getElementById('state').textContent === 'auth' && window.__notes.length === 1`),
		js(`window.__signIn('genesys-1')`),
		poll(`document.getElementById('state').textContent === 'ready'`))
	a := st.add(shiftPop("agent-g", 1), time.Now(), true)
	run(t, ctx, poll(fmt.Sprintf(`ScreenPop.Dynamics.current.client.cursor.lastSeq === %d`, a.Seq)))

	refused := testutil.ToFloat64(e.srv.m.closes.WithLabelValues("4401"))
	expired.Store(true)
	run(t, ctx, poll(`document.getElementById('state').textContent === 'auth' && window.__notes.length === 2`))
	if n := eval[string](t, ctx, `window.__notes[1].action`); n != "Sign in" {
		t.Fatalf("after the expiry the page said %s", eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
	// A call while the agent is signed out of Genesys in the page, and
	// the agent signs in again a little later.
	st.add(shiftPop("agent-g", 2), time.Now(), true)
	run(t, ctx, js(`window.__signIn('genesys-2')`), poll(`window.__calls.length >= 2`))
	st.add(shiftPop("agent-g", 3), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length >= 3`))
	if got := openedIDs(t, ctx); fmt.Sprint(got) != fmt.Sprint([]string{shiftPop("", 1).Target.ID, shiftPop("", 2).Target.ID, shiftPop("", 3).Target.ID}) {
		t.Fatalf("opened %v", got)
	}
	if n := testutil.ToFloat64(e.srv.m.closes.WithLabelValues("4401")) - refused; n != 1 {
		t.Fatalf("%v sockets closed with 4401 after the expiry, want 1 (no reconnecting with the dead token)", n)
	}
	if n := eval[int](t, ctx, `window.__notes.length`); n != 2 {
		t.Fatalf("notes %s", eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
}

// The daemon restarts (or is replaced on its address during a rolling
// upgrade) while the page is open: the page reconnects with backoff and
// resumes; a pop stored while it was away opens once if it is younger than
// the replay window, never if older; nothing opens twice.
func TestBrowser_ShiftDaemonRestarts(t *testing.T) {
	st := newMemStore()
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token("agent-r"), e.wsURL)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	st.add(shiftPop("agent-r", 1), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length === 1`))
	e.stop()
	run(t, ctx, poll(`document.getElementById('state').textContent !== 'ready'`))
	now := time.Now()
	st.add(shiftPop("agent-r", 2), now.Add(-3*time.Minute), false) // older than the replay window
	st.add(shiftPop("agent-r", 3), now.Add(-30*time.Second), false)
	e2 := startEnvAt(t, cfg, st, nil, e.ln.Addr().String())
	run(t, ctx, poll(`window.__calls.length >= 2`))
	st.add(shiftPop("agent-r", 4), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length >= 3`))
	waitFor(t, 10*time.Second, "acks", func() bool { return e2.srv.nAcked.Load() >= 2 })
	if got, want := openedIDs(t, ctx), []string{shiftPop("", 1).Target.ID, shiftPop("", 3).Target.ID, shiftPop("", 4).Target.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("opened %v, want %v", got, want)
	}
}

// laptopPage is the web resource of agent, connected to a push server
// through a TCP path that can be cut or made to swallow connections, its
// watchdog at 3 s for the server's 500 ms heartbeats (60 s for 25 s).
func laptopPage(t *testing.T, agent bridge.AgentID) (*memStore, *netPath, context.Context) {
	t.Helper()
	st := newMemStore()
	pages, e, _ := shiftServer(t, Config{PingInterval: 500 * time.Millisecond, HeartbeatInterval: 500 * time.Millisecond}, st, nil)
	path := newNetPath(t, e.ln.Addr().String())
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`var connect0 = ScreenPop.connect; ScreenPop.connect = function (o) { o.watchdogMs = 3000; return connect0(o); }`),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token(agent), path.url())),
		poll(`document.getElementById('state').textContent === 'ready'`))
	return st, path, ctx
}

// The laptop sleeps: the socket is dead without a close. The page notices
// the silence, reconnects and resumes: a pop of the meantime younger than
// the replay window opens once, an older one never.
func TestBrowser_ShiftLaptopSleeps(t *testing.T) {
	st, path, ctx := laptopPage(t, "agent-s")
	st.add(shiftPop("agent-s", 1), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length === 1`))
	path.cut()
	now := time.Now()
	st.add(shiftPop("agent-s", 2), now.Add(-9*time.Minute), true)
	st.add(shiftPop("agent-s", 3), now.Add(-time.Minute), true)
	run(t, ctx, poll(`window.__calls.length >= 2`))
	st.add(shiftPop("agent-s", 4), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length >= 3`))
	if got, want := openedIDs(t, ctx), []string{shiftPop("", 1).Target.ID, shiftPop("", 3).Target.ID, shiftPop("", 4).Target.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("opened %v, want %v", got, want)
	}
}

// The laptop wakes and the first reconnect goes into a path that is not
// back yet (Wi-Fi re-associating, the VPN reconnecting): the connection is
// accepted somewhere and never answered. The page must try again once it
// has heard nothing for the watchdog's time, as it does on an open socket,
// rather than wait for the browser's opening-handshake timeout (240 s in
// Chromium) with no pops.
func TestBrowser_ShiftReconnectIntoADeadPath(t *testing.T) {
	st, path, ctx := laptopPage(t, "agent-w")
	st.add(shiftPop("agent-w", 1), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length === 1`))
	// Asleep: the socket dies without a close; on waking the page's first
	// attempt is swallowed.
	path.swallow.Store(true)
	path.cut()
	waitFor(t, 15*time.Second, "a reconnect attempt swallowed", func() bool { return path.swallowed.Load() > 0 })
	path.swallow.Store(false) // the network is back
	st.add(shiftPop("agent-w", 2), time.Now(), true)
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__calls.length === 2`)); err != nil {
		t.Fatalf("no pop within 15 s of the network coming back (watchdog 3 s): states %s",
			eval[string](t, ctx, `JSON.stringify(window.__states)`))
	}
}

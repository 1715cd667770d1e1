package push

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/bridge"
)

// The agent listener behind the reverse proxies and load balancers of
// docs/setup.md section 4: TLS terminated at the proxy and plain HTTP
// behind it, Host and Origin kept, X-Forwarded-* added, optionally under a
// path prefix the proxy strips, and a TCP-level proxy with idle timeouts.

// revProxy is a TLS-terminating (or plain) reverse proxy on loopback in
// front of target, as nginx, HAProxy or a cloud load balancer is: it keeps
// Host, adds X-Forwarded-For/Proto/Host, strips prefix and passes websocket
// upgrades (httputil.ReverseProxy does since Go 1.12).
func revProxy(t *testing.T, target, prefix string, useTLS bool) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // docs: keep Host
			r.SetXForwarded()
			if prefix != "" {
				r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, prefix)
				r.Out.URL.RawPath = ""
			}
		},
		ErrorLog: nil,
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "bad gateway", http.StatusBadGateway) // upstream down (a restart)
	}
	var ts *httptest.Server
	if useTLS {
		ts = httptest.NewTLSServer(rp)
	} else {
		ts = httptest.NewServer(rp)
	}
	t.Cleanup(ts.Close)
	return ts
}

// proxyDial opens a websocket through the proxy p at path, with origin.
func proxyDial(t *testing.T, p *httptest.Server, path, origin string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	u := "ws" + strings.TrimPrefix(p.URL, "http") + path
	if hdr == nil {
		hdr = http.Header{}
	}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	return d.Dial(u, hdr)
}

// helloReady says hello on ws and returns the ready frame.
func helloReady(t *testing.T, e *env, ws *websocket.Conn, agent string) msg {
	t.Helper()
	c := &wsClient{t: t, ws: ws}
	c.send(map[string]any{"type": "hello", "token": e.token(bridge.AgentID(agent))})
	m := c.next()
	if m.Type != "ready" {
		t.Fatalf("first frame %+v, want ready", m)
	}
	return m
}

// TLS ends at the proxy, plain HTTP behind it; the browser's Origin is the
// Dynamics origin (allowed) or the proxy's own public origin (same origin:
// the Host the proxy kept). The daemon trusts no X-Forwarded-* header: a
// client forging one changes nothing.
func TestProxy_TLSTerminatedAtTheProxy(t *testing.T) {
	e := newEnv(t, Config{AllowedOrigins: []string{"https://contoso.crm4.dynamics.com"}}, nil, nil)
	p := revProxy(t, e.base, "", true)
	for _, tc := range []struct {
		name, origin string
		ok           bool
	}{
		{"Dynamics", "https://contoso.crm4.dynamics.com", true},
		{"SameOrigin", p.URL, true},
		{"Foreign", "https://evil.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{"X-Forwarded-For": {"10.9.8.7"}, "X-Forwarded-Host": {"contoso.crm4.dynamics.com"}, "Forwarded": {"for=10.9.8.7;host=evil.example;proto=https"}}
			ws, resp, err := proxyDial(t, p, "/v1/ws", tc.origin, hdr)
			if !tc.ok {
				if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("origin %s: err %v resp %v, want 403", tc.origin, err, resp)
				}
				return
			}
			if err != nil {
				t.Fatalf("origin %s through the proxy: %v (resp %v)", tc.origin, err, resp)
			}
			defer ws.Close()
			helloReady(t, e, ws, "agent-tls")
		})
	}
}

// The docs (setup.md section 4, agents.md section 1) put the agent
// listener behind a load balancer; every load balancer checks its
// backends with an HTTP probe on the traffic port, by default GET / (AWS
// ALB: 200; Azure Application Gateway: 200-399, and with every backend
// unhealthy it answers 502 to everything). The agent listener needs a
// path that answers 200 while it serves agents, and 503 when it does not
// (starting, stopping), and the docs must name it.
func TestProxy_LoadBalancerHealthProbe(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	p := revProxy(t, e.base, "", false)
	resp, err := p.Client().Get(p.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz on the agent listener: %d %q, want 200: a load balancer's health probe has no path that answers", resp.StatusCode, body)
	}
	// Stopping: the probe fails before the listener goes, so the balancer
	// sends new pages elsewhere.
	e.srv.mu.Lock()
	e.srv.stopping = true
	e.srv.mu.Unlock()
	resp, err = p.Client().Get(p.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /healthz while stopping: %d, want 503", resp.StatusCode)
	}
	e.srv.mu.Lock()
	e.srv.stopping = false
	e.srv.mu.Unlock()
	for _, doc := range []string{"../docs/setup.md", "../docs/agents.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "/healthz` on the agent port") {
			t.Errorf("%s does not tell the admin which path the load balancer's health probe uses on the agent port", doc)
		}
	}
}

// Served under /screenpop/ by a proxy that strips the prefix: the socket,
// the scripts, origins.json (fetched relative to the callback page) and
// the login's default redirect URI (next to the script) all keep it.
func TestProxy_PathPrefix(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	p := revProxy(t, e.base, "/screenpop", true)
	ws, resp, err := proxyDial(t, p, "/screenpop/v1/ws", p.URL, nil)
	if err != nil {
		t.Fatalf("websocket under the prefix: %v (%v)", err, resp)
	}
	helloReady(t, e, ws, "agent-prefix")
	ws.Close()
	for _, path := range []string{"/screenpop/web/screenpop.js", "/screenpop/web/screenpop-dynamics.js", "/screenpop/web/oauth-callback.html", "/screenpop/web/oauth-callback.js", "/screenpop/web/origins.json"} {
		resp, err := p.Client().Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
}

// idleProxy is a TCP proxy that cuts a connection when one direction has
// carried no byte for idle: nginx's proxy_read_timeout (upstream to
// client), HAProxy's timeout client/server; an AWS ALB's idle timeout
// (either direction) is laxer than this.
type idleProxy struct {
	ln     net.Listener
	target string
	idle   time.Duration
	cuts   atomic.Int32 // connections cut for idleness
	wg     sync.WaitGroup
}

func startIdleProxy(t *testing.T, target string, idle time.Duration) *idleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{ln: ln, target: target, idle: idle}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *idleProxy) serve(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 4096)
		for {
			_ = src.SetReadDeadline(time.Now().Add(p.idle))
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					p.cuts.Add(1)
				}
				return
			}
		}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	c.Close()
	u.Close()
	<-done
}

// The server's keep-alives against proxy idle timeouts, in both directions,
// scaled: the defaults are a ping and a heartbeat every 25 s (the browser
// answers each ping with a pong); a 30 s and a 60 s idle timeout are 1.2
// and 2.4 intervals.
func TestProxy_IdleTimeouts(t *testing.T) {
	for _, ratio := range []float64{1.2, 2.4} {
		t.Run(fmt.Sprintf("idle=%.1f×interval", ratio), func(t *testing.T) {
			iv := time.Second
			e := newEnv(t, Config{PingInterval: iv, HeartbeatInterval: iv}, nil, nil)
			p := startIdleProxy(t, e.ln.Addr().String(), time.Duration(ratio*float64(iv)))
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			ws, _, err := d.Dial("ws://"+p.ln.Addr().String()+"/v1/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			helloReady(t, e, ws, "agent-idle")
			// Read (answering pings) for several intervals without sending
			// anything of our own.
			c := &wsClient{t: t, ws: ws}
			until := time.Now().Add(5 * iv)
			for time.Now().Before(until) {
				if _, err := c.read(time.Until(until) + 10*time.Millisecond); err != nil {
					if isTimeout(err) {
						break
					}
					t.Fatalf("socket through the proxy ended: %v (cuts %d)", err, p.cuts.Load())
				}
			}
			if n := p.cuts.Load(); n != 0 {
				t.Fatalf("the proxy cut %d connections for idleness", n)
			}
		})
	}
}

// A page connected through the proxy while the daemon restarts behind it:
// the proxy closes the upstream, answers 502 while the daemon is down, and
// the page reconnects through it and gets the pop stored meanwhile, once.
func TestProxyBrowser_RestartBehindTheProxy(t *testing.T) {
	mux := http.NewServeMux()
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)
	cfg := Config{AllowedOrigins: []string{pages.URL}}
	e := newEnv(t, cfg, nil, nil)
	p := revProxy(t, e.base, "/screenpop", false)
	pushBase := p.URL + "/screenpop"
	tpl := template.Must(template.ParseFiles("testdata/webresource.html"))
	mux.HandleFunc("/webresource.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = tpl.Execute(w, map[string]string{"Push": pushBase})
	})
	ctx := newBrowser(t)
	wsURL := "ws" + strings.TrimPrefix(pushBase, "http") + "/v1/ws"
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, wsURL, e.token("agent-rs"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	first := testPop("agent-rs", "conv-rs-1")
	e.publishPop(first)
	run(t, ctx, poll(`window.__calls.length === 1`))

	// Restart: stop the push server, store a pop while it is down, start
	// a new one on the same address and bus.
	addr := e.ln.Addr().String()
	e.stop()
	e.publish("agent-rs", "conv-rs-2")
	time.Sleep(500 * time.Millisecond) // the page retries into the proxy's 502s
	cfg.Auth, cfg.JWTSecret = AuthJWT, testSecret
	srv, err := New(cfg, e.bus, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	waitFor(t, 5*time.Second, "listen again", func() bool { ln, err = net.Listen("tcp", addr); return err == nil })
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	run(t, ctx, poll(`window.__calls.length >= 2`))
	run(t, ctx, chromedp.Sleep(time.Second))
	if n := eval[int](t, ctx, `window.__calls.length`); n != 2 {
		t.Fatalf("%d forms opened, want 2 (the pop stored during the restart, once)", n)
	}
}

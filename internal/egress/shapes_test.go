package egress

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The shapes of corporate forward proxies an admin meets, each a real
// loopback proxy in front of a real websocket server, dialled the way the
// notification shard and check dial (notifications.proxiedDialer): the
// dialer's Proxy is HTTPS_PROXY's, and NetDialer opens the tunnel when it
// returns one.

// wsEcho is a websocket server on a loopback port; its address.
func wsEcho(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(mt, b) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// shapedProxy is an HTTP CONNECT proxy on a loopback port that tunnels
// every CONNECT to upstream, or answers it as answer says.
type shapedProxy struct {
	ln       net.Listener
	upstream string
	// answer writes the proxy's answer to a CONNECT; it returns whether
	// to tunnel after it. nil: "HTTP/1.1 200 Connection established".
	answer func(c net.Conn, req *http.Request) bool

	mu    sync.Mutex
	auths []string // each CONNECT's Proxy-Authorization
	wg    sync.WaitGroup
	conns []net.Conn
}

func startShapedProxy(t *testing.T, upstream string, answer func(c net.Conn, req *http.Request) bool) *shapedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &shapedProxy{ln: ln, upstream: upstream, answer: answer}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *shapedProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.auths = append(p.auths, req.Header.Get("Proxy-Authorization"))
	p.mu.Unlock()
	if p.answer != nil {
		if !p.answer(c, req) {
			return
		}
	} else if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up)
	p.mu.Unlock()
	defer up.Close()
	go func() { _, _ = io.Copy(up, br); up.Close() }()
	_, _ = io.Copy(c, up)
}

func (p *shapedProxy) Auths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths...)
}

// dialLikeTheShard dials uri as notifications.proxiedDialer does.
func dialLikeTheShard(ctx context.Context, proxy func(*http.Request) (*url.URL, error), uri string) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 15 * time.Second, Proxy: proxy}
	if nd := NetDialer(d.Proxy, uri); nd != nil {
		d.Proxy, d.NetDialContext = nil, nd
	}
	ws, resp, err := d.DialContext(ctx, uri, nil)
	if err != nil && resp == nil {
		err = DialError(proxy, uri, err)
	}
	return ws, err
}

func echoes(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Fatalf("write through the tunnel: %v", err)
	}
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "ping" {
		t.Fatalf("read through the tunnel: %q, %v", b, err)
	}
}

// Proxies that tunnel, each answering the CONNECT its own way: with
// headers after the status line, as HTTP/1.0 (Squid, older appliances),
// byte by byte, or only after a pause. Each is a tunnel.
func TestNetDialer_ProxiesThatAnswerTheirOwnWay(t *testing.T) {
	ws := wsEcho(t)
	for name, answer := range map[string]func(c net.Conn, req *http.Request) bool{
		"ExtraHeaders": func(c net.Conn, _ *http.Request) bool {
			_, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\nProxy-Agent: BlueCoat-ProxySG\r\nVia: 1.1 proxy.corp.example\r\nConnection: keep-alive\r\n\r\n")
			return err == nil
		},
		"HTTP10": func(c net.Conn, _ *http.Request) bool {
			_, err := io.WriteString(c, "HTTP/1.0 200 Connection established\r\n\r\n")
			return err == nil
		},
		"InPieces": func(c net.Conn, _ *http.Request) bool {
			for _, b := range []byte("HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return false
				}
				time.Sleep(2 * time.Millisecond)
			}
			return true
		},
		"Slowly": func(c net.Conn, _ *http.Request) bool {
			time.Sleep(500 * time.Millisecond)
			_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			return err == nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			px := startShapedProxy(t, ws, answer)
			pu, _ := url.Parse("http://" + px.ln.Addr().String())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dialLikeTheShard(ctx, http.ProxyURL(pu), "ws://streaming.shapes.test/channels/x")
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			echoes(t, c)
		})
	}
}

// A proxy that takes the connection and the CONNECT but never answers it
// (an overloaded appliance, a filter that drops it): the dial gives up
// when its context does (the shard's HTTPTimeout, check's 10 s), and the
// error says the proxy did not answer, on one line: check prints one line
// per check, the log one line per error.
func TestNetDialer_AProxyThatNeverAnswersTheConnect(t *testing.T) {
	px := startShapedProxy(t, "127.0.0.1:1", func(c net.Conn, _ *http.Request) bool {
		_, _ = io.Copy(io.Discard, c) // reads, never answers, until the client goes
		return false
	})
	pu, _ := url.Parse("http://" + px.ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := dialLikeTheShard(ctx, http.ProxyURL(pu), "wss://streaming.mypurecloud.ie/channels/x")
	took := time.Since(start)
	if err == nil {
		t.Fatal("dialled through a proxy that never answered")
	}
	t.Logf("after %v: %q", took, err)
	if took > 4*time.Second {
		t.Errorf("gave up after %v, want about the context's 1 s", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v: want it to be the context's deadline", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error is on several lines: %q", err)
	}
	if !strings.Contains(err.Error(), px.ln.Addr().String()) {
		t.Errorf("%q does not name the proxy", err)
	}
}

// basicProxy is a proxy in front of ws that tunnels a CONNECT carrying
// the Proxy-Authorization want and answers any other with a Basic 407.
func basicProxy(t *testing.T, ws, want string) *shapedProxy {
	t.Helper()
	return startShapedProxy(t, ws, func(c net.Conn, req *http.Request) bool {
		if req.Header.Get("Proxy-Authorization") != want {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		return err == nil
	})
}

// A proxy URL with a user and no password ("http://token@proxy:3128", as
// some cloud proxies take an API key): Go's transport (the REST calls to
// Genesys, Entra ID and Dataverse) sends it as Basic "token:", so the
// websocket's tunnel must too, or the API works and the socket is refused
// with 407.
func TestNetDialer_AUserWithoutAPassword(t *testing.T) {
	ws := wsEcho(t)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("k3y-7f3a:"))
	px := basicProxy(t, ws, want)
	pu, _ := url.Parse("http://k3y-7f3a@" + px.ln.Addr().String())

	// The REST path: Go's transport, as notifications.Client and
	// dataverse build it.
	tr := &http.Transport{Proxy: http.ProxyURL(pu), OnProxyConnectResponse: OnProxyConnectResponse}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.shapes.test/", nil)
	_, err := tr.RoundTrip(req)
	var pe *ProxyError
	if errors.As(err, &pe) {
		t.Fatalf("the REST path was refused too (%v): the proxy is not the one this test means", err)
	}

	c, err := dialLikeTheShard(ctx, http.ProxyURL(pu), "ws://streaming.shapes.test/channels/x")
	if err != nil {
		t.Fatalf("the REST path got its tunnel, the websocket did not: %v (Proxy-Authorization sent: %q)", err, px.Auths())
	}
	echoes(t, c)
}

// A proxy that authenticates with NTLM or Negotiate (Kerberos) only, as a
// Windows shop's TMG, ISA or a Squid with negotiate_kerberos_auth does:
// its 407 carries no Basic challenge, so no user and password in
// HTTPS_PROXY will do (screenpopd sends Basic only). The error says the
// proxy wants what screenpopd cannot do, and what to do about it; not to
// put a user and password in HTTPS_PROXY, which the admin then does in
// vain.
func TestProxyError_A407ForNTLMOrNegotiateOnly(t *testing.T) {
	for what, err := range refused407(t, "Proxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\n") {
		msg := err.Error()
		if strings.Contains(msg, "put the proxy's user and password in HTTPS_PROXY") {
			t.Errorf("%s: %q tells to put a user and password in HTTPS_PROXY, but the proxy takes NTLM or Negotiate only", what, msg)
		}
		if !strings.Contains(msg, "NTLM") && !strings.Contains(msg, "Negotiate") {
			t.Errorf("%s: %q does not say the proxy asks for NTLM or Negotiate, which screenpopd does not do", what, msg)
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("%s: %q holds the proxy's password", what, msg)
		}
	}
}

// refused407 has a proxy (with the user svc:s3cret) answer every CONNECT
// with a 407 carrying headers (CRLF-ended lines), and returns the
// *ProxyError of each path through it: "REST" (net/http with
// OnProxyConnectResponse) and "websocket" (dialled as the shard dials).
// A path without a *ProxyError of status 407 fails the test.
func refused407(t *testing.T, headers string) map[string]*ProxyError {
	t.Helper()
	ws := wsEcho(t)
	px := startShapedProxy(t, ws, func(c net.Conn, _ *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n"+headers+"Content-Length: 0\r\n\r\n")
		return false
	})
	pu, _ := url.Parse("http://svc:s3cret@" + px.ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tr := &http.Transport{Proxy: http.ProxyURL(pu), OnProxyConnectResponse: OnProxyConnectResponse}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://login.mypurecloud.ie/", nil)
	_, restErr := tr.RoundTrip(req)
	_, wsErr := dialLikeTheShard(ctx, http.ProxyURL(pu), "wss://streaming.mypurecloud.ie/channels/x")
	out := map[string]*ProxyError{}
	for what, err := range map[string]error{"REST": restErr, "websocket": wsErr} {
		var pe *ProxyError
		if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired {
			t.Fatalf("%s: %v, want the proxy's 407 as a *ProxyError", what, err)
		}
		out[what] = pe
	}
	return out
}

// socks5 is a minimal SOCKS5 proxy (RFC 1928, no authentication, CONNECT
// only) that tunnels every CONNECT to upstream.
func startSOCKS5(t *testing.T, upstream string) (addr string, asked func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var targets []string
	var wg sync.WaitGroup
	var conns []net.Conn
	track := func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				hdr := make([]byte, 2)
				if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 5 {
					return // not SOCKS5 (an HTTP CONNECT starts "CO")
				}
				if _, err := io.ReadFull(br, make([]byte, hdr[1])); err != nil {
					return
				}
				c.Write([]byte{5, 0})
				req := make([]byte, 4)
				if _, err := io.ReadFull(br, req); err != nil || req[1] != 1 {
					return
				}
				var host string
				switch req[3] {
				case 1:
					b := make([]byte, 4)
					io.ReadFull(br, b)
					host = net.IP(b).String()
				case 3:
					n, _ := br.ReadByte()
					b := make([]byte, n)
					io.ReadFull(br, b)
					host = string(b)
				case 4:
					b := make([]byte, 16)
					io.ReadFull(br, b)
					host = net.IP(b).String()
				}
				pb := make([]byte, 2)
				if _, err := io.ReadFull(br, pb); err != nil {
					return
				}
				mu.Lock()
				targets = append(targets, net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb)))))
				mu.Unlock()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				track(up)
				defer up.Close()
				c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
				go func() { _, _ = io.Copy(up, br); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), targets...) }
}

// HTTPS_PROXY=socks5://host:1080, which run and check accept ("the
// Genesys websocket reaches a proxy over http:// or socks5://",
// cmd/screenpopd/config.go proxyProblems) and Go's transport uses for the
// REST calls: the websocket reaches the services through it too, as
// gorilla's own proxy dialer did before the shard opened the tunnel itself.
func TestNetDialer_ASOCKS5Proxy(t *testing.T) {
	ws := wsEcho(t)
	addr, asked := startSOCKS5(t, ws)
	pu, _ := url.Parse("socks5://" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialLikeTheShard(ctx, http.ProxyURL(pu), "ws://streaming.shapes.test/channels/x")
	if err != nil {
		t.Fatalf("dial through a socks5:// HTTPS_PROXY: %v (the proxy was asked for %v)", err, asked())
	}
	echoes(t, c)
	if got := asked(); len(got) != 1 || got[0] != "streaming.shapes.test:80" {
		t.Errorf("the SOCKS proxy was asked for %v, want [streaming.shapes.test:80]", got)
	}
}

// Credentials with characters percent-encoded in the URL ("@" as %40,
// ":" as %3A, "%" as %25) reach the proxy decoded, the same on the
// websocket's tunnel as on Go's transport, and appear in no error.
func TestNetDialer_EscapedCredentials(t *testing.T) {
	ws := wsEcho(t)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc@corp:p@ss:w%rd"))
	px := basicProxy(t, ws, want)
	pu, err := url.Parse("http://svc%40corp:p%40ss%3Aw%25rd@" + px.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialLikeTheShard(ctx, http.ProxyURL(pu), "ws://streaming.shapes.test/channels/x")
	if err != nil {
		t.Fatalf("dial: %v (sent %q)", err, px.Auths())
	}
	echoes(t, c)
	// A proxy that closes the tunnel at once after its 200.
	px2 := startShapedProxy(t, ws, func(c net.Conn, _ *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		return false
	})
	pu2, _ := url.Parse("http://svc%40corp:p%40ss%3Aw%25rd@" + px2.ln.Addr().String())
	_, err = dialLikeTheShard(ctx, http.ProxyURL(pu2), "wss://streaming.shapes.test/channels/x")
	t.Logf("closed after 200: %v", err)
	if err == nil || strings.Contains(err.Error(), "p@ss") || strings.Contains(err.Error(), "w%rd") || !strings.Contains(err.Error(), px2.ln.Addr().String()) {
		t.Errorf("closed after 200: %v, want an error naming the proxy and not its password", err)
	}
}

// A 407's challenges come one header each or several in one, with their
// auth-params: Basic offered anywhere in them leaves the credentials hint.
func TestProxyError_ChallengesInOneHeader(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		basic   bool
	}{
		{[]string{"NTLM, Basic realm=\"corp\""}, true},
		{[]string{"Negotiate, NTLM"}, false},
		{[]string{"Basic realm=\"a, b\", charset=\"UTF-8\""}, true},
		{[]string{"Negotiate", "NTLM"}, false},
		{nil, true},
	} {
		h := http.Header{}
		for _, v := range tc.headers {
			h.Add("Proxy-Authenticate", v)
		}
		msg := (&ProxyError{Proxy: "proxy:3128", Target: "login.example.test:443", Status: http.StatusProxyAuthRequired, Schemes: authSchemes(h)}).Error()
		if got := strings.Contains(msg, "put the proxy's user and password in HTTPS_PROXY"); got != tc.basic {
			t.Errorf("challenges %q: %q; want the Basic credentials hint %v", tc.headers, msg, tc.basic)
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The made-up hosts of the proxy tests: only the proxy knows them (it maps
// them to the emulators' loopback listeners), so a request that reaches an
// emulator went through it. None is ever looked up in DNS: Go's transports
// and gorilla's dialer hand the name to the proxy.
const (
	proxiedAPI       = "api.genesys.proxy.test"       // GENESYS_API_URL
	proxiedLogin     = "login.genesys.proxy.test"     // derived from it
	proxiedStreaming = "streaming.genesys.proxy.test" // the channels' connectUri
	proxiedDataverse = "dataverse.proxy.test"         // DATAVERSE_URL
	proxiedEntra     = "entra.proxy.test"             // DATAVERSE_TOKEN_URL
	// A host inside the admin's network, reached without the proxy when
	// NO_PROXY names it. Go never proxies "localhost" or a loopback IP,
	// whatever NO_PROXY says, but it does proxy the same name in capitals;
	// that name is resolved from /etc/hosts, so no DNS query leaves the
	// machine.
	insideHost = "LOCALHOST"
)

// egressProxy is a corporate forward proxy as screenpopd meets it: CONNECT
// tunnels (HTTPS and WSS) for clients that present its Basic credentials,
// to the hosts it maps, each to a loopback address; every other host is
// refused (403), so nothing it is asked for leaves the machine. A request
// in absolute form (plain http) is refused and recorded too: all of
// screenpopd's egress is TLS.
type egressProxy struct {
	ln     net.Listener
	user   string
	pass   string
	routes map[string]string // host:port -> loopback host:port

	mu     sync.Mutex
	refuse map[string]int // host:port (or "*") -> the status the proxy answers instead of a tunnel
	// refuseHdr is the header lines (each ending "\r\n") the proxy
	// writes with a refusal, e.g. its own Proxy-Authenticate.
	refuseHdr string
	asked     []proxyAsk
	conns     map[net.Conn]bool
	closing   bool
	wg        sync.WaitGroup
}

type proxyAsk struct {
	target     string // host:port, or http://host for a request in absolute form
	authorized bool   // with the proxy's credentials
	tunnelled  bool   // answered 200 and tunnelled to the mapped address
}

func startEgressProxy(t *testing.T, user, pass string, routes map[string]string) *egressProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &egressProxy{ln: ln, user: user, pass: pass, routes: routes, refuse: map[string]int{}, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c) {
				c.Close()
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's URL with credentials, as an admin sets HTTPS_PROXY.
func (p *egressProxy) URL(user, pass string) string {
	return "http://" + user + ":" + pass + "@" + p.ln.Addr().String()
}

// Refuse makes the proxy answer CONNECTs to target ("*": every host) with
// status instead of a tunnel; 0 tunnels again. A negative status is
// answered with its code and no reason phrase ("HTTP/1.1 407"), as some
// appliances write it (Go's client reads it as the code).
func (p *egressProxy) Refuse(target string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == 0 {
		delete(p.refuse, target)
	} else {
		p.refuse[target] = status
	}
}

// neverAnswer, given to Refuse, makes the proxy read the CONNECT and
// answer nothing until the client goes (an overloaded appliance, a filter
// that drops the request).
const neverAnswer = 1

// RefuseWith is Refuse with the header lines hdr (each ending "\r\n")
// on every refusal until the next RefuseWith.
func (p *egressProxy) RefuseWith(target string, status int, hdr string) {
	p.Refuse(target, status)
	p.mu.Lock()
	p.refuseHdr = hdr
	p.mu.Unlock()
}

// Asked returns what the proxy was asked for since the last Reset.
func (p *egressProxy) Asked() []proxyAsk {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

func (p *egressProxy) Reset() {
	p.mu.Lock()
	p.asked = nil
	p.mu.Unlock()
}

// Tunnelled returns the targets the proxy tunnelled, each once, sorted.
func (p *egressProxy) Tunnelled() []string {
	var out []string
	for _, a := range p.Asked() {
		if a.tunnelled && !slices.Contains(out, a.target) {
			out = append(out, a.target)
		}
	}
	slices.Sort(out)
	return out
}

func (p *egressProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *egressProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *egressProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closing = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *egressProxy) serve(c net.Conn) {
	defer p.untrack(c)
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	answer := func(status int, hdr string) {
		if status < 0 {
			fmt.Fprintf(c, "HTTP/1.1 %d\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", -status, hdr)
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", status, http.StatusText(status), hdr)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
	ask := proxyAsk{target: req.Host, authorized: req.Header.Get("Proxy-Authorization") == want}
	if req.Method != http.MethodConnect {
		ask.target = "http://" + req.Host
	}
	p.mu.Lock()
	status, refused := p.refuse[ask.target]
	if !refused {
		status, refused = p.refuse["*"]
	}
	addr, mapped := p.routes[ask.target]
	refuseHdr := p.refuseHdr
	i := len(p.asked)
	p.asked = append(p.asked, ask)
	p.mu.Unlock()
	switch {
	case !ask.authorized:
		answer(http.StatusProxyAuthRequired, "Proxy-Authenticate: Basic realm=\"corp\"\r\n")
		return
	case refused && status == neverAnswer:
		_, _ = io.Copy(io.Discard, br)
		return
	case refused:
		answer(status, refuseHdr)
		return
	case req.Method != http.MethodConnect || !mapped:
		answer(http.StatusForbidden, "")
		return
	}
	up, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		answer(http.StatusBadGateway, "")
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	p.mu.Lock()
	p.asked[i].tunnelled = true
	p.mu.Unlock()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, br)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// selfSignedCert makes a certificate for names, and writes it as a PEM
// file for SSL_CERT_FILE (Go's root store on Linux), which trusts it as
// its own root.
func selfSignedCert(t *testing.T, names ...string) (tls.Certificate, string) {
	t.Helper()
	certFile, keyFile := writeCertFor(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names, nil)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile
}

// serveTLS serves h over TLS (HTTP/2 and HTTP/1.1, as the services do) on
// a loopback port until the test ends, and returns its address.
func serveTLS(t *testing.T, h http.Handler, cert tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// runCheckProcess runs `screenpopd check` as a process of its own with
// vars added to this process's environment, and returns its exit code and
// output.
func runCheckProcess(t *testing.T, vars map[string]string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCREENPOP_TEST_MAIN=1", "SCREENPOP_TEST_MAIN_CMD=check")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// proxyEnv sets the proxy variables of a host whose egress goes through
// proxyURL, NO_PROXY to noProxy, overriding whatever the test's own
// environment has (the lower-case forms too), and trusts the test CA.
func proxyEnv(vars map[string]string, proxyURL, noProxy, caFile string) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		vars[k] = proxyURL
	}
	vars["NO_PROXY"], vars["no_proxy"] = noProxy, noProxy
	vars["SSL_CERT_FILE"] = caFile
}

// An admin whose hosts reach the internet only through a corporate proxy
// sets HTTPS_PROXY (and NO_PROXY for hosts inside the network) in the
// service's environment (docs/setup.md, "Behind an outbound proxy"). Every
// kind of egress, Genesys login and API (channels, subscriptions, the
// conversation fetched after a gap, the agents' token check), the
// notification websocket on its streaming host, the Entra ID token and
// the Dataverse Web API, goes through the proxy with its credentials, and
// a call pops end to end; the proxy is asked for nothing else;
// `screenpopd check` passes through it; NO_PROXY is honoured; the proxy's
// password appears in no log or check line. A refusal by the proxy (407,
// 403, 502) is named as the proxy's in check and in the log, and a proxy
// URL Go would silently ignore is refused at start.
func TestDaemon_ThroughAnHTTPSProxy(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	cert, caFile := selfSignedCert(t, proxiedAPI, proxiedLogin, proxiedStreaming, proxiedDataverse, proxiedEntra, "localhost")
	genesys := serveTLS(t, d.Genesys.Handler(), cert)
	dataverse := serveTLS(t, d.Dataverse, cert)
	const user, pass = "svc-screenpop", "Pr0xy-pa55-9f2c"
	px := startEgressProxy(t, user, pass, map[string]string{
		proxiedAPI + ":443": genesys, proxiedLogin + ":443": genesys, proxiedStreaming + ":443": genesys,
		proxiedDataverse + ":443": dataverse, proxiedEntra + ":443": dataverse,
	})
	tenant := d.Dataverse.Config().TenantID
	proxiedVars := func() map[string]string {
		vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
		vars["GENESYS_API_URL"] = "https://" + proxiedAPI
		vars["DATAVERSE_URL"] = "https://" + proxiedDataverse
		vars["DATAVERSE_TOKEN_URL"] = "https://" + proxiedEntra + "/" + tenant + "/oauth2/v2.0/token"
		proxyEnv(vars, px.URL(user, pass), "localhost", caFile)
		return vars
	}
	d.Dataverse.SetURL("https://" + proxiedDataverse)
	allHosts := []string{proxiedAPI + ":443", proxiedDataverse + ":443", proxiedEntra + ":443", proxiedLogin + ":443", proxiedStreaming + ":443"} // sorted
	noSecret := func(t *testing.T, what, text string) {
		t.Helper()
		if strings.Contains(text, pass) {
			t.Errorf("%s holds the proxy's password", what)
		}
	}
	checkAsked := func(t *testing.T) {
		t.Helper()
		for _, a := range px.Asked() {
			if !a.authorized {
				t.Errorf("asked the proxy for %s without its credentials", a.target)
			}
			if !slices.Contains(allHosts, a.target) {
				t.Errorf("asked the proxy for %s, a host screenpopd has no business with", a.target)
			}
		}
	}

	// refusedBy waits for the daemon's log line msg and checks that its
	// error names the proxy and its status: before, it was the bare
	// status text after the service's URL ("Bad Gateway", "Forbidden"),
	// which reads as the service's own answer.
	proxyAddr := px.ln.Addr().String()
	refusedBy := func(t *testing.T, p *mainProcess, msg string, status int) {
		t.Helper()
		var line string
		waitFor(t, 10*time.Second, msg, func() bool {
			line = logLines(p.logs, `"message":"`+msg)
			return line != ""
		})
		want := fmt.Sprintf("proxy %s refused the connection", proxyAddr)
		if first, _, _ := strings.Cut(line, "\n"); !strings.Contains(first, want) || !strings.Contains(first, fmt.Sprint(status)) {
			t.Errorf("%q does not say the proxy refused with %d:\n%s", msg, status, first)
		}
	}
	checkRefusedBy := func(t *testing.T, out, prefix string, status int) {
		t.Helper()
		l, _ := line(t, out, prefix)
		if !strings.Contains(l, fmt.Sprintf("proxy %s refused the connection", proxyAddr)) || !strings.Contains(l, fmt.Sprint(status)) {
			t.Errorf("%q does not say the proxy refused with %d", l, status)
		}
	}

	t.Run("PopsEndToEnd", func(t *testing.T) {
		px.Reset()
		a0 := demoAgents[0].ID
		// A call that alerts before the daemon is up is found by the
		// reconciliation at start: GET /api/v2/conversations/{id}.
		early := alertCall(d, a0)
		checked := d.Genesys.CountRequests("GET", "/api/v2/users/me")
		vars := proxiedVars()
		p := startMain(t, "run", vars)
		page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a0))
		if page.waitPop(early.ID(), 10*time.Second).IsZero() {
			t.Errorf("no pop for the call that alerted before the start (reconciliation through the proxy)")
		}
		c := alertCall(d, a0)
		if page.waitPop(c.ID(), 10*time.Second).IsZero() {
			t.Fatalf("no pop through the proxy; logs:\n%s", logLines(p.logs, `"level":"warn"`, `"level":"error"`))
		}
		if a := popAction(page, c.ID()); a == "search" {
			t.Errorf("the pop is the search fallback: the Dataverse lookup failed through the proxy")
		}
		if n := d.Genesys.CountRequests("GET", "/api/v2/conversations/"+early.ID()); n == 0 {
			t.Errorf("the conversation that alerted before the start was never fetched")
		}
		if n := d.Genesys.CountRequests("GET", "/api/v2/users/me"); n == checked {
			t.Errorf("the agent's token was never checked with Genesys")
		}
		if got := px.Tunnelled(); !slices.Equal(got, allHosts) {
			t.Errorf("tunnelled %v, want every host: %v", got, allHosts)
		}
		checkAsked(t)
		p.kill()
		noSecret(t, "the daemon's log", p.logs.String())
	})

	t.Run("Check", func(t *testing.T) {
		px.Reset()
		code, out := runCheckProcess(t, proxiedVars())
		t.Logf("exit %d:\n%s", code, out)
		if code != 0 || !strings.Contains(out, "all checks passed") {
			t.Errorf("check through the proxy failed (exit %d)", code)
		}
		if got := px.Tunnelled(); !slices.Equal(got, allHosts) {
			t.Errorf("check tunnelled %v, want every host: %v", got, allHosts)
		}
		checkAsked(t)
		noSecret(t, "check's output", out)
	})

	t.Run("CheckNextToTheDaemon", func(t *testing.T) {
		// check asks the daemon it runs next to for /healthz on
		// SCREENPOP_ADMIN_LISTEN: an address of this host, never one for
		// the proxy. Here the admin listener is named LOCALHOST, which Go
		// proxies (as it does a private IP that NO_PROXY does not name),
		// and the proxy refuses everything: through it, check took the
		// running daemon's listener for someone else's.
		vars := proxiedVars()
		vars["SCREENPOP_ADMIN_LISTEN"] = insideHost + ":" + strings.Split(freeLoopbackAddr(t), ":")[1]
		p := startMain(t, "run", vars)
		defer p.kill()
		px.Reset()
		px.Refuse("*", http.StatusBadGateway)
		defer px.Refuse("*", 0)
		proxyEnv(vars, px.URL(user, pass), "", caFile)
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		if l, fix := line(t, out, "ok   listen admin"); !strings.Contains(l, "screenpopd") {
			t.Errorf("listen admin: %s %s", l, fix)
		}
		for _, a := range px.Asked() {
			if strings.EqualFold(strings.Split(a.target, ":")[0], insideHost) {
				t.Errorf("check asked the proxy for its own daemon's admin listener, %s", a.target)
			}
		}
	})

	t.Run("NoProxy", func(t *testing.T) {
		// Dataverse inside the network, named in NO_PROXY; the proxy
		// refuses everything, so Genesys fails and Dataverse passes only
		// if it was not asked.
		px.Reset()
		px.Refuse("*", http.StatusBadGateway)
		defer px.Refuse("*", 0)
		inside := "https://" + insideHost + ":" + strings.Split(dataverse, ":")[1]
		d.Dataverse.SetURL(inside)
		defer d.Dataverse.SetURL("https://" + proxiedDataverse)
		vars := proxiedVars()
		vars["DATAVERSE_URL"] = inside
		vars["DATAVERSE_TOKEN_URL"] = inside + "/" + tenant + "/oauth2/v2.0/token"
		proxyEnv(vars, px.URL(user, pass), "localhost,"+strings.ToLower(insideHost), caFile)
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "FAIL dataverse") {
				t.Errorf("Dataverse, named in NO_PROXY, failed: %s", l)
			}
		}
		if !strings.Contains(out, "ok   dataverse") {
			t.Errorf("no Dataverse check passed")
		}
		checkRefusedBy(t, out, "FAIL genesys login", http.StatusBadGateway)
		for _, a := range px.Asked() {
			if strings.Contains(strings.ToLower(a.target), "localhost") {
				t.Errorf("the proxy was asked for %s, named in NO_PROXY", a.target)
			}
		}
		noSecret(t, "check's output", out)
	})
	t.Run("WrongProxyPassword", func(t *testing.T) {
		px.Reset()
		const wrong = "Wr0ng-pa55-e41d"
		vars := proxiedVars()
		proxyEnv(vars, px.URL(user, wrong), "localhost", caFile)
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		checkRefusedBy(t, out, "FAIL genesys login", http.StatusProxyAuthRequired)
		checkRefusedBy(t, out, "FAIL dataverse token", http.StatusProxyAuthRequired)
		p := spawnMain(t, "run", vars)
		refusedBy(t, p, "genesys login failed, retrying", http.StatusProxyAuthRequired)
		refusedBy(t, p, "dataverse token request failed", http.StatusProxyAuthRequired)
		p.kill()
		for what, text := range map[string]string{"check's output": out, "the daemon's log": p.logs.String()} {
			if strings.Contains(text, wrong) {
				t.Errorf("%s holds the proxy URL's password", what)
			}
		}
	})

	t.Run("StreamingHostNotAllowed", func(t *testing.T) {
		// The proxy allows the API and login hosts but not the
		// streaming host (an allow-list that forgot it).
		px.Reset()
		px.Refuse(proxiedStreaming+":443", http.StatusForbidden)
		defer px.Refuse(proxiedStreaming+":443", 0)
		vars := proxiedVars()
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		checkRefusedBy(t, out, "FAIL genesys channel", http.StatusForbidden)
		p := spawnMain(t, "run", vars)
		refusedBy(t, p, "genesys channel not connected, retrying", http.StatusForbidden)
		p.kill()
		noSecret(t, "the daemon's log", p.logs.String())
	})
	t.Run("StreamingRefusedWithoutAReasonPhrase", func(t *testing.T) {
		// A proxy that answers the streaming host's CONNECT with a bare
		// status line, "HTTP/1.1 407" (the reason phrase is optional to
		// a reader; Go's client reads it as 407). The refusal is named
		// as the proxy's 407, as with a reason phrase; screenpopd does
		// not crash on it (gorilla's proxy dialer indexes the text after
		// the code, and panics when there is none).
		px.Reset()
		px.Refuse(proxiedStreaming+":443", -http.StatusProxyAuthRequired)
		defer px.Refuse(proxiedStreaming+":443", 0)
		vars := proxiedVars()
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		if strings.Contains(out, "panic:") {
			t.Errorf("check panicked on the proxy's bare 407")
		}
		checkRefusedBy(t, out, "FAIL genesys channel", http.StatusProxyAuthRequired)
		p := spawnMain(t, "run", vars)
		refusedBy(t, p, "genesys channel not connected, retrying", http.StatusProxyAuthRequired)
		p.kill()
		if strings.Contains(p.logs.String(), "panic:") {
			t.Errorf("the daemon panicked on the proxy's bare 407")
		}
	})
	t.Run("UnreadableProxyURL", func(t *testing.T) {
		// A password with a % that is not an escape: Go cannot parse
		// the proxy URL and drops it without a word, so every connection
		// goes out directly. Here the services are named LOCALHOST
		// (reached without DNS), so that a direct connection stays on
		// this machine and succeeds: check then passes while the proxy
		// is never asked; behind a proxy-only firewall it fails with a
		// DNS or connect error that names no proxy.
		px.Reset()
		const bad = "50%off-9f2c"
		gport, dport := strings.Split(genesys, ":")[1], strings.Split(dataverse, ":")[1]
		inside := "https://" + insideHost + ":" + dport
		d.Dataverse.SetURL(inside)
		defer d.Dataverse.SetURL("https://" + proxiedDataverse)
		vars := proxiedVars()
		vars["GENESYS_API_URL"] = "https://" + insideHost + ":" + gport
		vars["DATAVERSE_URL"] = inside
		vars["DATAVERSE_TOKEN_URL"] = inside + "/" + tenant + "/oauth2/v2.0/token"
		proxyEnv(vars, px.URL(user, bad), "localhost", caFile)
		code, out := runCheckProcess(t, vars)
		t.Logf("exit %d:\n%s", code, out)
		if code != 2 {
			t.Errorf("check exited %d with an HTTPS_PROXY Go ignores, want 2 (an invalid configuration); the proxy was asked for %v", code, px.Asked())
		}
		wantLine(t, out, "FAIL config: HTTPS_PROXY", "not a valid proxy URL")
		if strings.Contains(out, bad) {
			t.Errorf("check's output holds the proxy URL's password")
		}
	})
}

// HTTPS_PROXY is not one of screenpopd's settings, but run and check
// refuse a value net/http would silently ignore (it then connects without
// the proxy) or one the Genesys websocket cannot use, naming the variable
// and never the value (it may hold a password).
func TestConfig_HTTPSProxy(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        string // "" for none
	}{
		{"Plain", "http://proxy.corp.example:3128", ""},
		{"NoScheme", "proxy.corp.example:3128", ""},
		{"EncodedPassword", "http://svc:50%25off%23x@proxy.corp.example:3128", ""},
		{"PercentInPassword", "http://svc:50%off@proxy.corp.example:3128", "HTTPS_PROXY: not a valid proxy URL"},
		{"TrailingSlash", "http://proxy.corp.example:3128/", ""},
		// Go takes the host, port and credentials and ignores the rest.
		{"Path", "http://svc:pw@proxy.corp.example:3128/squid", ""},
		{"Query", "http://proxy.corp.example:3128/?via=dc1", ""},
		{"NoSchemePath", "proxy.corp.example:3128/squid", ""},
		{"QuestionMarkInPassword", "http://svc:12?b@proxy.corp.example:3128", "HTTPS_PROXY: not a valid proxy URL"},
		{"SlashInUser", "http://corp/svc@proxy.corp.example:3128", "HTTPS_PROXY: not a valid proxy URL"},
		{"SlashInPassword", "http://svc:12/b@proxy.corp.example:3128", "HTTPS_PROXY: not a valid proxy URL"},
		{"HashInPassword", "http://svc:a#b@proxy.corp.example:3128", "HTTPS_PROXY: not a valid proxy URL"},
		{"LowerCase", "http://svc:50%off@proxy.corp.example:3128", "https_proxy: not a valid proxy URL"},
		{"TLSToTheProxy", "https://proxy.corp.example:3129", "HTTPS_PROXY: a https:// proxy is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := parseOnlyVars(t)
			if tc.name == "LowerCase" {
				vars["https_proxy"] = tc.value
			} else {
				vars["HTTPS_PROXY"] = tc.value
			}
			_, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
			var ce *ConfigError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && !errors.As(err, &ce):
				t.Fatalf("accepted, or not a configuration error: %v", err)
			case tc.want != "":
				msg := strings.Join(ce.Problems, "\n")
				if !strings.Contains(msg, tc.want) {
					t.Errorf("problems %q, want one with %q", msg, tc.want)
				}
				if strings.Contains(msg, "50%off") || strings.Contains(msg, "a#b") || strings.Contains(msg, "12/b") {
					t.Errorf("the problem quotes the password: %q", msg)
				}
			}
		})
	}
}

// parseOnlyVars is a valid run configuration with no emulator behind
// it: only parsed.
func parseOnlyVars(t *testing.T) map[string]string {
	vars := testEnv(t)
	for k, v := range map[string]string{
		"GENESYS_API_URL": "https://api.example.test", "GENESYS_CLIENT_ID": "id", "GENESYS_CLIENT_SECRET": "secret",
		"GENESYS_AGENTS": demoAgents[0].ID, "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
		"DATAVERSE_TENANT_ID": "00000000-0000-0000-0000-0000000000aa", "DATAVERSE_CLIENT_ID": "id", "DATAVERSE_CLIENT_SECRET": "secret",
	} {
		vars[k] = v
	}
	return vars
}

// popAction is the target action of conv's first pop on p.
func popAction(p *agentPage, conv string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.got {
		if g.ConversationID == conv {
			return g.Target.Action
		}
	}
	return ""
}

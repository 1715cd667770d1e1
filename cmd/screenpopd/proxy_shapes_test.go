package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Corporate proxies that do not simply tunnel or refuse, met by check:
// one that never answers the streaming host's CONNECT, one that asks for
// NTLM or Negotiate only. Each is the loopback proxy of
// TestDaemon_ThroughAnHTTPSProxy in front of the emulators.
func TestCheck_ThroughAProxyOfAnotherShape(t *testing.T) {
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
	d.Dataverse.SetURL("https://" + proxiedDataverse)
	proxiedVars := func() map[string]string {
		vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
		vars["GENESYS_API_URL"] = "https://" + proxiedAPI
		vars["DATAVERSE_URL"] = "https://" + proxiedDataverse
		vars["DATAVERSE_TOKEN_URL"] = "https://" + proxiedEntra + "/" + tenant + "/oauth2/v2.0/token"
		proxyEnv(vars, px.URL(user, pass), "localhost", caFile)
		return vars
	}
	proxyAddr := px.ln.Addr().String()

	t.Run("StreamingConnectNeverAnswered", func(t *testing.T) {
		// The proxy tunnels the API and login hosts, but takes the
		// streaming host's CONNECT and says nothing. check's socket
		// gives up after its 10 s and says so on its one FAIL line
		// (check prints one line per check, then its fix), naming the
		// proxy.
		px.Reset()
		px.Refuse(proxiedStreaming+":443", neverAnswer)
		defer px.Refuse(proxiedStreaming+":443", 0)
		start := time.Now()
		code, out := runCheckProcess(t, proxiedVars())
		took := time.Since(start)
		t.Logf("exit %d after %v:\n%s", code, took, out)
		if took > 40*time.Second {
			t.Errorf("check took %v with a proxy that never answers the socket's CONNECT, want about 10 s more than a passing check", took)
		}
		l := wantLine(t, out, "FAIL genesys channel", proxyAddr)
		lines := strings.Split(out, "\n")
		for i, x := range lines {
			if x == l && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "     fix: ")) {
				t.Errorf("the FAIL genesys channel line runs on to another line before its fix: %q", lines[i+1])
			}
		}
	})

	t.Run("NTLMOrNegotiateOnly", func(t *testing.T) {
		// A Windows shop's proxy that authenticates with NTLM or
		// Kerberos only: its 407 offers no Basic, so the user and
		// password in HTTPS_PROXY (there, and right) cannot help. check
		// must not send the admin to put them there.
		px.Reset()
		px.RefuseWith("*", http.StatusProxyAuthRequired, "Proxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\n")
		defer px.RefuseWith("*", 0, "")
		code, out := runCheckProcess(t, proxiedVars())
		t.Logf("exit %d:\n%s", code, out)
		for _, prefix := range []string{"FAIL genesys login", "FAIL dataverse token"} {
			l, _ := line(t, out, prefix)
			if !strings.Contains(l, fmt.Sprintf("proxy %s refused the connection", proxyAddr)) {
				t.Errorf("%q does not name the proxy's refusal", l)
			}
			if strings.Contains(l, "put the proxy's user and password in HTTPS_PROXY") {
				t.Errorf("%q sends the admin to put a user and password in HTTPS_PROXY, which it holds, for a proxy that takes NTLM or Negotiate only", l)
			}
			if !strings.Contains(l, "NTLM") && !strings.Contains(l, "Negotiate") {
				t.Errorf("%q does not say the proxy asks for NTLM or Negotiate, which screenpopd cannot do", l)
			}
		}
		if strings.Contains(out, pass) {
			t.Errorf("check's output holds the proxy's password")
		}
	})
}

// socks5Proxy is a SOCKS5 proxy (RFC 1928: no authentication, CONNECT by
// name) on a loopback port that tunnels to the hosts it maps, each to a
// loopback address; it refuses any other host.
type socks5Proxy struct {
	ln     net.Listener
	routes map[string]string

	mu     sync.Mutex
	asked  []string
	conns  []net.Conn
	wg     sync.WaitGroup
	closed bool
}

func startSOCKS5Proxy(t *testing.T, routes map[string]string) *socks5Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &socks5Proxy{ln: ln, routes: routes}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c) {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); defer c.Close(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *socks5Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

// Asked returns the host:port of each CONNECT, and "not SOCKS5" for a
// connection that spoke something else (an HTTP CONNECT).
func (p *socks5Proxy) Asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

func (p *socks5Proxy) serve(c net.Conn) {
	br := bufio.NewReader(c)
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return
	}
	if hdr[0] != 5 {
		p.mu.Lock()
		p.asked = append(p.asked, "not SOCKS5")
		p.mu.Unlock()
		return
	}
	if _, err := io.ReadFull(br, make([]byte, hdr[1])); err != nil {
		return
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[1] != 1 || req[3] != 3 {
		return
	}
	n, err := br.ReadByte()
	if err != nil {
		return
	}
	name := make([]byte, int(n)+2)
	if _, err := io.ReadFull(br, name); err != nil {
		return
	}
	target := net.JoinHostPort(string(name[:n]), strconv.Itoa(int(binary.BigEndian.Uint16(name[n:]))))
	p.mu.Lock()
	p.asked = append(p.asked, target)
	p.mu.Unlock()
	addr, ok := p.routes[target]
	if !ok {
		c.Write([]byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}) // not allowed by ruleset
		return
	}
	up, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	if !p.track(up) {
		return
	}
	defer up.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0}); err != nil {
		return
	}
	go func() { _, _ = io.Copy(up, br); up.Close() }()
	_, _ = io.Copy(c, up)
}

// HTTPS_PROXY=socks5://host:1080: run and check accept it ("the Genesys
// websocket reaches a proxy over http:// or socks5://", config.go
// proxyProblems) and Go's transport takes the REST calls through it; the
// notification websocket must go through it too (gorilla's proxy dialer
// did, before the shard opened its tunnel itself with an HTTP CONNECT,
// which a SOCKS proxy does not speak). check passes through it.
func TestCheck_ThroughASOCKS5Proxy(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	cert, caFile := selfSignedCert(t, proxiedAPI, proxiedLogin, proxiedStreaming, proxiedDataverse, proxiedEntra, "localhost")
	genesys := serveTLS(t, d.Genesys.Handler(), cert)
	dataverse := serveTLS(t, d.Dataverse, cert)
	px := startSOCKS5Proxy(t, map[string]string{
		proxiedAPI + ":443": genesys, proxiedLogin + ":443": genesys, proxiedStreaming + ":443": genesys,
		proxiedDataverse + ":443": dataverse, proxiedEntra + ":443": dataverse,
	})
	tenant := d.Dataverse.Config().TenantID
	d.Dataverse.SetURL("https://" + proxiedDataverse)
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["GENESYS_API_URL"] = "https://" + proxiedAPI
	vars["DATAVERSE_URL"] = "https://" + proxiedDataverse
	vars["DATAVERSE_TOKEN_URL"] = "https://" + proxiedEntra + "/" + tenant + "/oauth2/v2.0/token"
	proxyEnv(vars, "socks5://"+px.ln.Addr().String(), "localhost", caFile)
	code, out := runCheckProcess(t, vars)
	t.Logf("exit %d:\n%s", code, out)
	if code != 0 || !strings.Contains(out, "all checks passed") {
		t.Errorf("check through a socks5:// HTTPS_PROXY failed (exit %d); the proxy was asked for %v", code, px.Asked())
	}
	if slices.Contains(px.Asked(), "not SOCKS5") {
		t.Errorf("the SOCKS5 proxy was spoken to in another protocol (an HTTP CONNECT): %v", px.Asked())
	}
}

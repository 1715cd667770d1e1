// Package egress makes a forward proxy's refusal (HTTPS_PROXY,
// HTTP_PROXY) read as the proxy's in the errors of screenpopd's outbound
// connections to Genesys Cloud, Entra ID and Dataverse.
//
// Go's transport and gorilla's websocket dialer report a CONNECT that the
// proxy answers with anything but 200 by its status text alone, so a log
// line reads `Post "https://login.mypurecloud.com/oauth/token": Bad
// Gateway` or `connect channel: Forbidden`: the service's own answer, an
// outage or a permission, to anyone reading it. Here the error names the
// proxy (its host and port, never its credentials), the host asked for
// and the status.
//
// It does not choose the proxy: that stays http.ProxyFromEnvironment,
// NO_PROXY included. HTTP2 gives the same transports their HTTP/2
// health checks. Its functions keep no state and are safe for concurrent
// use.
package egress

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ProxyError is a proxy's refusal to open a tunnel to a host.
type ProxyError struct {
	Proxy  string // the proxy's host:port, without credentials
	Target string // the host:port the tunnel was asked for
	Status int    // the proxy's answer, e.g. 407
	// Schemes are the authentication schemes a 407's Proxy-Authenticate
	// offers ("Basic", "NTLM", "Negotiate"), as the proxy wrote them.
	Schemes []string
}

// authSchemes returns the schemes of h's Proxy-Authenticate challenges,
// one header each or several in one ("NTLM, Basic realm=\"corp\""): the
// first word of each comma-separated part that is not an auth-param
// ("realm=x", "realm = x"). A comma within a quoted value ("Digest
// qop=\"auth, auth-int\"") separates nothing.
func authSchemes(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Proxy-Authenticate") {
		for _, part := range splitOutsideQuotes(v) {
			f := strings.Fields(part)
			if len(f) > 0 && !strings.Contains(f[0], "=") && (len(f) == 1 || !strings.HasPrefix(f[1], "=")) {
				out = append(out, f[0])
			}
		}
	}
	return out
}

// splitOutsideQuotes splits v at the commas that are not within a
// quoted-string (RFC 9110 5.6.4, with its backslash escapes).
func splitOutsideQuotes(v string) []string {
	var parts []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch {
		case quoted && v[i] == '\\':
			i++
		case v[i] == '"':
			quoted = !quoted
		case !quoted && v[i] == ',':
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	return append(parts, v[start:])
}

// basicOffered reports whether schemes leaves Basic to the client: it
// offers Basic, or names no scheme at all.
func basicOffered(schemes []string) bool {
	if len(schemes) == 0 {
		return true
	}
	for _, s := range schemes {
		if strings.EqualFold(s, "Basic") {
			return true
		}
	}
	return false
}

func (e *ProxyError) Error() string {
	s := fmt.Sprintf("proxy %s refused the connection to %s: %d %s", e.Proxy, e.Target, e.Status, http.StatusText(e.Status))
	switch {
	case e.Status == http.StatusProxyAuthRequired && !basicOffered(e.Schemes):
		s += " (the proxy asks for " + strings.Join(e.Schemes, " or ") + " authentication, which screenpopd cannot do: it sends the user and password of HTTPS_PROXY as Basic only; have the proxy accept Basic, or let this host through without authentication)"
	case e.Status == http.StatusProxyAuthRequired:
		s += " (put the proxy's user and password in HTTPS_PROXY: http://user:password@host:port)"
	case e.Status == http.StatusForbidden:
		s += " (the proxy does not allow this host: have it allowed)"
	case e.Status >= 500:
		s += " (the proxy could not reach the host, or does not allow it)"
	}
	return s
}

// OnProxyConnectResponse is for http.Transport.OnProxyConnectResponse: a
// CONNECT answered with anything but 200 fails with a *ProxyError.
func OnProxyConnectResponse(_ context.Context, proxy *url.URL, connect *http.Request, res *http.Response) error {
	if res.StatusCode == http.StatusOK {
		return nil
	}
	return &ProxyError{Proxy: proxy.Host, Target: connect.Host, Status: res.StatusCode, Schemes: authSchemes(res.Header)}
}

// DialError names the proxy in err, the error of a websocket dial of
// rawURL that got no handshake answer, when proxy (the dialer's Proxy)
// sends that URL through one: a refused CONNECT, which gorilla reports by
// the status text alone, becomes a *ProxyError; any other error says it
// was met through the proxy. Otherwise err is returned as it is.
func DialError(proxy func(*http.Request) (*url.URL, error), rawURL string, err error) error {
	if err == nil || proxy == nil {
		return err
	}
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return err
	}
	hu := *u
	port := "80"
	switch u.Scheme {
	case "ws":
		hu.Scheme = "http"
	case "wss":
		hu.Scheme, port = "https", "443"
	}
	p, perr := proxy(&http.Request{Method: http.MethodGet, URL: &hu, Header: http.Header{}})
	if perr != nil || p == nil {
		return err
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), port)
	}
	// gorilla's proxy dialer returns errors.New of the text after the
	// status code of a CONNECT answer that is not 200: the status text,
	// or a proxy's own reason phrase that adds its words after it
	// ("Proxy Authentication Required ( Forefront TMG requires ... )").
	msg := err.Error()
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" && (msg == t || strings.HasPrefix(msg, t+" ")) {
			return &ProxyError{Proxy: p.Host, Target: target, Status: code}
		}
	}
	var pe *ProxyError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("through proxy %s: %w", p.Host, err)
}

// NetDialer returns, for a websocket dial of rawURL that proxy sends
// through a proxy, a NetDialContext for the dialer (whose own Proxy is then
// left nil) that opens the tunnel itself: a CONNECT answered with anything
// but 200 is a *ProxyError with the answer's status, whatever its reason
// phrase, or none. gorilla's proxy dialer keeps only the text after the
// code, and panics on a status line without one ("HTTP/1.1 407"). It
// returns nil when rawURL goes out directly, or through a proxy that is
// not http:// (socks5://, which the dialer's Proxy reaches itself).
func NetDialer(proxy func(*http.Request) (*url.URL, error), rawURL string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if proxy == nil {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	hu := *u
	switch u.Scheme {
	case "ws":
		hu.Scheme = "http"
	case "wss":
		hu.Scheme = "https"
	}
	p, err := proxy(&http.Request{Method: http.MethodGet, URL: &hu, Header: http.Header{}})
	// Only an http:// proxy is asked for a CONNECT; the dialer's own
	// Proxy reaches another (socks5://) as it does.
	if err != nil || p == nil || !strings.EqualFold(p.Scheme, "http") {
		return nil
	}
	proxyAddr := p.Host
	if p.Port() == "" {
		proxyAddr = net.JoinHostPort(p.Hostname(), "80")
	}
	hdr := http.Header{}
	if p.User != nil { // as Go's transport: a user without a password too
		pass, _ := p.User.Password()
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.User.Username()+":"+pass)))
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, proxyAddr)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: hdr.Clone()}
		// One line, whatever failed: check prints one per check.
		unanswered := func(err error) error {
			c.Close()
			if ctx.Err() != nil {
				return fmt.Errorf("no answer from the proxy to the CONNECT to %s: %w", addr, ctx.Err())
			}
			return fmt.Errorf("no answer from the proxy to the CONNECT to %s: %w", addr, err)
		}
		if err := req.Write(c); err != nil {
			return nil, unanswered(err)
		}
		// The proxy says nothing more until the client speaks (TLS), so
		// the buffered reader holds nothing of the tunnel's.
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return nil, unanswered(err)
		}
		if resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, &ProxyError{Proxy: p.Host, Target: addr, Status: resp.StatusCode, Schemes: authSchemes(resp.Header)}
		}
		if !stop() {
			c.Close()
			return nil, ctx.Err()
		}
		return c, nil
	}
}

// HTTP2 is the HTTP/2 settings of screenpopd's outbound HTTP transports
// (Genesys Cloud's API, Entra ID, Dataverse: each speaks HTTP/2, so all
// the requests to a host share one connection). A connection that goes
// silent (a load balancer or NAT on the path forgets it, the front end
// behind it vanishes: no FIN, no RST) would otherwise take every request
// until the kernel gives up retransmitting, about 15 minutes: a request
// that times out resets its own stream, not the connection. After 5 s
// without a frame from the server a PING is sent; unanswered within 5 s,
// the connection is closed and the next request opens a new one. An idle
// connection is pinged every 5 s until the transport's IdleConnTimeout
// closes it: a few bytes.
func HTTP2() *http.HTTP2Config {
	return &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second}
}

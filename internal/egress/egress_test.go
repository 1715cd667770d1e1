package egress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestOnProxyConnectResponse(t *testing.T) {
	proxy, _ := url.Parse("http://svc:s3cret@proxy.corp.example:3128")
	connect := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: "login.mypurecloud.ie:443"}, Host: "login.mypurecloud.ie:443"}
	if err := OnProxyConnectResponse(context.Background(), proxy, connect, &http.Response{StatusCode: http.StatusOK}); err != nil {
		t.Fatalf("200: %v", err)
	}
	err := OnProxyConnectResponse(context.Background(), proxy, connect, &http.Response{StatusCode: http.StatusProxyAuthRequired})
	var pe *ProxyError
	if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired {
		t.Fatalf("407: %v", err)
	}
	want := "proxy proxy.corp.example:3128 refused the connection to login.mypurecloud.ie:443: 407 Proxy Authentication Required"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%q, want it to start %q", err, want)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("%q holds the proxy's password", err)
	}
}

func TestDialError(t *testing.T) {
	viaProxy := func(*http.Request) (*url.URL, error) { return url.Parse("http://svc:s3cret@proxy.corp.example:3128") }
	direct := func(*http.Request) (*url.URL, error) { return nil, nil } // NO_PROXY
	uri := "wss://streaming.mypurecloud.ie/channels/streaming-0-secretid"
	for _, tc := range []struct {
		name  string
		proxy func(*http.Request) (*url.URL, error)
		err   error
		want  string
	}{
		{"RefusedTunnel", viaProxy, errors.New("Forbidden"),
			"proxy proxy.corp.example:3128 refused the connection to streaming.mypurecloud.ie:443: 403 Forbidden"},
		{"OtherError", viaProxy, errors.New("dial tcp 10.0.0.1:3128: i/o timeout"),
			"through proxy proxy.corp.example:3128: dial tcp 10.0.0.1:3128: i/o timeout"},
		{"NoProxy", direct, errors.New("Forbidden"), "Forbidden"},
		{"NoProxyFunc", nil, errors.New("Forbidden"), "Forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DialError(tc.proxy, uri, tc.err)
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("%q, want it to start %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "secretid") {
				t.Errorf("%q holds the proxy's password or the channel's id", err)
			}
		})
	}
	if DialError(viaProxy, uri, nil) != nil {
		t.Error("no error became one")
	}
}

// Each refusal says what to do about it, as docs/setup.md ("Behind an
// outbound proxy") shows: 407 the credentials, 403 the allow list, 502,
// 503 and 504 a host the proxy could not reach; the same through a
// websocket dial, where gorilla gives the status text alone. Anything but
// 200 to the CONNECT is a refusal.
func TestProxyError_SaysWhatToDo(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.corp.example:3128")
	connect := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: "login.mypurecloud.ie:443"}, Host: "login.mypurecloud.ie:443"}
	viaProxy := func(*http.Request) (*url.URL, error) { return proxy, nil }
	for status, hint := range map[int]string{
		http.StatusProxyAuthRequired:  "(put the proxy's user and password in HTTPS_PROXY",
		http.StatusForbidden:          "(the proxy does not allow this host: have it allowed)",
		http.StatusBadGateway:         "(the proxy could not reach the host, or does not allow it)",
		http.StatusServiceUnavailable: "(the proxy could not reach the host, or does not allow it)",
		http.StatusGatewayTimeout:     "(the proxy could not reach the host, or does not allow it)",
	} {
		err := OnProxyConnectResponse(context.Background(), proxy, connect, &http.Response{StatusCode: status})
		if want := "refused the connection to login.mypurecloud.ie:443: " + strconv.Itoa(status) + " " + http.StatusText(status) + " " + hint; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CONNECT answered %d: %v, want it to say %q", status, err, want)
		}
		err = DialError(viaProxy, "wss://streaming.mypurecloud.ie/channels/x", errors.New(http.StatusText(status)))
		var pe *ProxyError
		if !errors.As(err, &pe) || pe.Status != status || !strings.Contains(err.Error(), hint) {
			t.Errorf("websocket tunnel refused with %d: %v, want a *ProxyError saying %q", status, err, hint)
		}
	}
	for _, status := range []int{http.StatusCreated, http.StatusNoContent, http.StatusFound} {
		if err := OnProxyConnectResponse(context.Background(), proxy, connect, &http.Response{StatusCode: status}); err == nil {
			t.Errorf("CONNECT answered %d: no error, want a refusal (anything but 200)", status)
		}
	}
}

// DialError asks the dialer's Proxy for the URL the dialer itself would:
// ws as http (HTTP_PROXY), wss as https (HTTPS_PROXY), as
// http.ProxyFromEnvironment tells them apart; and an error other than a
// refusal is still the dial's underneath.
func TestDialError_AsksForTheSchemeTheDialerUses(t *testing.T) {
	envLike := func(r *http.Request) (*url.URL, error) { // HTTP_PROXY and HTTPS_PROXY set to two proxies
		switch r.URL.Scheme {
		case "https":
			return url.Parse("http://tls-proxy.corp.example:3128")
		case "http":
			return url.Parse("http://plain-proxy.corp.example:8080")
		}
		return nil, nil
	}
	for uri, want := range map[string]string{
		"wss://streaming.mypurecloud.ie/channels/x": "proxy tls-proxy.corp.example:3128 refused the connection to streaming.mypurecloud.ie:443: 403",
		"ws://streaming.example:8001/channels/x":    "proxy plain-proxy.corp.example:8080 refused the connection to streaming.example:8001: 403",
		"ws://streaming.example/channels/x":         "proxy plain-proxy.corp.example:8080 refused the connection to streaming.example:80: 403",
	} {
		if err := DialError(envLike, uri, errors.New("Forbidden")); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want it to start %q", uri, err, want)
		}
	}
	err := DialError(envLike, "wss://streaming.mypurecloud.ie/channels/x", context.DeadlineExceeded)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "through proxy tls-proxy.corp.example:3128: ") {
		t.Errorf("%v, want the dial's own error, said to be met through the proxy", err)
	}
}

// A proxy whose refusal carries its own words after the status text, as
// Forefront TMG's "407 Proxy Authentication Required ( Forefront TMG
// requires authorization ... )": gorilla's dialer gives that whole text,
// and the refusal is still the proxy's 407 (a refusal, not an outage).
func TestDialError_AReasonPhraseWithTheProxysOwnWords(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required ( Forefront TMG requires authorization to fulfill the request. Access to the Web Proxy filter is denied.  )\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	px, _ := url.Parse("http://" + ln.Addr().String())
	dialer := websocket.Dialer{Proxy: http.ProxyURL(px), HandshakeTimeout: 5 * time.Second}
	uri := "wss://streaming.mypurecloud.ie/channels/streaming-0-x"
	_, resp, err := dialer.Dial(uri, nil)
	if resp != nil || err == nil {
		t.Fatalf("dial through a refusing proxy: %v, %v", resp, err)
	}
	err = DialError(dialer.Proxy, uri, err)
	var pe *ProxyError
	if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired || pe.Target != "streaming.mypurecloud.ie:443" {
		t.Fatalf("%v, want the proxy's 407 refusal as a *ProxyError", err)
	}
}

package egress

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
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

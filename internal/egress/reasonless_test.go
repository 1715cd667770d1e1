package egress

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A proxy whose refusal has no reason phrase at all ("HTTP/1.1 407",
// which Go's own HTTP client reads as a 407): gorilla's proxy dialer takes
// the text after the code with strings.SplitN(resp.Status, " ", 2)[1], and
// panics (the daemon's notification shard and check dialed with it). The
// tunnel NetDialer opens names the refusal, with or without a phrase.
func TestNetDialer_ARefusalWithOrWithoutAReasonPhrase(t *testing.T) {
	for _, line := range []string{"HTTP/1.1 407", "HTTP/1.1 407 ", "HTTP/1.1 407 Proxy Authentication Required ( Forefront TMG requires authorization )"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
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
					io.WriteString(c, line+"\r\nContent-Length: 0\r\n\r\n")
				}()
			}
		}()
		px, _ := url.Parse("http://" + ln.Addr().String())
		uri := "wss://streaming.mypurecloud.ie/channels/streaming-0-x"
		nd := NetDialer(http.ProxyURL(px), uri)
		if nd == nil {
			t.Fatal("no tunnel dialer for a proxied URL")
		}
		dialer := websocket.Dialer{NetDialContext: nd, HandshakeTimeout: 5 * time.Second}
		var derr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%q: the dial panicked: %v", line, r)
				}
			}()
			_, _, derr = dialer.Dial(uri, nil)
		}()
		err = DialError(http.ProxyURL(px), uri, derr)
		var pe *ProxyError
		if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired || pe.Target != "streaming.mypurecloud.ie:443" {
			t.Errorf("%q: %v, want the proxy's 407 refusal as a *ProxyError", line, err)
		}
		ln.Close()
	}
}

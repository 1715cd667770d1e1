package httplog_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/httplog"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// net/http's own lines reach the JSON log at a level that says how much
// they matter: a client that fails its TLS handshake (a scanner, a plain
// HTTP request to the TLS port) at debug, a handler's panic at error.
func TestErrorLog_NetHTTPLinesAreJSON(t *testing.T) {
	var logs syncbuf.Buffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("a handler's bug")
	}))
	srv.Config.ErrorLog = httplog.ErrorLog(zerolog.New(&logs).Level(zerolog.DebugLevel))
	srv.StartTLS()
	defer srv.Close()

	// Plain HTTP to the TLS port: the handshake fails.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Read(make([]byte, 512))
	c.Close()
	// A request whose handler panics.
	if resp, err := srv.Client().Get(srv.URL); err == nil {
		resp.Body.Close()
	}

	lines := func() []map[string]any {
		ls, err := logs.JSONLines()
		if err != nil {
			t.Fatalf("a line is not JSON: %v\n%s", err, logs.String())
		}
		return ls
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(lines()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	levels := map[string]string{}
	for _, l := range lines() {
		detail, _ := l["detail"].(string)
		switch {
		case strings.Contains(detail, "TLS handshake error"):
			levels["handshake"], _ = l["level"].(string)
		case strings.Contains(detail, "panic serving"):
			levels["panic"], _ = l["level"].(string)
		}
		if l["message"] != "http server" {
			t.Errorf("line %v: want message \"http server\"", l)
		}
	}
	if levels["handshake"] != "debug" || levels["panic"] != "error" {
		t.Fatalf("levels %v, want the failed handshake at debug and the panic at error; log:\n%s", levels, logs.String())
	}
}

// Any other line of net/http's (a handler writing its header twice, an
// accept that fails and is retried) is at warn, with the line itself, not
// a trailing newline, in "detail".
func TestErrorLog_OtherLinesAtWarn(t *testing.T) {
	var logs syncbuf.Buffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.WriteHeader(http.StatusInternalServerError) // "http: superfluous response.WriteHeader call"
	}))
	el := httplog.ErrorLog(zerolog.New(&logs).Level(zerolog.DebugLevel))
	srv.Config.ErrorLog = el
	srv.Start()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// net/http's Serve, had it no listener that waits out EMFILE itself.
	el.Printf("http: Accept error: accept tcp 127.0.0.1:8443: accept4: too many open files; retrying in 5ms")

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "superfluous") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ls, err := logs.JSONLines()
	if err != nil {
		t.Fatalf("a line is not JSON: %v\n%s", err, logs.String())
	}
	levels := map[string]string{}
	for _, l := range ls {
		detail, _ := l["detail"].(string)
		if detail != strings.TrimSpace(detail) {
			t.Errorf("detail %q: want the line without its newline", detail)
		}
		switch {
		case strings.HasPrefix(detail, "http: superfluous response.WriteHeader call"):
			levels["superfluous"], _ = l["level"].(string)
		case strings.HasPrefix(detail, "http: Accept error"):
			levels["accept"], _ = l["level"].(string)
		}
	}
	if levels["superfluous"] != "warn" || levels["accept"] != "warn" {
		t.Fatalf("levels %v, want both lines at warn; log:\n%s", levels, logs.String())
	}
}

package push

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// An Origin with an IPv6 zone ("http://[fe80::1%25en0]", any client can
// send it, no token needed) is normalized to "http://[fe80::1%en0]",
// which url.Parse refuses ("%en" is no escape); originAllowed ignored the
// error and read the nil URL's Host: a panic in the upgrade handler.
// net/http recovers it, drops the connection and logs "http: panic
// serving" with a stack, the line docs/operations.md calls a bug to
// report. The origin is simply not allowed: 403, as any other.
func TestServer_AnOriginWithAnIPv6ZoneIsRefusedNotAPanic(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, nil, nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	waitFor(t, 10*time.Second, "listener serving", e.srv.serving.Load)
	for _, origin := range []string{"http://[fe80::1%25en0]", "https://[fe80::1%25eth0]:8443"} {
		ws, resp, err := e.dial(http.Header{"Origin": {origin}})
		if err == nil {
			ws.Close()
			t.Fatalf("%s: origin accepted", origin)
		}
		if resp == nil {
			t.Errorf("%s: no answer (%v), want 403", origin, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", origin, resp.StatusCode)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, l := range logs.lines() {
		if s := fmt.Sprint(l); strings.Contains(s, "panic") {
			t.Errorf("logged: %.300s", s)
		}
	}
}

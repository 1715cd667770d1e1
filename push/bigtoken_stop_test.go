package push

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// docs/agents.md gives one limit to what a browser sends: a frame of
// 16 KiB. A token that fits in a hello is read: an SSO bridge's JWT with
// many group claims runs to 10 KB, and refusing it as "invalid or expired"
// (4401) would have the page fetch another as large, again and again.
func TestConn_ATokenThatFitsInTheFrameIsRead(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":    "agent-a",
		"exp":    time.Now().Add(time.Hour).Unix(),
		"groups": strings.Repeat("g", 11<<10),
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) <= 8<<10 || len(tok) > 15<<10 {
		t.Fatalf("setup: a token of %d bytes, want between 8 and 15 KiB", len(tok))
	}
	_, ready := e.connect(tok, nil, "")
	if ready.AgentID != "agent-a" {
		t.Fatalf("ready for %q, want agent-a", ready.AgentID)
	}
}

// While the daemon stops (Config.Stopping, seconds before push's own
// stop), an upgrade is refused with 503, as docs/agents.md says, rather
// than given a ready and a 1001 a moment later.
func TestServer_UpgradeRefusedWhileTheDaemonStops(t *testing.T) {
	var stopping atomic.Bool
	e := newEnv(t, Config{Stopping: stopping.Load}, nil, nil)
	ws, _, err := e.dial(nil)
	if err != nil {
		t.Fatalf("dial before the stop: %v", err)
	}
	ws.Close()
	stopping.Store(true)
	ws, resp, err := e.dial(nil)
	if err == nil {
		ws.Close()
		t.Fatal("upgraded while the daemon stops")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial while the daemon stops: %v %v, want 503", resp, err)
	}
}

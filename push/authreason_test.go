package push

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A refused hello's log line says why: when every agent is refused for
// one reason (a token signed with another secret after a rotation, the
// browser OAuth client without a permission, another org), on-call must
// see that reason, not only "invalid or expired token", which reads as
// agents to sign in again. A token refused again within refusedTTL is
// answered from the cache: its error keeps the reason too.
func TestServer_RefusedTokenLineSaysWhy(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, newMemStore(), nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	waitFor(t, 5*time.Second, "listener serving", e.srv.serving.Load)
	other, err := MintToken([]byte("another-secret-0123456789abcdef-01234"), "agent-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": other})
	c.expectClose(CloseInvalidToken)

	var line map[string]any
	for _, l := range logs.lines() {
		if l["message"] == "websocket closed: invalid or expired token" {
			line = l
		}
	}
	if line == nil {
		t.Fatalf("no line for the refused hello")
	}
	if why, _ := line["error"].(string); !strings.Contains(why, "signature is invalid") {
		t.Errorf("the refused hello's line gives no reason (error %q): want the signature named", why)
	}
	if strings.Contains(logs.String(), other) {
		t.Errorf("the refused token is in the log")
	}

	_, _, err = e.srv.auth.check(t.Context(), other, time.Now())
	if err == nil || !strings.Contains(err.Error(), "signature is invalid") {
		t.Errorf("the same token refused again from the cache: %v, want the reason kept", err)
	}
}

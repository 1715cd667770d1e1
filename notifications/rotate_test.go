package notifications_test

import (
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The client secret is regenerated in Genesys before the daemon has it
// (docs/operations.md 7.1): the refresh from the margin before the token's
// expiry is refused, logged once at error with the setting to fix, and
// shown in the status; the channels keep delivering on the token in hand
// until it expires.
func TestClient_SecretChangedInGenesysWhileRunning(t *testing.T) {
	// A machine so loaded that the refusal came too late to alert a call
	// on the token in hand runs it again with a longer-lived token; only
	// then is it given up (a failure in CI).
	testenv.WithMoreRoom(t, "a machine that logs in and is refused within 11.5 s", []time.Duration{4 * time.Second, 12 * time.Second},
		func(life time.Duration) bool { return secretChanged(t, life) })
}

// secretChanged is TestClient_SecretChangedInGenesysWhileRunning with
// tokens that live life; false when the refusal came too late to test.
func secretChanged(t *testing.T, life time.Duration) bool {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: life,
		Clients: map[string]string{"rot-client": "old-secret"}},
		func(c *notifications.Config) {
			c.Agents, c.ClientID, c.ClientSecret, c.TokenRefreshMargin = ids(as), "rot-client", "old-secret", life/2
		}, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	loggedIn := time.Now()
	h.emu.AddClient("rot-client", "new-secret")
	waitFor(t, life, "the refused refresh in the status", func() bool {
		return strings.Contains(h.client.Status().(notifications.Status).LoginError, "GENESYS_CLIENT_SECRET")
	})
	if time.Since(loggedIn) > life-500*time.Millisecond {
		h.stop()
		return false
	}
	c := h.emu.InboundCall(as[0].ID, "+13175550199", notificationstest.Options{}).Alert()
	col.await(t, 2*time.Second, "the call alerted after the refused refresh", c, as[0].ID)
	n := 0
	for _, l := range h.logs.lines() {
		if strings.Contains(l, "genesys login rejected the client credentials") {
			n++
			if !strings.Contains(l, `"level":"error"`) {
				t.Errorf("not at error: %s", l)
			}
		}
		if strings.Contains(l, "secret") && (strings.Contains(l, "old-secret") || strings.Contains(l, "new-secret")) {
			t.Errorf("a log line holds the secret: %s", l)
		}
	}
	if n != 1 {
		t.Errorf("refused refresh logged %d times, want once", n)
	}
	return true
}

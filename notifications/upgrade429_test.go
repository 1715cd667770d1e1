package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The streaming host, like the API in front of it, may answer a socket's
// upgrade with 429 and a Retry-After (the client takes a 429 there for a
// refusal of now, not of the channel: docs/genesys.md). Redialled after
// the reconnect backoff alone (half a second, doubling), the upgrade is
// asked again several times within the Retry-After, each one more request
// against the throttle; it must wait for the Retry-After, as every other
// 429 of the client does, and then reconnect the same channel.
func TestClient_ARateLimitedUpgradeWaitsForItsRetryAfter(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			as := agents(1)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
				func(c *notifications.Config) { c.Agents = ids(as) }, 64)
			col := collect(h.out)
			h.awaitReady(5 * time.Second)
			creates := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels")
			const retryAfter = 2 * time.Second
			h.emu.FailNext(http.MethodGet, "/channels/", status, retryAfter, 1)
			h.emu.DropConnections()
			var refused time.Time
			waitFor(t, 10*time.Second, "the refused upgrade", func() bool {
				for _, r := range h.emu.Requests() {
					if strings.HasPrefix(r.Path, "/channels/") && r.Status == status {
						refused = r.Time
						return true
					}
				}
				return false
			})
			waitFor(t, 10*time.Second, "the socket back after the Retry-After", func() bool { return h.emu.SubscribedConnected() == 1 })
			for _, r := range h.emu.Requests() {
				if strings.HasPrefix(r.Path, "/channels/") && r.Time.After(refused) && r.Time.Sub(refused) < retryAfter-100*time.Millisecond {
					t.Errorf("upgrade asked again %v after a %d with Retry-After %v", r.Time.Sub(refused).Round(time.Millisecond), status, retryAfter)
				}
			}
			if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels") - creates; n != 0 {
				t.Errorf("%d channels created: a throttled upgrade is no channel gone", n)
			}
			// The call that rang meanwhile still pops (reconciliation).
			c := h.emu.InboundCall(as[0].ID, "+13175550100", notificationstest.Options{}).Alert()
			col.await(t, 5*time.Second, "a call after the reconnect", c, as[0].ID)
			h.stop()
			<-col.done
		})
	}
}

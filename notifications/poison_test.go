package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

const droppedMetric = "screenpop_notifications_reconciliation_dropped_total"

// One conversation whose fetch fails every time (a persistent 5xx, or a
// body the adapter cannot read) must not hold up the others: neither the
// rest of its own gap nor a later gap, whose ringing calls must pop at the
// usual pace (here well under the 5 s BackoffMax, production's 60 s
// scaled down). It is tried a bounded number of times, then dropped with
// one log line and counted. A 404 is a conversation that ended: it is
// dropped at once, as before.
func TestClient_AConversationThatCannotBeFetchedHoldsUpNoOther(t *testing.T) {
	cases := []struct {
		name     string
		poison   func(e *notificationstest.Emulator, id string)
		dropped  bool // given up on and counted (not a 404: ended)
		maxTries int
	}{
		// Five tries, and as many more as its doubling retries (capped at
		// BackoffMax) fit in the 2 × BackoffMax it must have failed for.
		{"500", func(e *notificationstest.Emulator, id string) {
			e.FailNext(http.MethodGet, "/api/v2/conversations/"+id, http.StatusInternalServerError, 0, 1_000_000)
		}, true, 12},
		{"unreadable body", func(e *notificationstest.Emulator, id string) { e.GarbleConversation(id, true) }, true, 12},
		{"404", func(e *notificationstest.Emulator, id string) {
			e.FailNext(http.MethodGet, "/api/v2/conversations/"+id, http.StatusNotFound, 0, 1_000_000)
		}, false, 2}, // once per gap: it ended
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			as := agents(3)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
				func(c *notifications.Config) { c.Agents = ids(as); c.BackoffMax = 5 * time.Second }, 256)
			col := collect(h.out)
			h.awaitStartupReconciliation()

			// Gap 1: a call rings for as[0] whose fetch always fails, and
			// as[1] answers chats.
			h.emu.SetBlackhole(true)
			poison := h.emu.InboundCall(as[0].ID, "+13175550110", notificationstest.Options{}).Alert()
			tc.poison(h.emu, poison.ID())
			var answered1 []*notificationstest.Conversation
			for range 6 {
				answered1 = append(answered1, h.emu.Chat(as[1].ID, notificationstest.Options{}).Alert().Connect())
			}
			time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
			h.emu.SetBlackhole(false)
			h.emu.DropConnections()
			for _, c := range answered1 {
				col.await(t, 3*time.Second, "the chats answered during the gap of the failing conversation", c, as[1].ID)
			}
			tries := func() int { return h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+poison.ID()) }
			// Let the failing conversation settle: retried (and, before
			// the fix, the retry backoff grown to BackoffMax: 8 failed
			// passes), or given up on (after 2 × BackoffMax).
			waitFor(t, 30*time.Second, "the failing conversation retried or given up on", func() bool {
				if tc.dropped {
					return tries() >= 9 || gauge(t, h.reg, droppedMetric) >= 1
				}
				return tries() >= 1
			})
			time.Sleep(50 * time.Millisecond)

			// Gap 2: a call rings for as[2] and as[1] answers more chats.
			h.emu.SetBlackhole(true)
			ringing := h.emu.InboundCall(as[2].ID, "+13175550111", notificationstest.Options{}).Alert()
			var answered2 []*notificationstest.Conversation
			for range 6 {
				answered2 = append(answered2, h.emu.Chat(as[1].ID, notificationstest.Options{}).Alert().Connect())
			}
			time.Sleep(200 * time.Millisecond)
			h.emu.SetBlackhole(false)
			gap := time.Now()
			h.emu.DropConnections()
			col.await(t, 10*time.Second, "the call that rang during the later gap", ringing, as[2].ID)
			if el := time.Since(gap); el > time.Second {
				t.Errorf("the call that rang during a later gap was handed on %v after it (the usual pace is tens of ms): the failing conversation held it up", el.Round(time.Millisecond))
			}
			for _, c := range answered2 {
				col.await(t, 10*time.Second, "the chats answered during the later gap", c, as[1].ID)
			}
			if el := time.Since(gap); el > 2*time.Second {
				t.Errorf("the chats answered during a later gap were handed on %v after it: the failing conversation held them up", el.Round(time.Millisecond))
			}

			// Bounded: no more tries, one log line, counted. It is given
			// up on once it has failed for 2 × BackoffMax (10 s here),
			// which may be after the later gap.
			if tc.dropped {
				waitFor(t, 15*time.Second, "the failing conversation given up on", func() bool { return gauge(t, h.reg, droppedMetric) >= 1 })
			}
			time.Sleep(2 * time.Second)
			if n := tries(); n > tc.maxTries {
				t.Errorf("the failing conversation was fetched %d times, want at most %d", n, tc.maxTries)
			}
			var gaveUp []string
			for _, l := range h.logs.lines() {
				if strings.Contains(l, "genesys reconciliation gave up on a conversation") {
					gaveUp = append(gaveUp, l)
				}
			}
			want := 0
			if tc.dropped {
				want = 1
			}
			if len(gaveUp) != want {
				t.Errorf("%d 'gave up' log lines, want %d: %q", len(gaveUp), want, gaveUp)
			} else if want == 1 && (!strings.Contains(gaveUp[0], poison.ID()) || !strings.Contains(gaveUp[0], `"level":"warn"`) || strings.Contains(gaveUp[0], "+1317")) {
				t.Errorf("the 'gave up' line should be a warning naming the conversation id and no phone number: %s", gaveUp[0])
			}
			if v := gauge(t, h.reg, droppedMetric); v != float64(want) && !(want == 0 && v <= 0) {
				t.Errorf("%s = %v, want %d", droppedMetric, v, want)
			}
			h.stop()
			<-col.done
		})
	}
}

// An outage of GET /api/v2/conversations (every fetch a 503) is the API
// failing, not one conversation: no conversation is given up on, and every
// call that rang during the gap is handed on once it is over. Short: a few
// failed fetches. Several passes: each ringing conversation fails its
// fetch five times, yet for less than the 2 × BackoffMax a conversation
// must fail for before it is given up on (counting the tries alone would
// have dropped them).
func TestClient_AnOutageOfConversationFetchesDropsNoConversation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		agents     int
		failures   int // per agent
		backoffMax time.Duration
	}{
		{"Short", 6, 1, 0},
		{"SeveralPasses", 4, 6, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agents(tc.agents)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
				func(c *notifications.Config) {
					c.Agents = ids(as)
					if tc.backoffMax > 0 {
						c.BackoffMax = tc.backoffMax
					}
				}, 256)
			col := collect(h.out)
			h.awaitStartupReconciliation()

			h.emu.SetBlackhole(true)
			ringing := make([]*notificationstest.Conversation, len(as))
			for i := range ringing {
				ringing[i] = h.emu.InboundCall(as[i].ID, "+13175550120", notificationstest.Options{}).Alert()
			}
			time.Sleep(200 * time.Millisecond)
			h.emu.SetBlackhole(false)
			h.emu.FailNext(http.MethodGet, "/api/v2/conversations/", http.StatusServiceUnavailable, 0, max(8, tc.failures*len(as)))
			h.emu.DropConnections()
			for i, c := range ringing {
				col.await(t, 15*time.Second, "every call that rang during the gap, after the outage", c, as[i].ID)
			}
			if v := gauge(t, h.reg, droppedMetric); v > 0 {
				t.Errorf("%s = %v after an outage, want 0", droppedMetric, v)
			}
			h.stop()
			<-col.done
		})
	}
}

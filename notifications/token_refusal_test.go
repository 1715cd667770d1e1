package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A refused token is refused to every request in flight with it: with ten
// channels, ten handovers (or ten fetches) get 401 within milliseconds,
// and the sockets' v2.system.token_revoked arrive together. One new token
// answers them all. A second login right after the first (a refusal of
// the old token still queued) is a token request for nothing, and every
// new token hands every channel over again: ten channels created and put
// (1,000 topics each), and a reconciliation of every watched agent (100
// activity queries for 10,000), a third of the minute's request budget.
func TestClient_ConcurrentRefusalsOfATokenLogInOnce(t *testing.T) {
	const shards = 10
	for _, tc := range []struct {
		name   string
		refuse func(e *notificationstest.Emulator)
		handed int // handovers the refusal itself makes
	}{
		// The token expires early; a maintenance socket_closing on every
		// socket makes every shard create a channel with it at once.
		{name: "401", refuse: func(e *notificationstest.Emulator) { e.ExpireTokens(); e.SocketClosing() }, handed: shards},
		// v2.system.token_revoked on every socket.
		{name: "token_revoked", refuse: func(e *notificationstest.Emulator) { e.TokenRevoked() }, handed: shards},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agents(shards)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
				func(c *notifications.Config) { c.Agents = ids(as); c.TopicsPerChannel = 1; c.MaxChannels = shards }, 256)
			col := collect(h.out)
			h.awaitStartupReconciliation()
			// A login over the Internet takes a few hundred milliseconds:
			// the refusals of the other requests in flight arrive meanwhile.
			h.emu.SetLoginDelay(200 * time.Millisecond)
			logins := h.emu.TokensIssued()
			handovers := func() int { return int(gauge(t, h.reg, "screenpop_notifications_handovers_total")) }
			h0 := handovers()

			tc.refuse(h.emu)
			waitFor(t, 10*time.Second, "every shard handed over", func() bool { return handovers()-h0 >= tc.handed })
			// The token refresh hands channels over at the shards' next
			// tick (every second): give a second login time to show.
			time.Sleep(2500 * time.Millisecond)
			h.awaitReady(5 * time.Second)
			if n := h.emu.TokensIssued() - logins; n != 1 {
				t.Errorf("%d logins after one refused token, want 1", n)
			}
			if n := handovers() - h0; n != tc.handed {
				t.Errorf("%d handovers, want %d (one per channel): a second token handed every channel over again", n, tc.handed)
			}
			h.stop()
			<-col.done
		})
	}
}

// The daemon's organization, read at login with GET /api/v2/tokens/me,
// is what push's genesys auth mode pins agents' tokens to
// (docs/agents.md): while it is unknown, a token of any organization is
// let in. A tokens/me refused with 429 (or a 5xx, or a timeout) at the
// login must be asked again after its Retry-After or a backoff, not a
// token lifetime (24 h) later.
func TestClient_LearnsItsOrgAfterARefusedTokensMe(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			as := agents(1)
			h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents = ids(as) }, 16,
				func(e *notificationstest.Emulator) {
					e.FailNext(http.MethodGet, "/api/v2/tokens/me", status, time.Second, 1)
				})
			h.awaitReady(10 * time.Second)
			waitFor(t, 5*time.Second, "the organization learned after the refusal", func() bool { return h.client.OrgID() == h.emu.Config().OrgID })
		})
	}
}

// The organization is read (tokens/me) by the auth loop itself, after a
// login. A token refused then (revoked just after it was issued, or at a
// retry of tokens/me after an earlier failure) got what every API call's
// 401 gets: a wait for the auth loop's next token, up to HTTPTimeout
// (15 s), while the auth loop was the one waiting. Until then nobody got
// a token: no channel, no pop, for every agent.
func TestClient_ATokenRefusedWhileLearningTheOrgIsReplacedAtOnce(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.HTTPTimeout = 10 * time.Second }, 64,
		func(e *notificationstest.Emulator) { e.SetAPIDelay("/api/v2/tokens/me", 300*time.Millisecond) })
	waitFor(t, 5*time.Second, "the first login", func() bool { return h.emu.TokensIssued() >= 1 })
	h.emu.ExpireTokens() // while tokens/me is on its way
	waitFor(t, 3*time.Second, "a new token after the refusal", func() bool { return h.emu.TokensIssued() >= 2 })
	h.awaitReady(3 * time.Second)
	waitFor(t, 3*time.Second, "the organization learned", func() bool { return h.client.OrgID() != "" })
}

package notifications_test

import (
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// outageProxy forwards to the emulator; while down it answers every
// request, API, login and socket upgrade alike, with 503, as Genesys
// Cloud's front end does during an outage.
type outageProxy struct {
	rp     *httputil.ReverseProxy
	down   atomic.Bool
	failed atomic.Int64 // socket upgrades answered 503
	logins atomic.Int64 // token requests answered 503
}

func (p *outageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		switch {
		case strings.HasPrefix(r.URL.Path, "/channels/"):
			p.failed.Add(1)
		case strings.HasPrefix(r.URL.Path, "/oauth/token"):
			p.logins.Add(1)
		}
		return
	}
	p.rp.ServeHTTP(w, r)
}

// endAfterAFailure keeps the outage of px going for at least d, then ends
// it just after the next failed request that count counts.
func endAfterAFailure(t *testing.T, px *outageProxy, count *atomic.Int64, began time.Time, d time.Duration) time.Time {
	t.Helper()
	waitFor(t, d+70*time.Second, "a failed attempt", func() bool { return count.Load() > 0 })
	for n := count.Load(); time.Since(began) < d || count.Load() == n; {
		if count.Load() != n {
			n = count.Load()
		}
		if time.Since(began) > d+70*time.Second {
			t.Fatal("no attempt for 70 s")
		}
		time.Sleep(time.Millisecond)
	}
	px.down.Store(false)
	return time.Now()
}

// popDeadline is SCREENPOP_POP_DEADLINE's default: the pop of a call is
// due within it of the call ringing.
const popDeadline = 2 * time.Second

// TestClient_ACallRightAfterAGenesysOutageIsHeardAtOnce: Genesys Cloud is
// down for a while (every request and socket upgrade answered 503) and
// comes back just after one of the client's attempts to reconnect its
// socket failed. A call that rings then must reach the bridge within the
// pop deadline: nothing but the client's own timer stands between it and
// the agent's pop. With the defaults (BackoffMin 0.5 s doubling to
// BackoffMax 60 s), the attempts of an outage of 15 s are already 4 to 16
// s apart, so the call was heard (by the reconciliation after the
// reconnect) only that much later, long past its pop deadline, and after
// a longer outage up to 60 s later: the agent answered it without a pop.
func TestClient_ACallRightAfterAGenesysOutageIsHeardAtOnce(t *testing.T) {
	as := agents(1)
	px := &outageProxy{}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, px,
		func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) {
			// The defaults: how the daemon retries.
			c.BackoffMin, c.BackoffMax = 0, 0
		})
	col := collect(h.out)
	h.awaitStartupReconciliation()

	px.down.Store(true)
	h.emu.DropConnections()
	began := time.Now()
	back := endAfterAFailure(t, px, &px.failed, began, 15*time.Second)
	c := h.emu.InboundCall(as[0].ID, "+13175550140", notificationstest.Options{}).Alert()
	col.await(t, 70*time.Second, "the call that rang after the outage", c, as[0].ID)
	took := time.Since(back)
	t.Logf("%d reconnect attempts failed in an outage of %v; the call that rang as it ended was heard %v later",
		px.failed.Load(), back.Sub(began).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > popDeadline {
		t.Errorf("the call that rang as Genesys came back was heard %v later, past its pop deadline (%v): the socket waited out the reconnect backoff grown during the outage", took.Round(10*time.Millisecond), popDeadline)
	}
	h.stop()
	<-col.done
}

// TestClient_ACallRightAfterAGenesysOutageThatOutlivedTheTokenIsHeardAtOnce:
// as above, but the outage began as the client-credentials token was due
// for its refresh and lasted past its expiry (Genesys closes the
// token's channels then): once Genesys is back the client must log in,
// make a channel and reconnect. A call that rings then must still reach
// the bridge within the pop deadline; the login retries of the outage
// were BackoffMin doubling to BackoffMax (60 s) apart.
func TestClient_ACallRightAfterAGenesysOutageThatOutlivedTheTokenIsHeardAtOnce(t *testing.T) {
	as := agents(1)
	px := &outageProxy{}
	const life = 20 * time.Second // refreshed at half its life (the margin is 5 min)
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: life}, px,
		func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) {
			c.BackoffMin, c.BackoffMax, c.TokenRefreshMargin = 0, 0, 0 // the defaults
		})
	col := collect(h.out)
	h.awaitStartupReconciliation()
	began := time.Now()
	px.down.Store(true)
	h.emu.DropConnections()
	back := endAfterAFailure(t, px, &px.logins, began, life+5*time.Second)
	c := h.emu.InboundCall(as[0].ID, "+13175550141", notificationstest.Options{}).Alert()
	col.await(t, 70*time.Second, "the call that rang after the outage", c, as[0].ID)
	took := time.Since(back)
	t.Logf("%d logins failed in an outage of %v; the call that rang as it ended was heard %v later",
		px.logins.Load(), back.Sub(began).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > popDeadline {
		t.Errorf("the call that rang as Genesys came back was heard %v later, past its pop deadline (%v): the login waited out the backoff grown during the outage", took.Round(10*time.Millisecond), popDeadline)
	}
	h.stop()
	<-col.done
}

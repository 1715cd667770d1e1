package notifications_test

import (
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// oneQueue5xxProxy forwards to the emulator but answers every member read
// of one queue with 500: that queue alone is broken on Genesys' side, the
// routing API answers the other queues.
type oneQueue5xxProxy struct {
	rp     *httputil.ReverseProxy
	path   string
	failed atomic.Int64
}

func (p *oneQueue5xxProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == p.path {
		p.failed.Add(1)
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_OneQueueFailingFor5xxAloneIsRetriedAtTheBackoff: one queue of
// GENESYS_QUEUES answers 500 for good while the other is read fine: the
// routing API is up, that queue is broken. 74e490d retries members never
// read within outageRetryMax (1 s) while the API is down (apiOutage and
// !queuesRead); a single queue's 5xx meets both conditions for ever, so it
// is read every second for as long as the daemon runs (86,400 requests a
// day against the client's rate limit) instead of at the doubling backoff
// up to BackoffMax, as a 5xx for one conversation alone is in the
// reconciliation (convOutage is set only by fetches failing in a row).
func TestClient_OneQueueFailingFor5xxAloneIsRetriedAtTheBackoff(t *testing.T) {
	as := agents(2)
	px := &oneQueue5xxProxy{path: "/api/v2/routing/queues/Q2/members"}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond,
		Queues: map[string][]string{"Q1": ids(as[:1]), "Q2": ids(as[1:])}}, px,
		func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) {
			c.Agents = nil
			c.Queues = []string{"Q1", "Q2"}
			c.QueueRefresh = time.Hour
			c.BackoffMin, c.BackoffMax = 0, 0 // the defaults: 500 ms doubling to 60 s
		})
	waitFor(t, 20*time.Second, "Q1's member watched", func() bool { return notifications.Watched(h.client, as[0].ID) })
	n0, began := px.failed.Load(), time.Now()
	const window = 16 * time.Second
	time.Sleep(window)
	n := px.failed.Load() - n0
	t.Logf("Q2 read %d times in %v while Q1 answered", n, window)
	// At the doubling backoff (0.5, 1, 2, 4, 8 s, each jittered to
	// [d/2, d)) about 7 reads fit in 16 s; at 1 s, 16 to 32.
	if n > 10 {
		t.Errorf("a queue whose members read fails for a 5xx of its own was read %d times in %v (the routing API answering the other queue): retried every outageRetryMax for good, not at the backoff (client.go agentLoop: apiOutage(err) && !queuesRead() caps the wait at 1 s whenever one queue is still unread)", n, time.Since(began).Round(time.Second))
	}
	h.stop()
}

package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestClient_StatusCodesDoNotGrowTheSeries: api_requests_total{op,code}
// takes its code from Genesys' answer. A gateway or proxy in front of the
// API that answers with made-up codes must not make a series of each (over
// HTTP/2 any integer is a status): on-call's Prometheus scrapes them all.
func TestClient_StatusCodesDoNotGrowTheSeries(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) {
			c.Queues, c.QueueRefresh, c.BackoffMax = []string{"Q1"}, 20*time.Millisecond, 40*time.Millisecond
		}, 64)
	h.awaitReady(5 * time.Second)
	const codes = 40
	for code := 600; code < 600+codes; code++ {
		before := memberReads(h, "Q1")
		h.emu.FailNext(http.MethodGet, membersPath+"Q1/members", code, 0, 1)
		waitFor(t, 5*time.Second, "the queue read again", func() bool { return memberReads(h, "Q1") > before })
	}
	if got := testutil.CollectAndCount(h.reg, "screenpop_notifications_api_requests_total"); got > 15 {
		t.Fatalf("%d api_requests_total series after %d queue reads answered with distinct made-up codes; want at most 15", got, codes)
	}
}

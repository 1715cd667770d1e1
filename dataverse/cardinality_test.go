package dataverse_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/dataverse"
)

// TestClient_StatusCodesDoNotGrowTheSeries: requests_total{op,code} takes
// its code from Dataverse's answer, and a $batch part's code from the part's
// own status line. A gateway, a proxy or a broken service in front of the
// Web API that answers with made-up codes must not make a series of each
// (over HTTP/2, which this client negotiates, any integer is a status): on-
// call's Prometheus scrapes every one of them. Registered codes stay as
// they are; the rest fold into their class or "other".
func TestClient_StatusCodesDoNotGrowTheSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Registerer = reg
		cfg.MaxAttempts, cfg.BreakerFailures = 1, 1000
	})
	warm(t, srv, c)
	n := 0
	for code := 600; code < 680; code++ { // the whole batch answered so
		srv.FailNext(1, code)
		_, _ = c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555%04d", n)))
		n++
	}
	for code := 600; code < 680; code++ { // one query inside a 200 batch
		srv.FailNextIn("contacts", 1, code)
		_, _ = c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555%04d", n)))
		n++
	}
	if got := testutil.CollectAndCount(reg, "screenpop_dataverse_requests_total"); got > 10 {
		t.Fatalf("%d requests_total series after %d lookups answered with distinct made-up codes; want at most 10", got, n)
	}
}

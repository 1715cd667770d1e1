package bridge_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestResolver_CrashAfterMarkerRestartPastDuplicateWindow: as
// TestResolver_CrashAfterMarkerSlowRestart, but the daemon is down for
// longer than the stream's duplicate window (2 min; 1 s here): a host
// that reboots, a crash loop, or an on-call restart during a JetStream
// outage, which loses the pops the resolver kept in memory (marked, not
// published, not unmarked). The alerting event comes back stale; the
// answered call's connected event (the reconciliation after the restart)
// must pop it, as DESIGN.md says of a leg first seen later after a
// restart. It found the dead instance's marker older than the duplicate
// window, took it for a pop made, and the call never popped.
func TestResolver_CrashAfterMarkerRestartPastDuplicateWindow(t *testing.T) {
	defer goleak.VerifyNone(t)
	const dupWindow = time.Second
	var info dataversetest.SeedInfo
	var call *bridge.Event
	s := startResolverStack(t, bridge.ResolverConfig{MaxEventAge: 2 * time.Second}, func(dv *dataversetest.Server) {
		info = dv.Seed(200, rand.New(rand.NewPCG(13, 14)))
		call = callEvent("down-long", info.Unique[0])
		call.ReceivedAt = bridge.NewTime(time.Now().Add(-1900 * time.Millisecond))
	}, dyingInstance(t, time.Second, func() *bridge.Event { return call },
		func(s *resolverStack) {
			// Down past the duplicate window: the marker is older than it
			// when the answered call's event reaches the restarted daemon.
			time.Sleep(dupWindow + 500*time.Millisecond)
			s.publish(t, answered(call))
		}), func(o *stackOptions) { o.dupWindow = dupWindow })
	defer s.stop()
	s.awaitOnePop(t, "down-long", info.Unique[1])
}

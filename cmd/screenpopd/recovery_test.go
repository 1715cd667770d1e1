package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDaemon_ACallRightAfterANATSOutagePopsItsRecord: an external NATS is
// away for a while (stopped and started again with its store, or cut off
// by the network), with calls ringing meanwhile, so that the publisher,
// the resolver's consumer and push's follow consumer all lived through
// it. A call that rings once the daemon has reconnected must pop its
// caller's record within the pop deadline of its frame: whatever still
// holds it then is the daemon's own timers, not the outage.
func TestDaemon_ACallRightAfterANATSOutagePopsItsRecord(t *testing.T) {
	const popDeadline = 2 * time.Second // SCREENPOP_POP_DEADLINE's default
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (natsURL string, down, up func())
	}{
		{"Restart", func(t *testing.T) (string, func(), func()) {
			x := startExternalNATS(t)
			return x.url(), x.stop, x.start
		}},
		{"NetworkCut", func(t *testing.T) (string, func(), func()) {
			x := startExternalNATS(t)
			u, err := url.Parse(x.url())
			if err != nil {
				t.Fatal(err)
			}
			px := bustest.StartProxy(t, u.Host, nil, nil)
			return px.URL(), px.Down, px.Up
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			natsURL, down, up := tc.setup(t)
			vars := testEnv(t)
			vars["NATS_URL"] = natsURL
			d, logs := MustStartDemo(t, vars)
			agent := demoAgents[0].ID
			page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
			if page.waitPop(alertCall(d, agent).ID(), 10*time.Second).IsZero() {
				t.Fatal("no pop before the outage")
			}
			waitFor(t, 5*time.Second, "screenpopd ready logged", func() bool { return strings.Contains(logs.String(), `"message":"screenpopd ready"`) })

			down()
			waitFor(t, 10*time.Second, "the daemon disconnected", func() bool { return !d.Main.Bus.Connected() })
			for i := range 3 { // calls ringing during the outage, spread over it (15 s; 70 s was checked too)
				alertCall(d, demoAgents[i%len(demoAgents)].ID)
				time.Sleep(5 * time.Second)
			}
			up()
			waitFor(t, 30*time.Second, "the daemon reconnected", d.Main.Bus.Connected)
			back := time.Now()

			phone := fmt.Sprintf("+1404555%04d", 2000+int(faultPhone.Add(1)))
			id := d.Dataverse.AddContact(dataversetest.Contact{FirstName: "Nat", LastName: "Back", Telephone1: phone})
			c := d.Genesys.InboundCall(agent, phone, notificationstest.Options{})
			c.Alert()
			rang := time.Now()
			at := page.waitPop(c.ID(), 60*time.Second)
			if at.IsZero() {
				t.Fatalf("the call that rang %v after NATS came back never popped; logs:\n%s", rang.Sub(back).Round(time.Millisecond),
					logLines(logs, `"level":"warn"`, `"level":"error"`, `"no pop"`))
			}
			var got timedPop
			page.mu.Lock()
			for _, p := range page.got {
				if p.ConversationID == c.ID() {
					got = p
				}
			}
			page.mu.Unlock()
			took := at.Sub(rang)
			t.Logf("a call that rang %v after the reconnect popped %q %v after it rang", rang.Sub(back).Round(time.Millisecond), got.Target.Action, took.Round(time.Millisecond))
			if got.Target.Action != "open" || got.Target.ID != id {
				t.Errorf("the call popped %q (%s), want its caller's record %s", got.Target.Action, got.Target.ID, id)
			}
			if took > popDeadline {
				t.Errorf("the call popped %v after it rang, past the pop deadline (%v); logs:\n%s", took.Round(10*time.Millisecond), popDeadline,
					logLines(logs, `"level":"warn"`, `"level":"error"`, `"no pop"`))
			}
			// On-call reads the outage in the log: not ready, then ready
			// again with how long it lasted, and the start-up's line
			// once (a second one, with the uptime as its startup_ms,
			// read like a restart).
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !strings.Contains(logs.String(), `"message":"screenpopd ready again"`); {
				time.Sleep(50 * time.Millisecond)
			}
			if got := logLines(logs, `"screenpopd ready`, `"screenpopd not ready`); strings.Count(got, `"startup_ms"`) != 1 ||
				strings.Count(got, `"not_ready_ms"`) != 1 || !strings.Contains(got, `"message":"screenpopd not ready: NATS disconnected"`) {
				t.Errorf("readiness lines around the outage: want one with startup_ms, then not ready, then one ready again with not_ready_ms:\n%s", got)
			}
		})
	}
}

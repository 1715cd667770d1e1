package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// pairRig is two daemons on one external NATS, watching the same agents of
// one Genesys org, with one Dataverse: docs/architecture.md, "Several
// instances on a NATS cluster".
type pairRig struct {
	d          *Demo
	natsURL    string
	cfgA, cfgB Config
	logs       *syncbuf.Buffer
}

func newPairRig(t *testing.T) *pairRig {
	t.Helper()
	ns := startNATS(t, true)
	vars := testEnv(t)
	vars["NATS_URL"] = ns.ClientURL()
	d, cfg, logs := demoEmulators(t, vars)
	r := &pairRig{d: d, natsURL: ns.ClientURL(), cfgA: *cfg, cfgB: *cfg, logs: logs}
	// Each instance its own OAuth client, as docs/architecture.md
	// ("Several instances") says two watching the same agents need.
	r.cfgB.GenesysClientID, r.cfgB.GenesysClientSecret = "screenpop-client-b", "screenpop-secret-b"
	d.Genesys.AddClient(r.cfgB.GenesysClientID, r.cfgB.GenesysClientSecret)
	// Each instance its own data dir, with the PII hash key copied.
	r.cfgB.DataDir = t.TempDir()
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, "pii-hash.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.cfgB.DataDir, "pii-hash.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *pairRig) start(t *testing.T, cfg *Config) (*Main, func()) {
	c := *cfg
	return runDaemon(t, &c, r.logs)
}

// storedEvents returns the ids (Nats-Msg-Id) of the events in the stream.
func storedEvents(t *testing.T, m *Main) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := m.Bus.JetStream().OrderedConsumer(ctx, m.Bus.StreamName(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"screenpop.events.>"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for n := info.NumPending; n > 0; n-- {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, msg.Headers().Get(jetstream.MsgIDHeader))
	}
	return ids
}

func TestDaemon_TwoInstances(t *testing.T) {
	r := newPairRig(t)
	d := r.d
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID
	mA, stopA := r.start(t, &r.cfgA)
	mB, _ := r.start(t, &r.cfgB)

	ws0, epoch := resumeAgent(t, mA.AgentURL(), d.Genesys.AgentToken(a0), 0, "", "")
	ws1, _ := resumeAgent(t, mB.AgentURL(), d.Genesys.AgentToken(a1), 0, "", "")

	c0 := d.Genesys.InboundCall(a0, "+13175550121", notificationstest.Options{})
	c0.Alert()
	p0 := readPop(t, ws0)
	if p0.ConversationID != c0.ID() {
		t.Fatalf("pop for %s, want %s", p0.ConversationID, c0.ID())
	}
	c1 := d.Genesys.InboundCall(a1, "+13175550122", notificationstest.Options{})
	c1.Alert()
	if p := readPop(t, ws1); p.ConversationID != c1.ID() {
		t.Fatalf("pop for %s, want %s", p.ConversationID, c1.ID())
	}
	c0.Connect()
	c0.Disconnect()

	// Agent 0's tab moves from A to B.
	ws0.Close()
	ws0b, epochB := resumeAgent(t, mB.AgentURL(), d.Genesys.AgentToken(a0), p0.Seq, epoch, a0)
	if epochB != epoch {
		t.Fatalf("epoch %q on B, %q on A", epochB, epoch)
	}
	c2 := d.Genesys.InboundCall(a0, "+13175550123", notificationstest.Options{})
	c2.Alert()
	if p := readPop(t, ws0b); p.ConversationID != c2.ID() {
		t.Fatalf("pop on B for %s, want %s", p.ConversationID, c2.ID())
	}

	// A stops; B goes on.
	stopA()
	c3 := d.Genesys.InboundCall(a0, "+13175550124", notificationstest.Options{})
	c3.Alert()
	if p := readPop(t, ws0b); p.ConversationID != c3.ID() {
		t.Fatalf("pop on B after A stopped for %s, want %s", p.ConversationID, c3.ID())
	}
	waitFor(t, 10*time.Second, "pop lines", func() bool { return strings.Count(r.logs.String(), `"message":"pop"`) >= 4 })

	ids := storedEvents(t, mB)
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	if n := strings.Count(r.logs.String(), `"message":"pop"`); n != 4 {
		t.Errorf("%d pop lines, want 4", n)
	}
	t.Logf("events stored: %d", len(ids))
}

// A leg popped by one instance's resolver is not looked up again by the
// other's: with SCREENPOP_POP_ON=alerting, a call's connected event goes to
// either instance (they share the resolver's consumer), and the one that
// did not pop it has no memory of the pop. Looked up again, every answered
// call costs the Dataverse application user (shared by the instances, 6,000
// requests per 5 minutes) up to a second request, for a pop JetStream then
// drops as a duplicate.
func TestDaemon_TwoInstancesLookUpALegOnce(t *testing.T) {
	r := newPairRig(t)
	d := r.d
	a0 := demoAgents[0].ID
	mA, _ := r.start(t, &r.cfgA)
	mB, _ := r.start(t, &r.cfgB)
	ws0, _ := resumeAgent(t, mB.AgentURL(), d.Genesys.AgentToken(a0), 0, "", "")
	d.Dataverse.ResetLog()
	const calls = 10
	handled := func() float64 {
		return counterValue(t, mA, "screenpop_bridge_resolver_skipped_total") + counterValue(t, mB, "screenpop_bridge_resolver_skipped_total")
	}
	for i := range calls {
		c := d.Genesys.InboundCall(a0, fmt.Sprintf("+1317555%04d", 200+i), notificationstest.Options{})
		c.Alert()
		if p := readPop(t, ws0); p.ConversationID != c.ID() {
			t.Fatalf("pop for %s, want %s", p.ConversationID, c.ID())
		}
		before := handled()
		c.Connect()
		waitFor(t, 10*time.Second, "the connected event handled", func() bool { return handled() > before })
		c.Disconnect()
		waitFor(t, 10*time.Second, "the disconnected event handled", func() bool { return handled() > before+1 })
	}
	if n := d.Dataverse.HTTPRequests(); n != calls {
		t.Fatalf("%d Dataverse requests for %d calls to unknown numbers, want one per call", n, calls)
	}
}

// counterValue sums the samples of a counter family in m's registry.
func counterValue(t *testing.T, m *Main, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				v += s.GetCounter().GetValue()
			}
		}
	}
	return v
}

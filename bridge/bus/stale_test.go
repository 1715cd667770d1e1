package bus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// behindReplica starts a daemon's Conn on a 3-node cluster with the stream
// and the marker bucket replicated three times, both led by another node
// than the daemon's, and the daemon's node answering direct gets for both
// (its replicas are followers in the direct gets' queue group, which
// nats-server prefers for the clients of the node). stall holds the raft
// appends of the named group (the stream's, or the bucket's) on the
// daemon's node until the returned func is called (or the test ends). on
// is the daemon's node.
func behindReplica(t *testing.T, cfg bus.Config) (c *bus.Conn, on string, stall func(stream string) (resume func())) {
	t.Helper()
	cl := startCluster(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	cfg.URL, cfg.StreamReplicas = cl.urls(), 3
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	c, err := bus.Start(sctx, cfg, log)
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	node := cl.node(c.NATS().ConnectedServerName())
	if node == nil {
		t.Fatalf("connected to %q, not a node of the cluster", c.NATS().ConnectedServerName())
	}
	lead := cl.nodes[0]
	if lead == node {
		lead = cl.nodes[1]
	}
	bucket := "KV_" + bus.DefaultMarkerBucket
	for _, st := range []string{c.StreamName(), bucket} {
		stepDown(t, c.NATS(), "$JS.API.STREAM.LEADER.STEPDOWN."+st, lead.name,
			func() bool { return lead.srv.JetStreamIsStreamLeader("SCREENPOP", st) })
	}
	for _, subj := range []string{"$JS.API.DIRECT.GET." + c.StreamName() + "." + bridge.PopSubject("agent-x"), "$JS.API.DIRECT.GET." + bucket + ".$KV." + bus.DefaultMarkerBucket + ".x"} {
		waitFor(t, 10*time.Second, func() bool {
			sz, err := node.srv.Subsz(&server.SubszOptions{Subscriptions: true, Account: "SCREENPOP", Test: subj})
			return err == nil && slices.ContainsFunc(sz.Subs, func(d server.SubDetail) bool { return d.Queue != "" })
		})
	}
	stall = func(stream string) func() {
		t.Helper()
		jsz, err := node.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true, RaftGroups: true})
		if err != nil {
			t.Fatal(err)
		}
		var group string
		for _, a := range jsz.AccountDetails {
			for _, st := range a.Streams {
				if st.Name == stream {
					group = st.RaftGroup
				}
			}
		}
		if group == "" {
			t.Fatalf("no raft group of %s on the daemon's node", stream)
		}
		node.stalled.Store(&group)
		t.Cleanup(func() { node.stalled.Store(nil) })
		return func() { node.stalled.Store(nil) }
	}
	t.Logf("connected to %s, stream and bucket led by %s", node.name, lead.name)
	return c, node.name, stall
}

// A handler marks a leg's pop, publishes it and dies before acknowledging
// its event (or the daemon's node's replica of the stream lags behind its
// leader for longer than the duplicate window: a disk stall, a follower
// restarted and let answer direct gets at 90% caught up). The event comes
// back past the duplicate window: MarkPop refuses it (an old marker) and
// the resolver asks PopStored whether that marker's pop is stored
// (bridge's orphaned). It is, on the stream's leader and the other
// follower; the replica that answers the direct get has not applied it.
// PopStored must not call the leg orphaned: the resolver would log "pop
// marker without its pop" and publish the pop again, past the window that
// would have dropped it, a second pop of the leg to the agent.
func TestConn_PopStoredFromABehindReplica(t *testing.T) {
	const window = time.Second
	c, _, stall := behindReplica(t, bus.Config{DuplicateWindow: window})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const agent = bridge.AgentID("agent-stale")
	// The stream holds the leg's event before its pop.
	if err := retry(10*time.Second, func(ctx context.Context) error {
		return c.Publish(ctx, bridge.Message{Subject: "screenpop.events.voice.alerting." + string(agent), ID: "evt:conv-twice:P1:voice:alerting", Data: []byte(`{}`)})
	}); err != nil {
		t.Fatal(err)
	}
	resume := stall(c.StreamName())
	defer resume()

	// The first handler: its mark and its pop (stored by the leader and
	// the other follower).
	p := pop(agent, "conv-twice")
	claim := "evt:conv-twice:P1:voice:alerting"
	if ok, err := c.MarkPop(ctx, p.ID, claim); err != nil || !ok {
		t.Fatalf("MarkPop = %v, %v", ok, err)
	}
	if err := retry(10*time.Second, func(ctx context.Context) error { _, err := c.PublishDedup(ctx, p); return err }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + window/2)

	// Redeliveries, as markAndPublish handles them: each direct read goes
	// to any of the three replicas, so ten of them meet the one behind.
	// It catches up a few seconds later.
	for i := range 10 {
		if ok, err := c.MarkPop(ctx, p.ID, claim); err != nil || ok {
			t.Fatalf("MarkPop of the old marker = %v, %v; want false, nil", ok, err)
		}
		stored, err := c.PopStored(ctx, agent, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored {
			continue
		}
		// orphaned: the resolver publishes the pop again.
		dup, err := c.PublishDedup(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		resume()
		var pops []uint64
		waitFor(t, 10*time.Second, func() bool {
			pops = nil
			err := c.ReplayPops(ctx, agent, 0, time.Time{}, func(sp bridge.StoredPop) error { pops = append(pops, sp.Seq); return nil })
			return err == nil && len(pops) >= 1
		})
		t.Fatalf("redelivery %d: PopStored of a leg whose pop the stream's leader holds = false (read from the replica behind it): the resolver pops it again (\"pop marker without its pop\"); its publish a duplicate: %v; the leg's pops stored: %v", i, dup, pops)
	}
}

// A handler marks a leg's pop and dies before publishing it; its event
// comes back after the ack wait, to a handler whose node's replica of the
// marker bucket has not applied the marker yet (its disk stalls for a few
// seconds). The marker is young: MarkPop must let the event publish. It
// errs instead ("pop marker not written; event will be redelivered", a
// marker that is written), and so does each redelivery while the replica
// is behind, 500 ms apart: five deliveries and the event is given up, the
// leg never pops.
func TestConn_MarkPopFromABehindReplica(t *testing.T) {
	c, _, stall := behindReplica(t, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resume := stall("KV_" + bus.DefaultMarkerBucket)
	defer resume()
	p := pop("agent-stale-marker", "conv-died")
	claim := "evt:conv-died:P1:voice:alerting"
	if ok, err := c.MarkPop(ctx, p.ID, claim); err != nil || !ok {
		t.Fatalf("first MarkPop = %v, %v", ok, err)
	}
	// The redeliveries (the same event; the leg's next event alike), as
	// ConsumeEvents makes them after an error: each direct read goes to
	// any of the three replicas.
	failed := 0
	for i := range 20 {
		ok, err := c.MarkPop(ctx, p.ID, claim)
		if err != nil || !ok {
			failed++
			t.Logf("redelivery %d: MarkPop = %v, %v", i, ok, err)
		}
	}
	if failed > 0 {
		t.Errorf("MarkPop of a young marker, read from a replica behind the bucket's leader, failed %d of 20 times; want true, nil (its event may publish; MaxDeliver is 5)", failed)
	}
}

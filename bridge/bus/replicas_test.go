package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// On a cluster (SCREENPOP_STREAM_REPLICAS=3) the replica of the node the
// daemon is connected to may be behind the stream's leader: a follower
// applies what the leader and the other follower stored a moment later,
// seconds later when its disk stalls. A page that resumes meanwhile (its
// hello: LatestPop, then ReplayPops) must still get the pop that was
// stored, and followed, while it was away: nothing else sends it to it.
func TestConn_ReplayPopsFromABehindReplica(t *testing.T) {
	c, on, stall := behindReplica(t, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const agent = bridge.AgentID("agent-behind")

	// Push's follow of the pops, as the daemon runs it, on another node
	// (its consumer goes to any replica).
	followed := make(chan uint64, 16)
	for attempt := 0; ; attempt++ {
		if attempt == 10 {
			t.Fatal("the follow's consumer placed on the daemon's node 10 times in a row")
		}
		live := make(chan struct{})
		fctx, fcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.FollowPops(fctx, func(p bridge.StoredPop) {
				if p.Agent == agent {
					followed <- p.Seq
				}
			}, func() { close(live) })
		}()
		select {
		case <-live:
		case <-time.After(10 * time.Second):
			t.Fatal("FollowPops not live within 10s")
		}
		var where []string
		st, err := c.JetStream().Stream(ctx, c.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Cluster != nil {
				where = append(where, ci.Cluster.Leader)
			}
		}
		if len(where) == 1 && where[0] != on {
			defer func() { fcancel(); <-done }()
			break
		}
		fcancel()
		<-done
	}
	popFollowed := func(conv string) uint64 {
		t.Helper()
		if err := retry(10*time.Second, func(ctx context.Context) error { _, err := c.PublishDedup(ctx, pop(agent, conv)); return err }); err != nil {
			t.Fatalf("publish pop %s: %v", conv, err)
		}
		select {
		case seq := <-followed:
			return seq
		case <-time.After(10 * time.Second):
			t.Fatalf("the pop of %s was not followed within 10s", conv)
			return 0
		}
	}

	// The page saw the agent's first pop (its cursor), then reloads.
	seen := popFollowed("conv-seen")
	waitFor(t, 10*time.Second, func() bool { latest, err := c.LatestPop(ctx, agent); return err == nil && latest == seen })

	// The daemon's node stalls; a call pops meanwhile: stored by the
	// leader and the other follower, and followed, with no page open.
	resume := stall(c.StreamName())
	missed := popFollowed("conv-missed")
	t.Logf("seen seq %d, missed seq %d", seen, missed)

	// Pages' hellos, as push runs them (ReplayPops after the ready
	// frame's LatestPop), resuming after the pop seen, while the replica
	// is behind: each direct read goes to any of the three replicas, each
	// replay's consumer to any of them, so ten hellos meet it. It catches
	// up two seconds later.
	catchUp := time.AfterFunc(2*time.Second, resume)
	defer catchUp.Stop()
	for i := range 10 {
		hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
		latest, err := c.LatestPop(hctx, agent)
		if err != nil {
			t.Fatal(err)
		}
		var replayed []uint64
		err = c.ReplayPops(hctx, agent, seen, time.Now().Add(-2*time.Minute), func(p bridge.StoredPop) error {
			replayed = append(replayed, p.Seq)
			return nil
		})
		hcancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(replayed) != 1 || replayed[0] != missed {
			t.Errorf("hello %d resuming after seq %d replayed %v, want the pop stored and followed while the page was away (seq %d); its ready frame said seq %d", i, seen, replayed, missed, latest)
		}
	}
}

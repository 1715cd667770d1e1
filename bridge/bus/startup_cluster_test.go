package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// A NATS cluster that loses its JetStream meta leader just after the
// daemon made its stream (a rolling restart of the cluster, two nodes
// briefly unreachable) answers the resolver consumer's creation with
// "JetStream system temporarily unavailable" (503, 10008): an answer, but
// no refusal. ConsumeEvents must try again, as it does when no answer
// comes, and say when it consumes; it must not end the daemon over an
// election.
func TestConn_ConsumeEventsStartsWhileTheClusterHasNoLeader(t *testing.T) {
	cl := startCluster(t)
	// The daemon's node is not the meta leader; the other two are lost.
	leader := cl.metaLeader(nil)
	var mine *clusterNode
	var others []*clusterNode
	for _, n := range cl.nodes {
		if mine == nil && n.name != leader {
			mine = n
		} else {
			others = append(others, n)
		}
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	var c *bus.Conn
	for {
		var err error
		c, err = bus.Start(sctx, bus.Config{URL: mine.url("screenpop"), StreamReplicas: 3}, log)
		if err == nil {
			break
		}
		// A cluster just formed may not count all its peers for placement
		// yet (10005, no suitable peers): a daemon would be started again.
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10005 || sctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	scancel()
	t.Cleanup(c.Close)

	for _, n := range others {
		n.lost.Store(true)
	}
	// The node left answers that it has no leader once it has noticed.
	var answer error
	waitFor(t, 40*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, answer = c.JetStream().AccountInfo(ctx)
		var apiErr *jetstream.APIError
		return errors.As(answer, &apiErr) && apiErr.Code == 503
	})
	t.Logf("the node left answers: %v", answer)

	st := startConsuming(t, c, bus.ConsumeConfig{Since: time.Minute})
	st.keepsTrying(t, 6*time.Second, "the cluster elected its meta leader")

	for _, n := range others {
		n.lost.Store(false)
	}
	waitFor(t, 60*time.Second, st.consuming.Load)
	if err := retry(20*time.Second, func(ctx context.Context) error {
		e := &bridge.Event{ConversationID: "conv-after-the-election", Agent: bridge.AgentLeg{UserID: "agent-c", ParticipantID: "P1"},
			Media: bridge.MediaVoice, State: bridge.StateAlerting}
		m, err := bridge.EncodeEvent(e, time.Now())
		if err != nil {
			return err
		}
		return c.Publish(ctx, m)
	}); err != nil {
		t.Fatal(err)
	}
	st.handles(t, "conv-after-the-election", 20*time.Second)
	st.stop(t)
}

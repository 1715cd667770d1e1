package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
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
	c, err := bus.Start(sctx, bus.Config{URL: mine.url("screenpop"), StreamReplicas: 3}, log)
	scancel()
	if err != nil {
		t.Fatal(err)
	}
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

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var consuming atomic.Bool
	handled := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Consuming: consuming.Store, Since: time.Minute}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			handled <- string(e.ConversationID)
			return nil
		})
	}()
	select {
	case err := <-done:
		t.Fatalf("ConsumeEvents ended while the cluster elected its meta leader: %v", err)
	case <-time.After(6 * time.Second):
	}
	if consuming.Load() {
		t.Fatal("Consuming(true) while the cluster had no leader")
	}

	for _, n := range others {
		n.lost.Store(false)
	}
	waitFor(t, 60*time.Second, consuming.Load)
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
	select {
	case conv := <-handled:
		if conv != "conv-after-the-election" {
			t.Fatalf("handled %s", conv)
		}
	case err := <-done:
		t.Fatalf("ConsumeEvents ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the event stored after the election was not handled within 20s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

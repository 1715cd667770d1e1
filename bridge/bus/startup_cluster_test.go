package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
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
	c, err := bus.Start(context.Background(), bus.Config{URL: mine.url("screenpop"), StreamReplicas: 3}, log)
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

// A daemon started with its NATS cluster (the hosts booted together, or a
// node still coming back) asks for its stream of three replicas before
// the cluster can place them: the leader knows two peers and answers "no
// suitable peers for placement". Start must wait for the third, saying
// so, rather than end the daemon with an error that sends the admin to
// the account's limits (under Kubernetes each such exit lengthens the
// crash-loop back-off).
func TestStart_WaitsForTheClusterToPlaceTheStream(t *testing.T) {
	cl := startCluster(t, "n3")
	var logs syncbuf.Buffer
	type started struct {
		c   *bus.Conn
		err error
	}
	done := make(chan started, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		c, err := bus.Start(ctx, bus.Config{URL: cl.nodes[0].url("screenpop"), StreamReplicas: 3}, zerolog.New(&logs).Level(zerolog.WarnLevel))
		done <- started{c, err}
	}()
	waitFor(t, 30*time.Second, func() bool {
		select {
		case s := <-done:
			done <- s
			return true
		default:
			return strings.Contains(logs.String(), "waiting for its JetStream servers")
		}
	})
	select {
	case s := <-done:
		t.Fatalf("Start returned while the cluster could place two replicas of three: %v\nlog:\n%s", s.err, logs.String())
	default:
	}
	t.Logf("while n3 is away:\n%s", logs.String())

	cl.nodes[2].lost.Store(false)
	var s started
	select {
	case s = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("Start still waiting 60 s after the third node came\nlog:\n%s", logs.String())
	}
	if s.err != nil {
		t.Fatalf("Start once the third node came: %v", s.err)
	}
	defer s.c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := s.c.JetStream().Stream(ctx, "SCREENPOP")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("stream replicas = %d, want 3", got)
	}
}

// A cluster that never gets the servers the replicas need (three replicas
// asked of a cluster of two) is an error of the configuration once the
// wait is over, and it says which setting needs what.
func TestStart_AClusterTooSmallForTheReplicasIsAnError(t *testing.T) {
	cl := startCluster(t, "n3")
	var logs syncbuf.Buffer
	start := time.Now()
	c, err := bus.Start(context.Background(), bus.Config{URL: cl.nodes[0].url("screenpop"), StreamReplicas: 3, PlacementWait: 3 * time.Second}, zerolog.New(&logs).Level(zerolog.InfoLevel))
	if err == nil {
		c.Close()
		t.Fatal("Start made a stream of three replicas on two servers")
	}
	took := time.Since(start)
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	if took > 30*time.Second {
		t.Errorf("Start gave up after %v, want about the 3 s wait", took)
	}
	for _, want := range []string{"SCREENPOP_STREAM_REPLICAS=3", "three JetStream servers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "JetStream limits") {
		t.Errorf("error %q sends the admin to the account's limits", err)
	}
	// Each attempt works out the stream's share of the account's store:
	// the admin reads it once, not once a second.
	if n := strings.Count(logs.String(), "stream limited to its share"); n != 1 {
		t.Errorf("%d \"stream limited to its share\" lines over the wait, want 1:\n%s", n, logs.String())
	}
}

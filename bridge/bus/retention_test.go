package bus_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/testenv"
)

// What an admin is told about personal data at rest (docs/operations.md,
// "Personal data"): a message past SCREENPOP_STREAM_MAX_AGE is no longer
// served, but JetStream leaves its bytes in the file block that holds it
// (up to 8 MB of messages) while a younger message there lives; they go
// with the block, once every message in it has expired. Should a NATS
// upgrade change either half, change that section.
func TestConn_ExpiredMessagesLeaveTheStoreWithTheirBlock(t *testing.T) {
	dir := t.TempDir()
	c := MustStart(t, bus.Config{Listen: "off", DataDir: dir, StreamMaxAge: 4 * time.Second, DuplicateWindow: time.Second})
	ctx := context.Background()
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	state := func() (first, msgs uint64) {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.FirstSeq, info.State.Msgs
	}
	callerA, callerB := "+13175550123", "+13175550188"
	publish := func(conv, phone string) {
		t.Helper()
		e := &bridge.Event{ConversationID: bridge.ConversationID(conv), Agent: bridge.AgentLeg{UserID: "agent-r", ParticipantID: "P1"},
			Media: bridge.MediaVoice, State: bridge.StateAlerting, Customer: bridge.Customer{Phone: phone, Address: "tel:" + phone}}
		m, err := bridge.EncodeEvent(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	publish("conv-a", callerA)
	// Calls keep coming, each younger than A: until A has expired, its
	// block holds a message that lives on.
	deadline := time.Now().Add(15 * time.Second)
	for n := 0; ; n++ {
		if first, _ := state(); first > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caller A's message did not expire within 15 s of a 4 s max age")
		}
		publish(fmt.Sprintf("conv-b%d", n), callerB)
		time.Sleep(250 * time.Millisecond)
	}
	if _, msgs := state(); msgs == 0 {
		t.Fatal("every message expired at once: nothing younger kept A's block")
	}
	if files := testenv.FilesHolding(t, dir, callerA); len(files) == 0 {
		t.Errorf("caller A's number, expired, is in no file while younger messages share its block: NATS now erases expired messages; update docs/operations.md, Personal data")
	}

	waitFor(t, 10*time.Second, func() bool { _, msgs := state(); return msgs == 0 })
	// The block goes at the next expiry pass or sync; it is asked for
	// within a few seconds.
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := append(testenv.FilesHolding(t, dir, callerA), testenv.FilesHolding(t, dir, callerB)...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("both messages expired, and callers' numbers are still in %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// What docs/operations.md 8, "Erasing", tells an admin of an external NATS
// to do: with screenpopd stopped, the `nats stream` command it names takes
// every caller's data off the disks of the stream's servers, and the next
// start makes the stream again.
func TestConn_ErasingAClusteredStream(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## 8. Personal data")
	_, section, _ = strings.Cut(section, "**Erasing.**")
	cmd := regexp.MustCompile("`nats stream (purge|rm) <SCREENPOP_STREAM>`").FindStringSubmatch(section)
	if cmd == nil {
		t.Fatal("operations.md 8, Erasing, names no nats stream command for an external NATS")
	}

	cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func() *bus.Conn {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
		defer scancel()
		c, err := bus.Start(sctx, bus.Config{URL: cl.urls(), StreamReplicas: 3}, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	c := start()
	const caller = "+13175550199"
	e := &bridge.Event{ConversationID: "conv-erase", Agent: bridge.AgentLeg{UserID: "agent-e", ParticipantID: "P1"},
		Media: bridge.MediaVoice, State: bridge.StateAlerting, Customer: bridge.Customer{Phone: caller, Address: "tel:" + caller}}
	m, err := bridge.EncodeEvent(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	stream, epoch := c.StreamName(), c.Epoch()
	c.Close()

	nc, err := nats.Connect(cl.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	switch cmd[1] {
	case "purge":
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool {
			info, err := st.Info(ctx)
			return err == nil && info.State.Msgs == 0 && info.Cluster != nil && len(info.Cluster.Replicas) == 2 &&
				info.Cluster.Replicas[0].Current && info.Cluster.Replicas[1].Current
		})
	case "rm":
		if err := js.DeleteStream(ctx, stream); err != nil {
			t.Fatal(err)
		}
	}
	// What the servers have left: the command is answered once the
	// stream's leader has done it; the other replicas follow at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, n := range cl.nodes {
			left = append(left, testenv.FilesHolding(t, n.srv.JetStreamConfig().StoreDir, caller)...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after `nats stream %s %s` the caller's number is still on the servers' disks, in %v", cmd[1], stream, left)
		}
		time.Sleep(50 * time.Millisecond)
	}

	c = start()
	if cmd[1] == "rm" && c.Epoch() == epoch {
		t.Errorf("stream recreated with the old epoch %q: agents' cursors would skip its first pops", epoch)
	}
	if err := c.Publish(ctx, m); err != nil {
		t.Fatalf("publish after the erasure: %v", err)
	}
}

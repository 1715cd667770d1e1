package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// bigAgent is the user id of the i-th agent of a big conversation.
func bigAgent(i int) string { return fmt.Sprintf("a0a0a0a0-0000-4000-8000-%012d", i) }

// bigAttributes returns participant data of about size bytes: 16 keys
// whose values share the bytes, as custom participant data from a flow or
// a CRM integration looks.
func bigAttributes(size int) map[string]string {
	if size == 0 {
		return nil
	}
	m := make(map[string]string, 16)
	for i := range 16 {
		m["custom.field"+strconv.Itoa(i)] = strings.Repeat(string(rune('a'+i)), size/16)
	}
	return m
}

// bigConversation builds, with the emulator's builders and the SDK's topic
// models, the snapshot of an inbound call with parts participants (2:
// customer and agent; otherwise customer, ACD and a chain of blind
// transfers to parts-2 agents) whose last agent's leg is alerting. Every
// participant carries attrBytes of attributes, and every agent that
// transferred it a wrap-up. It returns the eventBody and the alerting
// agent's user id.
func bigConversation(tb testing.TB, parts, attrBytes int) ([]byte, string) {
	tb.Helper()
	n := 0
	ids := func() string { n++; return fmt.Sprintf("b0b0b0b0-0000-4000-8000-%012d", n) }
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(n) * time.Second) }
	o := notificationstest.Options{DNIS: "+18005551000", Name: "Jane Caller", IDs: ids, Now: now}
	if parts > 2 {
		o.QueueID = "c1c1c1c1-0000-4000-8000-000000000001"
	}
	c := notificationstest.NewInboundCall(bigAgent(0), "+13175550123", o).Alert()
	agent := bigAgent(0)
	for i := 1; i <= parts-3; i++ {
		c.Connect()
		agent = bigAgent(i)
		c.BlindTransfer(agent)
	}
	var conv platformclientv2.Conversationeventtopicconversation
	if err := json.Unmarshal(c.Snapshot(), &conv); err != nil {
		tb.Fatal(err)
	}
	ps := *conv.Participants
	if len(ps) != parts {
		tb.Fatalf("%d participants, want %d", len(ps), parts)
	}
	for i := range ps {
		p := &ps[i]
		if a := bigAttributes(attrBytes); a != nil {
			p.Attributes = &a
		}
		if p.Purpose != nil && *p.Purpose == "agent" && p.EndTime != nil {
			code, notes, d := "d0d0d0d0-0000-4000-8000-000000000001", "transferred to the billing team", 42
			p.Wrapup = &platformclientv2.Conversationeventtopicwrapup{Code: &code, Notes: &notes, Tags: &[]string{"billing", "transfer"}, DurationSeconds: &d, EndTime: p.EndTime}
		}
	}
	body, err := json.Marshal(conv)
	if err != nil {
		tb.Fatal(err)
	}
	return body, agent
}

// bigFrame wraps body as a notification frame on agent's topic.
func bigFrame(body []byte, agent string) []byte {
	b := []byte(`{"topicName":"v2.users.` + agent + `.conversations","version":"2","eventBody":`)
	b = append(b, body...)
	return append(b, `,"metadata":{"CorrelationId":"e0e0e0e0-0000-4000-8000-000000000001"}}`...)
}

var bigSizes = []struct {
	parts, attrs int
}{
	{2, 0}, {2, 4 << 10}, {2, 32 << 10},
	{10, 0}, {10, 4 << 10}, {10, 32 << 10},
	{30, 0}, {30, 4 << 10}, {30, 32 << 10},
}

func bigName(parts, attrs int) string { return fmt.Sprintf("parts=%d/attrs=%dK", parts, attrs>>10) }

// BenchmarkDispatch_BigConversation measures a conversation frame from the
// socket's read buffer to the snapshot handed to the bridge (topic, body
// copy, the reconciliation's bookkeeping), by participants and attribute
// bytes per participant.
func BenchmarkDispatch_BigConversation(b *testing.B) {
	for _, sz := range bigSizes {
		b.Run(bigName(sz.parts, sz.attrs), func(b *testing.B) {
			body, agent := bigConversation(b, sz.parts, sz.attrs)
			frame := bigFrame(body, agent)
			out := make(chan bridge.Snapshot, 1)
			c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", Registerer: prometheus.NewRegistry()}, zerolog.Nop(), out)
			if err != nil {
				b.Fatal(err)
			}
			s := &session{sh: newShard(c, 0), chID: "ch-1", ref: channelRef("ch-1"), done: make(chan struct{})}
			ctx := context.Background()
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				s.dispatch(ctx, frame, time.Now())
				<-out
			}
		})
	}
}

// BenchmarkNormalize_BigConversation measures the normalizer on the same
// snapshots: Steady, the snapshot again (a duplicate: most snapshots change
// no leg of the agent's), and Emit, the snapshot of a conversation new to
// the normalizer (its alerting event, with the customer).
func BenchmarkNormalize_BigConversation(b *testing.B) {
	for _, sz := range bigSizes {
		body, agent := bigConversation(b, sz.parts, sz.attrs)
		snap := bridge.Snapshot{Topic: "v2.users." + agent + ".conversations", Agent: bridge.AgentID(agent), Body: body, ReceivedAt: time.Now()}
		b.Run("Steady/"+bigName(sz.parts, sz.attrs), func(b *testing.B) {
			n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			if len(n.Normalize(snap)) != 1 {
				b.Fatal("no event")
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if len(n.Normalize(snap)) != 0 {
					b.Fatal("duplicate emitted")
				}
			}
		})
		b.Run("Emit/"+bigName(sz.parts, sz.attrs), func(b *testing.B) {
			const convs = 256
			snaps := make([]bridge.Snapshot, convs)
			for i := range snaps {
				s := snap
				s.Body = []byte(strings.ReplaceAll(string(body), "b0b0b0b0-0000-4000-8000-000000000001", fmt.Sprintf("f0f0f0f0-0000-4000-8000-%012d", i)))
				snaps[i] = s
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var n *bridge.Normalizer
			i := 0
			for b.Loop() {
				if i%convs == 0 {
					b.StopTimer()
					n, _ = bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
					b.StartTimer()
				}
				if len(n.Normalize(snaps[i%convs])) != 1 {
					b.Fatal("no event")
				}
				i++
			}
		})
	}
}

// ringingSession returns a client whose agents may leave (an agents file),
// so that it remembers the calls ringing for them, and a session of it.
func ringingSession(t *testing.T) (*Client, *session, chan bridge.Snapshot) {
	t.Helper()
	out := make(chan bridge.Snapshot, 1)
	c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", AgentsChange: true, Registerer: prometheus.NewRegistry()}, zerolog.Nop(), out)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{sh: newShard(c, 0), chID: "ch-1", ref: channelRef("ch-1"), done: make(chan struct{})}
	close(s.done) // report must not block: no shard loop reads events here
	return c, s, out
}

// TestSession_DispatchRingingRetainsNoFrame checks what a call remembered
// ringing (for an agent of an agents file or of queues, who may leave the
// list) costs the client: its ids, not the frame it came in. A frame over
// maxKeptBuffer gets a read buffer of its own, let go after dispatch; a
// call keyed by a slice of it kept the whole frame (the conversation with
// every participant's attributes: 165 KiB at 30 participants with 4 KiB
// each) while it rang, and up to lingerMax when its end was lost in a gap.
func TestSession_DispatchRingingRetainsNoFrame(t *testing.T) {
	c, s, out := ringingSession(t)
	ctx := context.Background()
	body, agent := bigConversation(t, 30, 4<<10)
	const calls = 64
	frame := func(i int) []byte {
		return bigFrame([]byte(strings.ReplaceAll(string(body), "b0b0b0b0-0000-4000-8000-000000000001", fmt.Sprintf("f0f0f0f0-0000-4000-8000-%012d", i))), agent)
	}
	size := len(frame(0))
	if size <= maxKeptBuffer {
		t.Fatalf("frame of %d bytes: not over maxKeptBuffer", size)
	}
	// A first call (not counted) makes the client's maps and pools.
	s.dispatch(ctx, frame(calls), time.Now())
	<-out
	before := heapInUse()
	for i := range calls {
		s.dispatch(ctx, frame(i), time.Now()) // read lets the frame's own buffer go
		<-out                                 // the normalizer is done with the snapshot
	}
	after := heapInUse()
	if n := RingingCalls(c); n != calls+1 {
		t.Fatalf("%d calls remembered ringing, want %d", n, calls+1)
	}
	per := (after - before) / calls
	t.Logf("retained %d bytes per ringing call (frames of %d bytes)", per, size)
	if per > 1<<10 {
		t.Fatalf("%d bytes retained per ringing call of a %d-byte frame, want under 1 KiB", per, size)
	}
	runtime.KeepAlive(c)
}

// heapInUse is the live heap after two collections (the second frees
// what sync.Pools gave up in the first, such as encoding/json's buffers).
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

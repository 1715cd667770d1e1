package push

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// docs/agents.md §5: "a frame of a type the daemon does not know is
// ignored, so that a client of a later version keeps its socket". A later
// client's frame is free to carry a field named seq (or Seq: Go matches
// keys without regard to case) of its own shape: a pop id, a range, a
// list. The daemon decodes every frame as an ack before it looks at the
// type, so such a frame fails to decode and the socket is closed with
// 4400, and the later page reconnects and sends it again, in the loop the
// docs promise to avoid.
func TestProtocol_UnknownFrameTypeWithItsOwnSeqIsIgnored(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	for i, f := range []map[string]any{
		{"type": "result", "seq": "pop:conv-1:part-1", "outcome": "opened"},
		{"type": "resend", "seq": map[string]any{"from": 1, "to": 5}},
		{"type": "acks", "seq": []uint64{1, 2, 3}},
		{"type": "nack", "seq": -1},
	} {
		t.Run(fmt.Sprint(f["type"]), func(t *testing.T) {
			agent := bridge.AgentID(fmt.Sprintf("agent-later-%d", i))
			c, _ := e.connect(e.token(agent), nil, "")
			c.send(f)
			time.Sleep(300 * time.Millisecond) // the server has read it
			seq := e.publish(agent, fmt.Sprintf("conv-later-%d", i))
			m, err := c.read(5 * time.Second)
			for err == nil && m.Type == "heartbeat" {
				m, err = c.read(5 * time.Second)
			}
			if err != nil || m.Type != "pop" || m.Seq != seq {
				t.Fatalf("after a %q frame of a later version: got %+v, %v; want pop %d on the same socket (unknown frame types are ignored)", f["type"], m, err, seq)
			}
		})
	}
}

// docs/agents.md §5: "Acknowledge each processed pop ... Acks feed the
// metrics" (§6: …_acked_total, and screenpop_push_delivery_seconds,
// Genesys frame → browser ack). A client that resumes after a network
// drop gets its missed pops at once and processes them one at a time, as
// screenpop.js does (up to popTimeoutMs each), acking each when done. The
// socket remembered only its last 8 pops sent, so the acks of the
// first ones, sent after the later ones were written, are dropped: the
// metrics say the agent never confirmed pops its page did open, and the
// "agent disconnected" line's unacked_pops cannot name them either.
func TestProtocol_EveryProcessedPopsAckIsCounted(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	const agent = "agent-burst"
	tok := e.token(agent)
	_, r := e.connect(tok, nil, "")
	cursor := r.Seq
	const n = 12 // missed while the tab was offline, within the replay window
	var want []uint64
	for i := range n {
		want = append(want, e.publish(agent, fmt.Sprintf("conv-burst-%d", i)))
	}
	c, _ := e.connect(tok, &cursor, r.Epoch)
	var got []uint64
	for len(got) < n {
		m := c.next()
		if m.Type != "pop" {
			t.Fatalf("got %+v, want pop", m)
		}
		got = append(got, m.Seq)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	// The page's handler processes them in order; each ack follows its pop.
	before := e.srv.nAcked.Load()
	for _, s := range got {
		c.send(map[string]any{"type": "ack", "seq": s})
	}
	waitFor(t, 3*time.Second, "every ack counted", func() bool { return e.srv.nAcked.Load()-before == n }, true)
	if a := e.srv.nAcked.Load() - before; a != n {
		t.Fatalf("%d pops sent and each acked by the page, %d acks counted (pops_acked_total, delivery_seconds): the first %d acks were dropped", n, a, n-int(a))
	}
}

// docs/agents.md §5: "Bigger frames close the socket with 1009"; §6 and
// the metric's help: screenpop_push_closes_total{code} counts the
// websockets the server closed, by close code (operations.md reads it by
// code). Every other close is counted there; the 1009 is sent by gorilla
// on the server's behalf and never was, before or after the hello.
func TestProtocol_OversizedFrameCloseIsCounted(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	closes1009 := func() float64 { return testutil.ToFloat64(e.srv.m.closes.WithLabelValues("1009")) }

	c := e.rawClient() // an oversized hello
	c.send(map[string]any{"type": "hello", "token": strings.Repeat("x", 20<<10)})
	c.expectClose(websocket.CloseMessageTooBig)
	c2, _ := e.connect(e.token("agent-big"), nil, "") // an oversized frame after it
	c2.send(map[string]any{"type": "ack", "seq": 1, "pad": strings.Repeat("x", 20<<10)})
	c2.expectClose(websocket.CloseMessageTooBig)
	waitFor(t, 3*time.Second, "both 1009 closes counted", func() bool { return closes1009() == 2 }, true)
	if n := closes1009(); n != 2 {
		t.Fatalf(`screenpop_push_closes_total{code="1009"} = %v after two sockets closed with 1009, want 2`, n)
	}
}

// A client written from docs/agents.md §5 alone: it keeps as its cursor
// the seq of the last pop it processed, with the ready's epoch and
// agentId, and drops the socket at arbitrary points while pops for it (and
// for another agent) keep coming. Across its connections it must see every
// pop of its agent exactly once, in order, none at or below its cursor.
func TestProtocol_ResumeGetsEveryPopOnceInOrder(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	const agent = bridge.AgentID("agent-res")
	tok := e.token(agent)
	var mu sync.Mutex
	var published []uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := e.publish(agent, fmt.Sprintf("conv-res-%d", i))
			e.publish("agent-other", fmt.Sprintf("conv-oth-%d", i))
			mu.Lock()
			published = append(published, s)
			mu.Unlock()
			time.Sleep(3 * time.Millisecond)
		}
	}()
	var cursor *uint64
	epoch, agentID := "", ""
	var processed []uint64
	for round := 0; round < 15; round++ {
		c := e.rawClient()
		h := map[string]any{"type": "hello", "token": tok}
		if cursor != nil {
			h["lastSeq"], h["epoch"], h["agentId"] = *cursor, epoch, agentID
		}
		c.send(h)
		r := c.next()
		if r.Type != "ready" {
			t.Fatalf("%+v", r)
		}
		epoch, agentID = r.Epoch, string(r.AgentID)
		var last uint64
		if cursor != nil {
			last = *cursor
		}
		n := 0
		for n < 5+round%4 {
			m, err := c.read(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != "pop" {
				continue
			}
			if m.Seq <= last {
				t.Fatalf("round %d: pop %d after %d (dup or out of order)", round, m.Seq, last)
			}
			last = m.Seq
			processed = append(processed, m.Seq)
			c.send(map[string]any{"type": "ack", "seq": m.Seq})
			n++
		}
		cursor = &last
		c.ws.Close()
	}
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	// Every pop published up to the last one processed was processed, in order.
	idx := 0
	for _, s := range published {
		if s > processed[len(processed)-1] {
			break
		}
		if idx >= len(processed) || processed[idx] != s {
			t.Fatalf("published %d missing/out of order; processed %v", s, processed)
		}
		idx++
	}
}

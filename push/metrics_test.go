package push

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/screenpop/screenpop/bridge"
)

// docs/agents.md §6 and docs/operations.md ("Agents"): each connection
// attempt is counted in screenpop_push_connects_total under its result, and
// each socket the server closes in screenpop_push_closes_total under its
// close code; operations.md reads a rising label as its cause (origin:
// the origins setting, auth: tokens refused, limit: an agent's 17th
// socket, ...), so a refusal counted under another label sends the
// on-call engineer after the wrong fix.
func TestMetrics_ConnectsAndClosesAreCountedByResultAndCode(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{
		AllowedOrigins: []string{"https://contoso.crm.dynamics.com"},
		HelloTimeout:   300 * time.Millisecond,
		AgentSockets:   1,
	}, st, nil)
	connects := func(result string) float64 { return testutil.ToFloat64(e.srv.m.connects.WithLabelValues(result)) }
	closes := func(code string) float64 { return testutil.ToFloat64(e.srv.m.closes.WithLabelValues(code)) }
	want := func(what string, got func() float64, n float64) {
		t.Helper()
		waitFor(t, 3*time.Second, what, func() bool { return got() == n }, true)
		if g := got(); g != n {
			t.Fatalf("%s = %v, want %v", what, g, n)
		}
	}

	hdr := http.Header{}
	hdr.Set("Origin", "https://evil.example.com")
	if ws, _, err := e.dial(hdr); err == nil {
		ws.Close()
		t.Fatal("a foreign origin was let in")
	}
	want(`connects_total{result="origin"}`, func() float64 { return connects("origin") }, 1)

	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": "not-a-jwt"})
	c.expectClose(CloseInvalidToken)
	want(`connects_total{result="auth"}`, func() float64 { return connects("auth") }, 1)
	want(`closes_total{code="4401"}`, func() float64 { return closes("4401") }, 1)

	c = e.rawClient()
	c.send(map[string]any{"type": "ack", "seq": 1})
	c.expectClose(CloseMalformed)
	want(`connects_total{result="malformed"}`, func() float64 { return connects("malformed") }, 1)
	want(`closes_total{code="4400"}`, func() float64 { return closes("4400") }, 1)

	c = e.rawClient() // says nothing
	c.expectClose(CloseHelloTimeout)
	want(`connects_total{result="hello_timeout"}`, func() float64 { return connects("hello_timeout") }, 1)
	want(`closes_total{code="4408"}`, func() float64 { return closes("4408") }, 1)

	tok := e.token("agent-metrics")
	e.connect(tok, nil, "")
	want(`connects_total{result="ok"}`, func() float64 { return connects("ok") }, 1)
	c = e.rawClient() // the agent's second socket, over AgentSockets
	c.send(map[string]any{"type": "hello", "token": tok})
	c.expectClose(CloseTooMany)
	want(`connects_total{result="limit"}`, func() float64 { return connects("limit") }, 1)
	want(`closes_total{code="4429"}`, func() float64 { return closes("4429") }, 1)

	st.failReplay.Store(1) // NATS trouble during the next hello's replay
	c = e.rawClient()
	c.send(map[string]any{"type": "hello", "token": e.token("agent-metrics-2")})
	c.expectClose(CloseTryAgainLater)
	want(`connects_total{result="unavailable"}`, func() float64 { return connects("unavailable") }, 1)
	want(`closes_total{code="1013"}`, func() float64 { return closes("1013") }, 1)
	want(`connects_total{result="ok"}`, func() float64 { return connects("ok") }, 1)
}

// docs/agents.md §6 and docs/operations.md ("Agents"): pops_sent_total
// counts pop frames written (one per connection), pops_acked_total the
// browsers' acks, pops_replayed_total the pops caught up on a hello,
// pops_unrouted_total the live pops for an agent with no socket on this
// instance, delivery_seconds one observation per ack; connections and
// agents are the open sockets and the distinct agents behind them.
func TestMetrics_PopsAndSocketsAreCountedAsDocumented(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	m := e.srv.m
	val := func(name string) float64 {
		switch name {
		case "sent":
			return testutil.ToFloat64(m.popsSent)
		case "acked":
			return testutil.ToFloat64(m.popsAcked)
		case "replayed":
			return testutil.ToFloat64(m.popsReplay)
		case "unrouted":
			return testutil.ToFloat64(m.popsNoAgent)
		case "connections":
			return testutil.ToFloat64(m.connections)
		case "agents":
			return testutil.ToFloat64(m.agents)
		case "hellos": // done with their replay
			return testutil.ToFloat64(m.connects.WithLabelValues("ok"))
		case "delivery":
			var d dto.Metric
			if err := m.delivery.Write(&d); err != nil {
				t.Fatal(err)
			}
			return float64(d.GetHistogram().GetSampleCount())
		}
		panic(name)
	}
	want := func(counts map[string]float64) {
		t.Helper()
		ok := func() bool {
			for k, n := range counts {
				if val(k) != n {
					return false
				}
			}
			return true
		}
		waitFor(t, 3*time.Second, "the metrics", ok, true)
		for k, n := range counts {
			if g := val(k); g != n {
				t.Fatalf("%s = %v, want %v (all: %v)", k, g, n, counts)
			}
		}
	}

	// Two pops for an agent with no page open: unrouted, kept for replay.
	const away, here = bridge.AgentID("agent-away"), bridge.AgentID("agent-here")
	e.publish(away, "conv-away-1")
	e.publish(away, "conv-away-2")
	want(map[string]float64{"unrouted": 2, "sent": 0, "replayed": 0, "connections": 0, "agents": 0})

	// One tab: a live pop is written to it and routed.
	// (Its hello's replay over first: a pop stored before it reads the
	// stream is replayed, not live.)
	tab1, r := e.connect(e.token(here), nil, "")
	want(map[string]float64{"connections": 1, "agents": 1, "hellos": 1})
	seq := e.publish(here, "conv-here-1")
	if p := tab1.next(); p.Seq != seq {
		t.Fatalf("got %+v, want pop %d", p, seq)
	}
	want(map[string]float64{"sent": 1, "unrouted": 2, "replayed": 0})

	// A second tab of the same agent: two connections, one agent; a live
	// pop is written to each (two frames). It resumes after the pop the
	// first tab got, so it has nothing to replay.
	tab2, _ := e.connect(e.token(here), &seq, r.Epoch)
	want(map[string]float64{"connections": 2, "agents": 1, "hellos": 2})
	seq = e.publish(here, "conv-here-2")
	for _, c := range []*wsClient{tab1, tab2} {
		if p := c.next(); p.Seq != seq {
			t.Fatalf("got %+v, want pop %d", p, seq)
		}
	}
	want(map[string]float64{"sent": 3, "unrouted": 2, "replayed": 0})
	tab1.send(map[string]any{"type": "ack", "seq": seq})
	want(map[string]float64{"acked": 1, "delivery": 1})

	// The away agent's page opens: both pops are replayed and written.
	c, _ := e.connect(e.token(away), nil, "")
	for range 2 {
		if p := c.next(); p.Type != "pop" {
			t.Fatalf("got %+v, want a replayed pop", p)
		}
	}
	want(map[string]float64{"replayed": 2, "sent": 5, "unrouted": 2, "connections": 3, "agents": 2})

	tab1.ws.Close()
	want(map[string]float64{"connections": 2, "agents": 2})
	tab2.ws.Close()
	c.ws.Close()
	want(map[string]float64{"connections": 0, "agents": 0})
}

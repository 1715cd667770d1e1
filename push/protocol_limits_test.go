package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// DESIGN.md and docs/agents.md §5: "None is sent twice on one connection."
// The replay reads the stream while the live subscription runs: a pop
// stored just as the page says hello is read by the replay and, a moment
// later, handed over by the subscription too. The socket has sent it
// already; the live copy must be dropped, and the next pop follows.
func TestServer_LiveCopyOfAReplayedPopIsNotSentAgain(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{}, st, nil)
	waitSignal(t, st.followed, "live subscription")
	p1 := st.add(testPop("agent-dup", "c1"), time.Now(), false) // in the stream, not handed over yet
	zero := uint64(0)
	c, _ := e.connect(e.token("agent-dup"), &zero, "")
	if m := c.next(); m.Type != "pop" || m.Seq != p1.Seq {
		t.Fatalf("got %+v, want the replayed pop %d", m, p1.Seq)
	}
	// The heartbeat that ends the replay: the socket takes live pops now.
	waitFor(t, 5*time.Second, "the socket ready", func() bool {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		cs := e.srv.agents["agent-dup"]
		return len(cs) == 1 && cs[0].ready.Load()
	})
	st.mu.Lock()
	follow := st.follow
	st.mu.Unlock()
	follow(p1) // the subscription hands over the pop the replay sent
	p2 := st.add(testPop("agent-dup", "c2"), time.Now(), true)
	if m := c.next(); m.Seq != p2.Seq {
		t.Fatalf("got %+v, want pop %d: pop %d was sent twice on one connection", m, p2.Seq, p1.Seq)
	}
}

// docs/agents.md §5: 4008 "too slow (send queue full): reconnect now and
// resume with lastSeq". Live pops that arrive while a socket's replay
// still runs wait for it, as many as the send queue holds; past that the
// page is told 4008, after an error frame with that code, and
// closes_total counts it, rather than the server holding every live pop
// of a stuck replay.
func TestServer_LivePopsPilingUpDuringAReplayClose4008(t *testing.T) {
	e, c := pileUpDuringReplay(t, "agent-pile", func(c *wsClient) {
		if m := c.next(); m.Type != "ready" {
			t.Fatalf("got %+v, want ready", m)
		}
	})
	c.expectClose(CloseTooSlow)
	if n := e.srv.Status().(Status).SlowClosed; n != 1 {
		t.Fatalf("slow_closed = %d, want 1", n)
	}
	if n := testutil.ToFloat64(e.srv.m.closes.WithLabelValues("4008")); n != 1 {
		t.Fatalf(`closes_total{code="4008"} = %v, want 1`, n)
	}
}

// pileUpDuringReplay connects agent to a server whose send queue holds 4
// frames and holds its replay while 5 live pops arrive for the agent,
// then lets the replay go on. ready, if not nil, reads from the socket
// while the replay is held.
func pileUpDuringReplay(t *testing.T, agent bridge.AgentID, ready func(*wsClient)) (*env, *wsClient) {
	t.Helper()
	st := newMemStore()
	const queue = 4
	e := newEnv(t, Config{SendQueue: queue}, st, nil)
	waitSignal(t, st.followed, "live subscription")
	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": e.token(agent)})
	waitFor(t, 5*time.Second, "the replay", func() bool { return len(st.replayCalls()) == 1 })
	if ready != nil {
		ready(c)
	}
	for i := range queue + 1 {
		st.add(testPop(agent, "c-"+itoa(i)), time.Now(), true)
	}
	st.mu.Lock()
	st.gate = nil
	st.mu.Unlock()
	close(gate)
	return e, c
}

// operations.md reads connects_total{result="unavailable"} as "token check
// or NATS down" (1013). A socket the server itself closes while its replay
// runs, as too slow (4008, above) or when the pop subscription goes live
// or the instance stops, is not a NATS outage: the replay read the store
// fine. Counted as unavailable, such closes send the on-call engineer
// after a NATS problem there is none of (every restart, with pages
// replaying when the subscription goes live, would show one).
func TestMetrics_SocketClosedDuringItsReplayIsNotCountedUnavailable(t *testing.T) {
	e, c := pileUpDuringReplay(t, "agent-pile2", nil)
	c.expectClose(CloseTooSlow)
	waitFor(t, 3*time.Second, "the hello finished", func() bool {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		return len(e.srv.conns) == 0
	})
	if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("unavailable")); n != 0 {
		t.Fatalf(`connects_total{result="unavailable"} = %v for a socket closed as too slow (4008) during its replay, with the store answering: want 0 (operations.md: "token check or NATS down")`, n)
	}
}

// latestFailStore is a memStore whose LatestPop fails (NATS unreachable
// when a page says hello).
type latestFailStore struct{ *memStore }

func (latestFailStore) LatestPop(context.Context, bridge.AgentID) (uint64, error) {
	return 0, errors.New("injected: nats unavailable")
}

// docs/agents.md §5: 1013 is "token check or replay unavailable: reconnect
// with backoff"; operations.md: `websocket closed: latest pop unavailable`
// is such a 1013, counted as connects_total{result="unavailable"}. A 1001
// there would tell the page the server is shutting down.
func TestServer_LatestPopUnavailableCloses1013(t *testing.T) {
	st := latestFailStore{newMemStore()}
	e := newEnv(t, Config{}, st, nil)
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": e.token("agent-nolatest")})
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != CloseTryAgainLater {
				t.Fatalf("socket ended with %v, want close 1013", err)
			}
			break
		}
		if m.Type == "ready" || m.Type == "pop" {
			t.Fatalf("got %+v although the latest pop could not be read", m)
		}
		if m.Type == "error" && m.Code != CloseTryAgainLater {
			t.Fatalf("error frame %+v, want code 1013", m)
		}
	}
	if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("unavailable")); n != 1 {
		t.Fatalf(`connects_total{result="unavailable"} = %v, want 1`, n)
	}
}

// docs/agents.md §2: "exp gets no leeway (a token is refused from its exp
// on, at the hello too)". A token that expired a moment ago, within the 5 s
// the parser allows nbf, is refused at the hello: no ready, and none of
// the agent's pops (the fresh window's), before the 4401.
func TestServer_TokenJustExpiredGetsNoReadyAtTheHello(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	e.publish("agent-late", "conv-late") // within the fresh window
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-late",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(-2 * time.Second))}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": tok})
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != CloseInvalidToken {
				t.Fatalf("socket ended with %v, want close 4401", err)
			}
			return
		}
		if m.Type != "error" {
			t.Fatalf("got %+v on a token expired 2 s ago, want only the 4401 close", m)
		}
	}
}

// docs/agents.md §5: "A 503 before the upgrade (with Retry-After: 1 when
// too many sockets are still waiting for their hello ...)"; operations.md
// counts it as connects_total{result="busy"}.
func TestServer_BusyRefusalSaysRetryAfterOneSecond(t *testing.T) {
	e := newEnv(t, Config{HelloTimeout: 5 * time.Second, HelloPending: 1}, newMemStore(), nil)
	e.rawClient() // holds the one place without a hello
	ws, resp, err := e.dial(nil)
	if err == nil {
		ws.Close()
		t.Fatal("a second socket without a hello was let in past HelloPending 1")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("refusal %v (response %+v), want 503 with Retry-After: 1", err, resp)
	}
	if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("busy")); n != 1 {
		t.Fatalf(`connects_total{result="busy"} = %v, want 1`, n)
	}
}

// DESIGN.md and docs/agents.md §5: the hello is due "within 10 s"
// (Config.HelloTimeout); a socket that says nothing is closed with 4408
// then, not some multiple of it later.
func TestServer_NoHelloClosedAtTheHelloTimeout(t *testing.T) {
	const hello = 2 * time.Second // a bound of 2.5x leaves 3 s for a loaded machine
	e := newEnv(t, Config{HelloTimeout: hello}, newMemStore(), nil)
	start := time.Now()
	c := e.rawClient()
	c.expectClose(CloseHelloTimeout)
	if d := time.Since(start); d > 5*hello/2 {
		t.Fatalf("socket without a hello closed after %v, want about the hello timeout %v", d, hello)
	}
}

// The defaults are the documented ones (DESIGN.md's configuration table,
// docs/agents.md §1, §2, §5 and operations.md): replay 2 min, fresh 30 s,
// hello within 10 s, pings and heartbeats every 25 s, tokens checked again
// at least every 5 min, frames up to 16 KiB, 16 sockets an agent, 4,096
// sockets waiting for their hello.
func TestNew_DefaultsAreTheDocumentedOnes(t *testing.T) {
	s, err := New(Config{Auth: AuthJWT, JWTSecret: testSecret}, newMemStore(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	got := fmt.Sprint(c.ReplayWindow, c.FreshWindow, c.HelloTimeout, c.PingInterval, c.HeartbeatInterval, c.Revalidate, c.MaxFrame, c.AgentSockets, c.HelloPending)
	want := fmt.Sprint(2*time.Minute, 30*time.Second, 10*time.Second, 25*time.Second, 25*time.Second, 5*time.Minute, int64(16<<10), 16, 4096)
	if got != want {
		t.Fatalf("defaults %s, want %s", got, want)
	}
}

// docs/agents.md §2 (genesys): the answer "is checked again at least every
// 5 minutes" (Config.Revalidate), even when the identity provider says it
// holds longer: a token revoked in Genesys must not keep its socket for
// the hour its own lifetime says.
func TestServer_TokenCheckedAgainAtLeastEveryRevalidate(t *testing.T) {
	var calls atomic.Int32
	auth := authFunc(func(context.Context, string) (bridge.AgentID, time.Time, error) {
		calls.Add(1)
		return "agent-long", time.Now().Add(time.Hour), nil
	})
	e := newEnv(t, Config{Auth: AuthGenesys, Revalidate: 300 * time.Millisecond}, newMemStore(), auth)
	e.connect("long-lived-token", nil, "")
	waitFor(t, 5*time.Second, "the token checked again", func() bool { return calls.Load() >= 2 }, true)
	if n := calls.Load(); n < 2 {
		t.Fatalf("token checked %d times in 5 s with Revalidate 300ms, want it checked again", n)
	}
}

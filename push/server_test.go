package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

func TestServer_Auth(t *testing.T) {
	e := newEnv(t, Config{HelloTimeout: 300 * time.Millisecond}, nil, nil)

	t.Run("BadToken", func(t *testing.T) {
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": "not-a-jwt"})
		c.expectClose(CloseInvalidToken)
	})
	t.Run("ExpiredToken", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))})
		s, _ := tok.SignedString(testSecret)
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": s})
		c.expectClose(CloseInvalidToken)
	})
	t.Run("WrongSecret", func(t *testing.T) {
		s, err := MintToken([]byte("another-secret-0123456789-abcdefghijkl"), "agent-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": s})
		c.expectClose(CloseInvalidToken)
	})
	t.Run("NoExpiry", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a"})
		s, _ := tok.SignedString(testSecret)
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": s})
		c.expectClose(CloseInvalidToken)
	})
	t.Run("AlgNone", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{Subject: "agent-a", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))})
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": s})
		c.expectClose(CloseInvalidToken)
	})
	t.Run("NoHello", func(t *testing.T) {
		c := e.rawClient()
		c.expectClose(CloseHelloTimeout)
	})
	t.Run("MalformedHello", func(t *testing.T) {
		c := e.rawClient()
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","token":`)); err != nil {
			t.Fatal(err)
		}
		c.expectClose(CloseMalformed)
	})
	t.Run("UnexpectedFrame", func(t *testing.T) {
		c, _ := e.connect(e.token("agent-a"), nil, "")
		c.send(map[string]any{"type": "hello", "token": e.token("agent-a")})
		c.expectClose(CloseMalformed)
	})
	t.Run("Oversized", func(t *testing.T) {
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": strings.Repeat("x", 20<<10)})
		c.expectClose(websocket.CloseMessageTooBig)
	})
	t.Run("OnlyOwnPops", func(t *testing.T) {
		a, ra := e.connect(e.token("agent-a"), nil, "")
		b, _ := e.connect(e.token("agent-b"), nil, "")
		if ra.AgentID != "agent-a" || ra.Epoch == "" {
			t.Fatalf("ready %+v", ra)
		}
		seqB := e.publish("agent-b", "conv-b1")
		seqA := e.publish("agent-a", "conv-a1")
		if m := a.next(); m.Type != "pop" || m.Seq != seqA || m.ID != "pop:conv-a1:part-1" {
			t.Fatalf("agent a got %+v, want its pop %d", m, seqA)
		}
		if m := b.next(); m.Type != "pop" || m.Seq != seqB {
			t.Fatalf("agent b got %+v, want its pop %d", m, seqB)
		}
		// A's next frame must not be B's pop: publish one more for A and see it next.
		seqA2 := e.publish("agent-a", "conv-a2")
		if m := a.next(); m.Seq != seqA2 {
			t.Fatalf("agent a got %+v, want %d", m, seqA2)
		}
	})
}

func TestServer_Origin(t *testing.T) {
	e := newEnv(t, Config{AllowedOrigins: []string{"https://Contoso.crm.dynamics.com:443"}}, nil, nil)
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://evil.example.com", false},
		{"https://contoso.crm.dynamics.com.evil.example", false},
		{"http://contoso.crm.dynamics.com", false},
		{"null", false},
		{"https://contoso.crm.dynamics.com", true},
		{"", true},
		{e.base, true}, // same origin: the demo page
	} {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		ws, resp, err := e.dial(hdr)
		if tc.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", tc.origin, err)
				continue
			}
			ws.Close()
			continue
		}
		if err == nil {
			ws.Close()
			t.Errorf("origin %q accepted", tc.origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", tc.origin, err)
		}
	}
}

func TestServer_MultiTab(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	tok := e.token("agent-m")
	tabs := []*wsClient{}
	for range 3 {
		c, _ := e.connect(tok, nil, "")
		tabs = append(tabs, c)
	}
	other, _ := e.connect(e.token("agent-x"), nil, "")
	seq := e.publish("agent-m", "conv-m")
	for i, c := range tabs {
		if m := c.next(); m.Type != "pop" || m.Seq != seq {
			t.Fatalf("tab %d got %+v", i, m)
		}
	}
	seqX := e.publish("agent-x", "conv-x")
	if m := other.next(); m.Seq != seqX {
		t.Fatalf("other agent got %+v, want only its own %d", m, seqX)
	}
	st := e.srv.Status().(Status)
	if st.Agents != 2 || st.Connections != 4 {
		t.Fatalf("status %+v", st)
	}
}

// One agent's sockets are capped: a token used by a leaking client or a
// script cannot hold the server's memory and replays without bound. A tab
// closed frees its place; other agents are not affected.
func TestServer_AgentSocketsCapped(t *testing.T) {
	e := newEnv(t, Config{AgentSockets: 3}, nil, nil)
	tok := e.token("agent-c")
	tabs := []*wsClient{}
	for range 3 {
		c, _ := e.connect(tok, nil, "")
		tabs = append(tabs, c)
	}
	fourth := e.rawClient()
	fourth.send(map[string]any{"type": "hello", "token": tok})
	fourth.expectClose(CloseTooMany)
	other, _ := e.connect(e.token("agent-y"), nil, "")
	tabs[0].ws.Close()
	waitFor(t, 5*time.Second, "the closed tab and the refused socket gone", func() bool { return e.srv.Status().(Status).Connections == 3 })
	again, _ := e.connect(tok, nil, "")
	seq := e.publish("agent-c", "conv-c")
	for i, c := range []*wsClient{tabs[1], tabs[2], again} {
		if m := c.next(); m.Type != "pop" || m.Seq != seq {
			t.Fatalf("tab %d got %+v", i, m)
		}
	}
	seqY := e.publish("agent-y", "conv-y")
	if m := other.next(); m.Seq != seqY {
		t.Fatalf("the other agent got %+v, want only its own %d", m, seqY)
	}
}

func TestServer_Replay(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	tok := e.token("agent-r")
	var seqs []uint64
	for i := range 4 {
		seqs = append(seqs, e.publish("agent-r", "conv-r"+string(rune('a'+i))))
	}
	t.Run("Fresh", func(t *testing.T) {
		c, r := e.connect(tok, nil, "")
		if r.Seq != seqs[3] {
			t.Fatalf("ready seq %d, want latest %d", r.Seq, seqs[3])
		}
		for _, s := range seqs {
			if m := c.next(); m.Type != "pop" || m.Seq != s {
				t.Fatalf("got %+v, want pop %d", m, s)
			}
		}
	})
	t.Run("Resume", func(t *testing.T) {
		c, r := e.connect(tok, &seqs[1], "")
		for _, s := range seqs[2:] {
			if m := c.next(); m.Seq != s {
				t.Fatalf("got %+v, want pop %d", m, s)
			}
		}
		// With the right epoch it is the same.
		c2, _ := e.connect(tok, &seqs[2], r.Epoch)
		if m := c2.next(); m.Seq != seqs[3] {
			t.Fatalf("got %+v, want pop %d", m, seqs[3])
		}
	})
	t.Run("OtherEpoch", func(t *testing.T) {
		// A cursor from another stream counts as none: the fresh window applies.
		c, _ := e.connect(tok, &seqs[3], "some-old-epoch")
		if m := c.next(); m.Seq != seqs[0] {
			t.Fatalf("got %+v, want the fresh window from %d", m, seqs[0])
		}
	})
	t.Run("NoDuplicatesUnderLiveTraffic", func(t *testing.T) {
		// Pops keep arriving while agents resume: each socket must see every
		// pop after its lastSeq exactly once, in order.
		stop := make(chan struct{})
		published := make(chan uint64, 1000)
		go func() {
			defer close(published)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m, _ := bridge.EncodePop(testPop("agent-r", "live-"+itoa(i)), time.Now())
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := e.bus.Publish(ctx, m)
				cancel()
				if err != nil {
					return
				}
				published <- 0
			}
		}()
		var clients []*wsClient
		var after []uint64
		for range 5 {
			c, r := e.connect(tok, &seqs[3], "")
			_ = r
			clients = append(clients, c)
			after = append(after, seqs[3])
		}
		close(stop)
		n := 0
		for range published {
			n++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last, err := e.bus.LatestPop(ctx, "agent-r")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		total := uint64(n)
		for i, c := range clients {
			prev := after[i]
			var got uint64
			for prev < last {
				m := c.next()
				if m.Type != "pop" {
					t.Fatalf("client %d: %+v", i, m)
				}
				if m.Seq <= prev {
					t.Fatalf("client %d: seq %d after %d (duplicate or out of order)", i, m.Seq, prev)
				}
				prev = m.Seq
				got++
			}
			if got != total {
				t.Fatalf("client %d got %d pops, want %d", i, got, total)
			}
		}
	})
}

func itoa(i int) string { return string(strconvAppend(nil, i)) }

func strconvAppend(b []byte, i int) []byte {
	if i >= 10 {
		b = strconvAppend(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestServer_Windows(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{ReplayWindow: 90 * time.Second, FreshWindow: 20 * time.Second}, st, nil)
	waitSignal(t, st.followed, "live subscription")
	old := st.add(testPop("agent-w", "conv-old"), time.Now().Add(-time.Hour), false)
	tok := e.token("agent-w")
	// The ready frame goes out before the replay starts, so each hello
	// waits for its replay before the next: the calls stay in hello order.
	// Each hello's since is read against the clock around its own connect:
	// the three take a while on a loaded machine.
	var calls []replayCall
	var helloAt, replayedAt []time.Time
	connect := func(lastSeq *uint64, epoch string) {
		t.Helper()
		helloAt = append(helloAt, time.Now())
		defer func() { replayedAt = append(replayedAt, time.Now()) }()
		e.connect(tok, lastSeq, epoch)
		want := len(calls) + 1
		waitFor(t, 5*time.Second, "the replay", func() bool {
			st.mu.Lock()
			defer st.mu.Unlock()
			calls = append(calls[:0], st.replays...)
			return len(calls) == want
		})
	}
	connect(nil, "")
	lastSeq := old.Seq
	connect(&lastSeq, "epoch-1")
	connect(&lastSeq, "epoch-0")
	check := func(i int, after uint64, window time.Duration) {
		t.Helper()
		c := calls[i]
		if c.agent != "agent-w" || c.after != after {
			t.Fatalf("replay %+v, want after %d", c, after)
		}
		if d := helloAt[i].Sub(c.since); d > window+time.Second {
			t.Fatalf("replay since %v before the hello, want %v", d, window)
		}
		if d := replayedAt[i].Sub(c.since); d < window-time.Second {
			t.Fatalf("replay since %v before the replay, want %v", d, window)
		}
	}
	check(0, 0, 20*time.Second)
	check(1, lastSeq, 90*time.Second)
	check(2, 0, 20*time.Second)
}

func TestServer_ReplayThenLive(t *testing.T) {
	// A live pop that arrives while the replay runs is sent once, after the
	// replayed ones, even when the replay also returns it.
	st := newMemStore()
	e := newEnv(t, Config{}, st, nil)
	waitSignal(t, st.followed, "live subscription")
	p1 := st.add(testPop("agent-q", "c1"), time.Now(), true)
	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": e.token("agent-q"), "lastSeq": 0})
	waitFor(t, 5*time.Second, "registration", func() bool {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		return len(e.srv.agents["agent-q"]) == 1
	})
	p2 := st.add(testPop("agent-q", "c2"), time.Now(), true) // live during replay; the replay returns it too
	close(gate)
	if m := c.next(); m.Type != "ready" {
		t.Fatalf("got %+v", m)
	}
	for _, want := range []uint64{p1.Seq, p2.Seq} {
		if m := c.next(); m.Seq != want {
			t.Fatalf("got %+v, want %d", m, want)
		}
	}
	p3 := st.add(testPop("agent-q", "c3"), time.Now(), true)
	if m := c.next(); m.Seq != p3.Seq {
		t.Fatalf("got %+v, want %d (no duplicate of %d)", m, p3.Seq, p2.Seq)
	}
}

func TestServer_SlowConsumer(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{SendQueue: 8, WriteTimeout: 2 * time.Second}, st, nil)
	waitSignal(t, st.followed, "live subscription")
	// The slow agent's socket has a tiny receive buffer and is never read.
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	slow, _, err := d.Dial(e.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if err := slow.WriteJSON(map[string]any{"type": "hello", "token": e.token("agent-slow")}); err != nil {
		t.Fatal(err)
	}
	fast, _ := e.connect(e.token("agent-fast"), nil, "")
	waitFor(t, 5*time.Second, "slow agent registered", func() bool {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		return len(e.srv.agents["agent-slow"]) == 1
	})
	big := testPop("agent-slow", "big")
	big.Prefill = map[string]string{"description": strings.Repeat("x", 64<<10)}
	for i := 0; e.srv.nSlow.Load() == 0; i++ {
		if i > 10000 {
			t.Fatal("slow agent never closed")
		}
		big.ID = "pop:big-" + itoa(i) + ":p"
		st.add(big, time.Now(), true)
		// The fast agent is served meanwhile, in order, promptly.
		if i%50 == 0 {
			p := st.add(testPop("agent-fast", "f"+itoa(i)), time.Now(), true)
			if m := fast.next(); m.Seq != p.Seq {
				t.Fatalf("fast agent got %+v, want %d", m, p.Seq)
			}
		}
	}
	p := st.add(testPop("agent-fast", "after"), time.Now(), true)
	if m := fast.next(); m.Seq != p.Seq {
		t.Fatalf("fast agent got %+v", m)
	}
	// The slow socket is closed (4008 if its reader ever gets that far).
	waitFor(t, 10*time.Second, "slow socket gone", func() bool {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		return len(e.srv.agents["agent-slow"]) == 0
	})
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	var code int
	for {
		_, _, err := slow.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
	}
	if code != 0 && code != CloseTooSlow {
		t.Fatalf("slow socket closed with %d, want 4008 or a cut connection", code)
	}
}

func TestServer_HeartbeatAndAck(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond}, nil, nil)
	c, _ := e.connect(e.token("agent-h"), nil, "")
	var pings atomic.Int32
	var answer atomic.Bool
	answer.Store(true)
	c.ws.SetPingHandler(func(data string) error {
		pings.Add(1)
		if !answer.Load() {
			return nil
		}
		return c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	beats := 0
	for beats < 2 {
		m, err := c.read(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "heartbeat" {
			beats++
		}
	}
	if pings.Load() == 0 {
		t.Fatal("no websocket ping seen")
	}
	seq := e.publish("agent-h", "conv-h")
	if m := c.next(); m.Seq != seq {
		t.Fatalf("got %+v", m)
	}
	c.send(map[string]any{"type": "ack", "seq": seq})
	waitFor(t, 5*time.Second, "ack recorded", func() bool { return e.srv.nAcked.Load() == 1 })
	c.send(map[string]any{"type": "ack", "seq": seq}) // a second ack counts once
	c.send(map[string]any{"type": "ack", "seq": 999999})
	// Frames keep flowing for several ping intervals while pongs answer.
	for beats = 0; beats < 5; {
		m, err := c.read(5 * time.Second)
		if err != nil {
			t.Fatalf("socket died although pongs answer: %v", err)
		}
		if m.Type == "heartbeat" {
			beats++
		}
	}
	if st := e.srv.Status().(Status); st.PopsAcked != 1 || st.PopsSent != 1 {
		t.Fatalf("status %+v", st)
	}
	// Without pongs the server's read deadline ends the socket.
	answer.Store(false)
	waitFor(t, 5*time.Second, "socket dropped for missing pongs", func() bool {
		return e.srv.Status().(Status).Connections == 0
	})
}

// While pops flow, the keep-alives a sweep finds due go out evenly over
// the tick's slices, every one of them by its last slice; while none flow,
// all at once. Those a late tick has not handed out by the next sweep are
// sent then, not dropped.
func TestKeepAlives_SpreadOverTheTick(t *testing.T) {
	var q keepAlives
	for _, n := range []int{0, 1, 5, 15, 16, 17, 160, 1000} {
		for _, paced := range []bool{true, false} {
			q.reset()
			for range n {
				q.due = append(q.due, keepAlive{c: &conn{}, ping: true, beat: true})
			}
			q.spread(paced)
			if n == 0 && q.pending() {
				t.Errorf("nothing due (paced %v), yet a slice pending: a wake-up for nothing", paced)
			}
			seen := map[*conn]bool{}
			most, least, slices := 0, n, 0
			for range keepAliveSlices {
				k := q.take()
				if len(k) > 0 {
					slices++
				}
				for _, x := range k {
					if seen[x.c] {
						t.Fatalf("%d due (paced %v): a socket handed out twice", n, paced)
					}
					seen[x.c] = true
				}
				most, least = max(most, len(k)), min(least, len(k))
			}
			if len(seen) != n || q.pending() {
				t.Errorf("%d due (paced %v): %d handed out over the tick's %d slices, pending %v", n, paced, len(seen), keepAliveSlices, q.pending())
			}
			if paced && (most-least > 1 || slices != min(n, keepAliveSlices)) {
				t.Errorf("%d due, paced: %d to %d a slice over %d slices, want an even spread over %d", n, least, most, slices, min(n, keepAliveSlices))
			}
			if !paced && most != n {
				t.Errorf("%d due, not paced: %d in the first slice, want all", n, most)
			}
			if k := q.take(); len(k) != 0 {
				t.Errorf("%d due (paced %v): %d more after the tick's last slice", n, paced, len(k))
			}
		}
	}

	q.reset()
	for range 160 {
		q.due = append(q.due, keepAlive{c: &conn{}, ping: true})
	}
	q.spread(true)
	got := len(q.take()) + len(q.take()) + len(q.take())
	if got += len(q.rest()); got != 160 || q.pending() || len(q.take()) != 0 || len(q.rest()) != 0 {
		t.Fatalf("three slices and the rest handed out %d of 160 (pending %v)", got, q.pending())
	}
}

// Every keep-alive the sweeps find due is sent, paced or not, with the
// shortest tick too (10 ms: its 16 slices must fit in it, or the next sweep
// would find some not sent yet). In a synctest bubble, so the timers fire
// on time; each socket has a writer running, so its frames stay queued to
// be counted.
func TestServer_TickerSendsEveryKeepAlive(t *testing.T) {
	for _, paced := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			const ping, sockets, run = 50 * time.Millisecond, 200, time.Second
			s, err := New(Config{Auth: AuthJWT, JWTSecret: testSecret, PingInterval: ping, HeartbeatInterval: ping, SendQueue: 1000}, newMemStore(), nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			start := monoNanos(time.Now())
			for i := range sockets {
				c := &conn{s: s, writing: true}
				c.nextPing = start + int64(ping)*int64(i)/sockets
				c.nextBeat = c.nextPing
				c.nextAuth.Store(time.Now().Add(time.Hour).UnixNano())
				c.ready.Store(true)
				s.conns[c] = struct{}{}
			}
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Go(func() { s.ticker(ctx) })
			wg.Go(func() { // pops flowing: paced
				for paced && ctx.Err() == nil {
					s.nSent.Add(1)
					time.Sleep(time.Millisecond)
				}
			})
			time.Sleep(run)
			cancel()
			wg.Wait()
			// A socket is due every interval; the last sweep's may still
			// be waiting for their slice when the ticker stops.
			want := int(run/ping) - 1
			for c := range s.conns {
				pings, beats := 0, 0
				for _, f := range c.q {
					switch f.kind {
					case kindPing:
						pings++
					case kindText:
						beats++
					}
				}
				if pings < want || beats < want {
					t.Fatalf("paced %v: a socket got %d pings and %d heartbeats in %v at %v, want at least %d of each", paced, pings, beats, run, ping, want)
				}
			}
		})
	}
}

// The sweep finds the ready sockets whose ping or heartbeat is due and
// moves their next one an interval on; a socket not ready yet is left alone.
func TestServer_SweepFindsDueKeepAlives(t *testing.T) {
	s := &Server{cfg: Config{PingInterval: 25 * time.Second, HeartbeatInterval: 20 * time.Second}, conns: map[*conn]struct{}{}}
	now := time.Now()
	n := monoNanos(now)
	past, future := n-1, n+int64(time.Hour)
	both := &conn{nextPing: past, nextBeat: past}
	ping := &conn{nextPing: past, nextBeat: future}
	none := &conn{nextPing: future, nextBeat: future}
	notReady := &conn{nextPing: past, nextBeat: past}
	for _, c := range []*conn{both, ping, none, notReady} {
		c.nextAuth.Store(now.Add(time.Hour).UnixNano())
		c.ready.Store(c != notReady)
		s.conns[c] = struct{}{}
	}
	due, ka := s.sweep(now, nil, nil)
	if len(due) != 0 {
		t.Errorf("%d sockets due a token check, want 0", len(due))
	}
	got := map[*conn]keepAlive{}
	for _, k := range ka {
		got[k.c] = k
	}
	if len(ka) != 2 || got[both] != (keepAlive{both, true, true}) || got[ping] != (keepAlive{ping, true, false}) {
		t.Fatalf("keep-alives due: %+v", ka)
	}
	if both.nextPing != n+int64(25*time.Second) || both.nextBeat != n+int64(20*time.Second) || ping.nextBeat != future {
		t.Errorf("next keep-alives not moved an interval on: ping %d, beat %d", both.nextPing-n, both.nextBeat-n)
	}
	if notReady.nextPing != past {
		t.Error("a socket not ready yet had its keep-alives moved")
	}
}

// An acked pop is not held by its socket; an unacked one is, for a late ack.
func TestServer_AckReleasesThePop(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	c, _ := e.connect(e.token("agent-r"), nil, "")
	var seqs []uint64
	for i := range 3 {
		seq := e.publish("agent-r", fmt.Sprintf("conv-r%d", i))
		if m := c.next(); m.Seq != seq {
			t.Fatalf("got %+v, want seq %d", m, seq)
		}
		seqs = append(seqs, seq)
	}
	c.send(map[string]any{"type": "ack", "seq": seqs[0]})
	c.send(map[string]any{"type": "ack", "seq": seqs[2]})
	waitFor(t, 5*time.Second, "two acks recorded", func() bool { return e.srv.nAcked.Load() == 2 })
	held := func() (held []uint64) {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		for sc := range e.srv.conns {
			sc.mu.Lock()
			if sc.sent != nil {
				for _, pf := range sc.sent {
					if pf.seq != 0 {
						held = append(held, pf.seq)
					}
				}
			}
			sc.mu.Unlock()
		}
		return held
	}
	if h := held(); len(h) != 1 || h[0] != seqs[1] {
		t.Fatalf("socket holds pops %v, want only the unacked %d", h, seqs[1])
	}
	// The socket reads in order: once the late ack has released its pop
	// and been counted, the repeated ack sent before it has been handled.
	c.send(map[string]any{"type": "ack", "seq": seqs[0]}) // again: counts once
	c.send(map[string]any{"type": "ack", "seq": seqs[1]})
	waitFor(t, 5*time.Second, "the late ack recorded", func() bool { return len(held()) == 0 && e.srv.nAcked.Load() >= 3 })
	time.Sleep(20 * time.Millisecond) // the late ack's own count lands just after its release
	if n := e.srv.nAcked.Load(); n != 3 {
		t.Fatalf("%d acks counted, want 3", n)
	}
}

func TestServer_Revalidate(t *testing.T) {
	var calls atomic.Int32
	auth := authFunc(func(_ context.Context, token string) (bridge.AgentID, time.Time, error) {
		if calls.Add(1) > 1 {
			return "", time.Time{}, bridge.ErrInvalidToken
		}
		return "agent-v", time.Now().Add(200 * time.Millisecond), nil
	})
	st := newMemStore()
	e := newEnv(t, Config{Auth: AuthGenesys}, st, auth)
	c, _ := e.connect("genesys-token", nil, "")
	c.expectClose(CloseInvalidToken)
	if calls.Load() != 2 {
		t.Fatalf("authenticator called %d times", calls.Load())
	}
}

func TestServer_AuthUnavailable(t *testing.T) {
	auth := authFunc(func(context.Context, string) (bridge.AgentID, time.Time, error) {
		return "", time.Time{}, errors.New("identity provider down")
	})
	e := newEnv(t, Config{Auth: AuthGenesys}, newMemStore(), auth)
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": "t"})
	c.expectClose(CloseTryAgainLater)
}

func TestServer_TokenCache(t *testing.T) {
	var calls atomic.Int32
	auth := authFunc(func(context.Context, string) (bridge.AgentID, time.Time, error) {
		calls.Add(1)
		return "agent-c", time.Now().Add(time.Hour), nil
	})
	e := newEnv(t, Config{Auth: AuthGenesys}, newMemStore(), auth)
	for range 3 {
		e.connect("same-token", nil, "")
	}
	if calls.Load() != 1 {
		t.Fatalf("authenticator called %d times for one token, want 1 (cached)", calls.Load())
	}
}

// A refused token is remembered for a while: a page (or a flood of
// hellos) presenting it again does not cost a round trip to Genesys each.
func TestServer_RefusedTokenCache(t *testing.T) {
	var calls atomic.Int32
	auth := authFunc(func(context.Context, string) (bridge.AgentID, time.Time, error) {
		calls.Add(1)
		return "", time.Time{}, bridge.ErrInvalidToken
	})
	e := newEnv(t, Config{Auth: AuthGenesys}, newMemStore(), auth)
	for i := range 20 {
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": "bogus-" + strconv.Itoa(i%2)})
		c.expectClose(CloseInvalidToken)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("authenticator called %d times for 20 hellos with two refused tokens, want 2", n)
	}
	if n := e.srv.auth.len(); n != 0 {
		t.Fatalf("%d accepted tokens cached, want 0", n)
	}
}

type authFunc func(context.Context, string) (bridge.AgentID, time.Time, error)

func (f authFunc) Authenticate(ctx context.Context, t string) (bridge.AgentID, time.Time, error) {
	return f(ctx, t)
}

func TestServer_Shutdown(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	a, _ := e.connect(e.token("agent-s"), nil, "")
	b, _ := e.connect(e.token("agent-s"), nil, "")
	pre := e.rawClient() // no hello yet
	start := time.Now()
	e.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run returned after %v", d)
	}
	for _, c := range []*wsClient{a, b, pre} {
		c.expectClose(websocket.CloseGoingAway)
	}
	if _, _, err := e.dial(nil); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

// The server is not ready until its pop subscription is live: a browser let
// in earlier would be replayed what was stored before its ready frame, and
// miss what was stored between that and the subscription.
func TestServer_ReadyOnceFollowing(t *testing.T) {
	st := newMemStore()
	st.hold = make(chan struct{})
	e := startEnv(t, Config{}, st, nil)
	waitSignal(t, st.entered, "subscription")
	waitFor(t, 5*time.Second, "listener serving", e.srv.serving.Load)
	if e.srv.Ready() || e.srv.Status().(Status).Following {
		t.Fatal("ready, or following, while the pop subscription is not live")
	}
	// A socket let in meanwhile (a browser that did not wait for /readyz)
	// may have missed pops: it is told to resume once the subscription is
	// live.
	c, _ := e.connect(e.token("agent-s"), nil, "")
	close(st.hold)
	waitSignal(t, st.followed, "live subscription")
	waitFor(t, 5*time.Second, "ready once following", e.srv.Ready)
	c.expectClose(CloseTooSlow)
}

func TestServer_FollowRecovers(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{}, st, nil)
	waitSignal(t, st.entered, "subscription")
	waitSignal(t, st.followed, "live subscription")
	c, _ := e.connect(e.token("agent-f"), nil, "")
	p1 := st.add(testPop("agent-f", "before"), time.Now(), true)
	if m := c.next(); m.Seq != p1.Seq {
		t.Fatalf("got %+v, want pop %d", m, p1.Seq)
	}
	// The subscription fails. A pop is stored while none is live; the new
	// subscription hands the next one over before it reports live, as the
	// bus's consumer can.
	hold := make(chan struct{})
	earlyc := make(chan bridge.StoredPop, 1)
	st.mu.Lock()
	st.hold = hold
	st.beforeLive = func(fn func(bridge.StoredPop)) {
		early := st.add(testPop("agent-f", "first-after"), time.Now(), false)
		earlyc <- early
		go fn(early)
		time.Sleep(20 * time.Millisecond) // let it reach the server first
	}
	close(st.broken)
	st.mu.Unlock()
	waitSignal(t, st.entered, "resubscription")
	outage := st.add(testPop("agent-f", "during-outage"), time.Now(), false)
	close(hold)
	// Once the new subscription is live the socket is closed with 4008,
	// with no live pop before it: given one, its browser would resume after
	// it and never get the pop of the outage.
	last := p1.Seq
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != CloseTooSlow {
				t.Fatalf("socket ended with %v, want close 4008", err)
			}
			break
		}
		if m.Type == "pop" {
			last = m.Seq
		}
	}
	if last != p1.Seq {
		t.Fatalf("the socket got pop %d before its 4008; resuming after it would skip pop %d", last, outage.Seq)
	}
	if n := st.nLive.Load(); n != 2 {
		t.Fatalf("socket closed with %d subscriptions live so far, want 2 (the new one live first)", n)
	}
	waitFor(t, 5*time.Second, "ready again", e.srv.Ready)
	early := <-earlyc
	// The browser resumes from its last pop: the outage's, then the next.
	c2, _ := e.connect(e.token("agent-f"), &last, st.epoch)
	for _, want := range []uint64{outage.Seq, early.Seq} {
		if m := c2.next(); m.Seq != want {
			t.Fatalf("resumed socket got %+v, want pop %d", m, want)
		}
	}
	p := st.add(testPop("agent-f", "after-recovery"), time.Now(), true)
	if m := c2.next(); m.Seq != p.Seq {
		t.Fatalf("got %+v, want live pop %d", m, p.Seq)
	}
}

func TestNewPopFrame(t *testing.T) {
	p := testPop("agent-1", "conv-1")
	m, _ := bridge.EncodePop(p, time.Now())
	pf, err := newPopFrame(bridge.StoredPop{Seq: 42, Agent: "agent-1", Data: m.Data})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(pf.data, &got); err != nil {
		t.Fatalf("frame %s: %v", pf.data, err)
	}
	if got["type"] != "pop" || got["seq"] != float64(42) || got["id"] != p.ID || got["conversationId"] != "conv-1" {
		t.Fatalf("frame %s", pf.data)
	}
	if pf.eventAt.Sub(p.EventReceivedAt.Time).Abs() >= time.Millisecond || pf.id != p.ID {
		t.Fatalf("frame meta %+v", pf)
	}
	// A pop resolved on an instance whose clock is 3 s behind this one:
	// its eventReceivedAt is put on this host's clock for the delivery
	// latency, and the agent's frame keeps the time as published.
	skewed, err := newPopFrame(bridge.StoredPop{Seq: 42, Agent: "agent-1", Data: m.Data, ClockCorrection: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := skewed.eventAt.Sub(pf.eventAt); d != 3*time.Second {
		t.Fatalf("eventAt moved by %v, want the 3s correction", d)
	}
	if !bytes.Equal(skewed.data, pf.data) {
		t.Fatalf("the corrected frame %s differs from %s", skewed.data, pf.data)
	}
	if _, err := newPopFrame(bridge.StoredPop{Seq: 1, Agent: "agent-2", Data: m.Data}); err == nil {
		t.Fatal("pop for agent-1 stored under agent-2 accepted")
	}
	for _, bad := range []string{`{}`, `{"type":"screenpop.pop.v1","data":[1]}`, `{"type":"other","data":{}}`, `nope`} {
		if _, err := newPopFrame(bridge.StoredPop{Seq: 1, Agent: "a", Data: []byte(bad)}); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestNew_Config(t *testing.T) {
	if _, err := New(Config{Auth: "basic"}, newMemStore(), nil, testLogger(t)); err == nil {
		t.Error("unknown auth mode accepted")
	}
	if _, err := New(Config{Auth: AuthJWT, JWTSecret: []byte("short")}, newMemStore(), nil, testLogger(t)); err == nil {
		t.Error("short jwt secret accepted")
	}
	if _, err := New(Config{}, newMemStore(), nil, testLogger(t)); err == nil {
		t.Error("genesys mode without authenticator accepted")
	}
	if _, err := New(Config{Auth: AuthJWT, JWTSecret: testSecret, AllowedOrigins: []string{"contoso.crm.dynamics.com"}}, newMemStore(), nil, testLogger(t)); err == nil {
		t.Error("origin without scheme accepted")
	}
}

// With SCREENPOP_JWT_AUDIENCE set, a token signed with the right secret
// but made for another service (another aud, or none) is refused: one login
// may sign tokens for several services with one secret. Without it, any
// aud is accepted, as before the setting existed.
func TestServer_AuthAudience(t *testing.T) {
	signed := func(aud ...string) string {
		t.Helper()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", Audience: aud, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e := newEnv(t, Config{JWTAudience: "screenpop-contoso"}, nil, nil)
	for name, tok := range map[string]string{"NoAud": signed(), "OtherAud": signed("wallboard-contoso")} {
		t.Run(name, func(t *testing.T) {
			c := e.rawClient()
			c.send(map[string]any{"type": "hello", "token": tok})
			c.expectClose(CloseInvalidToken)
		})
	}
	for name, tok := range map[string]string{"Aud": signed("screenpop-contoso"), "AudAmongOthers": signed("wallboard-contoso", "screenpop-contoso")} {
		t.Run(name, func(t *testing.T) {
			if _, ready := e.connect(tok, nil, ""); ready.AgentID != "agent-a" {
				t.Fatalf("ready for %q, want agent-a", ready.AgentID)
			}
		})
	}
	t.Run("Minted", func(t *testing.T) {
		tok, err := MintToken(testSecret, "agent-a", time.Minute, "screenpop-contoso")
		if err != nil {
			t.Fatal(err)
		}
		e.connect(tok, nil, "")
	})
	t.Run("NoAudienceSet", func(t *testing.T) {
		open := newEnv(t, Config{}, nil, nil)
		if _, ready := open.connect(signed("wallboard-contoso"), nil, ""); ready.AgentID != "agent-a" {
			t.Fatalf("ready for %q, want agent-a", ready.AgentID)
		}
	})
}

func TestMintToken(t *testing.T) {
	a, err := NewJWTAuthenticator(testSecret, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := MintToken(testSecret, "agent-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id, until, err := a.Authenticate(context.Background(), tok)
	if err != nil || id != "agent-1" || time.Until(until) > time.Minute || time.Until(until) < 50*time.Second {
		t.Fatalf("Authenticate = %q %v %v", id, until, err)
	}
	if _, err := MintToken(testSecret, "a.b", time.Minute); err == nil {
		t.Error("minted a token for a subject-breaking id")
	}
	bad, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "x.>", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(testSecret)
	if _, _, err := a.Authenticate(context.Background(), bad); !errors.Is(err, bridge.ErrInvalidToken) {
		t.Errorf("sub x.> : %v", err)
	}
}

// The refused origin is in the log line: docs/operations.md tells the admin
// to copy it from there into SCREENPOP_ALLOWED_ORIGINS. Any client can send
// any Origin, so a long one is cut.
func TestServer_OriginRefusedIsLogged(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, newMemStore(), nil, zerolog.New(&logs))
	waitFor(t, 5*time.Second, "listener serving", e.srv.serving.Load)
	long := "https://" + strings.Repeat("a", 300) + ".example.com"
	origins := []string{"https://contoso.crm4.dynamics.com", long}
	for _, o := range origins {
		ws, resp, err := e.dial(http.Header{"Origin": {o}})
		if err == nil {
			ws.Close()
			t.Fatalf("origin %.40q accepted", o)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %.40q: %v, want 403", o, err)
		}
	}
	// The line is written before the 403 goes out.
	var got []any
	for _, l := range logs.lines() {
		if l["message"] == "websocket refused: origin not allowed" {
			got = append(got, l["origin"])
		}
	}
	want := []any{origins[0], long[:maxLoggedOrigin]}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("refusals logged with origins %q, want %q", got, want)
	}
}

// A heartbeat follows the replay of a hello at once: a browser that got it
// has every pop its hello asked for (replayed, or live while the replay
// ran), and from then on may resume after the ready frame's seq. A socket
// whose replay fails is closed without one, and the fresh hello the browser
// then sends again gets the pops of the fresh window.
func TestServer_HeartbeatEndsReplay(t *testing.T) {
	st := newMemStore()
	// Keep-alives an hour apart: the heartbeat seen is the replay's.
	e := newEnv(t, Config{PingInterval: time.Hour, HeartbeatInterval: time.Hour}, st, nil)
	tok := e.token("agent-hb")
	p1 := st.add(testPop("agent-hb", "c1"), time.Now(), false)
	p2 := st.add(testPop("agent-hb", "c2"), time.Now(), false)
	var p3 bridge.StoredPop

	t.Run("AfterTheReplay", func(t *testing.T) {
		gate := make(chan struct{})
		st.mu.Lock()
		st.gate = gate
		st.mu.Unlock()
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": tok})
		waitFor(t, 5*time.Second, "the replay", func() bool { return len(st.replayCalls()) == 1 })
		p3 = st.add(testPop("agent-hb", "c3"), time.Now(), true) // live while the replay waits
		st.mu.Lock()
		st.gate = nil
		st.mu.Unlock()
		close(gate)
		var got []string
		for len(got) == 0 || got[len(got)-1] != "heartbeat" {
			m, err := c.read(5 * time.Second)
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			if m.Type == "heartbeat" {
				got = append(got, m.Type)
				continue
			}
			got = append(got, fmt.Sprintf("%s%d", m.Type, m.Seq))
		}
		// ready carries the newest pop when the hello was taken: p2.
		want := fmt.Sprintf("[ready%d pop%d pop%d pop%d heartbeat]", p2.Seq, p1.Seq, p2.Seq, p3.Seq)
		if fmt.Sprint(got) != want {
			t.Fatalf("frames %v, want %s", got, want)
		}
	})
	t.Run("NotBeforeAFailedReplay", func(t *testing.T) {
		st.failReplay.Store(1)
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": tok})
		if m := c.next(); m.Type != "ready" {
			t.Fatalf("first frame %+v, want ready", m)
		}
		for {
			m, err := c.read(5 * time.Second)
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != CloseTryAgainLater {
					t.Fatalf("socket ended with %v, want close 1013", err)
				}
				break
			}
			if m.Type != "error" {
				t.Fatalf("got %+v after ready on a socket whose replay failed, want only the 1013 close", m)
			}
		}
		c2, _ := e.connect(tok, nil, "")
		for _, want := range []uint64{p1.Seq, p2.Seq, p3.Seq} {
			if m := c2.next(); m.Type != "pop" || m.Seq != want {
				t.Fatalf("fresh hello again got %+v, want pop %d", m, want)
			}
		}
	})
}

// A subscription that was live and is lost (its stream recreated, which
// each deletion of the stream or loss of the NATS store does) is made
// again at once, however many were lost before in the process's life: the
// backoff is for subscriptions that cannot be made, not for one lost
// after it worked. Without the reset, the seventh loss left every agent
// without live pops for 5 to 15 s.
func TestServer_FollowBackoffStartsOverAfterALiveSubscription(t *testing.T) {
	st := newMemStore()
	newEnv(t, Config{}, st, nil)
	waitSignal(t, st.entered, "subscription")
	waitSignal(t, st.followed, "live subscription")
	for i := range 8 {
		st.mu.Lock()
		close(st.broken)
		st.mu.Unlock()
		lost := time.Now()
		waitSignal(t, st.entered, "resubscription")
		waitSignal(t, st.followed, "live subscription")
		if d := time.Since(lost); d > time.Second {
			t.Fatalf("loss %d of a live subscription: live again after %v, want well under 1s", i+1, d)
		}
	}
}

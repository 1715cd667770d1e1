package push

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

var testSecret = []byte("test-secret-0123456789-abcdefghijklmnop")

// env is a push server on 127.0.0.1:0 over a real embedded NATS (or a
// store given by the test).
type env struct {
	t      testing.TB
	store  bridge.PopStore
	bus    *bus.Conn
	srv    *Server
	ln     net.Listener
	base   string // http://127.0.0.1:port
	wsURL  string
	cancel context.CancelFunc
	done   chan error
}

func testLogger(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func startBus(t testing.TB) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Listen: "off", DataDir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatalf("bus.Start: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// newEnv starts a server and waits until it is ready. cfg.Auth defaults to
// jwt with testSecret; store nil means a real bus.
func newEnv(t testing.TB, cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator) *env {
	t.Helper()
	e := startEnv(t, cfg, store, auth)
	// Ready includes a live pop subscription: every pop published from
	// here on reaches the fan-out.
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	return e
}

// startEnv starts a server like newEnv, without waiting for it.
func startEnv(t testing.TB, cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator) *env {
	t.Helper()
	return startEnvLog(t, cfg, store, auth, testLogger(t))
}

// startEnvLog is startEnv with the server logging to log.
func startEnvLog(t testing.TB, cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator, log zerolog.Logger) *env {
	t.Helper()
	return startEnvListen(t, cfg, store, auth, log, nil)
}

// startEnvListen is startEnvLog with the agent listener serving TLS with
// tlsConfig when it is not nil, opened with Listen as the daemon does.
func startEnvListen(t testing.TB, cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator, log zerolog.Logger, tlsConfig *tls.Config) *env {
	t.Helper()
	e := &env{t: t}
	if store == nil {
		e.bus = startBus(t)
		store = e.bus
	}
	e.store = store
	if cfg.Auth == "" {
		cfg.Auth = AuthJWT
		if cfg.JWTSecret == nil {
			cfg.JWTSecret = testSecret
		}
	}
	srv, err := New(cfg, store, auth, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	ln, err := Listen("127.0.0.1:0", tlsConfig, false, log)
	if err != nil {
		t.Fatal(err)
	}
	e.ln = ln
	e.base = "http://" + ln.Addr().String()
	e.wsURL = "ws://" + ln.Addr().String() + "/v1/ws"
	if tlsConfig != nil {
		e.base = "https://" + ln.Addr().String()
		e.wsURL = "wss://" + ln.Addr().String() + "/v1/ws"
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- srv.Run(ctx, ln) }()
	t.Cleanup(e.stop)
	return e
}

// stop cancels Run and waits for it (bounded).
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		e.t.Errorf("Run did not return within 10s of cancel")
	}
}

func testPop(agent bridge.AgentID, conv string) *bridge.Pop {
	now := time.Now()
	return &bridge.Pop{
		ID: bridge.PopID(bridge.ConversationID(conv), "part-1"), ConversationID: bridge.ConversationID(conv), AgentID: agent,
		Media: bridge.MediaVoice, State: bridge.StateAlerting,
		Customer: bridge.PopCustomer{Phone: "+13175550123", Name: "Test Caller"},
		Target:   bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "6f1c2e2a-0000-4000-8000-" + fmt.Sprintf("%012d", len(conv)), Name: "Test Caller"},
		IssuedAt: bridge.NewTime(now), EventReceivedAt: bridge.NewTime(now.Add(-50 * time.Millisecond)),
	}
}

// publish stores a pop for agent through JetStream and returns its seq.
func (e *env) publish(agent bridge.AgentID, conv string) uint64 {
	e.t.Helper()
	return e.publishPop(testPop(agent, conv))
}

func (e *env) publishPop(p *bridge.Pop) uint64 {
	e.t.Helper()
	if e.bus == nil {
		e.t.Fatal("publish needs the bus")
	}
	m, err := bridge.EncodePop(p, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.bus.Publish(ctx, m); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	seq, err := e.bus.LatestPop(ctx, p.AgentID)
	if err != nil {
		e.t.Fatal(err)
	}
	return seq
}

func (e *env) token(agent bridge.AgentID) string {
	e.t.Helper()
	tok, err := MintToken(testSecret, agent, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// waitFor polls cond until it holds or the deadline passes. With soft set
// it returns quietly on timeout.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool, soft ...bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			if len(soft) == 0 {
				t.Fatalf("timed out waiting for %s", what)
			}
			return
		}
		<-tick.C
	}
}

// wsClient is a test agent socket.
type wsClient struct {
	t  testing.TB
	ws *websocket.Conn
}

func (e *env) dial(hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(e.wsURL, hdr)
}

func (e *env) rawClient() *wsClient {
	e.t.Helper()
	ws, _, err := e.dial(nil)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c := &wsClient{t: e.t, ws: ws}
	e.t.Cleanup(func() { ws.Close() })
	return c
}

type msg struct {
	Type    string         `json:"type"`
	Seq     uint64         `json:"seq"`
	AgentID bridge.AgentID `json:"agentId"`
	Epoch   string         `json:"epoch"`
	ID      string         `json:"id"`
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Target  bridge.Target  `json:"target"`
}

// connect opens a socket, says hello and returns it after ready.
func (e *env) connect(token string, lastSeq *uint64, epoch string) (*wsClient, msg) {
	e.t.Helper()
	c := e.rawClient()
	h := map[string]any{"type": "hello", "token": token}
	if lastSeq != nil {
		h["lastSeq"] = *lastSeq
	}
	if epoch != "" {
		h["epoch"] = epoch
	}
	c.send(h)
	r := c.next()
	if r.Type != "ready" {
		e.t.Fatalf("first frame %+v, want ready", r)
	}
	return c, r
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next message other than a heartbeat.
func (c *wsClient) next() msg {
	c.t.Helper()
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if m.Type != "heartbeat" {
			return m
		}
	}
}

func (c *wsClient) read(d time.Duration) (msg, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(d))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		return msg{}, fmt.Errorf("frame %q: %w", data, err)
	}
	return m, nil
}

// expectClose reads until the socket closes and checks the close code and,
// when one came, the error frame's code.
func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	for {
		m, err := c.read(5 * time.Second)
		if err == nil {
			if m.Type == "error" && m.Code != code {
				c.t.Fatalf("error frame code %d, want %d", m.Code, code)
			}
			if m.Type == "error" && (m.Message == "" || strings.Contains(m.Message, "token ")) {
				c.t.Fatalf("error frame message %q", m.Message)
			}
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("read: %v, want close %d", err, code)
		}
		if ce.Code != code {
			c.t.Fatalf("close code %d, want %d", ce.Code, code)
		}
		return
	}
}

// memStore is a PopStore in memory for unit tests that need to control
// timing; the behaviour tests use the real bus.
type memStore struct {
	mu       sync.Mutex
	epoch    string
	pops     []bridge.StoredPop
	follow   func(bridge.StoredPop)
	replays  []replayCall
	gate     chan struct{} // when set, ReplayPops waits on it before reading
	followed chan struct{}
	failNext atomic.Int32  // FollowPops fails this many times
	broken   chan struct{} // closing it makes the running FollowPops fail
	entered  chan struct{} // FollowPops was called
	hold     chan struct{} // when set, FollowPops waits on it before its subscription is live
	// beforeLive, when set, gets the subscription's fn before live is
	// called: the bus's consumer can hand pops over before FollowPops
	// reports it live.
	beforeLive func(fn func(bridge.StoredPop))
	nLive      atomic.Int32 // subscriptions that went live
	failReplay atomic.Int32 // ReplayPops fails this many times
}

type replayCall struct {
	agent bridge.AgentID
	after uint64
	since time.Time
}

func newMemStore() *memStore {
	return &memStore{epoch: "epoch-1", followed: make(chan struct{}, 16), entered: make(chan struct{}, 16)}
}

func (m *memStore) MarkPop(context.Context, string, string) (bool, error) { return true, nil }
func (m *memStore) Epoch() string                                         { return m.epoch }
func (m *memStore) LatestPop(_ context.Context, a bridge.AgentID) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s uint64
	for _, p := range m.pops {
		if p.Agent == a {
			s = p.Seq
		}
	}
	return s, nil
}

func (m *memStore) ReplayPops(ctx context.Context, a bridge.AgentID, after uint64, since time.Time, fn func(bridge.StoredPop) error) error {
	m.mu.Lock()
	m.replays = append(m.replays, replayCall{a, after, since})
	gate := m.gate
	m.mu.Unlock()
	if m.failReplay.Load() > 0 {
		m.failReplay.Add(-1)
		return errors.New("injected replay failure")
	}
	if err := awaitGate(ctx, gate); err != nil {
		return err
	}
	m.mu.Lock()
	var out []bridge.StoredPop
	for _, p := range m.pops {
		if p.Agent == a && p.Seq > after && !p.Time.Before(since) {
			out = append(out, p)
		}
	}
	m.mu.Unlock()
	for _, p := range out {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// waitSignal waits for a memStore signal (entered, followed), failing the
// test after 10 s instead of hanging it.
func waitSignal(t testing.TB, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
}

// signal sends on a test's signal channel unless ctx is done first.
func signal(ctx context.Context, ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
	}
}

// awaitGate returns once gate is closed (at once when it is nil), or with
// ctx's error when ctx is done first.
func awaitGate(ctx context.Context, gate chan struct{}) error {
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replayCalls returns the ReplayPops calls so far.
func (m *memStore) replayCalls() []replayCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]replayCall(nil), m.replays...)
}

func (m *memStore) FollowPops(ctx context.Context, fn func(bridge.StoredPop), live func()) error {
	if m.failNext.Load() > 0 {
		m.failNext.Add(-1)
		return errors.New("injected follow failure")
	}
	signal(ctx, m.entered)
	m.mu.Lock()
	hold, early := m.hold, m.beforeLive
	m.mu.Unlock()
	if awaitGate(ctx, hold) != nil {
		return nil // stopped before it was live
	}
	m.mu.Lock()
	m.follow = fn
	if m.broken == nil {
		m.broken = make(chan struct{})
	}
	broken := m.broken
	m.mu.Unlock()
	if early != nil {
		early(fn)
	}
	m.nLive.Add(1)
	if live != nil {
		live()
	}
	signal(ctx, m.followed)
	var err error
	select {
	case <-ctx.Done():
	case <-broken:
		err = errors.New("injected: subscription lost")
	}
	m.mu.Lock()
	m.follow = nil
	if m.broken == broken {
		m.broken = nil
	}
	m.mu.Unlock()
	return err
}

// add stores a pop (and delivers it live when live is set).
func (m *memStore) add(p *bridge.Pop, at time.Time, live bool) bridge.StoredPop {
	msg, err := bridge.EncodePop(p, at)
	if err != nil {
		panic(err)
	}
	m.mu.Lock()
	sp := bridge.StoredPop{Seq: uint64(len(m.pops) + 1), Agent: p.AgentID, Data: msg.Data, Time: at}
	m.pops = append(m.pops, sp)
	fn := m.follow
	m.mu.Unlock()
	if live && fn != nil {
		fn(sp)
	}
	return sp
}

// logBuffer collects a logger's output for tests that assert on log lines.
type logBuffer struct{ syncbuf.Buffer }

// lines returns the JSON log lines written so far.
func (b *logBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

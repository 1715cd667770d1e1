package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/push"
)

// Conversation ids encode the phase and the index of the expected pop, so
// a client finds its slot without a shared map:
// <phase letter repeated 8>-0000-4000-8000-<12-digit index>.
const (
	phaseWarmup   = 'a'
	phaseMain     = 'c'
	phaseFloor    = 'f'
	phaseBaseline = 'b'
)

func convID(phase byte, i int) string {
	p := string([]byte{phase, phase, phase, phase, phase, phase, phase, phase})
	return fmt.Sprintf("%s-0000-4000-8000-%012d", p, i)
}

func parseConvID(s string) (byte, int, bool) {
	if len(s) != 36 {
		return 0, 0, false
	}
	n, err := strconv.Atoi(s[24:])
	if err != nil {
		return 0, 0, false
	}
	return s[0], n, true
}

func agentID(i int) string { return fmt.Sprintf("5e1f0a1c-0000-4000-8000-%012d", i) }

// slot is one expected pop.
type slot struct {
	agent  atomic.Int32
	number atomic.Pointer[string] // the caller
	queued atomic.Int64           // unix ns when the tool handed the frame to the emulator (or published the pop)
	t0     atomic.Int64           // unix ns when the emulator began writing the frame to the daemon's socket (or the pop was published)
	t1     atomic.Int64
	n      atomic.Int32 // times received
	wrong  atomic.Int32 // received by another agent's client
	repeat bool         // the caller's lookup should be cached (the driver's own)
}

// phase is a set of expected pops.
type phase struct {
	name  string
	slots []slot
	sent  atomic.Int64
	got   atomic.Int64 // distinct pops received
}

func newPhase(name string, n int) *phase { return &phase{name: name, slots: make([]slot, n)} }

// fleet is the agent websocket clients.
type fleet struct {
	conns  []*websocket.Conn
	phases map[byte]*phase
	// onPop runs (in the client's reader) for pops of a phase whose
	// arrival completes later (the browser baseline: after its query).
	onBaseline func(s *slot)

	frames, heartbeats, other atomic.Int64
	// beats counts heartbeat frames by 100 ms since start: how bunched
	// the server's per-socket timers are.
	start       int64
	beats       []atomic.Int32
	closedEarly atomic.Int64
	stopping    atomic.Bool
	wg          sync.WaitGroup
}

type popFrame struct {
	Type           string `json:"type"`
	Seq            uint64 `json:"seq"`
	ConversationID string `json:"conversationId"`
}

// connect dials n clients, each sending a hello with a minted token and
// waiting for ready, with limited concurrency. tlsConfig is for a wss url.
func connect(ctx context.Context, url string, tlsConfig *tls.Config, secret []byte, n int, f *fleet) error {
	f.conns = make([]*websocket.Conn, n)
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 512, HandshakeTimeout: 10 * time.Second, TLSClientConfig: tlsConfig}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			tok, err := push.MintToken(secret, bridge.AgentID(agentID(i)), 24*time.Hour)
			if err != nil {
				return err
			}
			ws, resp, err := d.DialContext(gctx, url, http.Header{})
			if err != nil {
				return fmt.Errorf("dial client %d: %w", i, err)
			}
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			ws.SetReadLimit(1 << 20)
			_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteJSON(map[string]any{"type": "hello", "token": tok}); err != nil {
				ws.Close()
				return fmt.Errorf("hello client %d: %w", i, err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			var ready struct {
				Type    string `json:"type"`
				AgentID string `json:"agentId"`
			}
			if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" || ready.AgentID != agentID(i) {
				ws.Close()
				return fmt.Errorf("client %d: no ready (%v, %q)", i, err, ready.Type)
			}
			_ = ws.SetReadDeadline(time.Time{})
			f.conns[i] = ws
			f.wg.Add(1)
			go f.read(i, ws)
			return nil
		})
	}
	return g.Wait()
}

// read is the client's only goroutine: it reads frames, stamps pops, acks
// them (as the browser client does) and answers pings (gorilla's default
// ping handler, run inside ReadMessage).
func (f *fleet) read(i int, ws *websocket.Conn) {
	defer f.wg.Done()
	for {
		_, b, err := ws.ReadMessage()
		now := time.Now().UnixNano()
		if err != nil {
			if !f.stopping.Load() {
				f.closedEarly.Add(1)
			}
			return
		}
		f.frames.Add(1)
		var m popFrame
		if json.Unmarshal(b, &m) != nil {
			f.other.Add(1)
			continue
		}
		switch m.Type {
		case "heartbeat":
			f.heartbeats.Add(1)
			if k := (now - f.start) / int64(100*time.Millisecond); f.start != 0 && k >= 0 && k < int64(len(f.beats)) {
				f.beats[k].Add(1)
			}
			continue
		case "pop":
		default:
			f.other.Add(1)
			continue
		}
		_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ack","seq":`+strconv.FormatUint(m.Seq, 10)+`}`))
		ph, idx, ok := parseConvID(m.ConversationID)
		p := f.phases[ph]
		if !ok || p == nil || idx >= len(p.slots) {
			f.other.Add(1)
			continue
		}
		s := &p.slots[idx]
		if int(s.agent.Load()) != i {
			s.wrong.Add(1)
			continue
		}
		if s.n.Add(1) > 1 {
			continue // a duplicate; the first arrival counts
		}
		if ph == phaseBaseline && f.onBaseline != nil {
			go func() {
				f.onBaseline(s)
				p.got.Add(1)
			}()
			continue
		}
		s.t1.Store(now)
		p.got.Add(1)
	}
}

// close closes every client and waits for the readers.
func (f *fleet) close() {
	f.stopping.Store(true)
	for _, ws := range f.conns {
		if ws != nil {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			ws.Close()
		}
	}
	f.wg.Wait()
}

// probe measures how late a 5 ms timer fires in this process: the
// machine's own scheduling noise (other tenants, CPU saturation), which
// bounds what any latency measured on it can show.
type probe struct {
	mu   sync.Mutex
	late []float64 // ms
	stop chan struct{}
	done chan struct{}
}

func startProbe() *probe {
	p := &probe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		const every = 5 * time.Millisecond
		t := time.NewTimer(every)
		defer t.Stop()
		due := time.Now().Add(every)
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				// Not the value received: since Go 1.23 a timer channel
				// delivers the timer's scheduled time, without the delay.
				now := time.Now()
				p.mu.Lock()
				p.late = append(p.late, float64(now.Sub(due))/1e6)
				p.mu.Unlock()
				due = time.Now().Add(every)
				t.Reset(every)
			}
		}
	}()
	return p
}

// take returns the lateness recorded since the last take.
func (p *probe) take() []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.late
	p.late = nil
	return l
}

func (p *probe) close() { close(p.stop); <-p.done }

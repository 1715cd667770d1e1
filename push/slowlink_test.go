package push

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// slowLink is a loopback TCP proxy that stands for the network between an
// agent's browser and the push server: a one-way delay per direction, a
// bandwidth cap per direction, and a stall switch that stops forwarding
// in both directions without closing anything (a Wi-Fi handover: TCP
// keeps the connection, nothing moves, then everything resumes).
//
// It reads from each side only as fast as the cap lets bytes through, and
// its socket to the server has a small receive buffer, so the server's
// writes back up into its own socket as they would behind a real slow
// link rather than into this process's memory.
type slowLink struct {
	t      testing.TB
	ln     net.Listener
	target string
	down   linkDir // server → agent
	up     linkDir // agent → server

	mu       sync.Mutex
	stalled  chan struct{} // non-nil while stalled; closed when the stall ends
	downOnly bool          // the stall holds only server → agent
	conns    []net.Conn
	closed   bool
	wg       sync.WaitGroup
}

// linkDir is one direction's shape.
type linkDir struct {
	delay time.Duration // one-way
	bps   int           // bits per second; 0: uncapped
}

func newSlowLink(t testing.TB, target string, down, up linkDir) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{t: t, ln: ln, target: target, down: down, up: up}
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(l.close)
	return l
}

// addr is host:port of the proxy.
func (l *slowLink) addr() string { return l.ln.Addr().String() }

func (l *slowLink) stall() { l.stallDir(false) }

// stallDown stalls only what the server sends: what the agent sent
// before the stall (a hello) still arrives, and nothing it is sent does.
func (l *slowLink) stallDown() { l.stallDir(true) }

func (l *slowLink) stallDir(downOnly bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled == nil {
		l.stalled = make(chan struct{})
		l.downOnly = downOnly
	}
}

func (l *slowLink) resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled != nil {
		close(l.stalled)
		l.stalled = nil
	}
}

// waitFlowing returns once the link is not stalled for direction down
// (server → agent) or up.
func (l *slowLink) waitFlowing(down bool) {
	for {
		l.mu.Lock()
		ch := l.stalled
		if !down && l.downOnly {
			ch = nil
		}
		l.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}

func (l *slowLink) close() {
	l.mu.Lock()
	l.closed = true
	if l.stalled != nil {
		close(l.stalled)
		l.stalled = nil
	}
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	l.wg.Wait()
}

func (l *slowLink) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return false
	}
	l.conns = append(l.conns, c)
	return true
}

func smallRcvBuf(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
}

func (l *slowLink) accept() {
	defer l.wg.Done()
	for {
		a, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.track(a) {
			return
		}
		_ = a.(*net.TCPConn).SetReadBuffer(8 << 10)
		d := net.Dialer{Control: smallRcvBuf, Timeout: 5 * time.Second}
		b, err := d.Dial("tcp", l.target)
		if err != nil {
			_ = a.Close()
			continue
		}
		if !l.track(b) {
			_ = a.Close()
			return
		}
		l.wg.Add(2)
		go l.pipe(b, a, l.down, true)
		go l.pipe(a, b, l.up, false)
	}
}

type chunk struct {
	at   time.Time
	data []byte
}

// pipe forwards src to dst with dir's delay and cap, holding everything
// while the link is stalled. src's end is passed on as a half close.
func (l *slowLink) pipe(src, dst net.Conn, dir linkDir, down bool) {
	defer l.wg.Done()
	ch := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			l.waitFlowing(down)
			if _, err := dst.Write(c.data); err != nil {
				_ = src.Close()
				for range ch {
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	size := 1024
	if dir.bps > 0 {
		size = max(64, min(1024, dir.bps/8/50)) // about 20 ms of the link a read
	}
	next := time.Now()
	for {
		buf := make([]byte, size)
		n, err := src.Read(buf)
		if n > 0 {
			l.waitFlowing(down)
			now := time.Now()
			if dir.bps > 0 {
				next = later(next, now).Add(time.Duration(int64(n) * 8 * int64(time.Second) / int64(dir.bps)))
				time.Sleep(time.Until(next))
				now = next
			}
			ch <- chunk{at: now.Add(dir.delay), data: buf[:n]}
		}
		if err != nil {
			break
		}
	}
	close(ch)
	<-done
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// smallSndBufListener gives every socket the server accepts a small send
// buffer: behind a slow link the kernel's send buffer holds about what the
// connection's window does (tens of KB), not the megabytes loopback grows
// it to, and a write that finds it full waits for the link.
type smallSndBufListener struct{ net.Listener }

func (l smallSndBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.(*net.TCPConn).SetWriteBuffer(16 << 10)
	}
	return c, err
}

// newSlowEnv is newEnv (a real bus, jwt auth) whose listener gives each
// socket a small send buffer, logging to log.
func newSlowEnv(t testing.TB, cfg Config, log zerolog.Logger) *env {
	t.Helper()
	e := &env{t: t}
	e.bus = startBus(t)
	e.store = e.bus
	cfg.Auth, cfg.JWTSecret = AuthJWT, testSecret
	srv, err := New(cfg, e.store, nil, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.ln = ln
	e.base = "http://" + ln.Addr().String()
	e.wsURL = "ws://" + ln.Addr().String() + "/v1/ws"
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- srv.Run(ctx, smallSndBufListener{ln}) }()
	t.Cleanup(e.stop)
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	return e
}

var errNoFrame = errors.New("no frame")

// linkAgent is a protocol client (docs/agents.md §5) on the far side of a
// slowLink: it reads every frame, answers pings (gorilla does), acks each
// pop as it reads it, and hands the frames to the test with their time.
type linkAgent struct {
	ws     *websocket.Conn
	frames chan linkFrame
}

type linkFrame struct {
	m   msg
	at  time.Time
	err error // the socket ended
}

func (e *env) dialVia(l *slowLink, token string, lastSeq *uint64, epoch string) *linkAgent {
	e.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 20 * time.Second}
	ws, _, err := d.Dial("ws://"+l.addr()+"/v1/ws", nil)
	if err != nil {
		e.t.Fatalf("dial via the slow link: %v", err)
	}
	h := map[string]any{"type": "hello", "token": token}
	if lastSeq != nil {
		h["lastSeq"], h["epoch"] = *lastSeq, epoch
	}
	if err := ws.WriteJSON(h); err != nil {
		e.t.Fatal(err)
	}
	a := &linkAgent{ws: ws, frames: make(chan linkFrame, 4096)}
	e.t.Cleanup(func() { ws.Close() })
	go func() {
		defer close(a.frames)
		var wmu sync.Mutex
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				a.frames <- linkFrame{err: err, at: time.Now()}
				return
			}
			var m msg
			if json.Unmarshal(data, &m) != nil {
				continue
			}
			if m.Type == "pop" {
				wmu.Lock()
				_ = ws.WriteJSON(map[string]any{"type": "ack", "seq": m.Seq})
				wmu.Unlock()
			}
			a.frames <- linkFrame{m: m, at: time.Now()}
		}
	}()
	return a
}

// next returns the next frame that is not a heartbeat, or the socket's
// end, or errNoFrame after d.
func (a *linkAgent) next(d time.Duration) linkFrame {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case f, ok := <-a.frames:
			if !ok {
				return linkFrame{err: errors.New("socket ended")}
			}
			if f.err == nil && f.m.Type == "heartbeat" {
				continue
			}
			return f
		case <-t.C:
			return linkFrame{err: errNoFrame}
		}
	}
}

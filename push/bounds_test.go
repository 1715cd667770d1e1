package push

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A client that asks for the web assets and never reads the answers holds
// the handler in its write, with its goroutine and file descriptor, for as
// long as it likes: the agent listener has a read timeout and an idle
// timeout but no write timeout, so nothing ends it. Many such connections,
// from one client, keep the descriptors and memory that agent websockets
// (and Genesys, Dataverse and NATS sockets: one process) need. The server
// must give up on an answer that is not taken within its write timeout.
func TestServer_AClientThatNeverReadsIsCut(t *testing.T) {
	e := newEnv(t, Config{WriteTimeout: 300 * time.Millisecond}, newMemStore(), nil)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		// A small receive window, as a client that wants the server's
		// buffers to fill sets.
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 400 // pipelined, 400 × 22 KB: more than the kernel buffers hold
	req := "GET /web/screenpop-dynamics.js HTTP/1.1\r\nHost: " + e.ln.Addr().String() + "\r\n\r\n"
	go func() { _, _ = io.WriteString(conn, strings.Repeat(req, n)) }()

	// Not read for three write timeouts: the server should have given up.
	time.Sleep(3 * 300 * time.Millisecond)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	got := 0
	for ; got < n; got++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			break
		}
	}
	if got == n {
		t.Fatalf("all %d answers delivered to a client that did not read for %v: the server waited for it (no write timeout)", n, 3*300*time.Millisecond)
	}
}

// Each socket open without a hello is held for HelloTimeout (10 s), but
// nothing bounds how many: one client opening them faster than they time
// out holds thousands (about 9 KB of memory and a descriptor each), and
// the descriptors are the process's, which Genesys, Dataverse and NATS
// need too. Past Config.HelloPending an upgrade is refused (503), and a
// socket that says its hello frees its place.
func TestServer_SocketsWithoutAHelloAreCapped(t *testing.T) {
	const limit = 20
	e := newEnv(t, Config{HelloTimeout: 5 * time.Second, HelloPending: limit}, newMemStore(), nil)
	var held []*websocket.Conn
	refused := 0
	for range 3 * limit {
		ws, resp, err := e.dial(nil)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("dial: %v (response %v), want 503 past the limit", err, resp)
			}
			refused++
			continue
		}
		held = append(held, ws)
		t.Cleanup(func() { ws.Close() })
	}
	if len(held) > limit {
		t.Fatalf("%d sockets held open without a hello, want at most %d (%d refused)", len(held), limit, refused)
	}
	// A hello frees a place: an agent connects once a silent socket has
	// spoken.
	if err := held[0].WriteJSON(map[string]any{"type": "hello", "token": e.token("agent-a")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a place freed by the hello", func() bool {
		ws, _, err := e.dial(nil)
		if err != nil {
			return false
		}
		ws.Close()
		return true
	})
}

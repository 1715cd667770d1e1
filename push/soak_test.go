package push

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// TestServer_HTTPConnectionsDoNotStayForever: a connection on the agent
// listener that is not a websocket cannot hold its goroutine and file
// descriptor for good: one idle after a request (keep-alive) or one whose
// request body never comes (a slowloris) is closed by the server.
func TestServer_HTTPConnectionsDoNotStayForever(t *testing.T) {
	e := newEnv(t, Config{HelloTimeout: 300 * time.Millisecond, PingInterval: 250 * time.Millisecond, HeartbeatInterval: 250 * time.Millisecond, IdleTimeout: 500 * time.Millisecond}, newMemStore(), nil)
	for _, tc := range []struct {
		name, req string
		response  bool // a response comes before the server closes
	}{
		{"idle keep-alive", "GET /web/origins.json HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"body never sent", "GET /web/origins.json HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", false},
		{"body trickled", "GET /web/origins.json HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", e.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := io.WriteString(nc, tc.req); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			if tc.response {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			_, err = io.Copy(io.Discard, br)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the server still holds the connection after 5s")
			}
		})
	}
}

// TestServer_ChurnLeavesNothingBehind: agents' tabs that come and go all
// day, and clients that never say hello, send garbage or a refused token,
// leave no socket, agent, cached token or goroutine behind.
func TestServer_ChurnLeavesNothingBehind(t *testing.T) {
	e := newEnv(t, Config{HelloTimeout: 300 * time.Millisecond, Revalidate: 300 * time.Millisecond}, nil, nil)
	base := runtime.NumGoroutine()
	const agents = 60
	for i := range agents {
		agent := bridge.AgentID("agent-churn-" + itoa(i))
		e.publish(agent, "conv-churn-"+itoa(i))
		c, _ := e.connect(e.token(agent), nil, "")
		if m := c.next(); m.Type != "pop" {
			t.Fatalf("agent %d got %+v, want its pop", i, m)
		}
		c.ws.Close()
		bad := e.rawClient() // garbage first frame
		bad.send("garbage")
		bad.expectClose(CloseMalformed)
		refused := e.rawClient()
		refused.send(map[string]any{"type": "hello", "token": "not-a-token-" + itoa(i)})
		refused.expectClose(CloseInvalidToken)
		if i%10 == 0 {
			silent := e.rawClient() // never says hello
			silent.expectClose(CloseHelloTimeout)
		}
	}
	waitFor(t, 10*time.Second, "every socket, agent and cached token gone", func() bool {
		st := e.srv.Status().(Status)
		return st.Connections == 0 && st.Agents == 0 && st.CachedTokens == 0
	})
	// The embedded NATS server runs in this process: its goroutines for
	// the replays' consumers count too.
	waitFor(t, 10*time.Second, "goroutines back to where they were", func() bool {
		return runtime.NumGoroutine() <= base+2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.bus.JetStream().Stream(ctx, e.bus.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 1 {
		t.Fatalf("%d consumers on the stream after %d replays, want 1 (the follower)", n, agents)
	}
}

package push

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// FuzzConn_Browser is an agent's browser sending an arbitrary hello cursor
// (lastSeq, epoch, agentId: what sessionStorage held, or anything a page
// script wrote there) with a valid token of agent-a, and then an arbitrary
// frame, over a real websocket. The server must answer ready for the
// token's agent, replay only that agent's pops, each once, in order and
// after the cursor when the cursor applies (all of them when it is beyond
// the agent's newest pop, a store set back), then the heartbeat; and the
// frame after must close the socket with 4400 exactly when docs/agents.md
// says: not a JSON object, an ack without a numeric seq, or a second
// hello. A frame of another type is ignored.
func FuzzConn_Browser(f *testing.F) {
	for _, s := range []struct {
		hasSeq       bool
		lastSeq      uint64
		epoch, agent string
		frame        string
	}{
		{false, 0, "", "", `{"type":"ack","seq":1}`},
		{true, 1, "epoch-1", "agent-a", `{"type":"ack","seq":3}`},
		{true, 0, "epoch-1", "", `{"type":"ack"}`},
		{true, 2, "epoch-0", "", `{"type":"hello","token":"x"}`},
		{true, 1, "", "agent-b", `{"type":"ack","seq":-1}`},
		{true, 1 << 63, "epoch-1", "agent-a", `{"type":"later","seq":{"x":1}}`},
		{true, 3, "", "", `[]`},
		{false, 0, "", "", `null`},
		{false, 0, "", "", `{"type":"ack","seq":1.5}`},
		{false, 0, "", "", `{"type":"ack","seq":18446744073709551616}`},
		{false, 0, "", "", `{"type":"ack","seq":1,"type":"x"}`},
		{false, 0, "", "", `{"type":"","seq":1}`},
		{false, 0, "", "", "{\"type\":\"a\xffck\",\"seq\":1}"},
	} {
		f.Add(s.hasSeq, s.lastSeq, s.epoch, s.agent, []byte(s.frame))
	}
	store := newMemStore()
	now := time.Now()
	for _, p := range []struct {
		agent bridge.AgentID
		conv  string
	}{{"agent-a", "conv-1"}, {"agent-b", "conv-2"}, {"agent-a", "conv-3"}, {"agent-a", "conv-4"}} {
		store.add(testPop(p.agent, p.conv), now, false)
	}
	// Not testLogger(f): with -v it would write through f from the server's
	// goroutines while the fuzz function runs, which testing forbids.
	e := startEnvLog(f, Config{ReplayWindow: 24 * time.Hour, FreshWindow: 24 * time.Hour}, store, nil, zerolog.Nop())
	waitFor(f, 10*time.Second, "server ready", e.srv.Ready)
	token := e.token("agent-a")
	f.Fuzz(func(t *testing.T, hasSeq bool, lastSeq uint64, epoch, agent string, frame []byte) {
		if len(frame) > 8<<10 {
			return // the 1009 limit is another test's
		}
		ws, _, err := e.dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		h := map[string]any{"type": "hello", "token": token}
		if hasSeq {
			h["lastSeq"] = lastSeq
		}
		if epoch != "" {
			h["epoch"] = epoch
		}
		if agent != "" {
			h["agentId"] = agent
		}
		if err := ws.WriteJSON(h); err != nil {
			t.Fatal(err)
		}
		read := func() (msg, error) {
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, data, err := ws.ReadMessage()
			if err != nil {
				return msg{}, err
			}
			var m msg
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("frame %q: %v", data, err)
			}
			return m, nil
		}
		m, err := read()
		if err != nil || m.Type != "ready" || m.AgentID != "agent-a" || m.Epoch != "epoch-1" || m.Seq != 4 {
			t.Fatalf("first frame %+v (%v), want ready of agent-a at 4", m, err)
		}
		after := uint64(0)
		if hasSeq && (epoch == "" || epoch == "epoch-1") && (agent == "" || agent == "agent-a") {
			after = lastSeq
		}
		if after > 4 {
			// Beyond the agent's newest pop: from before a store set
			// back (docs/agents.md 5), the replay window from the start.
			after = 0
		}
		var got []uint64
		for {
			m, err := read()
			if err != nil {
				t.Fatalf("before the heartbeat: %v", err)
			}
			if m.Type == "heartbeat" {
				break
			}
			if m.Type != "pop" || m.AgentID != "agent-a" || m.Seq <= after || len(got) > 0 && m.Seq <= got[len(got)-1] {
				t.Fatalf("frame %+v after pops %v (cursor %d)", m, got, after)
			}
			got = append(got, m.Seq)
		}
		var want []uint64
		for _, s := range []uint64{1, 3, 4} {
			if s > after {
				want = append(want, s)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("replayed %v, want %v (cursor %d)", got, want, after)
		}

		if len(got) == 0 {
			return // nothing to ack: no way to see the frame was read
		}
		// The frame, then an ack of a pop sent: once that ack is counted
		// the server has read the frame and kept the socket.
		acked := e.srv.nAcked.Load()
		if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteJSON(map[string]any{"type": "ack", "seq": got[0]}); err != nil {
			t.Fatal(err)
		}
		closed := make(chan int, 1)
		go func() {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, _, err := ws.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						closed <- ce.Code
					} else {
						closed <- -1
					}
					return
				}
			}
		}()
		code := 0
		for deadline := time.Now().Add(10 * time.Second); code == 0; {
			select {
			case code = <-closed:
			case <-time.After(time.Millisecond):
				if e.srv.nAcked.Load() > acked {
					code = websocket.CloseNormalClosure // kept open
				} else if time.Now().After(deadline) {
					t.Fatalf("frame %q: neither closed nor read in 10 s", frame)
				}
			}
		}
		var head struct {
			Type string          `json:"type"`
			Seq  json.RawMessage `json:"seq"`
		}
		var seq uint64
		malformed := json.Unmarshal(frame, &head) != nil || head.Type == "" || head.Type == "hello" ||
			head.Type == "ack" && json.Unmarshal(head.Seq, &seq) != nil
		switch {
		case malformed && code != CloseMalformed:
			t.Fatalf("frame %q: close %d, want %d", frame, code, CloseMalformed)
		case !malformed && code != websocket.CloseNormalClosure:
			t.Fatalf("frame %q: close %d, want %d (ignored)", frame, code, websocket.CloseNormalClosure)
		}
	})
}

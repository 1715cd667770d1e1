package bus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/push"
)

// A page whose cursor is at its agent's newest pop (it had it live) says
// hello while the replica that answers the hello's direct read is behind
// the stream's leader: that replica's newest pop for the agent is an older
// one. Push must not take the cursor for one from before the stream was
// set back (a backup restored, writes lost to a power cut): it would send
// the page the pop it has again, and a ready frame whose seq, below the
// page's cursor, makes screenpop.js start its cursor afresh.
func TestConn_HelloFromABehindReplicaIsNoSetBack(t *testing.T) {
	c, _, stall := behindReplica(t, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const agent = bridge.AgentID("agent-cursor")

	secret := []byte("0123456789abcdef0123456789abcdef")
	auth, err := push.NewJWTAuthenticator(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := push.New(push.Config{Auth: push.AuthJWT, JWTSecret: secret}, c, auth, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.Serve(t, srv.Run)
	// Pages let in before the server follows the pops are told to resume
	// (4008) once it does, as at a daemon's start-up; this test is about
	// hellos to a server that follows, so it waits, as /readyz would.
	waitFor(t, 30*time.Second, srv.Ready)
	token, err := push.MintToken(secret, agent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(conv string) uint64 {
		t.Helper()
		if err := retry(10*time.Second, func(ctx context.Context) error { _, err := c.PublishDedup(ctx, pop(agent, conv)); return err }); err != nil {
			t.Fatalf("publish pop %s: %v", conv, err)
		}
		seq, err := c.LeaderLatestPop(ctx, agent)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}

	older := publish("conv-older")
	waitFor(t, 10*time.Second, func() bool { latest, err := c.LatestPop(ctx, agent); return err == nil && latest == older })
	// The daemon's node stalls; the agent's next pop is stored by the
	// leader and the other follower, and the page has it: its cursor.
	resume := stall(c.StreamName())
	cursor := publish("conv-cursor")

	// Ten pages' hellos while the replica is behind (each direct read goes
	// to any of the three replicas, so they meet it); it catches up then.
	type frame struct {
		Type    string
		Seq     uint64
		ID      string
		Code    int    // an error frame's, for a failure to say which
		Message string // "
	}
	var pages []*websocket.Conn
	behind := 0
	for i := range 10 {
		if l, err := c.LatestPop(ctx, agent); err == nil && l < cursor {
			behind++
		}
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteJSON(map[string]any{"type": "hello", "token": token, "lastSeq": cursor, "epoch": c.Epoch(), "agentId": agent}); err != nil {
			t.Fatal(err)
		}
		var ready frame
		ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" {
			t.Fatalf("hello %d: ready %+v, %v", i, ready, err)
		}
		if ready.Seq < cursor {
			t.Errorf("hello %d with the cursor at seq %d: ready frame's seq %d, below it (the page starts its cursor afresh)", i, cursor, ready.Seq)
		}
		pages = append(pages, ws)
	}
	t.Logf("older seq %d, cursor seq %d; %d of 10 direct reads beside the hellos met the replica behind", older, cursor, behind)
	resume()

	// The agent's next pop: each page gets it, and nothing before it.
	next := publish("conv-next")
	for i, ws := range pages {
		var got []uint64
		for {
			var f frame
			ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, data, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("page %d: waiting for the pop at seq %d (got %v): %v", i, next, got, err)
			}
			if err := json.Unmarshal(data, &f); err != nil {
				t.Fatal(err)
			}
			if f.Type != "pop" {
				continue
			}
			got = append(got, f.Seq)
			if f.Seq == next {
				break
			}
		}
		if len(got) != 1 {
			t.Errorf("page %d, its cursor at seq %d, got pops %v; want only the next one, seq %d", i, cursor, got, next)
		}
	}
}

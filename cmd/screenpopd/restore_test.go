package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// SCREENPOP_DATA_DIR restored from a backup (or a VM snapshot) taken before
// the last pops the agents' pages processed: the stream keeps its epoch, and
// the pops stored after the restore take sequences the pages have passed.
// A page that comes back once the stream has passed its cursor again (its
// agent's newest pop is beyond the cursor: the restart's reconciliation, a
// busy centre) must still get every pop of its agent stored since the
// restore and younger than the replay window, not only those above its old
// cursor: a pop of a call that rang meanwhile, stored at a sequence below
// the cursor, was dropped, and the agent never saw that call pop.
//
// The page here follows screenpop.js's rule: a pop at or below its cursor
// is taken as seen, unless the ready frame's seq is below the cursor
// (agents.md section 5: the client then starts its cursor afresh).
func TestDaemon_RestoredDataDirResumesEveryNewPop(t *testing.T) {
	r := restoredDataDir(t)
	agent, token, m3, epoch, call, busy := r.agent, r.token, r.m3, r.epoch, r.call, r.busy
	cursor := r.last.Seq
	// Another tab of the agent, fresh, shows what is popped; the agent's
	// page (cursor) is away meanwhile (its network, its backoff).
	watch, epoch3 := resumeAgent(t, m3.AgentURL(), token, 0, "", "")
	if epoch3 != epoch {
		t.Fatalf("epoch %q after the restore, want the backup's %q", epoch3, epoch)
	}
	wso3, _ := resumeAgent(t, m3.AgentURL(), r.otherToken, 0, "", "")
	x := call(agent)
	px := readPopFor(t, watch, x.ID())
	busy(wso3, 4)
	y := call(agent)
	py := readPopFor(t, watch, y.ID())
	if px.Seq > cursor || py.Seq <= cursor {
		t.Fatalf("setup: pops at seqs %d and %d, want one at or below the page's cursor %d and one above it", px.Seq, py.Seq, cursor)
	}

	// The agent's page comes back with its cursor from before the restore.
	page, readySeq := resumeAgentSeq(t, m3.AgentURL(), token, cursor, epoch, agent, "")
	got := map[string]uint64{}
	for _, p := range readReplay(t, page) {
		if p.Seq <= cursor && readySeq >= cursor {
			continue // screenpop.js: seen already
		}
		got[p.ConversationID] = p.Seq
	}
	for _, c := range []struct {
		name string
		conv *notificationstest.Conversation
		seq  uint64
	}{{"rang after the restore", x, px.Seq}, {"rang later", y, py.Seq}} {
		if _, ok := got[c.conv.ID()]; !ok {
			t.Errorf("the page resuming from seq %d (ready seq %d) never gets the pop of the call that %s (seq %d): got %v", cursor, readySeq, c.name, c.seq, got)
		}
	}
}

// The same restore, with the traffic after it repeating the traffic
// before it message for message (one agent's calls, as in a small centre
// or the demo): the agent's first new pop is stored at exactly the seq of
// the page's cursor, the pop it processed last before the restore. Only
// the pop's id tells them apart: screenpop.js names it in its hello
// (lastPopId). Before, the page took the new pop for the one it had seen
// and dropped it.
func TestDaemon_RestoredDataDirNewPopAtTheCursorsSeq(t *testing.T) {
	r := restoredDataDir(t)
	agent, token, m3, epoch, call, busy, last := r.agent, r.token, r.m3, r.epoch, r.call, r.busy, r.last
	watch, _ := resumeAgent(t, m3.AgentURL(), token, 0, "", "")
	wso3, _ := resumeAgent(t, m3.AgentURL(), r.otherToken, 0, "", "")
	busy(wso3, 4) // as before the restore
	x := call(agent)
	px := readPopFor(t, watch, x.ID())
	x.Disconnect()
	if px.Seq != last.Seq || px.ID == last.ID {
		t.Fatalf("setup: the new pop at seq %d (%s), want it at the cursor's seq %d under another id (%s)", px.Seq, px.ID, last.Seq, last.ID)
	}

	page, readySeq := resumeAgentSeq(t, m3.AgentURL(), token, last.Seq, epoch, agent, last.ID)
	got := map[string]uint64{}
	for _, p := range readReplay(t, page) {
		if p.Seq <= last.Seq && readySeq >= last.Seq {
			continue // screenpop.js: seen already
		}
		got[p.ConversationID] = p.Seq
	}
	if _, ok := got[x.ID()]; !ok {
		t.Errorf("the page resuming from its last pop %s at seq %d (ready seq %d) never gets the new pop at that seq, of the call that rang after the restore: got %v", last.ID, last.Seq, readySeq, got)
	}

	// A page whose cursor is the pop at that seq (it processed it) resumes
	// after it: nothing sent twice.
	again, readySeq := resumeAgentSeq(t, m3.AgentURL(), token, px.Seq, epoch, agent, px.ID)
	if readySeq < px.Seq {
		t.Errorf("a page whose last pop %s is at seq %d got ready seq %d: it would start afresh and be sent its pops again", px.ID, px.Seq, readySeq)
	}
	for _, p := range readReplay(t, again) {
		if p.Seq <= px.Seq {
			t.Errorf("a page resuming after seq %d was sent the pop at seq %d again", px.Seq, p.Seq)
		}
	}
}

// restored is a daemon started on a data directory restored from a
// backup taken after one pop of agent, while the agent's page went on to
// a later pop (last, its cursor) before the restore.
type restored struct {
	agent, token, otherToken string
	m3                       *Main
	epoch                    string
	last                     agentPop
	call                     func(who string) *notificationstest.Conversation
	// busy makes k calls of the other agent that pop and end, moving the
	// stream on by three messages each (alerting, pop, disconnected).
	busy func(ws *websocket.Conn, k int)
}

func restoredDataDir(t *testing.T) *restored {
	t.Helper()
	d, cfg, logs := demoEmulators(t, testEnv(t))
	agent, other := demoAgents[0].ID, demoAgents[1].ID
	token, otherToken := d.Genesys.AgentToken(agent), d.Genesys.AgentToken(other)
	n := 0
	call := func(who string) *notificationstest.Conversation {
		n++
		return d.Genesys.InboundCall(who, fmt.Sprintf("+131755502%02d", n), notificationstest.Options{}).Alert()
	}
	// busy makes k calls of the other agent that pop and end, moving the
	// stream on by three messages each (alerting, pop, disconnected).
	busy := func(ws *websocket.Conn, k int) {
		for range k {
			c := call(other)
			if p := readPopFor(t, ws, c.ID()); p.Seq == 0 {
				t.Fatal("pop without seq")
			}
			c.Disconnect()
		}
	}

	// The backup: the store after one pop of the agent.
	m1, stop1 := runDaemon(t, cfg, logs)
	ws, epoch := resumeAgent(t, m1.AgentURL(), token, 0, "", "")
	c1 := call(agent)
	readPopFor(t, ws, c1.ID())
	c1.Disconnect()
	stop1()
	backup := t.TempDir() + "/backup"
	if err := os.CopyFS(backup, os.DirFS(cfg.DataDir)); err != nil {
		t.Fatal(err)
	}

	// The day goes on: the page's cursor moves on with later pops.
	m2, stop2 := runDaemon(t, cfg, logs)
	ws2, _ := resumeAgent(t, m2.AgentURL(), token, 0, "", "")
	wso, _ := resumeAgent(t, m2.AgentURL(), otherToken, 0, "", "")
	busy(wso, 4)
	c2 := call(agent)
	last := readPopFor(t, ws2, c2.ID())
	c2.Disconnect()
	stop2()

	// The admin restores the backup.
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(cfg.DataDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	m3, _ := runDaemon(t, cfg, logs)
	return &restored{agent: agent, token: token, otherToken: otherToken, m3: m3, epoch: epoch, last: last, call: call, busy: busy}
}

// readPopFor reads pops from ws until the one of conversation conv.
func readPopFor(t *testing.T, ws *websocket.Conn, conv string) agentPop {
	t.Helper()
	for {
		if p := readPop(t, ws); p.ConversationID == conv {
			return p
		}
	}
}

// resumeAgentSeq is resumeAgent, returning the ready frame's seq; the
// hello names the pop at lastSeq when lastPopID is set.
func resumeAgentSeq(t *testing.T, base, token string, lastSeq uint64, epoch, agent, lastPopID string) (*websocket.Conn, uint64) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+base[len("http"):]+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	hello := map[string]any{"type": "hello", "token": token, "lastSeq": lastSeq, "epoch": epoch, "agentId": agent}
	if lastPopID != "" {
		hello["lastPopId"] = lastPopID
	}
	if err := ws.WriteJSON(hello); err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Type string
		Seq  uint64
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" {
		t.Fatalf("ready: %+v %v", ready, err)
	}
	return ws, ready.Seq
}

// readReplay reads the pops a hello is sent, up to the first heartbeat
// (which follows the replay at once).
func readReplay(t *testing.T, ws *websocket.Conn) []agentPop {
	t.Helper()
	var pops []agentPop
	ws.SetReadDeadline(time.Now().Add(40 * time.Second))
	for {
		var p agentPop
		if err := ws.ReadJSON(&p); err != nil {
			t.Fatalf("read replay: %v", err)
		}
		switch p.Type {
		case "pop":
			pops = append(pops, p)
		case "heartbeat":
			return pops
		}
	}
}

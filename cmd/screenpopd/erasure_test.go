package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDaemon_ErasingTheStore follows docs/operations.md 8, "Erasing", with
// the built-in server: every instance stopped, SCREENPOP_DATA_DIR/jetstream
// deleted. Then no file under SCREENPOP_DATA_DIR holds the caller, the
// next start makes the stream again, empty, the agent's page resumes on it
// by itself (its cursor is of the old stream), and the next call pops.
func TestDaemon_ErasingTheStore(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t))
	agent := demoAgents[0].ID
	token := d.Genesys.AgentToken(agent)
	const caller = "+13175550177"

	m1, stop1 := runDaemon(t, cfg, logs)
	ws, epoch := resumeAgent(t, m1.AgentURL(), token, 0, "", "")
	d.Genesys.InboundCall(agent, caller, notificationstest.Options{}).Alert()
	p1 := readPop(t, ws)
	stop1()
	if len(testenv.FilesHolding(t, cfg.DataDir, caller[2:])) == 0 {
		t.Fatal("the caller's number is in no file before the erasure: the test no longer tests it")
	}

	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "jetstream")); err != nil {
		t.Fatal(err)
	}
	if left := testenv.FilesHolding(t, cfg.DataDir, caller[2:]); len(left) != 0 {
		t.Fatalf("after the documented erasure the caller's number is still in %v", left)
	}

	m2, _ := runDaemon(t, cfg, logs)
	ws2, epoch2 := resumeAgent(t, m2.AgentURL(), token, p1.Seq, epoch, agent)
	if epoch2 == epoch {
		t.Fatalf("epoch %q after the stream was deleted: the same as before", epoch2)
	}
	next := d.Genesys.InboundCall(agent, "+13175550178", notificationstest.Options{})
	next.Alert()
	if p := readPop(t, ws2); p.ConversationID != next.ID() {
		t.Fatalf("first pop after the erasure for %s, want %s", p.ConversationID, next.ID())
	}
	if left := testenv.FilesHolding(t, cfg.DataDir, caller[2:]); len(left) != 0 {
		t.Errorf("the erased caller's number is back in %v", left)
	}
}

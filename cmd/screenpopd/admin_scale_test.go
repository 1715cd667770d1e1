package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// An instance watches up to 10,000 agents (GENESYS_AGENTS_FILE, 10
// channels). When the OAuth client's role lacks conversation:communication:view
// in the division most of them are in, Genesys rejects nearly every
// topic, and that is the incident during which the on-call engineer
// reads /status, often in a loop (`watch curl`). /status listed every
// rejected topic: 2 MB, 30-70 ms of encoding each time, which a loop of
// them spends on the cores the pops need (pops of the agents still
// watched went from 3 ms to 60 ms in the loop). /status must stay small
// whatever the number of agents, and still say how many are refused;
// the log has one line per refused agent (docs/setup.md).
func TestAdmin_StatusStaysSmallWithTenThousandRejectedAgents(t *testing.T) {
	const agents, allowed = 10000, 50
	cfg, g, _, ids := emulatedConfig(t, agents, 100000, notificationstest.Config{}, nil)
	for _, id := range ids[allowed:] {
		g.RejectTopicsFor(id, "")
	}
	cfg.GenesysAgents = nil
	file := filepath.Join(t.TempDir(), "agents.txt")
	writeAgentsFile(t, file, ids...)
	cfg.GenesysAgentsFile = file
	m, _ := runDaemonLog(t, cfg, zerolog.New(&syncbuf.Buffer{}).Level(zerolog.WarnLevel))
	admin := "http://" + m.AdminAddr()

	type genesysStatus struct {
		Agents              int               `json:"agents"`
		RejectedTopics      []json.RawMessage `json:"rejectedTopics"`
		RejectedTopicsTotal int               `json:"rejectedTopicsTotal"`
	}
	var st struct {
		Components struct {
			Genesys genesysStatus `json:"genesys"`
		} `json:"components"`
	}
	var body []byte
	waitFor(t, 60*time.Second, "every rejection recorded", func() bool {
		_, body = adminGet(t, admin+"/status")
		st.Components.Genesys = genesysStatus{}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("/status: %v", err)
		}
		gs := st.Components.Genesys
		return gs.RejectedTopicsTotal == agents-allowed || len(gs.RejectedTopics) == agents-allowed
	})
	gs := st.Components.Genesys
	if gs.Agents != agents {
		t.Errorf("/status genesys.agents = %d, want %d", gs.Agents, agents)
	}
	if gs.RejectedTopicsTotal != agents-allowed {
		t.Errorf("/status genesys.rejectedTopicsTotal = %d, want %d: the on-call cannot tell how many agents get no pops", gs.RejectedTopicsTotal, agents-allowed)
	}
	if len(gs.RejectedTopics) == 0 {
		t.Error("/status lists no rejected topic: the on-call has no example to start from")
	}
	t.Logf("/status: %d bytes, %d rejected topics listed of %d", len(body), len(gs.RejectedTopics), gs.RejectedTopicsTotal)
	const maxStatus = 64 << 10
	if len(body) > maxStatus {
		t.Errorf("/status is %d KB with %d rejected topics (%d listed), want at most %d KB whatever the number of agents",
			len(body)>>10, agents-allowed, len(gs.RejectedTopics), maxStatus>>10)
	}
}

package notifications_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// partStates records, per (conversation, agent), the states each of the
// agent's participants was handed on in, and whether through a
// reconciliation.
type partStates struct {
	mu         sync.Mutex
	seen       map[[3]string]bool // conversation, participant, state
	reconciled map[[3]string]bool
	done       chan struct{}
}

func collectPartStates(out <-chan bridge.Snapshot) *partStates {
	l := &partStates{seen: map[[3]string]bool{}, reconciled: map[[3]string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for s := range out {
			conv := gjson.GetBytes(s.Body, "id").Str
			gjson.GetBytes(s.Body, "participants").ForEach(func(_, p gjson.Result) bool {
				if p.Get("userId").Str == string(s.Agent) {
					k := [3]string{conv, p.Get("id").Str, p.Get("calls.0.state").Str}
					l.mu.Lock()
					l.seen[k] = true
					if s.Reconciled {
						l.reconciled[k] = true
					}
					l.mu.Unlock()
				}
				return true
			})
		}
	}()
	return l
}

func (l *partStates) has(conv, participant, state string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[[3]string{conv, participant, state}]
}

// A supervisor monitoring an agent's call (monitoredParticipantId; the same
// holds for coaching and barging) has no leg in it (docs/events.md: "is no
// leg"), so the reconciliation must not take the supervisor for "already
// connected" to the conversation (docs/genesys.md: "whether the agent had a
// connected leg in its last snapshot"). Here the agent escalates the call to
// the supervisor who was listening: a blind transfer that the supervisor
// answers while the socket is down. The supervisor's new leg must be
// fetched after the gap, as any call answered during a gap is, and so pop
// at first sight; taken for the monitor leg the supervisor was already on,
// it is skipped, and the supervisor, now talking to the customer, never
// gets the pop (the conversation's next snapshot is likely its hang-up).
func TestClient_AMonitoringSupervisorsTransferredLegAnsweredInAGapIsFetched(t *testing.T) {
	as := agents(2)
	agent, boss := as[0].ID, as[1].ID
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	col := collectPartStates(h.out)
	h.awaitStartupReconciliation()

	x := h.emu.InboundCall(agent, "+13175550150", notificationstest.Options{QueueID: "Q1", DNIS: "+18005551000"}).Alert().Connect()
	x.Monitor(boss, notificationstest.Monitoring)
	var monitor string
	for _, p := range gjson.GetBytes(x.Snapshot(), "participants").Array() {
		if p.Get("userId").Str == boss {
			monitor = p.Get("id").Str
		}
	}
	waitFor(t, 5*time.Second, "the supervisor's monitor participant handed on", func() bool { return col.has(x.ID(), monitor, "connected") })

	// The socket goes down; meanwhile the agent transfers the call to the
	// supervisor, who answers.
	h.emu.SetBlackhole(true)
	x.BlindTransfer(boss)
	leg := x.AgentParticipantID()
	x.Connect()
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()

	deadline := time.Now().Add(5 * time.Second)
	for !col.has(x.ID(), leg, "connected") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !col.has(x.ID(), leg, "connected") {
		t.Errorf("the supervisor's transferred leg, answered during the gap, was never handed on (conversation fetched %d times, for the agent's ended leg): "+
			"the reconciliation took the supervisor's monitor participant for a connected leg and skipped the conversation, so the supervisor's call never pops",
			h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+x.ID()))
	}
	h.stop()
	<-col.done
}

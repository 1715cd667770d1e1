package notifications_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

const membersPath = "/api/v2/routing/queues/"

// memberReads counts the GETs of queue q's member pages.
func memberReads(h *harness, q string) int {
	return h.emu.CountRequests(http.MethodGet, membersPath+q+"/members")
}

// A queue page answered 200 with its body cut (the emulator's model of a
// proxy that truncates an answer, framed as complete: GarbleConversation
// for conversations) is valid JSON up to the cut: the members before it
// parse, the nextUri after the entities is lost, and the page passes for
// the queue's last. The members after the cut stop being watched until a
// refresh reads the queue whole, and their calls do not pop.
func TestClient_AQueuePageWithACutBodyUnwatchesNoAgent(t *testing.T) {
	as := agents(150)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "all 150 members watched", func() bool {
		return h.client.Status().(notifications.Status).Agents == len(as)
	})

	h.emu.GarbleQueueMembers("Q1", true)
	before := memberReads(h, "Q1")
	deadline := time.Now().Add(5 * time.Second)
	for memberReads(h, "Q1") < before+5 && time.Now().Before(deadline) {
		if n := h.client.Status().(notifications.Status).Agents; n != len(as) {
			t.Fatalf("after a queue page with a cut body, %d agents watched, want %d: the cut page was taken for the whole queue", n, len(as))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.client.Status().(notifications.Status).Agents; n != len(as) {
		t.Fatalf("after queue pages with a cut body, %d agents watched, want %d", n, len(as))
	}
}

// A queue deleted in Genesys answers 404 for good. Its members are no
// longer members of anything watched: like the members who leave a queue
// they stop being watched (unless another queue or the agent list names
// them), as they would be after a restart. They were kept for good, and
// the 404 made the refresh retry at the error backoff (at most BackoffMax,
// 60 s) for ever, re-reading every other queue each time: 40 queues of
// 1,000 members are 400 pages a minute, more than the token's whole
// budget, which the handovers and reconciliations wait behind.
func TestClient_ADeletedQueuesMembersAreNoLongerWatched(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond,
		Queues: map[string][]string{"Q1": ids(as[:2]), "Q2": ids(as[1:])}},
		func(c *notifications.Config) {
			c.Queues = []string{"Q1", "Q2"}
			c.QueueRefresh = time.Second
		}, 64)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the three members watched", func() bool {
		return h.client.Status().(notifications.Status).Agents == 3
	})

	h.emu.DeleteQueue("Q2")
	waitFor(t, 5*time.Second, "the deleted queue's own member unwatched", func() bool {
		return !notifications.Watched(h.client, as[2].ID)
	})
	if !notifications.Watched(h.client, as[0].ID) || !notifications.Watched(h.client, as[1].ID) {
		t.Fatal("members of the remaining queue unwatched")
	}
	// From now on the queues are read at the refresh's pace (every 0.5
	// to 1 s), not at the error backoff's (150 to 300 ms).
	before := memberReads(h, "Q1")
	time.Sleep(2 * time.Second)
	if n := memberReads(h, "Q1") - before; n > 5 {
		t.Errorf("Q1 read %d times in 2 s with a refresh every second: a deleted queue makes every queue be re-read at the error backoff", n)
	}
}

// The same at start: a queue id that does not exist (deleted since the
// configuration was written) is a queue without members. It kept the
// client from ever being ready (/readyz 503 for good), and every other
// queue was re-read at the error backoff.
func TestClient_AMissingQueueAtStartHoldsNeitherReadinessNorTheBudget(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1", "Q2"}; c.QueueRefresh = time.Hour }, 64)
	waitFor(t, 5*time.Second, "the queues read", func() bool { return memberReads(h, "Q2") > 0 })
	time.Sleep(time.Second)
	if n := memberReads(h, "Q1"); n > 1 {
		t.Errorf("Q1 read %d times within a second with a refresh every hour: a missing queue makes every queue be re-read at the error backoff", n)
	}
	h.awaitReady(5 * time.Second)
	found := false
	for _, l := range h.logs.lines() {
		if strings.Contains(l, "Q2") && strings.Contains(l, `"level":"warn"`) && strings.Contains(l, "not found") {
			found = true
		}
	}
	if !found {
		t.Error("no warning naming the missing queue")
	}
}

// A queue the client may not read (403: the role lacks routing:queue:view
// in its division, or it fails for good in some other way) is retried at
// the error backoff, as documented; the queues that were read wait for
// the next refresh. Each retry re-read every queue: with 40 queues of
// 1,000 members, 400 pages a minute, the whole of the token's budget.
func TestClient_AQueueRefusedForGoodDoesNotReReadTheOthers(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:1]), "Q2": ids(as[1:])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1", "Q2"}; c.QueueRefresh = time.Hour }, 64,
		func(e *notificationstest.Emulator) {
			e.FailNext(http.MethodGet, membersPath+"Q2/", http.StatusForbidden, 0, 1<<20)
		})
	waitFor(t, 5*time.Second, "the refused queue retried", func() bool { return memberReads(h, "Q2") >= 3 })
	time.Sleep(time.Second)
	if n := memberReads(h, "Q2"); n < 5 {
		t.Errorf("the refused queue read %d times in over a second: it is to be retried at the error backoff", n)
	}
	if n := memberReads(h, "Q1"); n > 1 {
		t.Errorf("Q1 read %d times with a refresh every hour: one refused queue makes every queue be re-read at the error backoff", n)
	}
	if !notifications.Watched(h.client, as[0].ID) || notifications.Watched(h.client, as[1].ID) {
		t.Error("want the readable queue's member watched, the refused one's not")
	}
}

// A refresh refused with 429 stops at that queue and goes on from it after
// the Retry-After (docs/genesys.md). A queue refused earlier in the same
// pass (a 5xx) was skipped by that resumption, and not read again until
// the next full refresh (GENESYS_QUEUE_REFRESH, 5 m): at start its members
// were not watched and the client not ready for that long. And the wait
// was the earlier error's backoff, not the Retry-After.
func TestClient_AQueueRefusedBeforeA429IsReadAgain(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond,
		Queues: map[string][]string{"Q0": ids(as[:1]), "Q1": ids(as[1:2]), "Q2": ids(as[2:])}},
		func(c *notifications.Config) { c.Queues = []string{"Q0", "Q1", "Q2"}; c.QueueRefresh = time.Hour }, 64,
		func(e *notificationstest.Emulator) {
			e.FailNext(http.MethodGet, membersPath+"Q0/", http.StatusServiceUnavailable, 0, 1)
			e.FailNext(http.MethodGet, membersPath+"Q1/", http.StatusTooManyRequests, time.Second, 1)
		})
	h.awaitReady(5 * time.Second)
	for _, a := range as {
		if !notifications.Watched(h.client, a.ID) {
			t.Errorf("agent %s of a queue refused at start is not watched", a.ID)
		}
	}
	var refused time.Time
	for _, r := range h.emu.Requests() {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.Path, membersPath) {
			continue
		}
		switch {
		case r.Status == http.StatusTooManyRequests:
			refused = r.Time
		case !refused.IsZero() && r.Time.Sub(refused) < 900*time.Millisecond:
			t.Errorf("%s requested %v after a 429 with Retry-After 1 s", r.Path, r.Time.Sub(refused))
		}
	}
}

// states records, per (conversation, agent), the states the agent's call
// was seen in.
type states struct {
	mu   sync.Mutex
	seen map[[2]string]map[string]bool
	done chan struct{}
}

func collectStates(out <-chan bridge.Snapshot) *states {
	s := &states{seen: map[[2]string]map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for snap := range out {
			conv := gjson.GetBytes(snap.Body, "id").Str
			gjson.GetBytes(snap.Body, "participants").ForEach(func(_, p gjson.Result) bool {
				if p.Get("userId").Str == string(snap.Agent) {
					k := [2]string{conv, string(snap.Agent)}
					s.mu.Lock()
					if s.seen[k] == nil {
						s.seen[k] = map[string]bool{}
					}
					s.seen[k][p.Get("calls.0.state").Str] = true
					s.mu.Unlock()
				}
				return true
			})
		}
	}()
	return s
}

func (s *states) has(conv, agent, state string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[[2]string{conv, agent}][state]
}

// An agent removed from a watched queue while a call rings for them (or
// while on it) is still in that call: Genesys does not take a routed call
// back when the membership changes. With SCREENPOP_POP_ON=connected the
// pop is made at the answer, which came after the refresh had taken the
// agent's topic away: the call rang, the agent answered, and nothing
// popped. The agent stays watched until their calls end, then goes.
func TestClient_AnAgentWhoLeavesAQueueWhileACallRingsGetsItsAnswer(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	waitFor(t, 5*time.Second, "the members' topics delivered", func() bool { return h.emu.IsDelivered(topic) })

	call := h.emu.InboundCall(as[0].ID, "+13175550101", notificationstest.Options{QueueID: "Q1"}).Alert()
	waitFor(t, 3*time.Second, "the ringing call", func() bool { return col.has(call.ID(), as[0].ID, "alerting") })

	h.emu.SetQueueMembers("Q1", ids(as[1:]))
	reads := memberReads(h, "Q1")
	waitFor(t, 5*time.Second, "two refreshes read the change", func() bool { return memberReads(h, "Q1") >= reads+2 })
	time.Sleep(200 * time.Millisecond) // the PUT that would follow it
	call.Connect()
	waitFor(t, 3*time.Second, "the answer of the call that rang before the agent left the queue", func() bool {
		return col.has(call.ID(), as[0].ID, "connected")
	})

	call.Disconnect()
	waitFor(t, 5*time.Second, "the agent unwatched once the call ended", func() bool {
		return !notifications.Watched(h.client, as[0].ID) && !h.emu.IsDelivered(topic)
	})
	h.stop()
	<-col.done
}

// A shard whose agents all leave their queues closes its socket but keeps
// its channel, which still holds their topics (no PUT of the empty list).
// When agents join again and fill that shard, the socket is dialled to the
// same channel and delivers the departed agents' conversations until the
// new list is put: at once for a moment, and for as long as that PUT is
// refused (429, 5xx). Agents no longer watched get snapshots (and pops),
// while the ones who joined do not.
func TestClient_AnEmptiedShardDeliversNoDepartedAgent(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:2])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"}; c.TopicsPerChannel = 1 }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "both members delivered", func() bool { return h.emu.SubscribedConnected() == 2 })

	h.emu.SetQueueMembers("Q1", ids(as[:1])) // the second shard empties
	waitFor(t, 5*time.Second, "the departed member's topic no longer delivered", func() bool {
		return !h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations")
	})
	h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusServiceUnavailable, 0, 1<<20)
	h.emu.SetQueueMembers("Q1", []string{as[0].ID, as[2].ID}) // and fills again
	time.Sleep(500 * time.Millisecond)
	if h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations") {
		t.Errorf("the topic of an agent who left the queue is delivered again")
	}
	call := h.emu.InboundCall(as[1].ID, "+13175550102", notificationstest.Options{}).Alert()
	time.Sleep(300 * time.Millisecond)
	if col.has(legKey{call.ID(), call.AgentParticipantID(), as[1].ID}) {
		t.Errorf("a call of an agent who left the queue reached the bridge")
	}
	h.stop()
	<-col.done
}

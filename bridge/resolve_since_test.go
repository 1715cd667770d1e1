package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// popFor waits for the pop of conv for agent.
func (s *resolverStack) popFor(t *testing.T, conv bridge.ConversationID, agent bridge.AgentID) *bridge.Pop {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		for _, p := range s.pops {
			if p.ConversationID == conv && p.AgentID == agent {
				s.mu.Unlock()
				return p
			}
		}
		s.mu.Unlock()
		select {
		case <-s.got:
		case <-timeout:
			t.Fatalf("no pop of %s for %s", conv, agent)
		}
	}
}

// transferLeg is conv's leg for another agent (a transfer, a consult).
func transferLeg(first *bridge.Event, agent bridge.AgentID) *bridge.Event {
	e := *first
	e.Agent = bridge.AgentLeg{UserID: agent, ParticipantID: bridge.ParticipantID("p-" + string(agent))}
	e.ReceivedAt = bridge.NewTime(time.Now())
	return &e
}

// TestResolver_TransferAfterDeadlinePop: Dataverse is slow, the first
// agent's pop goes out as search at the deadline, and the lookup goes on
// and answers (nothing found) after that pop. The agent searches, finds
// nothing, saves the caller as a new contact, and transfers. The receiving
// agent's leg asks for an answer read since the first pop (Key.Since), but
// the cache stamps an answer with the time it arrived, not the time its
// request went out: the answer read before the contact existed passes for
// a fresh one, and the receiving agent gets create (a duplicate contact),
// the case Since was made for.
func TestResolver_TransferAfterDeadlinePop(t *testing.T) {
	defer goleak.VerifyNone(t)
	const num = "+14045550181"
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: 300 * time.Millisecond}, nil)
	defer s.stop()

	s.dv.SetLatency(time.Second)
	first := callEvent("slow-then-saved", num)
	s.publish(t, first)
	if p := s.popFor(t, first.ConversationID, first.Agent.UserID); p.Target.Action != bridge.ActionSearch {
		t.Fatalf("first pop %s, want search (the deadline)", p.Target.Action)
	}
	// The first lookup answers after the pop: wait for it (joining its flight).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if recs, err := s.dir.Lookup(ctx, bridge.Key{Kind: bridge.KeyPhone, Value: num}); err != nil || len(recs) != 0 {
		t.Fatalf("first lookup: %v, %v", recs, err)
	}
	s.dv.SetLatency(0)
	// The first agent saves the caller, then transfers.
	id := s.dv.AddContact(dataversetest.Contact{FirstName: "Nia", LastName: "New", Telephone1: num})
	second := transferLeg(first, "agent-2")
	s.publish(t, second)
	p := s.popFor(t, second.ConversationID, "agent-2")
	if p.Target.Action != bridge.ActionOpen || p.Target.ID != id {
		t.Fatalf("receiving agent's pop: %s %s, want open %s (the contact saved since the first pop)", p.Target.Action, p.Target.ID, id)
	}
}

// TestResolver_TransferInABusyCentre: the resolver keeps the
// conversations it popped in the last 10 minutes for their later legs
// (docs/dataverse.md, "Transfers look up again"), in a map bounded at
// 50,000 that is cleared whole once it holds 50,000 conversations of the
// last 10 minutes: every 100 s at the 500 pops a second the load tool
// drives, and every 10 minutes from 83 a second (10,000 agents on 2-minute
// calls). A transfer after a clearing reuses the answer cached for the
// first agent's pop: here the record the first agent merged away.
func TestResolver_TransferInABusyCentre(t *testing.T) {
	defer goleak.VerifyNone(t)
	const num = "+14045550182"
	var id string
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		id = dv.AddContact(dataversetest.Contact{FirstName: "Ola", LastName: "Twice", Telephone1: num})
	})
	defer s.stop()

	first := callEvent("busy-centre", num)
	s.publish(t, first)
	if p := s.popFor(t, first.ConversationID, first.Agent.UserID); p.Target.Action != bridge.ActionOpen || p.Target.ID != id {
		t.Fatalf("first pop %s %s, want open %s", p.Target.Action, p.Target.ID, id)
	}
	// The other calls of the next 100 s at 500 pops a second (well inside
	// 10 minutes).
	for i := range 50000 {
		s.r.RememberConversation(bridge.ConversationID(fmt.Sprintf("other-%06d", i)), time.Now())
	}
	// The first agent merges the record away (deactivated), then transfers.
	if err := s.dv.UpdateRecord("contacts", id, map[string]any{"statecode": 1, "statuscode": 2}); err != nil {
		t.Fatal(err)
	}
	second := transferLeg(first, "agent-2")
	s.publish(t, second)
	if p := s.popFor(t, second.ConversationID, "agent-2"); p.Target.Action != bridge.ActionCreate {
		t.Fatalf("receiving agent's pop: %s %s, want create (the record was merged away since the first pop)", p.Target.Action, p.Target.ID)
	}
}

// TestResolver_TransferWhileDataverseThrottled: the receiving agent's leg
// asks for an answer read since the first pop (Key.Since), but Dataverse
// answers 429 (service protection, Retry-After 30 s) or fails. The answer
// cached for the first pop is still within SCREENPOP_CACHE_TTL: the
// receiving agent must get that record, as before Since, not the search
// fallback of a caller nobody has looked up.
func TestResolver_TransferWhileDataverseThrottled(t *testing.T) {
	defer goleak.VerifyNone(t)
	const num = "+14045550183"
	var id string
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		id = dv.AddContact(dataversetest.Contact{FirstName: "Tia", LastName: "Throttled", Telephone1: num})
	})
	defer s.stop()

	first := callEvent("throttled-transfer", num)
	s.publish(t, first)
	if p := s.popFor(t, first.ConversationID, first.Agent.UserID); p.Target.Action != bridge.ActionOpen || p.Target.ID != id {
		t.Fatalf("first pop %s %s, want open %s", p.Target.Action, p.Target.ID, id)
	}
	s.dv.ThrottleNext(1, 30*time.Second)
	second := transferLeg(first, "agent-2")
	s.publish(t, second)
	if p := s.popFor(t, second.ConversationID, "agent-2"); p.Target.Action != bridge.ActionOpen || p.Target.ID != id {
		t.Fatalf("receiving agent's pop while Dataverse throttles: %s %s, want open %s (the answer cached for the first pop)", p.Target.Action, p.Target.ID, id)
	}
}

package bridge_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// TestNormalizer_EndedEmailWithReplyInFlightKeepsItsDirection: the agent
// sends a reply and ends the email at once: the participant has ended, its
// email disconnected, the reply still transmitting (a state the normalizer
// does not map). The disconnected event stands for the agent's inbound
// email: its direction and time are the email's, not the reply's.
func TestNormalizer_EndedEmailWithReplyInFlightKeepsItsDirection(t *testing.T) {
	n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	agent := bridge.AgentID("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
	const conv, leg = "c-mail-sent", "leg-mail"
	connected := time.Now().Add(-time.Minute)
	ended := time.Now().Add(-10 * time.Second)
	e1 := func(state string) wireComm {
		c := wireComm{"id": "e1", "state": state, "direction": "inbound", "subject": "Invoice", "peerId": "e-cust", "connectedTime": wireTime(connected)}
		if state == "disconnected" {
			c["disconnectedTime"] = wireTime(ended)
		}
		return c
	}
	reply := wireComm{"id": "e2", "state": "transmitting", "initialState": "connected", "direction": "outbound", "subject": "RE: Invoice", "connectedTime": wireTime(connected)}
	cust := wireComm{"id": "e-cust", "state": "connected", "direction": "inbound", "subject": "Invoice"}
	extra := map[string]any{"address": "jane@example.com", "name": "Jane Doe"}
	if evs := n.Normalize(wireSnapshot(t, agent, conv, "emails", cust, extra, wireAgentLeg(leg, agent, "emails", "", e1("connected")))); len(evs) != 1 || evs[0].Direction != bridge.DirectionInbound {
		t.Fatalf("connected: %+v", evs)
	}
	evs := n.Normalize(wireSnapshot(t, agent, conv, "emails", cust, extra,
		wireAgentLeg(leg, agent, "emails", wireTime(ended.Add(5*time.Second)), e1("disconnected"), reply)))
	if len(evs) != 1 || evs[0].State != bridge.StateDisconnected || !evs[0].LegEnded {
		t.Fatalf("disconnected: %+v", evs)
	}
	if evs[0].Direction != bridge.DirectionInbound {
		t.Errorf("disconnected event direction %q, want inbound (the reply's stood for the leg)", evs[0].Direction)
	}
	if !evs[0].OccurredAt.Time.Equal(ended.Truncate(time.Millisecond)) {
		t.Errorf("disconnected event occurredAt %v, want the email's disconnectedTime %v", evs[0].OccurredAt.Time, ended.Truncate(time.Millisecond))
	}
}

// TestNormalizer_DisconnectedCallNextToNoneEndsTheLeg: a call leg whose
// call has disconnected next to a communication in state none (or no state
// at all: nothing live) is over; it is reported disconnected with legEnded.
func TestNormalizer_DisconnectedCallNextToNoneEndsTheLeg(t *testing.T) {
	for _, st := range []string{"none", ""} {
		t.Run("state="+st, func(t *testing.T) {
			n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			agent := bridge.AgentID("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
			const conv, leg = "c-call", "leg-call"
			cust := wireComm{"id": "c-cust", "state": "connected", "direction": "inbound"}
			extra := map[string]any{"address": "tel:+16175550123"}
			c1 := func(state string) wireComm {
				c := wireComm{"id": "c1", "state": state, "direction": "inbound", "peerId": "c-cust", "connectedTime": wireTime(time.Now().Add(-time.Minute))}
				if state == "disconnected" {
					c["disconnectedTime"] = wireTime(time.Now())
				}
				return c
			}
			c2 := wireComm{"id": "c2", "direction": "inbound"}
			if st != "" {
				c2["state"] = st
			}
			if evs := n.Normalize(wireSnapshot(t, agent, conv, "calls", cust, extra, wireAgentLeg(leg, agent, "calls", "", c1("connected")))); len(evs) != 1 {
				t.Fatalf("connected: %+v", evs)
			}
			evs := n.Normalize(wireSnapshot(t, agent, conv, "calls", cust, extra, wireAgentLeg(leg, agent, "calls", "", c1("disconnected"), c2)))
			if len(evs) != 1 || evs[0].State != bridge.StateDisconnected || !evs[0].LegEnded {
				t.Fatalf("want one disconnected event with legEnded, got %+v", evs)
			}
		})
	}
}

package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Multi-party voice calls, written from the Conversationeventtopicparticipant
// model: a second agent conferenced in, an outside number conferenced in, a
// supervisor monitoring, coaching or barging (with purpose agent as well as
// user), and a customer who leaves the conference. For each snapshot on a
// watched user's topic, the events pin who gets a leg (and so a pop) and
// whom the events name as the customer.

type mpPart map[string]any

const (
	mpConv  = "c0c0c0c0-0000-4000-8000-00000000a001"
	mpAgB   = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	mpBoss  = "5e5e5e5e-3333-4333-8333-5e5e5e5e5e5e"
	mpPhone = "+16175550123"
	mpThird = "+13175550199"
)

func mpCall(id, state, dir string, extra map[string]any) []any {
	c := map[string]any{"id": id, "state": state, "direction": dir, "provider": "Edge"}
	for k, v := range extra {
		c[k] = v
	}
	return []any{c}
}

func mpCustomer(purpose, addr string, confined bool) mpPart {
	return mpPart{"id": "p-cust", "purpose": purpose, "name": "BOSTON MA", "address": "tel:" + addr, "connectedTime": "2025-03-04T15:00:00.000Z",
		"calls": mpCall("k-cust", "connected", "inbound", map[string]any{"confined": confined, "connectedTime": "2025-03-04T15:00:00.000Z",
			"self": map[string]any{"addressNormalized": "tel:" + addr}, "other": map[string]any{"addressNormalized": "tel:+18005551000"}})}
}

func mpAgent(id, user, purpose, state, dir string) mpPart {
	return mpPart{"id": id, "userId": user, "purpose": purpose, "calls": mpCall("k-"+id, state, dir,
		map[string]any{"initialState": state, "other": map[string]any{"addressNormalized": "tel:" + mpPhone}})}
}

func mpExternal(id, addr, state string) mpPart {
	return mpPart{"id": id, "purpose": "external", "address": "tel:" + addr, "name": "Colleague mobile",
		"calls": mpCall("k-"+id, state, "outbound", map[string]any{"self": map[string]any{"addressNormalized": "tel:" + addr}})}
}

func mpEnd(p mpPart, dt string) mpPart {
	q := mpPart{}
	for k, v := range p {
		q[k] = v
	}
	c := map[string]any{}
	for k, v := range p["calls"].([]any)[0].(map[string]any) {
		c[k] = v
	}
	c["state"], c["disconnectType"], c["disconnectedTime"] = "disconnected", dt, "2025-03-04T15:05:00.000Z"
	q["calls"], q["endTime"] = []any{c}, "2025-03-04T15:05:00.000Z"
	return q
}

func mpWith(p mpPart, kv ...any) mpPart {
	q := mpPart{}
	for k, v := range p {
		q[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q[kv[i].(string)] = kv[i+1]
	}
	return q
}

func mpSnap(t *testing.T, agent string, at int, parts ...mpPart) Snapshot {
	t.Helper()
	b, err := json.Marshal(map[string]any{"id": mpConv, "participants": parts})
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Topic: "v2.users." + agent + ".conversations", Agent: AgentID(agent), Body: b, ReceivedAt: fixtureEpoch.Add(time.Duration(at) * time.Second)}
}

func mpKeys(es []Event) string {
	var ks []string
	for _, e := range es {
		ks = append(ks, fmt.Sprintf("%s/%s/%s", e.Agent.ParticipantID, e.State, e.Customer.Phone))
		if e.Internal {
			ks[len(ks)-1] += "/internal"
		}
	}
	return strings.Join(ks, " ")
}

func TestNormalizer_MultiParty(t *testing.T) {
	A := string(fxAgentA)
	cust := mpCustomer("customer", mpPhone, false)
	held := mpCustomer("customer", mpPhone, true)
	a := mpAgent("p-a", A, "agent", "connected", "inbound")
	for _, tt := range []struct {
		name  string
		snaps func(t *testing.T) []Snapshot
		want  string // participant/state/customer phone of each event, in order
	}{
		{"SecondAgentConferenced", func(t *testing.T) []Snapshot {
			b := mpAgent("p-b", mpAgB, "user", "alerting", "inbound")
			return []Snapshot{
				mpSnap(t, A, 0, cust, a),
				mpSnap(t, A, 1, cust, a, b), mpSnap(t, mpAgB, 1, cust, a, b),
				mpSnap(t, A, 2, cust, a, mpWith(b, "calls", mpCall("k-p-b", "connected", "inbound", nil))),
				mpSnap(t, mpAgB, 2, cust, a, mpWith(b, "calls", mpCall("k-p-b", "connected", "inbound", nil))),
			}
		}, "p-a/connected/+16175550123 p-b/alerting/+16175550123 p-b/connected/+16175550123"},
		{"ExternalConferencedThenAgentLeaves", func(t *testing.T) []Snapshot {
			y := mpExternal("p-y", mpThird, "contacting")
			return []Snapshot{
				mpSnap(t, A, 0, cust, a),
				mpSnap(t, A, 1, held, a, mpWith(y, "consultParticipantId", "p-cust")),
				mpSnap(t, A, 2, cust, a, mpExternal("p-y", mpThird, "connected")),
				mpSnap(t, A, 3, cust, mpEnd(a, "transfer.conference"), mpExternal("p-y", mpThird, "connected")),
			}
		}, "p-a/connected/+16175550123 p-a/disconnected/+16175550123"},
		{"ExternalConferencedIntoOutboundCall", func(t *testing.T) []Snapshot {
			x := mpCustomer("external", mpPhone, false)
			ao := mpAgent("p-a", A, "agent", "connected", "outbound")
			return []Snapshot{
				mpSnap(t, A, 0, ao, x),
				mpSnap(t, A, 1, ao, x, mpExternal("p-y", mpThird, "contacting")),
				mpSnap(t, A, 2, ao, x, mpExternal("p-y", mpThird, "connected")),
				mpSnap(t, A, 3, mpEnd(ao, "client"), x, mpExternal("p-y", mpThird, "connected")),
			}
		}, "p-a/connected/+16175550123 p-a/disconnected/+16175550123"},
		{"ConsultCallInAgentsOwnParticipant", func(t *testing.T) []Snapshot {
			two := mpWith(a, "calls", []any{
				a["calls"].([]any)[0],
				map[string]any{"id": "k-a2", "state": "dialing", "initialState": "dialing", "direction": "outbound", "other": map[string]any{"addressNormalized": "tel:" + mpThird}},
			})
			return []Snapshot{mpSnap(t, A, 0, cust, a), mpSnap(t, A, 1, held, two, mpExternal("p-y", mpThird, "contacting"))}
		}, "p-a/connected/+16175550123"},
		{"MonitorCoachBargeAsAgentPurpose", func(t *testing.T) []Snapshot {
			mon := mpWith(mpAgent("p-s1", mpBoss, "agent", "alerting", "outbound"), "monitoredParticipantId", "p-a")
			coach := mpWith(mpAgent("p-s2", mpBoss, "agent", "connected", "outbound"), "coachedParticipantId", "p-a")
			barge := mpWith(mpAgent("p-s3", mpBoss, "user", "connected", "outbound"), "bargedParticipantId", "p-a")
			return []Snapshot{
				mpSnap(t, mpBoss, 0, cust, a, mon),
				mpSnap(t, mpBoss, 1, cust, a, mpWith(mon, "calls", mpCall("k-p-s1", "connected", "outbound", nil))),
				mpSnap(t, mpBoss, 2, cust, a, mpEnd(mon, "client"), coach),
				mpSnap(t, mpBoss, 3, cust, a, mpEnd(mon, "client"), mpEnd(coach, "client"), barge),
				mpSnap(t, mpBoss, 4, cust, mpEnd(a, "client"), mpEnd(mon, "client"), mpEnd(coach, "client"), barge),
			}
		}, ""},
		{"CustomerLeavesTwoAgentsStay", func(t *testing.T) []Snapshot {
			b := mpAgent("p-b", mpAgB, "agent", "connected", "inbound")
			gone := mpEnd(cust, "peer")
			return []Snapshot{
				mpSnap(t, A, 0, cust, a, b), mpSnap(t, mpAgB, 0, cust, a, b),
				mpSnap(t, A, 1, gone, a, b), mpSnap(t, mpAgB, 1, gone, a, b),
				mpSnap(t, A, 2, gone, mpEnd(a, "client"), b), mpSnap(t, mpAgB, 2, gone, mpEnd(a, "client"), b),
				mpSnap(t, mpAgB, 3, gone, mpEnd(a, "client"), mpEnd(b, "client")),
			}
		}, "p-a/connected/+16175550123 p-b/connected/+16175550123 p-a/disconnected/+16175550123 p-b/disconnected/+16175550123"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			got := normalizeAll(n, tt.snaps(t))
			if g := mpKeys(got); g != tt.want {
				t.Errorf("events\n got %q\nwant %q\n%s", g, tt.want, dumpEvents(got))
			}
		})
	}
}

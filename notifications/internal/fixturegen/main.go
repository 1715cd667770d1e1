// Command fixturegen writes the conversation-snapshot fixtures that package
// bridge's tests read (bridge/testdata/snapshots/*.json), built from the
// Genesys Go SDK's topic models (platformclientv2.Conversationeventtopic*) and
// marshalled by the SDK itself, so the fixtures have the field names, the
// nesting and the timestamp format of real v2.users.{id}.conversations
// notifications without bridge's tests linking the SDK.
//
// Run it from the module root after changing a case, and commit the output:
//
//	go run ./notifications/internal/fixturegen
//
// Each file is a JSON array of notification frames in delivery order
// ({"topicName","version","metadata","eventBody"}). A snapshot goes to the
// topic of every user participant of the conversation, as Genesys sends it,
// so a stream for a transfer interleaves both agents' topics. Ids are
// deterministic UUIDs: see ids below, which bridge's tests mirror.
//
// The output is deterministic: running it twice gives the same bytes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	pc "github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
)

func main() {
	out := flag.String("out", "bridge/testdata/snapshots", "directory to write the fixtures to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "fixturegen:", err)
		os.Exit(1)
	}
}

func run(dir string) error { return generate(dir, os.Stdout) }

func generate(dir string, progress io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range cases {
		s := &stream{}
		c.build(s)
		b, err := json.MarshalIndent(s.frames, "", " ")
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		path := filepath.Join(dir, c.name+".json")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(progress, "%s: %d frames\n", path, len(s.frames))
	}
	return nil
}

// Ids. bridge/normalize_test.go mirrors these.
const (
	agentA = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	agentB = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	agentC = "cccccccc-3333-4333-8333-cccccccccccc"
	queueS = "5a1e5000-0000-4000-8000-000000000001" // Sales
	queueC = "c4a70000-0000-4000-8000-000000000002" // Chat
	divID  = "d1d1d1d1-0000-4000-8000-000000000001"
	flowID = "f1f1f1f1-0000-4000-8000-000000000001"
)

// Participant roles, the first group of a participant id.
const (
	roleCustomer = 1
	roleIVR      = 2
	roleACD      = 3
	roleAgentA   = 10
	roleAgentA2  = 11
	roleAgentB   = 20
	roleAgentC   = 25
	roleExternal = 30
	roleExt2     = 31
	roleFlow     = 40
)

func convID(caseNo int) string { return fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", caseNo) }
func partID(caseNo, role int) string {
	return fmt.Sprintf("%08d-0000-4000-8000-%012d", role, caseNo)
}
func commID(caseNo, role, n int) string {
	return fmt.Sprintf("%08d-%04d-4000-9000-%012d", role, n, caseNo)
}

var t0 = time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)

func at(sec int) *time.Time { t := t0.Add(time.Duration(sec) * time.Second); return &t }

func ptr[T any](v T) *T { return &v }

// stream collects the frames of one fixture.
type stream struct {
	frames []frameJSON
	corr   int
}

type frameJSON struct {
	TopicName string            `json:"topicName"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata"`
	EventBody json.RawMessage   `json:"eventBody"`
}

func topic(user string) string { return "v2.users." + user + ".conversations" }

// send marshals c with the SDK's model and delivers it to the topic of every
// user participant, once each, in participant order.
func (s *stream) send(c *conv) {
	body, err := json.Marshal(c.model())
	if err != nil {
		panic(err)
	}
	seen := map[string]bool{}
	for _, p := range c.parts {
		if p.UserId != nil && !seen[*p.UserId] {
			seen[*p.UserId] = true
			s.raw(*p.UserId, body)
		}
	}
}

// edit marshals c, lets fn change the generic JSON (to write nulls or
// drop fields, which the SDK's omitempty models never do) and delivers it to
// user.
func (s *stream) edit(user string, c *conv, fn func(m map[string]any)) {
	body, err := json.Marshal(c.model())
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		panic(err)
	}
	fn(m)
	body, err = json.Marshal(m)
	if err != nil {
		panic(err)
	}
	s.raw(user, body)
}

func (s *stream) raw(user string, body []byte) {
	s.corr++
	s.frames = append(s.frames, frameJSON{
		TopicName: topic(user), Version: "2",
		Metadata:  map[string]string{"CorrelationId": fmt.Sprintf("%08x-0000-4000-8000-%012d", s.corr, len(s.frames))},
		EventBody: body,
	})
}

// conv is a conversation being built; its participants are mutated between
// frames.
type conv struct {
	no        int
	parts     []*pc.Conversationeventtopicparticipant
	transfers []pc.Conversationeventtopictransferresponse
}

func newConv(no int) *conv { return &conv{no: no} }

func (c *conv) model() pc.Conversationeventtopicconversation {
	parts := make([]pc.Conversationeventtopicparticipant, len(c.parts))
	for i, p := range c.parts {
		parts[i] = *p
	}
	m := pc.Conversationeventtopicconversation{
		Id:              ptr(convID(c.no)),
		MaxParticipants: ptr(10),
		Participants:    &parts,
		RecordingState:  ptr("none"),
		SecurePause:     ptr(false),
		Divisions: &[]pc.Conversationeventtopicconversationdivisionmembership{{
			Division: &pc.Conversationeventtopicdomainentityref{Id: ptr(divID), SelfUri: ptr("/api/v2/authorization/divisions/" + divID)},
			Entities: &[]pc.Conversationeventtopicdivisionentityref{{Id: ptr(queueS), SelfUri: ptr("/api/v2/routing/queues/" + queueS)}},
		}},
	}
	if len(c.transfers) > 0 {
		tr := append([]pc.Conversationeventtopictransferresponse(nil), c.transfers...)
		m.RecentTransfers = &tr
	}
	return m
}

func (c *conv) add(p *pc.Conversationeventtopicparticipant) *pc.Conversationeventtopicparticipant {
	c.parts = append(c.parts, p)
	return p
}

func addr(name, norm string) *pc.Conversationeventtopicaddress {
	a := &pc.Conversationeventtopicaddress{AddressNormalized: ptr(norm), AddressRaw: ptr(norm)}
	if name != "" {
		a.Name, a.NameRaw = ptr(name), ptr(name)
	}
	if len(norm) > 6 && norm[:5] == "tel:+" {
		a.AddressDisplayable = ptr(norm[4:])
	}
	return a
}

func qms(alertSec int) *pc.Conversationeventtopicqueuemediasettings {
	return &pc.Conversationeventtopicqueuemediasettings{AlertingTimeoutSeconds: ptr(alertSec), EnableAutoAnswer: ptr(false),
		AutoAnswerAlertToneSeconds: ptr(float32(0)), ManualAnswerAlertToneSeconds: ptr(float32(3))}
}

func routing(queue string) *pc.Conversationeventtopicconversationroutingdata {
	return &pc.Conversationeventtopicconversationroutingdata{
		Queue: &pc.Conversationeventtopicurireference{Id: ptr(queue), Name: ptr("Sales")}, Priority: ptr(0),
		Language: &pc.Conversationeventtopicurireference{Id: ptr("1a2b0000-0000-4000-8000-000000000001"), Name: ptr("English")},
		Skills:   &[]pc.Conversationeventtopicurireference{{Id: ptr("5c111000-0000-4000-8000-000000000001"), Name: ptr("Billing")}},
		ScoredAgents: &[]pc.Conversationeventtopicscoredagent{
			{Agent: &pc.Conversationeventtopicurireference{Id: ptr(agentA), Name: ptr("Alice Agent")}, Score: ptr(90)},
			{Agent: &pc.Conversationeventtopicurireference{Id: ptr(agentB), Name: ptr("Bob Agent")}, Score: ptr(80)},
		},
	}
}

// customerCall is an inbound caller who dialled dnis, already through the IVR.
func customerCall(c *conv, ani, dnis, name string, attrs map[string]string) *pc.Conversationeventtopicparticipant {
	return c.add(&pc.Conversationeventtopicparticipant{
		Id: ptr(partID(c.no, roleCustomer)), ConnectedTime: at(1), Name: ptr(name), Purpose: ptr("customer"),
		Address: ptr("tel:" + ani), WrapupRequired: ptr(false), Attributes: &attrs, MediaRoles: &[]string{"full"},
		Calls: &[]pc.Conversationeventtopiccall{{
			Id: ptr(commID(c.no, roleCustomer, 1)), State: ptr("connected"), InitialState: ptr("offering"), Direction: ptr("inbound"),
			Recording: ptr(false), RecordingState: ptr("none"), Muted: ptr(false), Confined: ptr(false), Held: ptr(false), SecurePause: ptr(false),
			Provider: ptr("Edge"), ConnectedTime: at(1), Self: addr(name, "tel:"+ani), Other: addr("", "tel:"+dnis),
		}},
	})
}

func ivr(c *conv, peer string) *pc.Conversationeventtopicparticipant {
	return c.add(&pc.Conversationeventtopicparticipant{
		Id: ptr(partID(c.no, roleIVR)), ConnectedTime: at(1), EndTime: at(30), Name: ptr("Main IVR"), Purpose: ptr("ivr"),
		WrapupRequired: ptr(false), Attributes: &map[string]string{},
		Calls: &[]pc.Conversationeventtopiccall{{
			Id: ptr(commID(c.no, roleIVR, 1)), State: ptr("disconnected"), DisconnectType: ptr("transfer"), Direction: ptr("inbound"),
			Provider: ptr("Edge"), PeerId: ptr(peer), ConnectedTime: at(1), DisconnectedTime: at(30), Held: ptr(false),
		}},
	})
}

func acd(c *conv, queue, peer string) *pc.Conversationeventtopicparticipant {
	return c.add(&pc.Conversationeventtopicparticipant{
		Id: ptr(partID(c.no, roleACD)), ConnectedTime: at(30), QueueId: ptr(queue), Name: ptr("Sales"), Purpose: ptr("acd"),
		WrapupRequired: ptr(false), ConversationRoutingData: routing(queue), Attributes: &map[string]string{},
		Calls: &[]pc.Conversationeventtopiccall{{
			Id: ptr(commID(c.no, roleACD, 1)), State: ptr("connected"), Direction: ptr("inbound"), Provider: ptr("Edge"),
			PeerId: ptr(peer), ConnectedTime: at(30), Held: ptr(false),
		}},
	})
}

// agentCall is an agent's call leg.
func agentCall(c *conv, role int, user, name, queue, state, direction, peer, other string) *pc.Conversationeventtopicparticipant {
	p := &pc.Conversationeventtopicparticipant{
		Id: ptr(partID(c.no, role)), Name: ptr(name), UserId: ptr(user), Purpose: ptr("agent"),
		WrapupRequired: ptr(true), WrapupExpected: ptr(true), WrapupPrompt: ptr("optional"), WrapupTimeoutMs: ptr(60000),
		AlertingTimeoutMs: ptr(8000), Attributes: &map[string]string{}, MediaRoles: &[]string{"full"}, ScreenRecordingState: ptr("none"),
		Calls: &[]pc.Conversationeventtopiccall{{
			Id: ptr(commID(c.no, role, 1)), State: ptr(state), InitialState: ptr(state), Direction: ptr(direction),
			Recording: ptr(false), RecordingState: ptr("none"), Muted: ptr(false), Confined: ptr(false), Held: ptr(false), SecurePause: ptr(false),
			Provider: ptr("Edge"), PeerId: ptr(peer), AfterCallWorkRequired: ptr(false), QueueMediaSettings: qms(8),
			Self: addr(name, "sip:"+user[:8]+"@example.invalid"), Other: addr("", other),
		}},
	}
	if queue != "" {
		p.QueueId = ptr(queue)
		p.ConversationRoutingData = routing(queue)
	}
	return c.add(p)
}

// callState moves a participant's call to state at second sec, as Genesys
// writes it: connected sets connectedTime on the leg and the communication;
// disconnected sets disconnectedTime, disconnectType and the participant's
// endTime.
func callState(p *pc.Conversationeventtopicparticipant, state string, sec int, disconnectType string) {
	call := &(*p.Calls)[0]
	call.State = ptr(state)
	switch state {
	case "connected":
		call.ConnectedTime = at(sec)
		p.ConnectedTime = at(sec)
	case "disconnected":
		call.DisconnectedTime = at(sec)
		call.DisconnectType = ptr(disconnectType)
		p.EndTime = at(sec)
		if p.Purpose != nil && *p.Purpose == "agent" {
			p.StartAcwTime = at(sec)
			call.AfterCallWork = &pc.Conversationeventtopicaftercallwork{State: ptr("pending"), StartTime: at(sec)}
		}
	}
}

// inbound builds the common start: customer, IVR, ACD, and agent A alerting.
func inbound(no int) (*conv, *pc.Conversationeventtopicparticipant, *pc.Conversationeventtopicparticipant) {
	c := newConv(no)
	cust := customerCall(c, "+16175550123", "+18005551000", "BOSTON MA", map[string]string{
		"AccountId": "778812", "IvrIntent": "billing", "screenpop.entity": "", "Language": "en-us"})
	ivr(c, commID(no, roleCustomer, 1))
	acd(c, queueS, commID(no, roleCustomer, 1))
	a := agentCall(c, roleAgentA, agentA, "Alice Agent", queueS, "alerting", "inbound", commID(no, roleCustomer, 1), "tel:+16175550123")
	return c, cust, a
}

func endACD(c *conv, sec int) {
	for _, p := range c.parts {
		if *p.Purpose == "acd" && p.EndTime == nil {
			callState(p, "disconnected", sec, "transfer")
		}
	}
}

type fixtureCase struct {
	name  string
	build func(s *stream)
}

var cases = []fixtureCase{
	{"inbound_call", func(s *stream) { // 1
		c, cust, a := inbound(1)
		s.send(c)
		(*cust.Attributes)["IvrIntent"] = "billing-dispute" // attribute write: a snapshot with no leg change
		s.send(c)
		callState(a, "connected", 40, "")
		endACD(c, 40)
		s.send(c)
		(*a.Calls)[0].Held, (*a.Calls)[0].StartHoldTime = ptr(true), at(60) // hold: no leg change
		(*cust.Calls)[0].Confined = ptr(true)
		s.send(c)
		(*a.Calls)[0].Held, (*a.Calls)[0].StartHoldTime = ptr(false), nil
		(*cust.Calls)[0].Confined = ptr(false)
		s.send(c)
		callState(a, "disconnected", 200, "client")
		callState(cust, "disconnected", 200, "peer")
		s.send(c)
		a.Wrapup = &pc.Conversationeventtopicwrapup{Code: ptr("0bc00000-0000-4000-8000-000000000001"), Notes: ptr("resolved"), DurationSeconds: ptr(20), EndTime: at(220)}
		a.EndAcwTime = at(220)
		s.send(c)
	}},
	{"duplicate_snapshot", func(s *stream) { // 2
		c, _, a := inbound(2)
		s.send(c)
		s.send(c) // the same snapshot twice (reconnect, overlapping channels)
		callState(a, "connected", 40, "")
		endACD(c, 40)
		s.send(c)
		s.send(c)
	}},
	{"out_of_order", func(s *stream) { // 3
		c, cust, a := inbound(3)
		alerting, _ := json.Marshal(c.model())
		callState(a, "connected", 40, "")
		endACD(c, 40)
		connected, _ := json.Marshal(c.model())
		callState(a, "disconnected", 200, "client")
		callState(cust, "disconnected", 200, "peer")
		disconnected, _ := json.Marshal(c.model())
		s.raw(agentA, connected)
		s.raw(agentA, alerting) // late: never back from connected to alerting
		s.raw(agentA, disconnected)
		s.raw(agentA, connected) // late: disconnected is final
		s.raw(agentA, alerting)
	}},
	{"blind_transfer", func(s *stream) { // 4
		c, _, a := inbound(4)
		s.send(c)
		callState(a, "connected", 40, "")
		endACD(c, 40)
		s.send(c)
		callState(a, "disconnected", 100, "transfer")
		b := agentCall(c, roleAgentB, agentB, "Bob Agent", "", "alerting", "inbound", commID(4, roleCustomer, 1), "tel:+16175550123")
		c.transfers = []pc.Conversationeventtopictransferresponse{{Id: ptr("7a000000-0000-4000-8000-000000000004"), State: ptr("active"),
			DateIssued: at(99), Initiator: &pc.Conversationeventtopictransferinitiator{UserId: ptr(agentA)},
			Destination: &pc.Conversationeventtopictransferdestination{UserId: ptr(agentB)}, TransferType: ptr("unattended")}}
		s.send(c)
		callState(b, "connected", 105, "")
		c.transfers[0].State = ptr("complete")
		s.send(c)
	}},
	{"consult_transfer", func(s *stream) { // 5
		c, cust, a := inbound(5)
		callState(a, "connected", 40, "")
		endACD(c, 40)
		s.send(c)
		// A consults B: the customer is held, B is offered the conversation
		// with a consult link to the customer; B's call's "other" is A.
		(*cust.Calls)[0].Confined = ptr(true)
		b := agentCall(c, roleAgentB, agentB, "Bob Agent", "", "alerting", "inbound", commID(5, roleAgentA, 1), "sip:aaaaaaaa@example.invalid")
		b.ConsultParticipantId = ptr(partID(5, roleCustomer))
		c.transfers = []pc.Conversationeventtopictransferresponse{{Id: ptr("7a000000-0000-4000-8000-000000000005"), State: ptr("pending"),
			DateIssued: at(90), Initiator: &pc.Conversationeventtopictransferinitiator{UserId: ptr(agentA)},
			Destination: &pc.Conversationeventtopictransferdestination{UserId: ptr(agentB)}, TransferType: ptr("attended")}}
		s.send(c)
		callState(b, "connected", 95, "")
		s.send(c)
		callState(a, "disconnected", 120, "transfer.consult")
		(*cust.Calls)[0].Confined = ptr(false)
		c.transfers[0].State = ptr("complete")
		s.send(c)
	}},
	{"outbound_call", func(s *stream) { // 6
		c := newConv(6)
		a := agentCall(c, roleAgentA, agentA, "Alice Agent", "", "dialing", "outbound", commID(6, roleExternal, 1), "tel:+13175550199")
		a.Purpose = ptr("user")
		ext := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(6, roleExternal)), Name: ptr("Indianapolis IN"), Purpose: ptr("external"), Address: ptr("tel:+13175550199"),
			WrapupRequired: ptr(false), Attributes: &map[string]string{},
			Calls: &[]pc.Conversationeventtopiccall{{Id: ptr(commID(6, roleExternal, 1)), State: ptr("contacting"), InitialState: ptr("contacting"),
				Direction: ptr("outbound"), Provider: ptr("Edge"), PeerId: ptr(commID(6, roleAgentA, 1)),
				Self: addr("", "tel:+13175550199"), Other: addr("Alice Agent", "sip:aaaaaaaa@example.invalid")}},
		})
		s.send(c)
		(*ext.Calls)[0].State = ptr("alerting")
		s.send(c) // the far end rings: the agent is still dialing
		callState(a, "connected", 12, "")
		callState(ext, "connected", 12, "")
		s.send(c)
		callState(ext, "disconnected", 90, "peer")
		callState(a, "disconnected", 90, "peer")
		s.send(c)
	}},
	{"internal_call", func(s *stream) { // 7 (genesys.md §5 (d))
		c := newConv(7)
		ua := agentCall(c, roleAgentA, agentA, "Alice Agent", "", "contacting", "outbound", "", "sip:bbbbbbbb@example.invalid")
		ua.Purpose = ptr("user")
		ub := agentCall(c, roleAgentB, agentB, "Bob Agent", "", "alerting", "inbound", commID(7, roleAgentA, 1), "sip:aaaaaaaa@example.invalid")
		ub.Purpose = ptr("user")
		s.send(c)
		callState(ua, "connected", 5, "")
		callState(ub, "connected", 5, "")
		s.send(c)
		callState(ua, "disconnected", 60, "client")
		callState(ub, "disconnected", 60, "peer")
		s.send(c)
	}},
	{"conference", func(s *stream) { // 8
		c, _, a := inbound(8)
		callState(a, "connected", 40, "")
		endACD(c, 40)
		s.send(c)
		// A conferences in B and an outside expert.
		b := agentCall(c, roleAgentB, agentB, "Bob Agent", "", "alerting", "inbound", commID(8, roleAgentA, 1), "sip:aaaaaaaa@example.invalid")
		ext := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(8, roleExternal)), Name: ptr("Expert Line"), Purpose: ptr("external"), Address: ptr("tel:+442071838750"),
			Attributes: &map[string]string{},
			Calls: &[]pc.Conversationeventtopiccall{{Id: ptr(commID(8, roleExternal, 1)), State: ptr("contacting"), Direction: ptr("outbound"),
				Provider: ptr("Edge"), Self: addr("", "tel:+442071838750")}},
		})
		s.send(c)
		callState(b, "connected", 70, "")
		callState(ext, "connected", 72, "")
		s.send(c)
		callState(b, "disconnected", 200, "client")
		s.send(c)
	}},
	{"callback", func(s *stream) { // 9
		c := newConv(9)
		cust := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(9, roleCustomer)), Name: ptr("Jane Doe"), Purpose: ptr("customer"), ConnectedTime: at(0),
			Attributes: &map[string]string{"CallbackReason": "invoice"},
			Callbacks: &[]pc.Conversationeventtopiccallback{{Id: ptr(commID(9, roleCustomer, 1)), State: ptr("connected"),
				Direction: ptr("outbound"), CallbackNumbers: &[]string{"(317) 555-0142"}, CallbackUserName: ptr("Jane Doe"),
				Provider: ptr("PureCloud Callback"), CallbackScheduledTime: at(0), ConnectedTime: at(0)}},
		})
		a := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(9, roleAgentA)), Name: ptr("Alice Agent"), UserId: ptr(agentA), Purpose: ptr("agent"), QueueId: ptr(queueS),
			WrapupRequired: ptr(true), AlertingTimeoutMs: ptr(30000), ConversationRoutingData: routing(queueS),
			Callbacks: &[]pc.Conversationeventtopiccallback{{Id: ptr(commID(9, roleAgentA, 1)), State: ptr("alerting"),
				InitialState: ptr("alerting"), Direction: ptr("outbound"), CallbackNumbers: &[]string{"(317) 555-0142"},
				CallbackUserName: ptr("Jane Doe"), PeerId: ptr(commID(9, roleCustomer, 1)), SkipEnabled: ptr(true),
				TimeoutSeconds: ptr(60), Provider: ptr("PureCloud Callback"), QueueMediaSettings: qms(30)}},
		})
		s.send(c)
		cb := &(*a.Callbacks)[0]
		cb.State, cb.ConnectedTime, a.ConnectedTime = ptr("connected"), at(10), at(10)
		s.send(c)
		// The agent places the call: a voice leg on the same participant.
		a.Calls = &[]pc.Conversationeventtopiccall{{Id: ptr(commID(9, roleAgentA, 2)), State: ptr("dialing"), InitialState: ptr("dialing"),
			Direction: ptr("outbound"), Provider: ptr("Edge"), Self: addr("Alice Agent", "sip:aaaaaaaa@example.invalid"), Other: addr("", "tel:+13175550142")}}
		cust.Calls = &[]pc.Conversationeventtopiccall{{Id: ptr(commID(9, roleCustomer, 2)), State: ptr("contacting"), Direction: ptr("outbound"),
			Provider: ptr("Edge"), Self: addr("", "tel:+13175550142")}}
		s.send(c)
		(*a.Calls)[0].State, (*a.Calls)[0].ConnectedTime = ptr("connected"), at(20)
		(*cust.Calls)[0].State, (*cust.Calls)[0].ConnectedTime = ptr("connected"), at(20)
		s.send(c)
		(*a.Calls)[0].State, (*a.Calls)[0].DisconnectedTime = ptr("disconnected"), at(300)
		cb.State, cb.DisconnectedTime = ptr("disconnected"), at(300)
		a.EndTime = at(300)
		s.send(c)
	}},
	{"reoffer_no_answer", func(s *stream) { // 10
		c, _, a1 := inbound(10)
		s.send(c)
		// A does not answer: the first offer ends and Genesys offers the
		// conversation to A again as a new participant.
		callState(a1, "disconnected", 38, "transfer.noanswer")
		s.send(c)
		a2 := agentCall(c, roleAgentA2, agentA, "Alice Agent", queueS, "alerting", "inbound", commID(10, roleCustomer, 1), "tel:+16175550123")
		s.send(c)
		callState(a2, "connected", 45, "")
		endACD(c, 45)
		s.send(c)
	}},
	{"missing_fields", func(s *stream) { // 11
		c, _, a := inbound(11)
		parts := func(m map[string]any) []any { return m["participants"].([]any) }
		s.edit(agentA, c, func(m map[string]any) { m["participants"] = nil })
		s.edit(agentA, c, func(m map[string]any) { delete(m, "id") })
		s.edit(agentA, c, func(m map[string]any) { parts(m)[3].(map[string]any)["calls"] = nil })
		s.edit(agentA, c, func(m map[string]any) {
			parts(m)[3].(map[string]any)["calls"].([]any)[0].(map[string]any)["state"] = nil
		})
		s.edit(agentA, c, func(m map[string]any) { parts(m)[3].(map[string]any)["userId"] = 42 })
		// The customer without address, name or attributes, the agent's call
		// without direction: still an alerting event, with an empty customer.
		s.edit(agentA, c, func(m map[string]any) {
			cu := parts(m)[0].(map[string]any)
			cu["address"], cu["name"], cu["attributes"], cu["calls"] = nil, nil, nil, nil
			call := parts(m)[3].(map[string]any)["calls"].([]any)[0].(map[string]any)
			delete(call, "direction")
			call["self"], call["other"] = nil, nil
			m["divisions"] = nil
		})
		callState(a, "connected", 40, "")
		s.edit(agentA, c, func(m map[string]any) {
			call := parts(m)[3].(map[string]any)["calls"].([]any)[0].(map[string]any)
			call["connectedTime"] = "not a time"
		})
	}},
	{"unknown_media", func(s *stream) { // 12
		c := newConv(12)
		c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(12, roleCustomer)), Purpose: ptr("customer"), Name: ptr("Guest"),
			Videos: &[]pc.Conversationeventtopicvideo{{Id: ptr(commID(12, roleCustomer, 1)), State: ptr("connected"), Context: ptr("room-1")}}})
		c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(12, roleAgentA)), UserId: ptr(agentA), Purpose: ptr("agent"), Name: ptr("Alice Agent"),
			Videos:           &[]pc.Conversationeventtopicvideo{{Id: ptr(commID(12, roleAgentA, 1)), State: ptr("alerting"), PeerId: ptr(commID(12, roleCustomer, 1))}},
			Cobrowsesessions: &[]pc.Conversationeventtopiccobrowse{{Id: ptr(commID(12, roleAgentA, 2)), State: ptr("alerting")}}})
		s.send(c)
	}},
	{"web_chat", func(s *stream) { // 13 (genesys.md §5 (f))
		c := newConv(13)
		c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(13, roleCustomer)), ConnectedTime: at(0), Name: ptr("Jane Doe"), QueueId: ptr(queueC), Purpose: ptr("customer"),
			Address: ptr("5ee38185000014b95f962c5b@guest.orgspan.com"), WrapupRequired: ptr(false),
			Attributes: &map[string]string{"context.firstName": "Jane", "context.lastName": "Doe", "context.email": "jane@example.com",
				"context.phoneNumber": "(617) 555-0123", "context.customField1": "ORDER-991", "context.customField1Label": "Order",
				"ivr.DistributionGroup": queueC},
			Chats: &[]pc.Conversationeventtopicchat{{Id: ptr(commID(13, roleCustomer, 1)), State: ptr("connected"),
				RoomId: ptr("ROOM@conference.example.orgspan.com"), Provider: ptr("PureCloud Webchat v2"), Held: ptr(false), ConnectedTime: at(0)}},
		})
		a := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(13, roleAgentA)), UserId: ptr(agentA), QueueId: ptr(queueC), Purpose: ptr("agent"), WrapupRequired: ptr(true),
			AlertingTimeoutMs: ptr(30000),
			Chats: &[]pc.Conversationeventtopicchat{{Id: ptr(commID(13, roleAgentA, 1)), State: ptr("alerting"), InitialState: ptr("alerting"),
				RoomId: ptr("ROOM@conference.example.orgspan.com"), PeerId: ptr(commID(13, roleCustomer, 1)), Held: ptr(false), QueueMediaSettings: qms(30)}},
		})
		s.send(c)
		ch := &(*a.Chats)[0]
		ch.State, ch.ConnectedTime = ptr("connected"), at(8)
		s.send(c)
		ch.State, ch.DisconnectedTime, ch.DisconnectType = ptr("disconnected"), at(400), ptr("client")
		a.EndTime = at(400)
		s.send(c)
	}},
	{"web_messaging", func(s *stream) { // 14 (genesys.md §5 (e))
		c := newConv(14)
		msgs := []pc.Conversationeventtopicmessagedetails{{MessageId: ptr("0a5e0000-0000-4000-8000-000000000001"), MessageTime: at(0),
			MessageStatus: ptr("received"), MessageSegmentCount: ptr(1)}}
		cust := c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(14, roleCustomer)), ConnectedTime: at(0), Name: ptr("Web Messaging Guest"), Purpose: ptr("customer"),
			Attributes: &map[string]string{"context.email": "jane@example.com", "context.firstName": "Jane"},
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(14, roleCustomer, 1)), State: ptr("connected"), Direction: ptr("inbound"),
				VarType: ptr("webmessaging"), Provider: ptr("PureCloud Messaging"), FromAddress: &pc.Conversationeventtopicaddress{NameRaw: ptr("Jane")},
				ToAddress: &pc.Conversationeventtopicaddress{AddressNormalized: ptr("d3b10000-0000-4000-8000-000000000001")}, Messages: &msgs}},
		})
		c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(14, roleFlow)), Purpose: ptr("workflow"), EndTime: at(5),
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(14, roleFlow, 1)), State: ptr("disconnected"), DisconnectType: ptr("transfer"),
				VarType: ptr("webmessaging"), PeerId: ptr(commID(14, roleCustomer, 1))}}})
		c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(14, roleACD)), Purpose: ptr("acd"), QueueId: ptr(queueC),
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(14, roleACD, 1)), State: ptr("connected"), VarType: ptr("webmessaging"),
				PeerId: ptr(commID(14, roleCustomer, 1))}}})
		a := c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(14, roleAgentA)), UserId: ptr(agentA), QueueId: ptr(queueC), Purpose: ptr("agent"),
			WrapupRequired: ptr(true), AlertingTimeoutMs: ptr(30000),
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(14, roleAgentA, 1)), State: ptr("alerting"), InitialState: ptr("alerting"),
				Direction: ptr("inbound"), Held: ptr(false), VarType: ptr("webmessaging"), PeerId: ptr(commID(14, roleCustomer, 1))}}})
		s.send(c)
		// Each new message re-sends the conversation with a longer list.
		for i := 2; i <= 4; i++ {
			msgs = append(msgs, pc.Conversationeventtopicmessagedetails{MessageId: ptr(fmt.Sprintf("0a5e0000-0000-4000-8000-%012d", i)),
				MessageTime: at(i), MessageStatus: ptr("received"), MessageSegmentCount: ptr(1)})
			(*cust.Messages)[0].Messages = &msgs
			s.send(c)
		}
		m := &(*a.Messages)[0]
		m.State, m.ConnectedTime = ptr("connected"), at(10)
		s.send(c)
	}},
	{"sms_message", func(s *stream) { // 15
		c := newConv(15)
		c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(15, roleCustomer)), ConnectedTime: at(0), Name: ptr("+13175550177"), Purpose: ptr("customer"),
			Address: ptr("+13175550177"),
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(15, roleCustomer, 1)), State: ptr("connected"), Direction: ptr("inbound"),
				VarType: ptr("sms"), Provider: ptr("PureCloud Messaging"), FromAddress: addr("", "+13175550177"), ToAddress: addr("", "+18005551000")}},
		})
		c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(15, roleAgentA)), UserId: ptr(agentA), QueueId: ptr(queueC), Purpose: ptr("agent"),
			Messages: &[]pc.Conversationeventtopicmessage{{Id: ptr(commID(15, roleAgentA, 1)), State: ptr("alerting"), Direction: ptr("inbound"),
				VarType: ptr("sms"), PeerId: ptr(commID(15, roleCustomer, 1))}}})
		s.send(c)
	}},
	{"email_inbound", func(s *stream) { // 16
		c := newConv(16)
		c.add(&pc.Conversationeventtopicparticipant{
			Id: ptr(partID(16, roleCustomer)), ConnectedTime: at(0), Name: ptr("Jane Doe"), Purpose: ptr("customer"), Address: ptr("jane@example.com"),
			Emails: &[]pc.Conversationeventtopicemail{{Id: ptr(commID(16, roleCustomer, 1)), State: ptr("connected"), Direction: ptr("inbound"),
				Subject: ptr("Invoice question"), Provider: ptr("PureCloud Email"), MessagesSent: ptr(1)}},
		})
		a := c.add(&pc.Conversationeventtopicparticipant{Id: ptr(partID(16, roleAgentA)), UserId: ptr(agentA), QueueId: ptr(queueS), Purpose: ptr("agent"),
			Emails: &[]pc.Conversationeventtopicemail{{Id: ptr(commID(16, roleAgentA, 1)), State: ptr("alerting"), Direction: ptr("inbound"),
				Subject: ptr("Invoice question"), PeerId: ptr(commID(16, roleCustomer, 1))}}})
		s.send(c)
		e := &(*a.Emails)[0]
		e.State, e.ConnectedTime = ptr("connected"), at(30)
		s.send(c)
		e.State, e.ParkTime = ptr("parked"), at(60) // parked: no event
		s.send(c)
		e.State, e.DisconnectedTime = ptr("disconnected"), at(90)
		s.send(c)
	}},
}

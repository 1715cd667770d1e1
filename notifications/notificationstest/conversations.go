package notificationstest

import (
	"encoding/json"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
)

// Media kinds of scripted conversations (Genesys' names for the media arrays).
const (
	MediaCall     = "call"
	MediaCallback = "callback"
	MediaChat     = "chat"
	MediaMessage  = "message"
	MediaEmail    = "email"
)

// Options shape a scripted conversation. Zero fields get synthetic values.
type Options struct {
	ConversationID string            // default: a random UUID
	QueueID        string            // the ACD queue; "" means a direct (non-ACD) conversation
	DNIS           string            // the number the customer called (inbound calls), e.g. +18005551000
	Name           string            // the customer's display name
	Attributes     map[string]string // the customer participant's attributes (participant data)
	Subject        string            // email subject
	MessageType    string            // messages: webmessaging (default), sms, whatsapp, ...
	Now            func() time.Time  // clock for the timestamps (fixtures pass a fixed one)
	IDs            func() string     // id generator (fixtures pass a deterministic one)
}

// Leg is one agent participant a scripted conversation offered to a user.
type Leg struct {
	ConversationID string
	ParticipantID  string
	UserID         string
}

type address struct{ name, norm string }

type comm struct {
	id, state, initialState, direction, disconnectType, peerID, provider string
	held, confined                                                       bool
	connectedTime, disconnectedTime                                      time.Time
	self, other                                                          address
	callbackNumbers                                                      []string
	callbackUserName                                                     string
	roomID                                                               string
	msgType                                                              string
	from, to                                                             address
	subject                                                              string
}

type participant struct {
	id, purpose, userID, name, queueID, addr, consultParticipantID    string
	monitoredParticipantID, coachedParticipantID, bargedParticipantID string // a supervisor's participant: whom it listens to, coaches or barged in on
	attributes                                                        map[string]string
	connectedTime, endTime                                            time.Time
	wrapupRequired                                                    bool
	c                                                                 comm
}

type transfer struct {
	id, from, to, kind string
	at                 time.Time
}

// Conversation is a scripted Genesys conversation. Its methods move it
// through states and, when it belongs to an Emulator, publish the new
// snapshot on the topic of every user taking part (and keep it for GET
// /api/v2/conversations/{id} and the activity query). Built with the
// package-level New* functions it belongs to no emulator: Snapshot then
// gives the eventBody JSON, for fixtures.
type Conversation struct {
	e     *Emulator
	mu    sync.Mutex
	id    string
	media string
	opts  Options
	parts []*participant
	cust  *participant
	acd   *participant
	agent *participant // the current agent (or callee) leg
	other *participant // internal calls: the caller; consult: the consulting agent
	xfers []transfer
	legs  []Leg
	start time.Time
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) newID() string {
	if o.IDs != nil {
		return o.IDs()
	}
	return newID()
}

func newConv(media string, o Options) *Conversation {
	c := &Conversation{media: media, opts: o}
	c.id = o.ConversationID
	if c.id == "" {
		c.id = o.newID()
	}
	c.start = o.now()
	return c
}

func (c *Conversation) add(p *participant) *participant {
	if p.id == "" {
		p.id = c.opts.newID()
	}
	if p.c.id == "" {
		p.c.id = c.opts.newID()
	}
	c.parts = append(c.parts, p)
	return p
}

func (c *Conversation) addACD(peer string) {
	if c.opts.QueueID == "" {
		return
	}
	c.acd = c.add(&participant{purpose: "acd", queueID: c.opts.QueueID, name: "Queue " + c.opts.QueueID, connectedTime: c.start,
		c: comm{state: "connected", direction: "inbound", peerID: peer, connectedTime: c.start, provider: c.cust.c.provider}})
}

func tel(n string) string {
	if n == "" {
		return ""
	}
	return "tel:" + n
}

// NewInboundCall scripts an inbound call from ani to agent (not yet
// alerting: call Alert).
func NewInboundCall(agentID, ani string, o Options) *Conversation {
	c := newConv(MediaCall, o)
	name := o.Name
	if name == "" {
		name = "CALLER"
	}
	c.cust = c.add(&participant{purpose: "customer", name: name, addr: tel(ani), attributes: o.Attributes, connectedTime: c.start,
		c: comm{state: "connected", direction: "inbound", provider: "Edge", connectedTime: c.start,
			self: address{name, tel(ani)}, other: address{"", tel(o.DNIS)}}})
	c.addACD(c.cust.c.id)
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID, wrapupRequired: true,
		c: comm{direction: "inbound", provider: "Edge", peerID: c.cust.c.id, other: address{name, tel(ani)}}}
	return c
}

// NewOutboundCall scripts a call the agent places to number; Alert makes
// the agent's leg dialing, Connect connects both ends.
func NewOutboundCall(agentID, number string, o Options) *Conversation {
	c := newConv(MediaCall, o)
	name := o.Name
	c.cust = c.add(&participant{purpose: "customer", name: name, addr: tel(number), attributes: o.Attributes,
		c: comm{state: "contacting", direction: "outbound", provider: "Edge", self: address{name, tel(number)}}})
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID,
		c: comm{direction: "outbound", provider: "Edge", peerID: c.cust.c.id, other: address{name, tel(number)}}}
	return c
}

// NewInternalCall scripts a call from one user to another (no customer).
func NewInternalCall(fromUserID, toUserID string, o Options) *Conversation {
	c := newConv(MediaCall, o)
	c.other = c.add(&participant{purpose: "user", userID: fromUserID, name: "User " + fromUserID, connectedTime: c.start,
		c: comm{state: "contacting", direction: "outbound", provider: "Edge", self: address{"", "sip:" + fromUserID + "@example.invalid"}, other: address{"", "sip:" + toUserID + "@example.invalid"}}})
	c.agent = &participant{purpose: "user", userID: toUserID, name: "User " + toUserID,
		c: comm{direction: "inbound", provider: "Edge", peerID: c.other.c.id, other: address{"User " + fromUserID, "sip:" + fromUserID + "@example.invalid"}}}
	return c
}

// NewCallback scripts a callback request for number routed to agent.
func NewCallback(agentID, number string, o Options) *Conversation {
	c := newConv(MediaCallback, o)
	name := o.Name
	if name == "" {
		name = "Callback Customer"
	}
	c.cust = c.add(&participant{purpose: "customer", name: name, addr: tel(number), attributes: o.Attributes, connectedTime: c.start,
		c: comm{state: "connected", direction: "outbound", provider: "PureCloud Callback", connectedTime: c.start, callbackNumbers: []string{number}, callbackUserName: name}})
	c.addACD(c.cust.c.id)
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID, wrapupRequired: true,
		c: comm{direction: "outbound", provider: "PureCloud Callback", peerID: c.cust.c.id, callbackNumbers: []string{number}, callbackUserName: name}}
	return c
}

// NewChat scripts a legacy web chat; Options.Attributes carries the
// context.* attributes (context.firstName, context.email, ...).
func NewChat(agentID string, o Options) *Conversation {
	c := newConv(MediaChat, o)
	name := o.Name
	if name == "" {
		name = "Chat Guest"
	}
	room := c.opts.newID() + "@conference.example.orgspan.com"
	c.cust = c.add(&participant{purpose: "customer", name: name, queueID: o.QueueID, addr: c.opts.newID() + "@guest.orgspan.com", attributes: o.Attributes, connectedTime: c.start,
		c: comm{state: "connected", provider: "PureCloud Webchat v2", roomID: room, connectedTime: c.start}})
	c.addACD(c.cust.c.id)
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID, wrapupRequired: true,
		c: comm{provider: "PureCloud Webchat v2", peerID: c.cust.c.id, roomID: room}}
	return c
}

// NewMessage scripts a messaging conversation (web messaging by default;
// Options.MessageType sms takes from as a phone number).
func NewMessage(agentID, from string, o Options) *Conversation {
	c := newConv(MediaMessage, o)
	typ := o.MessageType
	if typ == "" {
		typ = "webmessaging"
	}
	fa := address{name: from}
	if typ != "webmessaging" {
		fa = address{"", tel(from)}
	}
	name := o.Name
	if name == "" {
		name = "Web Messaging Guest"
	}
	c.cust = c.add(&participant{purpose: "customer", name: name, attributes: o.Attributes, connectedTime: c.start,
		c: comm{state: "connected", direction: "inbound", provider: "PureCloud Messaging", msgType: typ, connectedTime: c.start, from: fa, to: address{"", "deployment-emulated"}}})
	c.addACD(c.cust.c.id)
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID, wrapupRequired: true,
		c: comm{direction: "inbound", provider: "PureCloud Messaging", msgType: typ, peerID: c.cust.c.id}}
	return c
}

// NewEmail scripts an inbound email from address from.
func NewEmail(agentID, from string, o Options) *Conversation {
	c := newConv(MediaEmail, o)
	subj := o.Subject
	if subj == "" {
		subj = "Question"
	}
	c.cust = c.add(&participant{purpose: "customer", name: o.Name, addr: from, attributes: o.Attributes, connectedTime: c.start,
		c: comm{state: "connected", direction: "inbound", provider: "PureCloud Email", subject: subj, connectedTime: c.start}})
	c.addACD(c.cust.c.id)
	c.agent = &participant{purpose: "agent", userID: agentID, queueID: o.QueueID, wrapupRequired: true,
		c: comm{direction: "inbound", provider: "PureCloud Email", subject: subj, peerID: c.cust.c.id}}
	return c
}

func (e *Emulator) register(c *Conversation) *Conversation {
	c.e = e
	if e.cfg.Forget > 0 {
		e.forget(time.Now().Add(-e.cfg.Forget))
	}
	e.mu.Lock()
	if _, ok := e.convs[c.id]; !ok {
		e.convOrder = append(e.convOrder, c.id)
	}
	e.convs[c.id] = c
	e.mu.Unlock()
	return c
}

// InboundCall scripts an inbound call to agent on this emulator.
func (e *Emulator) InboundCall(agentID, ani string, o Options) *Conversation {
	return e.register(NewInboundCall(agentID, ani, o))
}

// OutboundCall scripts an agent's outbound call on this emulator.
func (e *Emulator) OutboundCall(agentID, number string, o Options) *Conversation {
	return e.register(NewOutboundCall(agentID, number, o))
}

// InternalCall scripts a user-to-user call on this emulator.
func (e *Emulator) InternalCall(fromUserID, toUserID string, o Options) *Conversation {
	return e.register(NewInternalCall(fromUserID, toUserID, o))
}

// Callback scripts a callback on this emulator.
func (e *Emulator) Callback(agentID, number string, o Options) *Conversation {
	return e.register(NewCallback(agentID, number, o))
}

// Chat scripts a web chat on this emulator.
func (e *Emulator) Chat(agentID string, o Options) *Conversation {
	return e.register(NewChat(agentID, o))
}

// Message scripts a messaging conversation on this emulator.
func (e *Emulator) Message(agentID, from string, o Options) *Conversation {
	return e.register(NewMessage(agentID, from, o))
}

// Email scripts an email on this emulator.
func (e *Emulator) Email(agentID, from string, o Options) *Conversation {
	return e.register(NewEmail(agentID, from, o))
}

// Conversation returns a scripted conversation by id.
func (e *Emulator) Conversation(id string) *Conversation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.convs[id]
}

// ID is the conversation id.
func (c *Conversation) ID() string { return c.id }

// Legs lists the agent legs offered so far (alerting or dialing reached).
func (c *Conversation) Legs() []Leg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Leg(nil), c.legs...)
}

// AgentParticipantID is the current agent leg's participant id ("" before Alert).
func (c *Conversation) AgentParticipantID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agent.id
}

// offer adds the current agent leg to the participants, alerting (or
// dialing for the agent's own outbound call).
func (c *Conversation) offerLocked(now time.Time) {
	a := c.agent
	if a.id != "" {
		return
	}
	state := "alerting"
	if c.media == MediaCall && a.c.direction == "outbound" {
		state = "dialing"
		a.connectedTime = now
	}
	a.c.state, a.c.initialState = state, state
	c.add(a)
	c.legs = append(c.legs, Leg{ConversationID: c.id, ParticipantID: a.id, UserID: a.userID})
}

// Alert offers the conversation to the current agent (alerting; dialing
// for an outbound call) and publishes the snapshot.
func (c *Conversation) Alert() *Conversation {
	c.mu.Lock()
	c.offerLocked(c.opts.now())
	c.mu.Unlock()
	return c.Publish()
}

// Connect answers the current agent leg (and the far end of an outbound
// or internal call), ends the ACD leg, completes a consult transfer, and
// publishes.
func (c *Conversation) Connect() *Conversation {
	c.mu.Lock()
	now := c.opts.now()
	c.offerLocked(now)
	a := c.agent
	a.c.state, a.c.connectedTime, a.connectedTime = "connected", now, now
	if c.cust != nil {
		c.cust.c.confined = false
		if c.cust.c.state == "contacting" {
			c.cust.c.state, c.cust.c.connectedTime, c.cust.connectedTime = "connected", now, now
		}
	}
	if c.acd != nil && c.acd.c.state != "disconnected" {
		c.acd.c.state, c.acd.c.disconnectType, c.acd.c.disconnectedTime, c.acd.endTime = "disconnected", "transfer", now, now
	}
	if c.other != nil && c.other.c.state != "disconnected" {
		if c.other.purpose == "user" { // internal call: the caller connects
			c.other.c.state, c.other.c.connectedTime = "connected", now
		} else { // consult transfer completes: the consulting agent leaves
			o := c.other
			o.c.state, o.c.disconnectType, o.c.disconnectedTime, o.endTime = "disconnected", "transfer.consult", now, now
			c.markTransferLocked("complete")
			c.other = nil
		}
	}
	c.mu.Unlock()
	return c.Publish()
}

// Disconnect ends the conversation for everyone and publishes.
func (c *Conversation) Disconnect() *Conversation {
	c.mu.Lock()
	now := c.opts.now()
	for _, p := range c.parts {
		if p.c.state == "disconnected" {
			continue
		}
		dt := "peer"
		if p == c.agent {
			dt = "client"
		}
		p.c.state, p.c.disconnectType, p.c.disconnectedTime, p.endTime = "disconnected", dt, now, now
		p.c.held, p.c.confined = false, false
	}
	c.mu.Unlock()
	return c.Publish()
}

// Hold puts the customer on hold (held on the agent leg, confined on the
// customer's) or takes it off, and publishes.
func (c *Conversation) Hold(on bool) *Conversation {
	c.mu.Lock()
	if c.agent.id != "" {
		c.agent.c.held = on
	}
	if c.cust != nil {
		c.cust.c.confined = on
	}
	c.mu.Unlock()
	return c.Publish()
}

// SetAttributes merges attributes into the customer participant's and
// publishes (the snapshot noise of an attribute write).
func (c *Conversation) SetAttributes(attrs map[string]string) *Conversation {
	c.mu.Lock()
	if c.cust != nil {
		if c.cust.attributes == nil {
			c.cust.attributes = map[string]string{}
		}
		for k, v := range attrs {
			c.cust.attributes[k] = v
		}
	}
	c.mu.Unlock()
	return c.Publish()
}

func (c *Conversation) markTransferLocked(state string) {
	if n := len(c.xfers); n > 0 {
		c.xfers[n-1].kind = c.xfers[n-1].kind + "|" + state
	}
}

// BlindTransfer moves the conversation from the current agent to toUserID:
// the current leg disconnects with disconnectType transfer and a new agent
// leg alerts. It publishes.
func (c *Conversation) BlindTransfer(toUserID string) *Conversation {
	c.mu.Lock()
	now := c.opts.now()
	from := c.agent
	if from.id != "" && from.c.state != "disconnected" {
		from.c.state, from.c.disconnectType, from.c.disconnectedTime, from.endTime = "disconnected", "transfer", now, now
	}
	c.xfers = append(c.xfers, transfer{id: c.opts.newID(), from: from.userID, to: toUserID, kind: "unattended", at: now})
	c.agent = c.newAgentLeg(toUserID, from)
	c.offerLocked(now)
	c.mu.Unlock()
	return c.Publish()
}

// ConsultTransfer starts a consult from the current agent to toUserID: the
// customer is confined, a new agent leg alerts with consultParticipantId
// set. The next Connect completes it (the consulting agent leaves with
// transfer.consult). It publishes.
func (c *Conversation) ConsultTransfer(toUserID string) *Conversation {
	c.mu.Lock()
	now := c.opts.now()
	from := c.agent
	if c.cust != nil {
		c.cust.c.confined = true
	}
	c.xfers = append(c.xfers, transfer{id: c.opts.newID(), from: from.userID, to: toUserID, kind: "attended", at: now})
	c.other = from
	c.agent = c.newAgentLeg(toUserID, from)
	if c.cust != nil {
		c.agent.consultParticipantID = c.cust.id
	}
	c.offerLocked(now)
	c.mu.Unlock()
	return c.Publish()
}

// Supervision is how a supervisor joins another participant's call.
type Supervision string

// The supervisions of Monitor.
const (
	Monitoring Supervision = "monitor" // listens; monitoredParticipantId
	Coaching   Supervision = "coach"   // talks to the agent alone; coachedParticipantId
	Barging    Supervision = "barge"   // joins the call; bargedParticipantId
)

// Monitor adds supervisorID to the call of the current agent leg as a
// supervisor who monitors, coaches or barges in on it (POST
// /api/v2/conversations/calls/{id}/participants/{pid}/monitor, /coach,
// /barge): a participant of purpose user whose call, answered at once (a
// station the platform answers itself), carries the agent leg's id in
// monitoredParticipantId, coachedParticipantId or bargedParticipantId. It
// publishes. Nothing is offered to the supervisor: it makes no agent leg.
func (c *Conversation) Monitor(supervisorID string, how Supervision) *Conversation {
	c.mu.Lock()
	now := c.opts.now()
	a := c.agent
	p := &participant{purpose: "user", userID: supervisorID, name: "Supervisor " + supervisorID, connectedTime: now,
		c: comm{state: "connected", initialState: "connected", direction: "outbound", provider: a.c.provider, peerID: a.c.id, connectedTime: now,
			msgType: a.c.msgType, roomID: a.c.roomID, subject: a.c.subject, other: a.c.other}}
	switch how {
	case Coaching:
		p.coachedParticipantID = a.id
	case Barging:
		p.bargedParticipantID = a.id
	default:
		p.monitoredParticipantID = a.id
	}
	c.add(p)
	c.mu.Unlock()
	return c.Publish()
}

func (c *Conversation) newAgentLeg(userID string, like *participant) *participant {
	p := &participant{purpose: "agent", userID: userID, queueID: like.queueID, wrapupRequired: true}
	p.c = comm{direction: like.c.direction, provider: like.c.provider, msgType: like.c.msgType, roomID: like.c.roomID, subject: like.c.subject,
		callbackNumbers: like.c.callbackNumbers, callbackUserName: like.c.callbackUserName, other: like.c.other}
	if c.cust != nil {
		p.c.peerID = c.cust.c.id
	}
	return p
}

// Publish sends the current snapshot to every participating user's
// v2.users.{id}.conversations topic (again, if called twice: a duplicate).
// It returns c.
func (c *Conversation) Publish() *Conversation {
	if c.e == nil {
		return c
	}
	body := c.Snapshot()
	for _, u := range c.users() {
		c.e.Publish("v2.users."+u+".conversations", body)
	}
	return c
}

func (c *Conversation) users() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, p := range c.parts {
		if p.userID != "" && !seen[p.userID] {
			seen[p.userID] = true
			out = append(out, p.userID)
		}
	}
	sort.Strings(out)
	return out
}

// live reports whether userID has a leg in the conversation that has not
// ended, and its media/direction for the activity query.
func (c *Conversation) live(userID string) (*participant, bool) {
	for _, p := range c.parts {
		if p.userID == userID && p.c.state != "disconnected" && p.c.state != "" {
			return p, true
		}
	}
	return nil, false
}

// ---- SDK topic model ----

func sp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func bp(b bool) *bool { return &b }

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func ap(a address) *platformclientv2.Conversationeventtopicaddress {
	if a.name == "" && a.norm == "" {
		return nil
	}
	return &platformclientv2.Conversationeventtopicaddress{NameRaw: sp(a.name), Name: sp(a.name), AddressNormalized: sp(a.norm), AddressRaw: sp(a.norm)}
}

func (c *Conversation) topicModel() platformclientv2.Conversationeventtopicconversation {
	parts := make([]platformclientv2.Conversationeventtopicparticipant, 0, len(c.parts))
	for _, p := range c.parts {
		tpart := platformclientv2.Conversationeventtopicparticipant{
			Id: sp(p.id), ConnectedTime: tp(p.connectedTime), EndTime: tp(p.endTime), UserId: sp(p.userID), Name: sp(p.name),
			QueueId: sp(p.queueID), Purpose: sp(p.purpose), ConsultParticipantId: sp(p.consultParticipantID), Address: sp(p.addr),
			WrapupRequired: bp(p.wrapupRequired), MonitoredParticipantId: sp(p.monitoredParticipantID),
			CoachedParticipantId: sp(p.coachedParticipantID), BargedParticipantId: sp(p.bargedParticipantID),
		}
		attrs := map[string]string{}
		for k, v := range p.attributes {
			attrs[k] = v
		}
		tpart.Attributes = &attrs
		m := p.c
		switch c.media {
		case MediaCall:
			tpart.Calls = &[]platformclientv2.Conversationeventtopiccall{{
				Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction), Held: bp(m.held), Confined: bp(m.confined),
				Muted: bp(false), Recording: bp(false), RecordingState: sp("none"), Provider: sp(m.provider), PeerId: sp(m.peerID),
				DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime),
				Self: ap(m.self), Other: ap(m.other),
			}}
		case MediaCallback:
			nums := append([]string{}, m.callbackNumbers...)
			tpart.Callbacks = &[]platformclientv2.Conversationeventtopiccallback{{
				Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction), Held: bp(m.held), Provider: sp(m.provider),
				PeerId: sp(m.peerID), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime),
				CallbackNumbers: &nums, CallbackUserName: sp(m.callbackUserName),
			}}
		case MediaChat:
			tpart.Chats = &[]platformclientv2.Conversationeventtopicchat{{
				Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Held: bp(m.held), Provider: sp(m.provider), PeerId: sp(m.peerID),
				RoomId: sp(m.roomID), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime),
			}}
		case MediaMessage:
			tpart.Messages = &[]platformclientv2.Conversationeventtopicmessage{{
				Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction), Held: bp(m.held), Provider: sp(m.provider),
				PeerId: sp(m.peerID), VarType: sp(m.msgType), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime),
				DisconnectedTime: tp(m.disconnectedTime), FromAddress: ap(m.from), ToAddress: ap(m.to),
			}}
		case MediaEmail:
			tpart.Emails = &[]platformclientv2.Conversationeventtopicemail{{
				Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction), Held: bp(m.held), Provider: sp(m.provider),
				PeerId: sp(m.peerID), Subject: sp(m.subject), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime),
				DisconnectedTime: tp(m.disconnectedTime),
			}}
		}
		parts = append(parts, tpart)
	}
	conv := platformclientv2.Conversationeventtopicconversation{Id: sp(c.id), Participants: &parts, RecordingState: sp("none")}
	if len(c.xfers) > 0 {
		xs := make([]platformclientv2.Conversationeventtopictransferresponse, 0, len(c.xfers))
		for _, x := range c.xfers {
			state := "active"
			kind := x.kind
			if i := indexByte(kind, '|'); i >= 0 {
				kind, state = kind[:i], kind[i+1:]
			}
			xs = append(xs, platformclientv2.Conversationeventtopictransferresponse{
				Id: sp(x.id), State: sp(state), DateIssued: tp(x.at), TransferType: sp(kind),
				Initiator:   &platformclientv2.Conversationeventtopictransferinitiator{UserId: sp(x.from)},
				Destination: &platformclientv2.Conversationeventtopictransferdestination{UserId: sp(x.to)},
			})
		}
		conv.RecentTransfers = &xs
	}
	return conv
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// microRE matches the SDK's microsecond time strings ("...05.123000Z").
var microRE = regexp.MustCompile(`("\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\d*Z"`)

// wireJSON marshals an SDK model and trims times to the service's
// millisecond form.
func wireJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("notificationstest: marshal SDK model: " + err.Error())
	}
	return microRE.ReplaceAll(b, []byte(`${1}Z"`))
}

// Snapshot returns the conversation's current eventBody JSON, as sent on
// v2.users.{id}.conversations, built from the SDK's
// Conversationeventtopicconversation model.
func (c *Conversation) Snapshot() []byte {
	c.mu.Lock()
	m := c.topicModel()
	c.mu.Unlock()
	return wireJSON(m)
}

// ---- REST model (GET /api/v2/conversations/{id}) ----

func rap(a address) *platformclientv2.Address {
	if a.name == "" && a.norm == "" {
		return nil
	}
	return &platformclientv2.Address{NameRaw: sp(a.name), Name: sp(a.name), AddressNormalized: sp(a.norm), AddressRaw: sp(a.norm)}
}

func (c *Conversation) restModel() platformclientv2.Conversation {
	parts := make([]platformclientv2.Participant, 0, len(c.parts))
	for _, p := range c.parts {
		start := p.connectedTime
		if start.IsZero() {
			start = c.start
		}
		rp := platformclientv2.Participant{
			Id: sp(p.id), StartTime: tp(start), ConnectedTime: tp(p.connectedTime), EndTime: tp(p.endTime), UserId: sp(p.userID), Name: sp(p.name),
			QueueId: sp(p.queueID), Purpose: sp(p.purpose), ConsultParticipantId: sp(p.consultParticipantID), Address: sp(p.addr),
			WrapupRequired: bp(p.wrapupRequired), MonitoredParticipantId: sp(p.monitoredParticipantID),
			CoachedParticipantId: sp(p.coachedParticipantID), BargedParticipantId: sp(p.bargedParticipantID),
		}
		if p.userID != "" {
			rp.UserUri = sp("/api/v2/users/" + p.userID)
		}
		if p == c.cust && c.media == MediaCall {
			rp.Ani, rp.Dnis = sp(p.addr), sp(tel(c.opts.DNIS))
		}
		attrs := map[string]string{}
		for k, v := range p.attributes {
			attrs[k] = v
		}
		rp.Attributes = &attrs
		m := p.c
		switch c.media {
		case MediaCall:
			rp.Calls = &[]platformclientv2.Call{{Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction),
				Held: bp(m.held), Confined: bp(m.confined), Muted: bp(false), Recording: bp(false), RecordingState: sp("none"), Provider: sp(m.provider),
				PeerId: sp(m.peerID), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime),
				Self: rap(m.self), Other: rap(m.other)}}
		case MediaCallback:
			nums := append([]string{}, m.callbackNumbers...)
			rp.Callbacks = &[]platformclientv2.Callback{{Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction),
				Held: bp(m.held), Provider: sp(m.provider), PeerId: sp(m.peerID), DisconnectType: sp(m.disconnectType), ConnectedTime: tp(m.connectedTime),
				DisconnectedTime: tp(m.disconnectedTime), CallbackNumbers: &nums, CallbackUserName: sp(m.callbackUserName)}}
		case MediaChat:
			rp.Chats = &[]platformclientv2.Conversationchat{{Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Held: bp(m.held),
				Provider: sp(m.provider), PeerId: sp(m.peerID), RoomId: sp(m.roomID), DisconnectType: sp(m.disconnectType),
				ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime)}}
		case MediaMessage:
			rp.Messages = &[]platformclientv2.Message{{Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction),
				Held: bp(m.held), Provider: sp(m.provider), PeerId: sp(m.peerID), VarType: sp(m.msgType), DisconnectType: sp(m.disconnectType),
				ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime), FromAddress: rap(m.from), ToAddress: rap(m.to)}}
		case MediaEmail:
			rp.Emails = &[]platformclientv2.Email{{Id: sp(m.id), State: sp(m.state), InitialState: sp(m.initialState), Direction: sp(m.direction),
				Held: bp(m.held), Provider: sp(m.provider), PeerId: sp(m.peerID), Subject: sp(m.subject), DisconnectType: sp(m.disconnectType),
				ConnectedTime: tp(m.connectedTime), DisconnectedTime: tp(m.disconnectedTime)}}
		}
		parts = append(parts, rp)
	}
	return platformclientv2.Conversation{Id: sp(c.id), StartTime: tp(c.start), Participants: &parts, RecordingState: sp("none"),
		SelfUri: sp("/api/v2/conversations/" + c.id)}
}

// RESTBody returns the conversation as GET /api/v2/conversations/{id} answers it.
func (c *Conversation) RESTBody() []byte {
	c.mu.Lock()
	m := c.restModel()
	c.mu.Unlock()
	return wireJSON(m)
}

// forget drops the conversations ended before cutoff, the tokens expired
// before it and the requests logged before it (Config.Forget).
func (e *Emulator) forget(cutoff time.Time) {
	e.mu.Lock()
	convs := make([]*Conversation, 0, len(e.convOrder))
	for _, id := range e.convOrder {
		convs = append(convs, e.convs[id])
	}
	e.mu.Unlock()
	gone := map[string]bool{}
	for _, c := range convs {
		if c.endedBefore(cutoff) {
			gone[c.id] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(gone) > 0 {
		order := e.convOrder[:0]
		for _, id := range e.convOrder {
			if gone[id] {
				delete(e.convs, id)
				continue
			}
			order = append(order, id)
		}
		clear(e.convOrder[len(order):])
		e.convOrder = order
	}
	for v, t := range e.tokens {
		if t.expires.Before(cutoff) {
			delete(e.tokens, v)
		}
	}
	i := 0
	for i < len(e.requests) && e.requests[i].Time.Before(cutoff) {
		i++
	}
	if i > 0 {
		e.requests = append([]Request(nil), e.requests[i:]...)
	}
}

// endedBefore reports whether every participant of c left before cutoff.
func (c *Conversation) endedBefore(cutoff time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.parts) == 0 {
		return false
	}
	for _, p := range c.parts {
		if p.c.state != "disconnected" || !p.endTime.Before(cutoff) {
			return false
		}
	}
	return true
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AgentID is a Genesys Cloud user id: the agent a snapshot, event or pop
// belongs to.
type AgentID string

// GenesysID is a user or queue id as Genesys writes ids in topics and
// conversation bodies: in lower case, without the braces Windows tools and
// Dynamics copy a GUID in ({5E1F…}). Configured ids and a token's subject
// go through it, so that every spelling of one id names the same agent.
func GenesysID(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(id, "{"), "}"))
}

// ConversationID is a Genesys Cloud conversation id.
type ConversationID string

// ParticipantID is the id of one participant of a conversation. Each time a
// conversation is offered to an agent (first alert, re-offer after no answer,
// transfer back) Genesys creates a new agent participant, so it identifies one
// agent leg.
type ParticipantID string

// Media is the kind of interaction, in screenpop's names (Genesys says
// "call" where screenpop says "voice").
type Media string

const (
	MediaVoice    Media = "voice"
	MediaCallback Media = "callback"
	MediaChat     Media = "chat"
	MediaMessage  Media = "message"
	MediaEmail    Media = "email"
)

// Valid reports whether m is one of the media of version 1.
func (m Media) Valid() bool {
	switch m {
	case MediaVoice, MediaCallback, MediaChat, MediaMessage, MediaEmail:
		return true
	}
	return false
}

// State is the agent leg's state, in screenpop's names.
type State string

const (
	StateAlerting     State = "alerting"
	StateDialing      State = "dialing" // the agent's own outbound leg before the far end answers
	StateConnected    State = "connected"
	StateDisconnected State = "disconnected"
)

// Valid reports whether s is one of the states of version 1.
func (s State) Valid() bool {
	switch s {
	case StateAlerting, StateDialing, StateConnected, StateDisconnected:
		return true
	}
	return false
}

// Rank orders states along a leg's life, so that a snapshot that arrives late
// never moves a leg backwards: alerting and dialing < connected <
// disconnected.
func (s State) Rank() int {
	switch s {
	case StateAlerting, StateDialing:
		return 1
	case StateConnected:
		return 2
	case StateDisconnected:
		return 3
	}
	return 0
}

// Direction of the agent leg.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// Snapshot is one Genesys conversation snapshot as seen on one watched
// agent's topic (v2.users.{id}.conversations), or fetched by reconciliation
// after a gap and adapted to the same shape.
type Snapshot struct {
	Topic      string    // the notification topic, e.g. v2.users.<id>.conversations
	Agent      AgentID   // the watched agent the topic belongs to
	ChannelID  string    // the notification channel it arrived on; empty for reconciliation
	Body       []byte    // the conversation JSON (the envelope's eventBody), not re-encoded
	ReceivedAt time.Time // when screenpop read the frame (or fetched the conversation)
	Reconciled bool      // true when it came from the REST reconciliation, not the socket
}

// Customer is who the agent is talking to, as far as Genesys tells it. All
// of it is PII: it travels in events and pops but never in logs or URLs.
type Customer struct {
	Phone      string            `json:"phone"`   // E.164, or "" when no number could be parsed
	Address    string            `json:"address"` // the participant's address as Genesys gave it, e.g. tel:+13175550123
	Email      string            `json:"email"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes,omitempty"` // participant data, for the override rule and consumers
}

// AgentLeg names the agent participant an event is about.
type AgentLeg struct {
	UserID        AgentID       `json:"userId"`
	ParticipantID ParticipantID `json:"participantId"`
}

// Event is one state change of one agent leg: the data of a
// screenpop.conversation.<state>.v1 CloudEvent.
type Event struct {
	ConversationID ConversationID `json:"conversationId"`
	Agent          AgentLeg       `json:"agent"`
	Media          Media          `json:"media"`
	State          State          `json:"state"`
	Direction      string         `json:"direction"`
	Internal       bool           `json:"internal"`
	QueueID        string         `json:"queueId"`
	DNIS           string         `json:"dnis"`
	Customer       Customer       `json:"customer"`
	ReceivedAt     Time           `json:"receivedAt"` // when the bridge received the Genesys frame
	OccurredAt     Time           `json:"occurredAt"` // when Genesys says it happened; zero (empty) when unknown
	// LegEnded is set on a disconnected event when the agent participant
	// has ended in every media the bridge tracks for it: no event of the
	// leg follows, and its pop marker can go (see PopEnder). A participant
	// with a callback and a call that failed is disconnected in voice and
	// live in callback.
	LegEnded bool `json:"legEnded,omitempty"`
}

// ID is the event's CloudEvent id and Nats-Msg-Id:
// evt:<conversationId>:<agentParticipantId>:<media>:<state>. JetStream drops
// a second publish of the same id within its duplicate window, also from a
// second bridge instance.
func (e *Event) ID() string {
	return "evt:" + string(e.ConversationID) + ":" + string(e.Agent.ParticipantID) + ":" + string(e.Media) + ":" + string(e.State)
}

// PopID is the id of the pop this event's leg may produce:
// pop:<conversationId>:<agentParticipantId>, one per agent leg whatever its
// media and states.
func (e *Event) PopID() string {
	return PopID(e.ConversationID, e.Agent.ParticipantID)
}

// PopID formats a pop id.
func PopID(c ConversationID, p ParticipantID) string {
	return "pop:" + string(c) + ":" + string(p)
}

// Subject is the NATS subject the event is published on.
func (e *Event) Subject() string { return EventSubject(e.Media, e.State, e.Agent.UserID) }

// Action is what the agent's browser should do with a pop.
type Action string

const (
	ActionOpen   Action = "open"   // one record matched: open it
	ActionChoose Action = "choose" // several matched: let the agent choose among Candidates
	ActionCreate Action = "create" // nothing matched: offer a new record of Target.Entity with Prefill
	ActionSearch Action = "search" // the lookup failed or took too long: offer Target.Query as a search
	ActionNone   Action = "none"   // an internal call (SCREENPOP_POP_INTERNAL): no record to open or create
)

// Target is where a pop sends the agent.
type Target struct {
	Action Action `json:"action"`
	Entity string `json:"entity,omitempty"` // Dataverse logical name, e.g. contact
	ID     string `json:"id,omitempty"`     // record id (a GUID)
	Name   string `json:"name,omitempty"`   // record's primary name (PII)
	URL    string `json:"url,omitempty"`    // main.aspx record URL; never carries PII
	Query  string `json:"query,omitempty"`  // search text for action search (PII; never put in a URL)
}

// Candidate is one record offered by a choose pop.
type Candidate struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	URL    string `json:"url"`
}

// PopCustomer is the part of Customer that reaches the agent's browser.
type PopCustomer struct {
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

// Pop is the resolved screen-pop for one agent leg: the data of a
// screenpop.pop.v1 CloudEvent. The agent websocket message is the same
// object plus "type":"pop" and "seq".
type Pop struct {
	ID              string            `json:"id"` // pop:<conversationId>:<agentParticipantId>
	ConversationID  ConversationID    `json:"conversationId"`
	AgentID         AgentID           `json:"agentId"`
	Media           Media             `json:"media"`
	State           State             `json:"state"`
	Customer        PopCustomer       `json:"customer"`
	Target          Target            `json:"target"`
	Candidates      []Candidate       `json:"candidates,omitempty"`
	Prefill         map[string]string `json:"prefill,omitempty"`
	IssuedAt        Time              `json:"issuedAt"`
	EventReceivedAt Time              `json:"eventReceivedAt"`
}

// Subject is the NATS subject the pop is published on.
func (p *Pop) Subject() string { return PopSubject(p.AgentID) }

// Record is one Dataverse row a lookup found.
type Record struct {
	Entity string // logical name
	ID     string
	Name   string
	URL    string // the main.aspx record URL
}

// KeyKind says which customer identifier a lookup uses.
type KeyKind string

const (
	KeyPhone KeyKind = "phone" // an E.164 number
	KeyEmail KeyKind = "email"
)

// Key is one customer identifier to look up.
type Key struct {
	Kind  KeyKind
	Value string
	// Since, when not zero, asks for an answer read from the CRM at or
	// after it: an answer a Directory cached before is not used (and the
	// answer read instead is cached), unless reading fails, when records
	// found before are still better than none. The resolver sets it for a
	// conversation's later legs (a transfer, a consult) to the time of the
	// conversation's last pop: the agent who had that pop may have changed
	// the caller's records since (saved the create form, merged duplicates,
	// moved the number), and the receiving agent must get them as they are.
	Since time.Time
}

// Directory finds CRM records for a customer identifier. dataverse.Client
// implements it.
type Directory interface {
	// Lookup searches the configured entities in order and returns the
	// records of the first entity with any match (at most a few; the
	// resolver offers up to 10), or none. An error means the lookup could
	// not be answered (after the directory's own retries); the resolver
	// then falls back to a search pop; ErrUnsearchable means the key
	// itself cannot be searched (an unparseable number, an oversized
	// email), and the resolver goes on as if it matched nothing.
	Lookup(ctx context.Context, key Key) ([]Record, error)
	// RecordURL returns the record URL for entity and id, without a lookup.
	RecordURL(entity, id string) string
}

// Message is one message to publish: its subject, its de-duplication id
// (sent as Nats-Msg-Id) and its payload.
type Message struct {
	Subject string
	ID      string
	Data    []byte
}

type deliveryKey struct{}

// WithDelivery returns ctx telling a message's handler which delivery of
// the message it has: 1 for the first, more when the bus delivers it again
// (its handler failed, or an instance died before acknowledging it).
func WithDelivery(ctx context.Context, n uint64) context.Context {
	return context.WithValue(ctx, deliveryKey{}, n)
}

// Delivery returns the delivery WithDelivery put in ctx, 0 if none.
func Delivery(ctx context.Context) uint64 {
	n, _ := ctx.Value(deliveryKey{}).(uint64)
	return n
}

type clockKey struct{}

// WithClockCorrection returns ctx telling a message's handler what to add
// to a time the message's publisher wrote (an event's receivedAt) to have
// it on this host's clock: the publishing instance's clock may differ from
// this one's (the bus measures both against its server's).
func WithClockCorrection(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, clockKey{}, d)
}

// ClockCorrection returns the correction WithClockCorrection put in ctx, 0
// if none.
func ClockCorrection(ctx context.Context) time.Duration {
	d, _ := ctx.Value(clockKey{}).(time.Duration)
	return d
}

// Publisher puts messages on the bus. bus.Conn implements it.
type Publisher interface {
	// Publish stores m durably (in the JetStream stream) or returns an
	// error; a duplicate of an id already stored within the duplicate
	// window is not an error.
	Publish(ctx context.Context, m Message) error
}

// DedupPublisher is a Publisher that also tells whether the store already
// held a message of m's id (within its duplicate window) and dropped m.
// The resolver uses it so that a pop an earlier attempt published (an
// instance that died before acknowledging the event) is not logged and
// counted a second time. bus.Conn implements it.
type DedupPublisher interface {
	PublishDedup(ctx context.Context, m Message) (duplicate bool, err error)
}

// StoredPop is a pop as stored in the stream: its stream sequence (the seq
// agents resume from), the agent it is for, the CloudEvent bytes and when
// it was stored.
type StoredPop struct {
	Seq   uint64
	Agent AgentID
	Data  []byte // the screenpop.pop.v1 CloudEvent, as published
	Time  time.Time
	// ClockCorrection is what to add to a time in Data (eventReceivedAt,
	// on the publishing instance's clock) to have it on this host's: 0
	// when unknown (see WithClockCorrection).
	ClockCorrection time.Duration
}

// PopStore keeps the pop markers that make a pop happen once per leg, and
// reads the pops back for agents that reconnect. bus.Conn implements it.
type PopStore interface {
	// MarkPop records popID with claim, the id of the event being
	// resolved, and reports whether this event may publish the pop: true
	// when this call recorded it, or when the marker is recent enough for
	// JetStream to drop a second publish of the pop id (an earlier attempt
	// stored its marker but failed after: a lost acknowledgement, a crash
	// before the publish; the publish then tells whether the pop was
	// stored before); false when an older marker holds it (the leg has
	// popped before); false and ErrLegEnded when the leg has ended (see
	// PopEnder). The claim is what UnmarkPop compares.
	MarkPop(ctx context.Context, popID, claim string) (bool, error)
	// Epoch identifies the stream the sequences belong to; it changes when
	// the stream is recreated.
	Epoch() string
	// LatestPop returns the stream sequence of agent's newest pop, 0 if none.
	LatestPop(ctx context.Context, agent AgentID) (uint64, error)
	// ReplayPops calls fn, in stream order, for agent's pops with a
	// sequence after afterSeq that were stored at or after since, a time
	// of this host's clock (a store whose clock differs moves it onto its
	// own).
	ReplayPops(ctx context.Context, agent AgentID, afterSeq uint64, since time.Time, fn func(StoredPop) error) error
	// FollowPops calls fn for every pop stored from now on, for all agents,
	// in stream order, until ctx is done. One subscription per call. It
	// calls live (if not nil) once, when the subscription is in place:
	// every pop stored after that reaches fn. Until then pops can be stored
	// that fn never gets. fn may be called, from another goroutine, before
	// live has returned.
	FollowPops(ctx context.Context, fn func(StoredPop), live func()) error
}

// ErrLegEnded is returned by PopStore.MarkPop for a leg that has ended:
// it is not to pop any more.
var ErrLegEnded = errors.New("the agent leg has ended")

// ErrTooLarge is wrapped by a Publisher's error for a message larger than
// the bus accepts: no retry makes it fit. The error is a *TooLargeError
// when the Publisher knows the limit.
var ErrTooLarge = errors.New("message larger than the bus accepts")

// TooLargeError is a message of Size bytes refused by a bus that takes Max.
type TooLargeError struct{ Size, Max int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%v: %d bytes, the bus takes %d", ErrTooLarge, e.Size, e.Max)
}

func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ErrUnsearchable is returned by a Directory's Lookup for an identifier
// that cannot be searched: not a failure of the directory.
var ErrUnsearchable = errors.New("identifier cannot be searched")

// ErrInvalidToken is returned by an AgentAuthenticator for a token that is
// unknown, malformed, expired or revoked.
var ErrInvalidToken = errors.New("invalid or expired agent token")

// AgentAuthenticator turns the token an agent's browser presents into the
// agent's Genesys user id.
type AgentAuthenticator interface {
	// Authenticate returns the agent's id and until when the answer may be
	// trusted (the token's expiry, or a revalidation time). It returns an
	// error wrapping ErrInvalidToken for a bad token, and another error when
	// it could not tell (the identity provider is unreachable).
	Authenticate(ctx context.Context, token string) (AgentID, time.Time, error)
}

// ValidSubjectToken reports whether s can stand as one token of a NATS
// subject: not empty, no '.', '*', '>' or white space. Genesys ids are UUIDs;
// anything else is refused rather than allowed to widen a subject.
func ValidSubjectToken(s string) bool {
	if s == "" {
		return false
	}
	return !strings.ContainsAny(s, ".*> \t\r\n")
}

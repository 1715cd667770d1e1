package bridge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// NormalizerConfig configures a Normalizer. The zero value uses the defaults.
type NormalizerConfig struct {
	// PhoneRegion is the region numbers without a country code are read in
	// (SCREENPOP_PHONE_REGION). Default "US".
	PhoneRegion string
	// TombstoneTTL is how long a finished conversation (every tracked agent
	// leg disconnected) is remembered after its last snapshot, so that late
	// or repeated snapshots of it produce nothing. Default 10m; keep it at
	// least the JetStream duplicate window.
	TombstoneTTL time.Duration
	// IdleTTL is how long a conversation that never finished (its disconnect
	// was lost in a gap) is remembered after its last snapshot. Default 12h,
	// a long conversation.
	IdleTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Registerer receives the normalizer's metrics; nil registers none.
	Registerer prometheus.Registerer
}

const (
	defaultTombstoneTTL = 10 * time.Minute
	defaultIdleTTL      = 12 * time.Hour
)

// Normalizer turns Genesys conversation snapshots into events: exactly one
// Event per (conversation, agent participant, media, state).
//
// Genesys sends the whole conversation on every change anywhere in it, more
// than once, and not always in order. For each snapshot the Normalizer finds
// the watched agent's participants (one per offer of the conversation to
// that agent) and, per media, the communication that is live; it maps that to
// a State and emits an Event only when the leg moves forward (alerting and
// dialing < connected < disconnected). A repeated snapshot is a duplicate and
// an older one is stale: both are counted and produce nothing.
//
// State is bounded: a finished conversation stays as a tombstone for
// TombstoneTTL after its last snapshot, an unfinished one is forgotten
// IdleTTL after its last snapshot. Expired conversations are swept by
// Normalize itself, at most every TombstoneTTL/2, so no goroutine runs.
//
// Concurrency: Normalize is safe for concurrent use. Parsing runs without a
// lock; deciding and recording the state change runs under one mutex, so two
// goroutines handing in the same snapshot (a second channel, a
// reconciliation) produce one event between them.
type Normalizer struct {
	log      zerolog.Logger
	region   string
	tombTTL  time.Duration
	idleTTL  time.Duration
	sweepGap time.Duration
	now      func() time.Time
	views    sync.Pool
	m        normalizerMetrics
	// invalidLog holds back repeats of the malformed snapshot warning:
	// once every 10 s per reason (a payload change makes every frame one).
	invalidLog *loglimit.Limiter
	mu         sync.Mutex
	convs      map[string]*convState
	convsPeak  int // the most conversations convs has held: a map keeps the table of its peak
	legs       int
	finished   int
	nextSweep  time.Time

	// phones holds raw address -> E.164 ("" = not a number), and
	// oldPhones what phones held before the last sweep: the addresses
	// are callers' numbers, so an address no snapshot carried for two
	// sweep gaps (TombstoneTTL) is forgotten, as its conversation is.
	phoneMu   sync.Mutex
	phones    map[string]string
	oldPhones map[string]string
}

// maxPhoneCache bounds each generation of the phone cache; a full one
// becomes the old one. A conversation re-sends the same addresses in
// every snapshot, so even a small cache saves most of libphonenumber's
// cost.
const maxPhoneCache = 4096

// maxPhoneCacheKey is the longest raw address the phone cache keeps: no
// number ParsePhone reads is longer than maxPhoneInput, give or take
// surrounding spaces.
const maxPhoneCacheKey = 2 * maxPhoneInput

// parsePhone is ParsePhone in the normalizer's region, cached.
func (n *Normalizer) parsePhone(raw string) (string, bool) {
	if raw == "" {
		return "", false
	}
	if len(raw) > maxPhoneCacheKey {
		// Not kept: a client can make these up (a chat form's phone
		// field), and the cache bounds entries, not their bytes.
		// ParsePhone refuses most of them at once.
		return ParsePhone(raw, n.region)
	}
	n.phoneMu.Lock()
	e164, hit := n.phones[raw]
	if !hit {
		if e164, hit = n.oldPhones[raw]; hit {
			n.keepPhoneLocked(strings.Clone(raw), e164)
		}
	}
	n.phoneMu.Unlock()
	if hit {
		return e164, e164 != ""
	}
	e164, ok := ParsePhone(raw, n.region)
	n.phoneMu.Lock()
	n.keepPhoneLocked(strings.Clone(raw), e164)
	n.phoneMu.Unlock()
	return e164, ok
}

// keepPhoneLocked puts raw in the young generation of the phone cache.
func (n *Normalizer) keepPhoneLocked(raw, e164 string) {
	if len(n.phones) >= maxPhoneCache {
		n.agePhonesLocked()
	}
	n.phones[raw] = e164
}

// agePhonesLocked drops the old generation of the phone cache and makes
// the young one old.
func (n *Normalizer) agePhonesLocked() {
	clear(n.oldPhones)
	n.oldPhones, n.phones = n.phones, n.oldPhones
}

// convState is what the normalizer remembers of one conversation.
type convState struct {
	legs     []legState
	lastSeen time.Time
	finished bool // every leg disconnected: a tombstone
}

// legState is the last state emitted for one agent participant and media.
type legState struct {
	participant string
	media       Media
	state       State
}

type normalizerMetrics struct {
	snapshots    prometheus.Counter
	invalid      *prometheus.CounterVec
	events       *prometheus.CounterVec
	duplicates   prometheus.Counter
	stale        prometheus.Counter
	unknownMedia prometheus.Counter
	unknownState prometheus.Counter
	expired      *prometheus.CounterVec
}

// NewNormalizer returns a Normalizer. It fails on an unknown PhoneRegion or a
// metric that cannot be registered.
func NewNormalizer(cfg NormalizerConfig, log zerolog.Logger) (*Normalizer, error) {
	if cfg.PhoneRegion == "" {
		cfg.PhoneRegion = "US"
	}
	if !validPhoneRegion(cfg.PhoneRegion) {
		return nil, fmt.Errorf("new normalizer: unknown phone region %q (want an ISO 3166 code such as US or GB)", cfg.PhoneRegion)
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = defaultTombstoneTTL
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = defaultIdleTTL
	}
	if cfg.IdleTTL < cfg.TombstoneTTL {
		cfg.IdleTTL = cfg.TombstoneTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Normalizer{
		log:        log.With().Str("component", "bridge").Str("stage", "normalize").Logger(),
		invalidLog: loglimit.New(10*time.Second, 8),
		region:     strings.ToUpper(cfg.PhoneRegion),
		tombTTL:    cfg.TombstoneTTL,
		idleTTL:    cfg.IdleTTL,
		sweepGap:   cfg.TombstoneTTL / 2,
		now:        cfg.Now,
		convs:      make(map[string]*convState),
		phones:     make(map[string]string),
		oldPhones:  make(map[string]string),
	}
	n.views.New = func() any { return &snapView{parts: make([]partView, 0, 8), cands: make([]candidate, 0, 8)} }
	n.nextSweep = n.now().Add(n.sweepGap)
	n.m = normalizerMetrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_snapshots_total", Help: "Conversation snapshots handed to the normalizer."}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_invalid_snapshots_total", Help: "Snapshots skipped as malformed, by reason."}, []string{"reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_events_total", Help: "Events emitted, by media and state."}, []string{"media", "state"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_duplicates_total", Help: "Agent legs seen again in the state already emitted (suppressed)."}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_stale_total", Help: "Agent legs seen in an earlier state than already emitted: out-of-order snapshots (suppressed)."}),
		unknownMedia: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_unknown_media_total", Help: "Snapshots whose agent participant has only media version 1 does not map (video, cobrowse, ...)."}),
		unknownState: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_unmapped_states_total", Help: "Agent communications in a state that maps to no event (scheduled, parked, none, ...)."}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_normalizer_forgotten_total", Help: "Conversations dropped from the normalizer's state, by kind (tombstone, idle)."}, []string{"kind"}),
	}
	if r := cfg.Registerer; r != nil {
		cs := []prometheus.Collector{n.m.snapshots, n.m.invalid, n.m.events, n.m.duplicates, n.m.stale, n.m.unknownMedia, n.m.unknownState, n.m.expired,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_bridge_normalizer_conversations", Help: "Conversations the normalizer remembers (live and tombstones)."},
				func() float64 { return float64(n.Status().Conversations) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_bridge_normalizer_legs", Help: "Agent legs the normalizer remembers."},
				func() float64 { return float64(n.Status().Legs) }),
		}
		for _, c := range cs {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("new normalizer: register metrics: %w", err)
			}
		}
	}
	return n, nil
}

// NormalizerStatus is the normalizer's state size, for /status.
type NormalizerStatus struct {
	Conversations int `json:"conversations"` // remembered, live and finished
	Tombstones    int `json:"tombstones"`    // finished, kept to absorb late snapshots
	Legs          int `json:"legs"`          // agent legs across them
}

// Status returns the normalizer's state size.
func (n *Normalizer) Status() NormalizerStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	return NormalizerStatus{Conversations: len(n.convs), Tombstones: n.finished, Legs: n.legs}
}

// candidate is one agent leg of a snapshot with its mapped state, and what
// record decided about it. The flags live in the candidate rather than in a
// fixed-width bit set: a long-lived messaging or email conversation offered
// to one agent many times repeats every ended leg in each snapshot, so the
// number of candidates has no useful bound.
type candidate struct {
	part, comm int
	state      State
	direction  string
	emit       bool // a state change: an event follows
	ended      bool // emitted disconnected, and the participant has ended in every media
}

// Normalize returns the events s causes: none for a snapshot that changes no
// agent leg of s.Agent (most of them), usually one, and several when one
// snapshot finishes one leg and starts another. s.Body is read, not kept,
// and must not change during the call. Malformed snapshots are counted,
// logged without their content and produce nothing.
func (n *Normalizer) Normalize(s Snapshot) []Event {
	n.m.snapshots.Inc()
	agent := s.Agent
	if agent == "" {
		agent = agentFromTopic(s.Topic)
	}
	if !ValidSubjectToken(string(agent)) {
		n.invalid("agent", s)
		return nil
	}
	body := bytesString(s.Body)
	if !gjson.Valid(body) {
		n.invalid("json", s)
		return nil
	}
	v := n.views.Get().(*snapView)
	defer func() { v.reset(); n.views.Put(v) }()
	parseSnapshot(body, string(agent), v)
	if v.conversationID == "" || strings.ContainsRune(v.conversationID, ':') || !ValidSubjectToken(v.conversationID) {
		n.invalid("conversation_id", s)
		return nil
	}

	// The candidates live in the pooled view, so a conversation with many
	// legs grows the slice once rather than on every snapshot.
	cands := v.cands[:0]
	otherMedia := false
	// held are the agent participants with a communication live in a
	// state the normalizer does not map (a scheduled callback next to a
	// failed call): that media's own disconnected ends the leg, not
	// another's. A media version 1 does not map (video, cobrowse, screen
	// share) holds nothing: it makes no event, so none of its could carry
	// legEnded once it ended after the tracked ones.
	var held []int
	for i := range v.parts {
		p := &v.parts[i]
		// A supervisor's monitoring, coaching or barging participant carries the
		// supervisor's user id, but is no offer of the conversation: it
		// would pop the agent's customer on the supervisor's screen. Nor
		// is the agent's own voicemail taking a message of a call the
		// agent did not answer, should it carry the agent's user id.
		if p.userID != string(agent) || p.id == "" || strings.ContainsRune(p.id, ':') || p.listener || strings.EqualFold(p.purpose, "voicemail") {
			continue
		}
		found := false
		for _, m := range legOrder {
			j := liveComm(p.comms, m, p.endTime != "")
			if j < 0 {
				continue
			}
			found = true
			st, dir, ok := legStateOf(&p.comms[j], p.endTime != "")
			if !ok {
				n.m.unknownState.Inc()
				held = append(held, i)
				continue
			}
			cands = append(cands, candidate{part: i, comm: j, state: st, direction: dir})
		}
		if !found && p.otherMedia {
			otherMedia = true
		}
	}
	v.cands = cands
	if len(cands) == 0 {
		if otherMedia {
			n.m.unknownMedia.Inc()
		}
		return nil
	}

	emitted := n.record(v, cands, held, s.ReceivedAt)
	if emitted == 0 {
		return nil
	}
	return n.events(s, agent, v, cands, emitted)
}

// record decides, under the lock, which candidates are state changes and
// records them: it sets emit on each, and ended on the disconnected ones
// whose participant has now ended in every media it has, unless it is held.
// It returns how many it set emit on.
func (n *Normalizer) record(v *snapView, cands []candidate, held []int, received time.Time) (emitted int) {
	now := n.now()
	if received.IsZero() {
		received = now
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	conv := n.convs[v.conversationID]
	for k := range cands {
		c := &cands[k]
		c.emit, c.ended = false, false
		p := &v.parts[c.part]
		m := p.comms[c.comm].media
		var leg *legState
		if conv != nil {
			for i := range conv.legs {
				if conv.legs[i].participant == p.id && conv.legs[i].media == m {
					leg = &conv.legs[i]
					break
				}
			}
		}
		switch {
		case leg == nil:
			if conv == nil {
				conv = &convState{}
				n.convs[strings.Clone(v.conversationID)] = conv
			}
			conv.legs = append(conv.legs, legState{participant: strings.Clone(p.id), media: m, state: c.state})
			n.legs++
			if c.state == StateDisconnected && n.endedBefore(p, &p.comms[c.comm], received.Add(-n.tombTTL)) {
				// First seen, but ended longer ago than a tombstone lives:
				// a late snapshot (a wrap-up, a message thread resumed)
				// of a leg already reported, its tombstone swept. Remember
				// it, report nothing.
				n.m.stale.Inc()
				continue
			}
		case leg.state.Rank() == c.state.Rank():
			n.m.duplicates.Inc()
			continue
		case leg.state.Rank() > c.state.Rank():
			n.m.stale.Inc()
			n.log.Debug().Str("conversation_id", v.conversationID).Str("participant_id", p.id).
				Str("media", string(m)).Str("state", string(c.state)).Str("have_state", string(leg.state)).
				Msg("stale snapshot suppressed")
			continue
		default:
			leg.state = c.state
		}
		c.emit = true
		emitted++
	}
	// Only the participant's last event of this snapshot ends the leg:
	// nothing of the leg follows an event with legEnded.
	last := -1
	for k := len(cands) - 1; k >= 0; k-- {
		c := &cands[k]
		if !c.emit {
			continue
		}
		if c.part != last && c.state == StateDisconnected && !slices.Contains(held, c.part) && participantEnded(conv, v.parts[c.part].id) {
			c.ended = true
		}
		last = c.part
	}
	if conv != nil {
		conv.lastSeen = now
		fin := true
		for i := range conv.legs {
			if conv.legs[i].state != StateDisconnected {
				fin = false
				break
			}
		}
		if fin != conv.finished {
			conv.finished = fin
			if fin {
				n.finished++
			} else {
				n.finished--
			}
		}
	}
	if !now.Before(n.nextSweep) {
		n.sweepLocked(now)
	}
	return emitted
}

// endedBefore reports whether the communication (else its participant)
// says it ended before t.
func (n *Normalizer) endedBefore(p *partView, c *commView, t time.Time) bool {
	end := parseTime(c.disconnectedTime)
	if end.IsZero() {
		end = parseTime(p.endTime)
	}
	return !end.IsZero() && end.Time.Before(t)
}

// participantEnded reports whether every leg conv has of participant is
// disconnected.
func participantEnded(conv *convState, participant string) bool {
	for i := range conv.legs {
		if conv.legs[i].participant == participant && conv.legs[i].state != StateDisconnected {
			return false
		}
	}
	return true
}

// minShrinkConvs is the smallest peak of the conversation map worth
// rebuilding it for.
const minShrinkConvs = 1024

// sweepLocked forgets expired conversations, and the addresses of the
// phone cache no snapshot carried since the sweep before.
func (n *Normalizer) sweepLocked(now time.Time) {
	// Only the sweep deletes: the map holds the most it has held since
	// the last one.
	n.convsPeak = max(n.convsPeak, len(n.convs))
	for id, c := range n.convs {
		age := now.Sub(c.lastSeen)
		switch {
		case c.finished && age >= n.tombTTL:
			n.m.expired.WithLabelValues("tombstone").Inc()
			n.finished--
		case age >= n.idleTTL:
			n.m.expired.WithLabelValues("idle").Inc()
			n.log.Debug().Str("conversation_id", id).Msg("unfinished conversation forgotten")
		default:
			continue
		}
		n.legs -= len(c.legs)
		delete(n.convs, id)
	}
	// A Go map never gives back its table: after a storm of calls or the
	// day's peak it would keep that size, all of it pointers the
	// collector marks on every cycle, for the life of the process. Once
	// it holds under a quarter of its peak, a fresh one is made (a copy
	// of at most a quarter of what the loop above just walked).
	if n.convsPeak >= minShrinkConvs && len(n.convs) < n.convsPeak/4 {
		m := make(map[string]*convState, len(n.convs))
		maps.Copy(m, n.convs)
		n.convs, n.convsPeak = m, len(m)
	}
	n.phoneMu.Lock()
	n.agePhonesLocked()
	n.phoneMu.Unlock()
	n.nextSweep = now.Add(n.sweepGap)
}

// events builds the events of the emitted candidates.
func (n *Normalizer) events(s Snapshot, agent AgentID, v *snapView, cands []candidate, emitted int) []Event {
	internal := true
	cust := -1
	for i := range v.parts {
		switch strings.ToLower(v.parts[i].purpose) {
		case "customer":
			internal = false
			if cust < 0 || !strings.EqualFold(v.parts[cust].purpose, "customer") {
				cust = i
			}
		case "external":
			internal = false
			if cust < 0 {
				cust = i
			}
		}
	}
	var customer Customer
	if cust >= 0 {
		customer = n.customerOf(&v.parts[cust])
	}
	convID := ConversationID(strings.Clone(v.conversationID))
	out := make([]Event, 0, emitted)
	for k := range cands {
		c := &cands[k]
		if !c.emit {
			continue
		}
		p := &v.parts[c.part]
		comm := &p.comms[c.comm]
		e := Event{
			ConversationID: convID,
			Agent:          AgentLeg{UserID: AgentID(strings.Clone(string(agent))), ParticipantID: ParticipantID(strings.Clone(p.id))},
			Media:          comm.media,
			State:          c.state,
			Direction:      c.direction,
			Internal:       internal,
			QueueID:        strings.Clone(queueOf(v, p, cust)),
			Customer:       customer,
			ReceivedAt:     NewTime(s.ReceivedAt),
			LegEnded:       c.ended,
		}
		if len(out) > 0 && customer.Attributes != nil {
			e.Customer.Attributes = maps.Clone(customer.Attributes)
		}
		if cust >= 0 && c.direction == DirectionInbound {
			e.DNIS = n.dnisOf(&v.parts[cust], comm.media)
		}
		switch c.state {
		case StateConnected:
			e.OccurredAt = parseTime(comm.connectedTime)
		case StateDisconnected:
			e.OccurredAt = parseTime(comm.disconnectedTime)
			if e.OccurredAt.IsZero() {
				e.OccurredAt = parseTime(p.endTime)
			}
		}
		n.m.events.WithLabelValues(string(e.Media), string(e.State)).Inc()
		n.log.Debug().Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(agent)).
			Str("participant_id", string(e.Agent.ParticipantID)).Str("media", string(e.Media)).
			Str("state", string(e.State)).Bool("internal", internal).Msg("event")
		out = append(out, e)
	}
	return out
}

func (n *Normalizer) invalid(reason string, s Snapshot) {
	n.m.invalid.WithLabelValues(reason).Inc()
	// The topic names the agent (an id); the body is never logged. Once
	// every 10 s per reason, held_back counting the others
	// (invalid_snapshots_total counts each); the others at debug.
	ev := n.log.Debug()
	if ok, held := n.invalidLog.Allow(reason, n.now()); ok {
		ev = n.log.Warn().Int("held_back", held)
	}
	ev.Str("reason", reason).Str("topic", s.Topic).Int("bytes", len(s.Body)).Msg("malformed snapshot skipped")
}

// legOrder is the order an agent participant's media are considered in,
// and so the order of the events one snapshot causes for it: a callback's
// call follows the callback (docs/events.md).
var legOrder = [5]Media{MediaCallback, MediaVoice, MediaChat, MediaMessage, MediaEmail}

// liveComm returns the index of the communication of media m that stands
// for the leg: the most advanced live one (connected, then alerting or
// dialing), else one live in a state that is no step (an email parked
// after its reply was sent: the leg goes on, held), else an ended one,
// else one in no state (none, or none given); -1 when the participant has
// none of m. Once the participant has ended (ended), nothing of it is live:
// an ended communication stands for the leg (its direction and time), not a
// reply still being sent.
func liveComm(comms []commView, m Media, ended bool) int {
	best, bestScore := -1, -1
	for i := range comms {
		if comms[i].media != m {
			continue
		}
		score := 2
		switch comms[i].state {
		case "connected":
			score = 4
		case "alerting", "offering", "dialing", "contacting":
			score = 3
		case "disconnected", "terminated":
			score = 1
			if ended {
				score = 5
			}
		case "", "none":
			score = 0
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// legStateOf maps a communication to screenpop's state and direction. ok is
// false for states that are no step of an agent leg (scheduled, parked,
// transmitting, none, ...). A participant that has ended is disconnected
// whatever its communication still says.
func legStateOf(c *commView, ended bool) (st State, dir string, ok bool) {
	switch {
	case strings.EqualFold(c.direction, DirectionOutbound):
		dir = DirectionOutbound
	case strings.EqualFold(c.direction, DirectionInbound):
		dir = DirectionInbound
	case c.initialState == "dialing" || c.initialState == "contacting":
		dir = DirectionOutbound // chats have no direction: the agent started it
	default:
		dir = DirectionInbound
	}
	if ended {
		return StateDisconnected, dir, true
	}
	switch c.state {
	case "alerting", "offering":
		st = StateAlerting
	case "dialing", "contacting":
		if dir == DirectionOutbound {
			st = StateDialing
		} else {
			st = StateAlerting // the platform is still reaching the agent's station
		}
	case "connected":
		st = StateConnected
	case "disconnected", "terminated":
		st = StateDisconnected
	default:
		return "", dir, false
	}
	return st, dir, true
}

// queueOf is the queue the agent leg came through: the agent participant's
// own queue, its routing data, the ACD participant's, else the customer's.
// Only an ACD participant listed before the agent's counts: Genesys lists
// participants in the order they joined, and one that joined later (the
// agent transferred the conversation to a queue) is where the conversation
// went, not where the leg came from; it would change the leg's queueId on
// its disconnected event.
func queueOf(v *snapView, p *partView, cust int) string {
	if p.queueID != "" {
		return p.queueID
	}
	if p.routingQueue != "" {
		return p.routingQueue
	}
	q := ""
	for i := range v.parts {
		if &v.parts[i] == p {
			break
		}
		if strings.EqualFold(v.parts[i].purpose, "acd") {
			if v.parts[i].queueID != "" {
				q = v.parts[i].queueID
			} else if v.parts[i].routingQueue != "" {
				q = v.parts[i].routingQueue
			}
		}
	}
	if q == "" && cust >= 0 {
		q = v.parts[cust].queueID
	}
	return q
}

// dnisOf is the number the customer dialled, in E.164: the customer call's
// far end (other), or the messaging address it wrote to. "" when unknown or
// not a number.
func (n *Normalizer) dnisOf(p *partView, m Media) string {
	for i := range p.comms {
		c := &p.comms[i]
		// A communication the platform placed to the customer (a
		// customer-first callback, offered to the agent as an inbound
		// call) was dialled by nobody on the customer's side: its far end
		// is the caller id the platform used.
		if c.media != m || strings.EqualFold(c.direction, DirectionOutbound) {
			continue
		}
		var raw string
		switch m {
		case MediaVoice:
			raw = c.otherAddr
		case MediaMessage:
			raw = messagePhone(c.msgType, c.toAddr)
		}
		if e164, ok := n.parsePhone(raw); ok {
			return e164
		}
	}
	return ""
}

// customerOf builds the customer from the conversation's customer (or
// external) participant. Every string is copied out of the snapshot body.
func (n *Normalizer) customerOf(p *partView) Customer {
	var c Customer
	var attrs map[string]string
	if p.attrs.Exists() {
		p.attrs.ForEach(func(k, val gjson.Result) bool {
			if attrs == nil {
				attrs = make(map[string]string)
			}
			if val.Type == gjson.String {
				attrs[strings.Clone(k.Str)] = strings.Clone(val.Str)
			} else if val.Type != gjson.Null {
				attrs[strings.Clone(k.Str)] = strings.Clone(val.Raw)
			}
			return true
		})
	}
	c.Attributes = attrs

	hasEmail, openMessage := false, false
	addr := p.address
	// A messaging participant's address repeats its fromAddress: the
	// organization's own number on a message the agent started, whose
	// customer is its recipient.
	for i := range p.comms {
		if cm := &p.comms[i]; cm.media == MediaMessage && strings.EqualFold(cm.direction, DirectionOutbound) && cm.toAddr != "" {
			addr = cm.toAddr
			break
		}
	}
	// A phone number only on the channels that address people by one.
	addrPhone := addr
	for i := range p.comms {
		if cm := &p.comms[i]; cm.media == MediaMessage {
			addrPhone = messagePhone(cm.msgType, addr)
			if addrPhone != "" {
				break
			}
		}
	}
	var phones [6]string
	cand := phones[:0]
	if addrPhone != "" {
		cand = append(cand, addrPhone)
	}
	for i := range p.comms {
		cm := &p.comms[i]
		switch cm.media {
		case MediaVoice:
			cand = append(cand, cm.selfAddr)
			if addr == "" {
				addr = cm.selfAddr
			}
		case MediaCallback:
			cand = append(cand, cm.callbackNumber)
			if addr == "" {
				addr = cm.callbackNumber
			}
		case MediaMessage:
			far, _ := cm.customerEnd()
			if ph := messagePhone(cm.msgType, far); ph != "" {
				cand = append(cand, ph)
			}
			if addr == "" {
				addr = far
			}
			// An open messaging integration may name its sender by
			// email address (idType Email).
			openMessage = openMessage || strings.EqualFold(cm.msgType, "open")
		case MediaEmail:
			hasEmail = true
		}
		if len(cand) == cap(cand)-1 {
			break
		}
	}
	cand = append(cand, attrs["context.phoneNumber"])
	c.Address = strings.Clone(addr)
	for _, raw := range cand {
		if e164, ok := n.parsePhone(raw); ok {
			c.Phone = e164
			break
		}
	}

	switch {
	case (hasEmail || openMessage) && emailAddress(addr) != "":
		c.Email = strings.Clone(emailAddress(addr))
	case strings.HasPrefix(addr, "mailto:") && looksLikeEmail(addr[len("mailto:"):]):
		c.Email = strings.Clone(addr[len("mailto:"):])
	case attrs["context.email"] != "":
		c.Email = emailOrRaw(attrs["context.email"])
	case attrs["email"] != "":
		c.Email = emailOrRaw(attrs["email"])
	}

	first, last := strings.TrimSpace(attrs["context.firstName"]), strings.TrimSpace(attrs["context.lastName"])
	switch {
	case first != "" || last != "":
		c.Name = strings.TrimSpace(first + " " + last)
	case p.name != "":
		c.Name = strings.Clone(p.name)
	default:
		for i := range p.comms {
			if _, nm := p.comms[i].customerEnd(); nm != "" {
				c.Name = strings.Clone(nm)
				break
			}
			if nm := p.comms[i].callbackName; nm != "" {
				c.Name = strings.Clone(nm)
				break
			}
		}
	}
	return c
}

// phoneAddressed reports whether addr, an address of a message of type t,
// is a phone number: always for SMS and WhatsApp, and for open messaging
// (any third-party channel) only when written in international form. The
// other channels (twitter, facebook, instagram, line, webmessaging, ...)
// address people by a platform id, often all digits, which ParsePhone would
// read as a number in the configured region and the resolver would look up
// as a stranger's phone.
func phoneAddressed(t, addr string) bool {
	switch {
	case strings.EqualFold(t, "sms"), strings.EqualFold(t, "whatsapp"):
		return true
	case strings.EqualFold(t, "open"):
		s := strings.TrimSpace(addr)
		// International form, bare or as a tel URI (tel:+16175550123).
		return strings.HasPrefix(s, "+") || len(s) > 5 && strings.EqualFold(s[:5], "tel:+")
	}
	return false
}

// whatsappScheme is the prefix Twilio writes WhatsApp senders with
// (whatsapp:+14155550123), which an open messaging integration bridging it
// may hand on as the sender's id.
const whatsappScheme = "whatsapp:"

// withoutWhatsAppScheme returns addr without a leading "whatsapp:".
func withoutWhatsAppScheme(addr string) string {
	s := strings.TrimSpace(addr)
	if len(s) > len(whatsappScheme) && strings.EqualFold(s[:len(whatsappScheme)], whatsappScheme) {
		return strings.TrimSpace(s[len(whatsappScheme):])
	}
	return addr
}

// messagePhone returns the phone number to read from addr, an address of
// a message of type t, or "" when the channel does not address people by
// phone number. WhatsApp identifies people by their number in
// international form, written without the '+' (its wa_id): an address of
// digits gets the '+' rather than being read in the configured region.
func messagePhone(t, addr string) string {
	if strings.EqualFold(t, "whatsapp") || strings.EqualFold(t, "open") {
		addr = withoutWhatsAppScheme(addr)
	}
	if !phoneAddressed(t, addr) {
		return ""
	}
	if s := strings.TrimSpace(addr); strings.EqualFold(t, "whatsapp") && s != "" && s[0] >= '1' && s[0] <= '9' {
		return "+" + s
	}
	return addr
}

// customerEnd returns the customer's end of a message communication of the
// customer participant, its address and name: the sender of a message the
// customer started, the recipient of one the agent started (an outbound
// SMS or WhatsApp goes from the organization's number to the customer's).
func (c *commView) customerEnd() (addr, name string) {
	if strings.EqualFold(c.direction, DirectionOutbound) {
		return c.toAddr, c.toName
	}
	return c.fromAddr, c.fromName
}

// emailAddress returns the email address in addr, a participant's
// address: bare, as a mailto: URI, or with a display name as mail headers
// write it ("Jane Doe" <jane@example.com>); "" when it holds none.
func emailAddress(addr string) string {
	s := strings.TrimSpace(strings.TrimPrefix(addr, "mailto:"))
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		s = strings.TrimSpace(s[i+1 : len(s)-1])
	}
	if !looksLikeEmail(s) {
		return ""
	}
	return s
}

// emailOrRaw is the email address in v, an email a chat form or a flow
// gave (bare, mailto:, or with a display name), else v as it is.
func emailOrRaw(v string) string {
	v = narrowASCII(v)
	if a := emailAddress(v); a != "" {
		return a
	}
	return v
}

// narrowASCII writes the full-width forms of ASCII (U+FF01-U+FF5E, as an
// East Asian input method in full-width mode types them: ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ)
// and the ideographic space as ASCII, as foldPhone does in a number.
func narrowASCII(v string) string {
	if !strings.ContainsFunc(v, func(r rune) bool { return r >= 0xFF01 && r <= 0xFF5E || r == 0x3000 }) {
		return v
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E:
			return r - 0xFEE0
		case r == 0x3000:
			return ' '
		}
		return r
	}, v)
}

// looksLikeEmail is a plausibility check (one '@', something on both
// sides), not validation: the directory looks the address up as given.
func looksLikeEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && at < len(s)-1 && strings.Count(s, "@") == 1 && !strings.ContainsAny(s, " :<>")
}

// parseTime reads a Genesys timestamp; zero when absent or unreadable. A
// time whose offset takes it, in UTC, out of the years 0000 to 9999 is
// unreadable: events write times in UTC, and RFC 3339 (the schema's
// date-time, DecodeEvent) has no other years.
func parseTime(s string) Time {
	if s == "" {
		return Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Time{}
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return Time{}
	}
	return NewTime(t)
}

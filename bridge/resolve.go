package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// PrefillColumns names the Dataverse columns a create pop fills from the
// customer, for one entity. An empty name is not filled.
type PrefillColumns struct {
	Phone     string // e.g. telephone1
	Email     string // e.g. emailaddress1
	FirstName string // e.g. firstname (the first word of the customer's name, or what follows the comma of "Doe, Jane")
	LastName  string // e.g. lastname (the rest, or the only word, or what precedes the comma)
	FullName  string // e.g. name, for accounts
}

// DefaultPrefill is the prefill of the built-in entities.
func DefaultPrefill() map[string]PrefillColumns {
	return map[string]PrefillColumns{
		"contact": {Phone: "telephone1", Email: "emailaddress1", FirstName: "firstname", LastName: "lastname"},
		"lead":    {Phone: "telephone1", Email: "emailaddress1", FirstName: "firstname", LastName: "lastname"},
		"account": {Phone: "telephone1", Email: "emailaddress1", FullName: "name"},
	}
}

// ResolverConfig configures a Resolver; zero fields take the defaults of
// DESIGN.md.
type ResolverConfig struct {
	PopOn       State         // SCREENPOP_POP_ON: StateAlerting (default) or StateConnected
	MaxEventAge time.Duration // SCREENPOP_MAX_EVENT_AGE: older events make no pop (30s)
	// MaxLegAge: a leg first seen connected (after a gap, a restart, or the
	// normalizer forgetting an idle conversation) that connected longer ago
	// than this makes no pop (12h). Keep it below the pop marker TTL (bus
	// MarkerTTL, 24h): an older leg's marker may be gone, and the leg would
	// pop again.
	MaxLegAge    time.Duration
	Deadline     time.Duration // SCREENPOP_POP_DEADLINE, from the event's ReceivedAt (2s)
	CreateEntity string        // SCREENPOP_CREATE_ENTITY (contact)
	// SCREENPOP_OVERRIDE_KEYS: participant attributes naming a record
	// (screenpop.entity, screenpop.id).
	OverrideEntityKey, OverrideIDKey string
	PopInternal                      bool                      // SCREENPOP_POP_INTERNAL
	Prefill                          map[string]PrefillColumns // per entity; nil = DefaultPrefill
	// PublishTimeout bounds the retries of one pop's publish within one
	// Handle call (5s); Handle then returns an error for redelivery. Keep
	// the handler's worst case (the lookup deadline, these retries and a
	// 2 s unmark) inside the event consumer's ack wait (10 s with bus's
	// default): the consumer keeps a running handler's event in progress,
	// but not while NATS cannot hear it, and then the event comes back
	// while this handler still retries.
	PublishTimeout time.Duration
	Now            func() time.Time
	Registerer     prometheus.Registerer
}

// Prefetcher is optionally implemented by a Directory (dataverse.Client
// does): start a lookup in the background so that a later Lookup is a
// cache hit. With PopOn connected the resolver prefetches at alerting.
type Prefetcher interface {
	Prefetch(key Key)
}

// PopUnmarker is optionally implemented by a PopStore (bus.Conn does):
// remove a marker whose pop could not be published, so that the
// redelivered event can pop, unless it no longer holds claim (the leg has
// ended since).
type PopUnmarker interface {
	UnmarkPop(ctx context.Context, popID, claim string) error
}

// PopFinder is optionally implemented by a PopStore (bus.Conn does):
// report whether agent's newest stored pop is popID. Instances share the
// resolver's consumer, so a leg's later events (its connected after the
// alerting that popped it) mostly go to an instance that did not pop it;
// this answers for it without a lookup.
type PopFinder interface {
	PoppedLast(ctx context.Context, agent AgentID, popID string) (bool, error)
}

// PopReader is optionally implemented by a PopStore (bus.Conn does):
// the bytes of agent's pop popID stored at or after since (this host's
// clock), nil when there is none. It answers findStored without waiting
// behind ReplayPops, which every resuming agent page calls: when an
// instance dies, its pages resume on the survivor just as its handlers'
// events come back to be checked.
type PopReader interface {
	ReadPop(ctx context.Context, agent AgentID, popID string, since time.Time) ([]byte, error)
}

// PopChecker is optionally implemented by a PopStore (bus.Conn does):
// report whether agent's pop popID is stored, for a leg whose marker
// refused an event (MarkPop false: older than the duplicate window). A
// marker whose handler died between it and the pop's publish, or whose pop
// was kept in memory by a process that stopped before the event came back,
// claims a leg that never popped; past the duplicate window it refused
// every later event of the leg, so the call never popped. It answers true
// when it cannot tell (the stream no longer holds what was stored then).
type PopChecker interface {
	PopStored(ctx context.Context, agent AgentID, popID string) (bool, error)
}

// PopEnder is optionally implemented by a PopStore (bus.Conn does): shorten
// the life of a leg's marker once the leg has ended (an event with
// LegEnded), so that the store holds markers for live legs and the last
// minutes' ended ones rather than for every leg of the marker TTL. From
// then on the marker refuses every event of the leg.
type PopEnder interface {
	EndPop(ctx context.Context, popID string) error
}

// Resolver turns conversation events into pops (see "Pop decision" in
// DESIGN.md): it decides whether an event pops, looks the customer up in
// the Directory under a deadline, marks the pop in the PopStore (one pop
// per agent leg) and publishes it.
//
// Exactly-once, and its one gap: the marker is written after the lookup
// and before the publish. A publish that fails is retried with the same
// Nats-Msg-Id (JetStream drops a duplicate) for PublishTimeout; if it still
// fails the marker is removed (PopUnmarker) and Handle returns an error, so
// the redelivered event pops afresh; if even the unmark fails, the pop is
// remembered in memory and published on redelivery, unless its event has
// become older than MaxEventAge or its leg has ended meanwhile, here or
// on another instance (the marker tells). A process crash
// between the marker write and the publish's acknowledgement loses that
// pop unless the event is redelivered within the duplicate window (the
// marker holds its claim, so it publishes, and JetStream drops a second
// copy), or a later event of the leg finds, past that window, no pop of
// the leg stored (PopChecker); that window is one local JetStream round
// trip. The event that
// ends a leg ends its marker (PopEnder): from then on it refuses every
// event of the leg (ErrLegEnded, counted as ended), so a pop caught in that
// window, one waiting in memory, or one whose lookup outlasted the leg is
// not made when the leg ends first: the call is over.
//
// Concurrency: Handle is safe for concurrent use; events of one leg may
// be handled at once (the marker decides which one pops), but only one
// handler at a time marks and publishes a leg: the others wait for its
// outcome, and fail (for redelivery) when it failed, so that no copy or
// other event of the leg is acknowledged while its pop is undecided.
type Resolver struct {
	cfg    ResolverConfig
	dir    Directory
	store  PopStore
	pub    Publisher
	hasher Hasher
	log    zerolog.Logger
	m      *resolverMetrics
	// malformedLog holds back repeats of the malformed event warning:
	// once every 10 s (another publisher sends every event so).
	malformedLog *loglimit.Limiter
	// markLog holds back repeats of the pop marker warning: once every
	// 10 s. The store failing fails the marker of every event in the
	// workers' hands (up to 64), one cause.
	markLog *loglimit.Limiter

	mu      sync.Mutex
	pending map[string]pendingPop      // marked, publish failed, unmark failed
	swept   time.Time                  // when pending was last swept
	recent  *recentSet[string]         // legs published here lately: skip the lookup for later events of the leg
	convs   *recentSet[ConversationID] // conversations popped here lately, with their last pop: later legs look up afresh
	marking map[string]*legTurn        // legs a handler here is marking and publishing
	popping map[string]int             // legs handlers here are popping (looking up, then marking) -> how many
}

// legTurn is one handler's turn at marking and publishing a leg; the
// leg's other handlers here wait for it (see takeTurn).
type legTurn struct {
	done chan struct{} // closed when the turn ends
	err  error         // the turn's outcome, set before done is closed
}

// NewResolver returns a Resolver.
func NewResolver(cfg ResolverConfig, dir Directory, store PopStore, pub Publisher, hasher Hasher, log zerolog.Logger) (*Resolver, error) {
	if dir == nil || store == nil || pub == nil {
		return nil, errors.New("new resolver: directory, pop store and publisher are required")
	}
	switch cfg.PopOn {
	case "":
		cfg.PopOn = StateAlerting
	case StateAlerting, StateConnected:
	default:
		return nil, fmt.Errorf("new resolver: SCREENPOP_POP_ON %q: want alerting or connected", cfg.PopOn)
	}
	if cfg.MaxEventAge <= 0 {
		cfg.MaxEventAge = 30 * time.Second
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 2 * time.Second
	}
	if cfg.MaxLegAge <= 0 {
		cfg.MaxLegAge = 12 * time.Hour
	}
	if cfg.CreateEntity == "" {
		cfg.CreateEntity = "contact"
	}
	if cfg.OverrideEntityKey == "" {
		cfg.OverrideEntityKey = "screenpop.entity"
	}
	if cfg.OverrideIDKey == "" {
		cfg.OverrideIDKey = "screenpop.id"
	}
	if cfg.Prefill == nil {
		cfg.Prefill = DefaultPrefill()
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Resolver{
		cfg: cfg, dir: dir, store: store, pub: pub, hasher: hasher,
		log:          log.With().Str("component", "resolver").Logger(),
		pending:      map[string]pendingPop{},
		malformedLog: loglimit.New(10*time.Second, 1),
		markLog:      loglimit.New(10*time.Second, 1),
		recent:       newRecentSet[string](50000),
		// 10 minutes of conversations up to 250 pops a second, the last
		// 150,000 above (5 minutes, the lookup cache's TTL, at 500);
		// about 130 bytes each.
		convs:   newRecentSet[ConversationID](150000),
		marking: map[string]*legTurn{},
		popping: map[string]int{},
	}
	r.m = newResolverMetrics(cfg.Registerer)
	return r, nil
}

// Outcomes of a pop, in its log line and metrics.
const (
	OutcomeMatch       = "match"         // one record: open
	OutcomeMultiple    = "multiple"      // several: choose
	OutcomeNoMatch     = "no_match"      // none anywhere: create
	OutcomeNoKey       = "no_identifier" // no phone or email: create
	OutcomeOverride    = "override"      // participant attributes named the record
	OutcomeDeadline    = "deadline"      // the lookup outlived the pop deadline: search
	OutcomeLookupError = "lookup_error"  // the lookup failed (after retries, or circuit open): search
	OutcomeInternal    = "internal"      // an internal call popped with SCREENPOP_POP_INTERNAL: none
)

// HandleMessage decodes a screenpop.conversation.*.v1 CloudEvent and calls
// Handle; it fits bus.ConsumeEvents. A message that cannot be decoded is
// counted, logged without its content and acknowledged (nil): redelivering
// it would not help.
func (r *Resolver) HandleMessage(ctx context.Context, data []byte) error {
	e, err := DecodeEvent(data)
	if err != nil {
		r.m.skipped.WithLabelValues("malformed").Inc()
		ev := r.log.Debug()
		if ok, held := r.malformedLog.Allow("", time.Now()); ok {
			ev = r.log.Warn().Int("held_back", held)
		}
		ev.Int("bytes", len(data)).Msg("malformed conversation event skipped")
		return nil
	}
	return r.Handle(ctx, e)
}

// Handle decides and, if due, resolves and publishes the pop for e. It
// returns an error only when the event should be delivered again (the
// marker store or the publish failed, in this call or in the one it waited
// for: see takeTurn); a failed lookup is not an error (the pop falls back
// to search).
func (r *Resolver) Handle(ctx context.Context, e *Event) error {
	start := r.cfg.Now()
	if reason := invalidEvent(e); reason != "" {
		r.skip(e, reason)
		return nil
	}
	popID := e.PopID()
	if p, ok := r.takePending(popID); ok {
		if e.LegEnded {
			// As everywhere else: a leg that has ended pops no more. Not
			// counted here: this event counts as disconnected (below),
			// and the pop's own event as ended when it comes back, or as
			// given up when its deliveries ran out.
			r.log.Debug().Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
				Msg("pop kept for its event's redelivery dropped: the leg has ended")
		} else if done, err := r.republish(ctx, e, popID, p, start); err != nil || done && e.State != StateDisconnected {
			return err
		}
	}
	if e.State == StateDisconnected {
		return r.end(ctx, e, popID)
	}
	if e.State.Rank() < r.cfg.PopOn.Rank() {
		// An override pops its record without a lookup: nothing to
		// fetch ahead (and no customer data sent to Dataverse for it).
		if p, ok := r.dir.(Prefetcher); ok && (!e.Internal || r.cfg.PopInternal) && !r.overridden(e) {
			for _, k := range r.keys(e) {
				p.Prefetch(k)
			}
		}
		r.skip(e, "before_pop_state")
		return nil
	}
	if e.Internal && !r.cfg.PopInternal {
		r.skip(e, "internal")
		return nil
	}
	received := e.ReceivedAt.Time
	if !received.IsZero() {
		// The instance that received the frame wrote it on its clock.
		received = received.Add(ClockCorrection(ctx))
	}
	if received.IsZero() || received.After(start) {
		received = start
	}
	if start.Sub(received) > r.cfg.MaxEventAge {
		r.skip(e, "stale")
		return nil
	}
	if occ := e.OccurredAt.Time; e.State == StateConnected && !occ.IsZero() && start.Sub(occ) > r.cfg.MaxLegAge {
		// A messaging leg idle for days (Genesys keeps it with the agent
		// until the agent disconnects it) is reported connected again
		// when the customer writes; it popped when it started.
		r.skip(e, "old_leg")
		return nil
	}
	if r.poppedRecently(popID, start) || (e.State.Rank() > r.cfg.PopOn.Rank() && r.poppedElsewhere(ctx, e, popID)) {
		r.skip(e, "already_popped")
		return nil
	}

	// From its lookup on, the leg is this handler's to pop: a stale event
	// of it meanwhile is no line of the leg's (skip).
	r.beginPopping(popID)
	defer r.endPopping(popID)
	pop, outcome, lookupDur := r.resolve(ctx, e, received)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("resolve %s: %w", popID, err) // shutting down: redeliver
	}
	turn, err := r.takeTurn(ctx, e, popID)
	if err != nil {
		return err
	}
	err = r.markAndPublish(ctx, e, popID, pop, outcome, received, start, lookupDur)
	r.endTurn(popID, turn, err)
	return err
}

// poppedElsewhere reports whether e's leg has its pop stored already (by
// another instance, from an earlier event of the leg), and remembers it as
// popped: then e needs no lookup. One direct read, bounded; when it fails
// or finds another pop, the lookup and the marker decide as before.
func (r *Resolver) poppedElsewhere(ctx context.Context, e *Event, popID string) bool {
	f, ok := r.store.(PopFinder)
	if !ok {
		return false
	}
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	found, err := f.PoppedLast(fctx, e.Agent.UserID, popID)
	if err != nil || !found {
		return false
	}
	r.remember(popID, e.ConversationID, r.cfg.Now())
	return true
}

// takeTurn makes this handler the one here that marks and publishes popID's
// leg, once a handler at it already has finished. One at a time, because
// a young marker lets any event of the leg publish (see PopStore.MarkPop),
// which is for redeliveries and crashes, not for two handlers here at
// once: each would look the caller up and publish, and one would be dropped
// as a duplicate.
//
// A handler that waited and finds the other one failed (its marker not
// written, or its pop not published and unmarked) fails too, so that its
// event is redelivered rather than acknowledged. For a copy of the same
// event (JetStream redelivered it while the first handler was still
// retrying) that is the difference between a pop and none: acknowledging
// the copy acknowledges the event, and the first handler's request for
// redelivery then comes too late. Another event of the leg would lose no
// pop by being acknowledged (the failed event's own redelivery pops), but
// it waits and fails alike: nothing of the leg is acknowledged while its
// pop is undecided, and the leg has a second event to pop from should the
// failed one have had its last delivery. Waiting costs a worker for as long
// as the other handler's publish retries, and only then. When the other
// handler succeeded (or found the leg popped or ended), this one goes on
// and finds out for itself: the recently popped set or the marker answers.
func (r *Resolver) takeTurn(ctx context.Context, e *Event, popID string) (*legTurn, error) {
	for {
		turn, mine := r.beginMarking(popID)
		if mine {
			return turn, nil
		}
		r.log.Debug().Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
			Str("media", string(e.Media)).Str("state", string(e.State)).Msg("waiting for another handler of the leg")
		select {
		case <-turn.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for pop %s: %w", popID, ctx.Err()) // shutting down: redeliver
		}
		if turn.err != nil {
			return nil, fmt.Errorf("pop %s not made by another handler: %w", popID, turn.err)
		}
	}
}

// markAndPublish marks the leg's pop and publishes it, in this handler's
// turn (takeTurn).
func (r *Resolver) markAndPublish(ctx context.Context, e *Event, popID string, pop *Pop, outcome string, received, start time.Time, lookupDur time.Duration) error {
	// A handler that held the leg until just now may have popped it after
	// this one's first look at the recently popped set.
	if r.poppedRecently(popID, r.cfg.Now()) {
		r.skip(e, "already_popped")
		return nil
	}
	markStart := r.cfg.Now()
	created, err := r.store.MarkPop(ctx, popID, e.ID())
	if errors.Is(err, ErrLegEnded) {
		r.skip(e, "ended")
		return nil
	}
	if err != nil {
		r.m.errors.WithLabelValues("mark").Inc()
		ev := r.log.Debug()
		if ok, held := r.markLog.Allow("", time.Now()); ok {
			ev = r.log.Warn().Int("held_back", held)
		}
		ev.Err(err).Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).Msg("pop marker not written; event will be redelivered")
		return fmt.Errorf("mark pop: %w", err)
	}
	if !created && !r.orphaned(ctx, e, popID) {
		// Not remembered as popped here: the marker may be another
		// event's claim whose handler died before publishing (a crash),
		// and that event's redelivery must still find the marker, which
		// lets it publish.
		r.skip(e, "already_popped")
		return nil
	}
	pubStart := r.cfg.Now()
	pop.IssuedAt = NewTime(pubStart)
	msg, err := EncodePop(pop, pubStart)
	if err != nil { // cannot happen with these types; do not lose the marker's leg
		r.unmark(ctx, popID, e.ID(), msg, outcome)
		return err
	}
	dupAt, err := r.publish(ctx, msg)
	if err != nil && r.storedAnyway(ctx, e, popID) {
		// An attempt was stored and its acknowledgement lost: the agent
		// has the pop. It is this handler's to log; the event's
		// redelivery would find it a duplicate and log nothing.
		err = nil
	}
	if err != nil {
		r.m.errors.WithLabelValues("publish").Inc()
		r.log.Error().Err(err).Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
			Str("media", string(e.Media)).Str("state", string(e.State)).Msg("pop not published; event will be redelivered")
		r.unmark(ctx, popID, e.ID(), msg, outcome)
		return fmt.Errorf("publish pop: %w", err)
	}
	end := r.cfg.Now()
	r.remember(popID, e.ConversationID, end)
	if dupAt == 1 || dupAt > 1 && r.storedByAnother(ctx, e.Agent.UserID, popID, msg.Data, markStart) {
		// An earlier handler of this event (an instance that died before
		// acknowledging it, or another instance given its redelivery)
		// published the pop, and logged it: the agent got that one,
		// whatever this lookup found. A duplicate after a failed attempt
		// is that attempt's own message when the stored pop is this one.
		r.skip(e, "already_popped")
		return nil
	}
	r.logPop(e, pop, outcome, Delivery(ctx) > 1, received, start, lookupDur, pubStart.Sub(markStart), end.Sub(pubStart), end)
	return nil
}

// orphaned reports whether popID's marker, older than the duplicate
// window, claims a pop that was never stored (its handler died, or a
// stopped process held it in memory): then e pops the leg. One bounded
// read of the agent's pops since the marker; when it fails, the marker
// decides as before.
func (r *Resolver) orphaned(ctx context.Context, e *Event, popID string) bool {
	c, ok := r.store.(PopChecker)
	if !ok {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stored, err := c.PopStored(cctx, e.Agent.UserID, popID)
	if err != nil || stored {
		return false
	}
	r.log.Warn().Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
		Str("media", string(e.Media)).Str("state", string(e.State)).Msg("pop marker without its pop (a handler died or a stop lost it); popping the leg now")
	return true
}

// end handles a disconnected event: no pop and, when the whole leg has
// ended (LegEnded: a callback's failed call has not), its marker goes
// soon (PopEnder). Ending is worth a few tries, not a redelivery: when it
// fails the marker lives its full TTL, and no pop is affected.
func (r *Resolver) end(ctx context.Context, e *Event, popID string) error {
	r.skip(e, "disconnected")
	en, ok := r.store.(PopEnder)
	if !ok || !e.LegEnded {
		return nil
	}
	r.forget(popID)
	err := retryFor(ctx, 2*time.Second, func(ctx context.Context) error { return en.EndPop(ctx, popID) })
	if err != nil {
		r.m.errors.WithLabelValues("end").Inc()
		r.log.Warn().Err(err).Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
			Msg("pop marker of an ended leg not ended; it lives its full TTL")
	}
	return nil
}

func invalidEvent(e *Event) string {
	switch {
	case e == nil:
		return "invalid"
	case e.ConversationID == "" || e.Agent.ParticipantID == "" || !ValidSubjectToken(string(e.Agent.UserID)):
		return "invalid"
	case !e.Media.Valid() || !e.State.Valid():
		return "invalid"
	}
	return ""
}

// skip counts an event that makes no pop and logs it. The reasons that
// leave a leg which would otherwise pop without one (its event too old,
// the call internal, the call over before its pop was made) are logged at
// info, in place of the leg's pop line: the agent asks why the screen did
// not pop, and the production log must say (operations.md 7.9). The routine
// ones (an earlier state, a hang-up, a leg popped already) stay at debug.
func (r *Resolver) skip(e *Event, reason string) {
	r.m.skipped.WithLabelValues(reason).Inc()
	ev := r.log.Debug()
	switch {
	case reason == "ended":
		ev = r.log.Info()
	case reason == "stale" && e != nil && (r.poppedRecently(e.PopID(), r.cfg.Now()) || r.beingPopped(e.PopID())):
		// Its leg popped here (a NATS backlog brings its connected
		// event late), or another handler is popping it now: that
		// handler's line is the leg's (its pop, or its error and the
		// event's redelivery).
	case reason == "internal" && e != nil && e.State.Rank() > r.cfg.PopOn.Rank():
		// Logged at the event that would have popped it (it rang).
	case reason == "stale" || reason == "internal":
		ev = r.log.Info()
	case reason == "before_pop_state" && r.cfg.PopOn == StateConnected && e != nil && e.State.Rank() == StateAlerting.Rank():
		// SCREENPOP_POP_ON=connected: the leg rang (or dialled) and pops
		// only once answered. A call that only rang has no other line, and
		// without this one reads as never heard of (operations.md 7.9).
		ev = r.log.Info()
	}
	ev = ev.Str("reason", reason)
	if e != nil {
		ev = ev.Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
			Str("media", string(e.Media)).Str("state", string(e.State))
	}
	ev.Msg("no pop")
}

// keys are the customer's identifiers in lookup order: phone, then email.
func keys(e *Event) []Key {
	var ks []Key
	if p := strings.TrimSpace(e.Customer.Phone); p != "" {
		ks = append(ks, Key{Kind: KeyPhone, Value: p})
	}
	if m := strings.TrimSpace(e.Customer.Email); m != "" {
		ks = append(ks, Key{Kind: KeyEmail, Value: m})
	}
	return ks
}

// keys are e's keys, each with Since set to the conversation's last pop
// here when the conversation popped here before (for another leg: a
// transfer, a consult, a re-offer): the agent of that pop may have changed
// the caller's records since, and a cached answer from before would give
// the receiving agent the records as they were (the record that was
// merged away or deleted, a create form for a contact just saved). One
// Dataverse request per such leg.
func (r *Resolver) keys(e *Event) []Key {
	ks := keys(e)
	r.mu.Lock()
	since, ok := r.convs.get(e.ConversationID)
	r.mu.Unlock()
	if ok {
		for i := range ks {
			ks[i].Since = since
		}
	}
	return ks
}

// overridden reports whether e carries override attributes that name a
// record (an entity the directory knows and a GUID): resolve pops it
// without a lookup.
func (r *Resolver) overridden(e *Event) bool {
	ent, id := e.Customer.Attributes[r.cfg.OverrideEntityKey], e.Customer.Attributes[r.cfg.OverrideIDKey]
	return ent != "" && id != "" && r.dir.RecordURL(ent, id) != ""
}

// resolve builds the pop for e: override, lookups under the deadline, or
// the create/search fallbacks.
func (r *Resolver) resolve(ctx context.Context, e *Event, received time.Time) (*Pop, string, time.Duration) {
	pop := &Pop{
		ID: e.PopID(), ConversationID: e.ConversationID, AgentID: e.Agent.UserID,
		Media: e.Media, State: e.State,
		Customer:        PopCustomer{Phone: e.Customer.Phone, Email: e.Customer.Email, Name: e.Customer.Name},
		EventReceivedAt: NewTime(received),
	}
	if e.Internal {
		// DESIGN.md: internal calls pop "a none target". There is no
		// customer to look up, and a create form for a colleague's call
		// would be wrong.
		pop.Target = Target{Action: ActionNone}
		return pop, OutcomeInternal, 0
	}
	if ent, id := e.Customer.Attributes[r.cfg.OverrideEntityKey], e.Customer.Attributes[r.cfg.OverrideIDKey]; ent != "" && id != "" {
		// RecordURL refuses an entity the directory does not know and an
		// id that is not a GUID.
		if u := r.dir.RecordURL(ent, id); u != "" {
			// The id as Dataverse writes it (and as the URL has it):
			// lower case, without braces.
			pop.Target = Target{Action: ActionOpen, Entity: ent, ID: strings.ToLower(strings.Trim(id, "{}")), URL: u}
			return pop, OutcomeOverride, 0
		}
		r.m.skipped.WithLabelValues("override_invalid").Inc()
		r.log.Debug().Str("conversation_id", string(e.ConversationID)).Msg("override attributes are not an entity and a GUID; looking up instead")
	}
	// The deadline counts from the frame's receipt: what ran since (the
	// checks of a later event, a read of the store each) is taken out.
	lctx, cancel := context.WithTimeout(ctx, received.Add(r.cfg.Deadline).Sub(r.cfg.Now()))
	defer cancel()
	lookupStart := time.Now()
	for _, k := range r.keys(e) {
		recs, err := r.dir.Lookup(lctx, k)
		if errors.Is(err, ErrUnsearchable) {
			// Customer-typed text that cannot be searched (an email
			// over 320 characters, a control character in it): no
			// failure of Dataverse, and no answer either. The next
			// identifier, or create, as for no match.
			r.log.Debug().Str("conversation_id", string(e.ConversationID)).Str("kind", string(k.Kind)).Msg("identifier cannot be searched; skipped")
			continue
		}
		if err != nil {
			outcome := OutcomeLookupError
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				outcome = OutcomeDeadline
			} else {
				r.log.Debug().Err(err).Str("conversation_id", string(e.ConversationID)).Str("kind", string(k.Kind)).Msg("lookup failed")
			}
			pop.Target = Target{Action: ActionSearch, Query: k.Value}
			return pop, outcome, time.Since(lookupStart)
		}
		switch {
		case len(recs) == 1:
			rec := recs[0]
			pop.Target = Target{Action: ActionOpen, Entity: rec.Entity, ID: rec.ID, Name: rec.Name, URL: rec.URL}
			return pop, OutcomeMatch, time.Since(lookupStart)
		case len(recs) > 1:
			n := min(len(recs), 10)
			pop.Target = Target{Action: ActionChoose, Entity: recs[0].Entity}
			pop.Candidates = make([]Candidate, n)
			for i, rec := range recs[:n] {
				pop.Candidates[i] = Candidate(rec)
			}
			return pop, OutcomeMultiple, time.Since(lookupStart)
		}
	}
	outcome := OutcomeNoMatch
	if len(keys(e)) == 0 {
		outcome = OutcomeNoKey
	}
	pop.Target = Target{Action: ActionCreate, Entity: r.cfg.CreateEntity, URL: r.dir.RecordURL(r.cfg.CreateEntity, "")}
	pop.Prefill = r.prefill(e.Customer)
	return pop, outcome, time.Since(lookupStart)
}

// placeholderNames are names that stand for no one: the one Genesys gives
// every web messaging customer participant (shared/reference/genesys.md,
// example (e)), and what caller-id sends for a withheld or unlisted
// number. Lower case.
var placeholderNames = map[string]bool{
	"web messaging guest": true,
	"anonymous":           true,
	"unknown":             true,
	"unknown caller":      true,
	"unavailable":         true,
	"private":             true,
	"private caller":      true,
	"private number":      true,
	"restricted":          true,
	"withheld":            true,
	"wireless caller":     true,
	"out of area":         true,
}

// nanpRegions are the two-letter codes North American caller-id (CNAM)
// puts after a city when it has no subscriber name, mostly for mobiles
// ("BOSTON MA", "TORONTO ON"): US states, DC and territories, Canadian
// provinces and territories.
var nanpRegions = map[string]bool{}

func init() {
	for _, r := range strings.Fields(`AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT
		NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP
		AB BC MB NB NL NS NT NU ON PE QC SK YT`) {
		nanpRegions[r] = true
	}
}

// nameSuffixes follow a comma after a full name ("John Smith, Jr.", "Jane
// Doe, MD"): such a name is not written last name first. Lower case, without
// dots.
var nameSuffixes = map[string]bool{
	"jr": true, "sr": true, "ii": true, "iii": true, "iv": true,
	"md": true, "phd": true, "ph.d": true, "esq": true, "cpa": true, "dds": true, "rn": true, "mba": true,
}

// callerIDPlace reports whether name, on a call from a North American
// number, is a caller-id place rather than a person: upper case (as CNAM
// sends it), with a region code as its last word. A subscriber name ends
// in a region code only by chance ("LEE AL"); leaving such a name out of
// the prefill costs the agent some typing, putting "BOSTON MA" on a new
// contact costs a wrong record.
func callerIDPlace(name, phone string) bool {
	if !strings.HasPrefix(phone, "+1") || name != strings.ToUpper(name) {
		return false
	}
	f := strings.Fields(name)
	return len(f) >= 2 && nanpRegions[f[len(f)-1]]
}

// prefill maps the customer onto the create entity's columns.
func (r *Resolver) prefill(c Customer) map[string]string {
	cols, ok := r.cfg.Prefill[r.cfg.CreateEntity]
	if !ok {
		return nil
	}
	m := map[string]string{}
	set := func(col, v string) {
		if col != "" && v != "" {
			m[col] = v
		}
	}
	set(cols.Phone, c.Phone)
	set(cols.Email, c.Email)
	name := strings.TrimSpace(c.Name)
	if strings.IndexFunc(name, unicode.IsLetter) < 0 || name == c.Address || strings.EqualFold(name, c.Email) ||
		placeholderNames[strings.ToLower(name)] || callerIDPlace(name, c.Phone) {
		// Messaging channels name the participant by its address (SMS:
		// the number), web messaging and caller-id by a placeholder or,
		// for a mobile, by its place: that is no name to put on a record.
		name = ""
	}
	set(cols.FullName, name)
	formFirst, formLast := strings.TrimSpace(c.Attributes["context.firstName"]), strings.TrimSpace(c.Attributes["context.lastName"])
	if name != "" && formLast != "" && name == strings.TrimSpace(formFirst+" "+formLast) {
		// The chat form's own fields (the normalizer joined them into
		// the name): "Ana Paula" "de Souza" is not "Ana" "Paula de Souza",
		// and a last name typed alone ("de Souza") is no first name "de".
		set(cols.FirstName, formFirst)
		set(cols.LastName, formLast)
	} else if last, first, ok := strings.Cut(name, ","); ok && strings.TrimSpace(last) != "" && strings.TrimSpace(first) != "" && !strings.Contains(first, ",") &&
		!nameSuffixes[strings.ToLower(strings.Trim(first, " ."))] {
		// "Doe, Jane": how Exchange and Outlook directories name email
		// senders, and some caller-id. "John Smith, Jr." is not one.
		set(cols.FirstName, strings.TrimSpace(first))
		set(cols.LastName, strings.TrimSpace(last))
	} else if f := strings.Fields(name); len(f) == 1 {
		set(cols.LastName, f[0]) // lastname is the required one on contact and lead
	} else if len(f) > 1 {
		set(cols.FirstName, f[0])
		set(cols.LastName, strings.Join(f[1:], " "))
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// publish publishes msg, retrying it (the same message, so the same
// Nats-Msg-Id) with backoff for PublishTimeout. dupAt is the attempt that
// found the message stored already (0: none). A duplicate at the first
// attempt means the store held the pop before this handler tried; one
// after a failed attempt may be that attempt's own message, stored but not
// acknowledged (see storedByAnother).
func (r *Resolver) publish(ctx context.Context, msg Message) (dupAt int, err error) {
	dp, ok := r.pub.(DedupPublisher)
	attempt := 0
	err = retryFor(ctx, r.cfg.PublishTimeout, func(ctx context.Context) error {
		attempt++
		if !ok {
			return r.pub.Publish(ctx, msg)
		}
		dup, err := dp.PublishDedup(ctx, msg)
		if err == nil && dup {
			dupAt = attempt
		}
		return err
	})
	return dupAt, err
}

// errFound ends a replay of pops early.
var errFound = errors.New("found")

// findStored looks for the pop stored under popID among agent's pops since
// about since, and reports whether it is there and has data (this
// handler's message, not another's). One read of the agent's pops of the
// last minutes (PopReader's, else a replay), bounded at 500 ms.
func (r *Resolver) findStored(ctx context.Context, agent AgentID, popID string, data []byte, since time.Time) (found, same bool, err error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterStop(ctx, 500*time.Millisecond))
	defer cancel()
	if rd, ok := r.store.(PopReader); ok {
		stored, err := rd.ReadPop(fctx, agent, popID, since.Add(-time.Minute))
		return stored != nil, stored != nil && bytes.Equal(stored, data), err
	}
	err = r.store.ReplayPops(fctx, agent, 0, since.Add(-time.Minute), func(sp StoredPop) error {
		p, err := DecodePop(sp.Data)
		if err != nil || p.ID != popID {
			return nil
		}
		found, same = true, bytes.Equal(sp.Data, data)
		return errFound
	})
	if errors.Is(err, errFound) {
		err = nil
	}
	return found, same, err
}

// storedByAnother reports whether the pop JetStream found stored under
// popID is another handler's (another instance's, given this event's
// redelivery or the leg's next event), which logged it: its bytes are not
// data. When the pop cannot be read it is taken as this handler's.
func (r *Resolver) storedByAnother(ctx context.Context, agent AgentID, popID string, data []byte, since time.Time) bool {
	found, same, err := r.findStored(ctx, agent, popID, data, since)
	return err == nil && found && !same
}

// retryFor calls fn until it succeeds, with jittered exponential backoff
// (50 ms doubling to 1 s), for at most d.
func retryFor(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		wait := min(50*time.Millisecond<<min(attempt-1, 5), time.Second)
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		case <-t.C:
		}
	}
}

// storedAnyway reports whether the pop whose publish failed is stored
// after all (an attempt stored, its acknowledgement lost), by one read
// bounded at 500 ms (the handler's worst case stays inside the ack wait:
// see PublishTimeout).
func (r *Resolver) storedAnyway(ctx context.Context, e *Event, popID string) bool {
	f, ok := r.store.(PopFinder)
	if !ok {
		return false
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterStop(ctx, 500*time.Millisecond))
	defer cancel()
	found, err := f.PoppedLast(fctx, e.Agent.UserID, popID)
	return err == nil && found
}

// afterStop bounds a step that runs after a failed publish: d, or at most
// 250 ms once ctx has ended, when the stop cut the handler short (its event
// is redelivered anyway) and the resolver's share of the shutdown budget,
// its drain, is spent. A JetStream that does not answer would otherwise
// hold the stop 2.5 s past it.
func afterStop(ctx context.Context, d time.Duration) time.Duration {
	if ctx.Err() != nil {
		return min(d, 250*time.Millisecond)
	}
	return d
}

// unmark undoes the marker of a pop that was not published, or keeps the
// pop (and the outcome that made it, for its pop line) in memory when that
// fails too.
func (r *Resolver) unmark(ctx context.Context, popID, claim string, msg Message, outcome string) {
	if u, ok := r.store.(PopUnmarker); ok {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterStop(ctx, 2*time.Second))
		err := u.UnmarkPop(uctx, popID, claim)
		cancel()
		if err == nil {
			return
		}
	}
	if msg.ID == "" {
		return
	}
	r.keepPending(popID, pendingPop{msg: msg, outcome: outcome, claim: claim})
}

// pendingPop is a pop marked but not published, waiting for its event to
// come back.
type pendingPop struct {
	msg     Message
	outcome string // the lookup's, for the pop line
	claim   string // its marker's: the id of the event that made it
	at      time.Time
}

// pendingTTL is how long a pending pop waits for its event: redeliveries
// come within a minute or two, and a pop later than this helps no agent.
const pendingTTL = 10 * time.Minute

// keepPending keeps p until popID's event comes back.
func (r *Resolver) keepPending(popID string, p pendingPop) {
	p.at = r.cfg.Now()
	r.mu.Lock()
	r.pending[popID] = p
	r.mu.Unlock()
}

// sweepPendingLocked drops the pending pops older than pendingTTL (their
// event was given up, went to another instance, or its leg's hang-up never
// came), at most once a minute, and returns them by pop id; r.mu is held.
func (r *Resolver) sweepPendingLocked(now time.Time) map[string]pendingPop {
	if len(r.pending) == 0 || now.Sub(r.swept) < time.Minute {
		return nil
	}
	r.swept = now
	var given map[string]pendingPop
	for k, p := range r.pending {
		if now.Sub(p.at) > pendingTTL {
			delete(r.pending, k)
			if given == nil {
				given = map[string]pendingPop{}
			}
			given[k] = p
		}
	}
	return given
}

// lostPops counts the pops of given that are not stored: another instance
// may have popped the leg from the event's redelivery. The checks share 2 s;
// a pop not checked in time counts as lost.
func (r *Resolver) lostPops(given map[string]pendingPop) int {
	if len(given) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lost := 0
	for popID, p := range given {
		if ctx.Err() == nil {
			if found, _, err := r.findStored(ctx, AgentFromPopSubject(p.msg.Subject), popID, p.msg.Data, p.at); err == nil && found {
				continue
			}
		}
		lost++
	}
	return lost
}

func (r *Resolver) takePending(popID string) (pendingPop, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[popID]
	delete(r.pending, popID)
	return p, ok
}

// republish publishes p, a pop marked but not published before (kept by
// unmark), now that an event of its leg has come. done: e's handling ends
// here (the pop published, or found popped elsewhere, or the leg ended;
// or an error, and p is kept again for e's redelivery); not done: p was
// dropped, its event being older than MaxEventAge, and Handle goes on
// with e as with any event.
func (r *Resolver) republish(ctx context.Context, e *Event, popID string, p pendingPop, start time.Time) (done bool, err error) {
	msg := p.msg
	pop, err := DecodePop(msg.Data)
	if err != nil { // it was encoded here: cannot happen
		return false, nil
	}
	// Kept or not, a pop is made only for an event younger than
	// MaxEventAge and a leg not ended: NATS away long enough for the
	// redelivery to come late, or the hang-up handled by another instance
	// (which ended the marker this pop's event holds), and the call is
	// answered or over.
	received := pop.EventReceivedAt.Time
	if start.Sub(received) > r.cfg.MaxEventAge {
		// This event, the pop's own redelivery, is told stale below;
		// another of the leg is looked at for itself.
		r.log.Debug().Str("conversation_id", string(e.ConversationID)).Str("agent_id", string(e.Agent.UserID)).
			Msg("pop kept for its event's redelivery dropped: its event is older than SCREENPOP_MAX_EVENT_AGE")
		return false, nil
	}
	if _, err := r.store.MarkPop(ctx, popID, p.claim); errors.Is(err, ErrLegEnded) {
		r.skip(e, "ended")
		return true, nil
	} else if err != nil {
		r.keepPending(popID, p)
		r.m.errors.WithLabelValues("mark").Inc()
		return true, fmt.Errorf("mark pop: %w", err)
	}
	dupAt, err := r.publish(ctx, msg)
	if err != nil {
		r.keepPending(popID, p)
		r.m.errors.WithLabelValues("publish").Inc()
		return true, fmt.Errorf("publish pop: %w", err)
	}
	end := r.cfg.Now()
	r.remember(popID, e.ConversationID, end)
	// A duplicate here is this instance's own earlier attempt, stored but
	// not acknowledged, and never logged: log it now; unless another
	// instance, given the event's redelivery, popped the leg and logged it.
	if dupAt > 0 && r.storedByAnother(ctx, e.Agent.UserID, popID, msg.Data, p.at) {
		r.skip(e, "already_popped")
		return true, nil
	}
	r.logPop(e, pop, p.outcome, true, received, start, 0, 0, end.Sub(start), end)
	return true, nil
}

// recent pops: only an optimization (the marker is the truth), so small
// and short-lived.
const recentTTL = 10 * time.Minute

// beginMarking returns popID's turn and true when it is the caller's, or
// the turn of the handler marking the leg already and false.
func (r *Resolver) beginMarking(popID string) (*legTurn, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.marking[popID]; ok {
		return t, false
	}
	t := &legTurn{done: make(chan struct{})}
	r.marking[popID] = t
	return t, true
}

// beingPopped reports whether a handler here is popping popID's leg now:
// looking its customer up, or waiting for or in its turn.
func (r *Resolver) beingPopped(popID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.popping[popID] > 0
}

// beginPopping and endPopping bracket a handler's lookup and turn at
// popID's leg.
func (r *Resolver) beginPopping(popID string) {
	r.mu.Lock()
	r.popping[popID]++
	r.mu.Unlock()
}

func (r *Resolver) endPopping(popID string) {
	r.mu.Lock()
	if r.popping[popID]--; r.popping[popID] <= 0 {
		delete(r.popping, popID)
	}
	r.mu.Unlock()
}

// endTurn ends the caller's turn at popID with its outcome and wakes the
// handlers waiting for it.
func (r *Resolver) endTurn(popID string, t *legTurn, err error) {
	r.mu.Lock()
	delete(r.marking, popID)
	t.err = err
	r.mu.Unlock()
	close(t.done)
}

func (r *Resolver) poppedRecently(popID string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.recent.get(popID)
	return ok && now.Sub(t) < recentTTL
}

// forget drops an ended leg from the recently popped set: its marker
// refuses it from now on.
func (r *Resolver) forget(popID string) {
	r.mu.Lock()
	r.recent.del(popID)
	r.mu.Unlock()
}

// recentSet remembers keys with a time for about recentTTL, in two
// generations: the older is dropped when the newer is recentTTL old or
// holds max keys. A key put in the last recentTTL, or among the last max,
// is always found, without a scan; clearing one full map would lose them
// all at once (every 100 s at 500 pops a second, for a map of 50,000).
type recentSet[K comparable] struct {
	cur, old map[K]time.Time
	begun    time.Time // when cur was begun
	max      int
}

func newRecentSet[K comparable](max int) *recentSet[K] {
	return &recentSet[K]{cur: map[K]time.Time{}, max: max}
}

func (s *recentSet[K]) put(k K, now time.Time) {
	if len(s.cur) >= s.max || now.Sub(s.begun) >= recentTTL {
		s.old, s.cur, s.begun = s.cur, make(map[K]time.Time, len(s.cur)), now
	}
	s.cur[k] = now
}

func (s *recentSet[K]) get(k K) (time.Time, bool) {
	if t, ok := s.cur[k]; ok {
		return t, true
	}
	t, ok := s.old[k]
	return t, ok
}

func (s *recentSet[K]) del(k K) {
	delete(s.cur, k)
	delete(s.old, k)
}

func (s *recentSet[K]) len() int { return len(s.cur) + len(s.old) }

// remember records that popID's leg of conv popped at now: its later
// events need no lookup, and the conversation's later legs look up afresh
// (see keys).
func (r *Resolver) remember(popID string, conv ConversationID, now time.Time) {
	r.mu.Lock()
	given := r.sweepPendingLocked(now)
	r.recent.put(popID, now)
	r.convs.put(conv, now)
	r.mu.Unlock()
	if lost := r.lostPops(given); lost > 0 {
		r.log.Error().Int("pops", lost).Msg("pops marked but never published were given up after 10 minutes: those calls did not pop")
	}
}

// logPop writes the one info line of a pop: ids, what was decided and the
// per-stage latencies; the caller appears only as a keyed hash.
func (r *Resolver) logPop(e *Event, p *Pop, outcome string, redelivered bool, received, start time.Time, lookup, mark, publish time.Duration, end time.Time) {
	queue := start.Sub(received)
	total := end.Sub(received)
	r.m.pops.WithLabelValues(string(p.Media), string(p.Target.Action), outcome).Inc()
	r.m.stage.WithLabelValues("queue").Observe(queue.Seconds())
	r.m.stage.WithLabelValues("lookup").Observe(lookup.Seconds())
	r.m.stage.WithLabelValues("mark").Observe(mark.Seconds())
	r.m.stage.WithLabelValues("publish").Observe(publish.Seconds())
	r.m.stage.WithLabelValues("total").Observe(total.Seconds())
	ev := r.log.Info().
		Str("conversation_id", string(p.ConversationID)).
		Str("agent_id", string(p.AgentID)).
		Str("participant_id", string(e.Agent.ParticipantID)).
		Str("media", string(p.Media)).
		Str("state", string(p.State)).
		Str("action", string(p.Target.Action)).
		Str("outcome", outcome)
	if p.Target.Entity != "" {
		ev = ev.Str("entity", p.Target.Entity)
	}
	if p.Target.ID != "" {
		ev = ev.Str("record_id", p.Target.ID)
	}
	if len(p.Candidates) > 0 {
		ev = ev.Int("candidates", len(p.Candidates))
	}
	if h := r.hasher.Hash(callerKey(e)); h != "" {
		ev = ev.Str("caller_hash", h)
	}
	if redelivered {
		ev = ev.Bool("redelivered", true)
	}
	ev.Int64("queue_ms", queue.Milliseconds()).
		Int64("lookup_ms", lookup.Milliseconds()).
		Int64("mark_ms", mark.Milliseconds()).
		Int64("publish_ms", publish.Milliseconds()).
		Int64("total_ms", total.Milliseconds()).
		Msg("pop")
}

func callerKey(e *Event) string {
	if e.Customer.Phone != "" {
		return e.Customer.Phone
	}
	return strings.ToLower(e.Customer.Email)
}

// ResolverStatus is the resolver's /status snapshot.
type ResolverStatus struct {
	PendingPublishes int `json:"pending_publishes"`
	RecentPops       int `json:"recent_pops"`
}

// Status returns a JSON-marshalable snapshot (no PII).
func (r *Resolver) Status() ResolverStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ResolverStatus{PendingPublishes: len(r.pending), RecentPops: r.recent.len()}
}

type resolverMetrics struct {
	pops    *prometheus.CounterVec
	skipped *prometheus.CounterVec
	errors  *prometheus.CounterVec
	stage   *prometheus.HistogramVec
}

func newResolverMetrics(reg prometheus.Registerer) *resolverMetrics {
	m := &resolverMetrics{
		pops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_resolver_pops_total",
			Help: "Pops published, by media, action (open, choose, create, search) and outcome.",
		}, []string{"media", "action", "outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_resolver_skipped_total",
			Help: "Events that made no pop, by reason (before_pop_state, disconnected, internal, stale, already_popped, ended, invalid, malformed, override_invalid).",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_resolver_errors_total",
			Help: "Events returned for redelivery, by stage (mark, publish); and ended legs whose marker could not be ended (end: it lives its full TTL, no pop is affected).",
		}, []string{"stage"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "screenpop_bridge_resolver_stage_seconds",
			Help:    "Pop latency by stage: queue (event received to resolver start), lookup, mark (the pop marker), publish, total (event received to published).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.pops, m.skipped, m.errors, m.stage)
	}
	return m
}

package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// EventPublisherConfig configures an EventPublisher. The zero value uses the
// defaults.
type EventPublisherConfig struct {
	// MaxInFlight is the most publishes outstanding at once, and the number
	// of lanes events are spread over by conversation (events of one
	// conversation are published in order). Default 16.
	MaxInFlight int
	// MaxBuffer is the most events waiting to be published, across lanes.
	// While NATS is unreachable the buffer fills; when a lane is full a new
	// event is dropped, counted and logged at error. Default 10000.
	MaxBuffer int
	// PublishTimeout bounds one publish attempt. Default 5s.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (doubling,
	// with jitter). Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts gives up on an event after that many failed attempts
	// (counted as a drop). 0: retry until published or shut down.
	MaxAttempts int
	// DrainTimeout is how long Run keeps publishing what is buffered after
	// its context is cancelled; what is left then is dropped and counted.
	// Default 5s.
	DrainTimeout time.Duration
	// Registerer receives the publisher's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// EventPublisher publishes normalized events to NATS asynchronously:
// Enqueue never blocks the Genesys reader, a bounded number of publishes is
// in flight, failed publishes are retried with backoff, and while NATS is
// unreachable events wait in a bounded buffer. Nothing is dropped silently:
// every drop (buffer full, attempts exhausted, shutdown) is counted in
// screenpop_bridge_publisher_dropped_total and logged at error.
//
// Each event is published as its CloudEvent on its subject with its id as
// Nats-Msg-Id (see EncodeEvent), so a retry after a publish whose ack was
// lost, or the same event from a second bridge instance, is dropped by
// JetStream's duplicate window.
//
// Concurrency: Enqueue and Status are safe for concurrent use, before,
// during and after Run. Run is called once.
type EventPublisher struct {
	cfg   EventPublisherConfig
	pub   Publisher
	log   zerolog.Logger
	seed  maphash.Seed
	lanes []chan Event
	// wake has one entry per lane: an event enqueued there cuts the wait of
	// the lane's event being retried short, so that a NATS or a store back
	// since is found by the call waiting, not by the old event's timer.
	wake []chan struct{}

	running  atomic.Bool
	stopMu   sync.RWMutex // Enqueue holds it shared, so no event slips into a lane after Run's last sweep
	stopped  atomic.Bool
	inFlight atomic.Int64

	dropMu      sync.Mutex
	dropLogged  time.Time
	dropPending int
	dropReason  string      // of the latest drop held back
	dropEvent   string      // its event_id
	dropConv    string      // its conversation_id
	dropTimer   *time.Timer // tells dropPending once the second is up

	m publisherMetrics
}

type publisherMetrics struct {
	published prometheus.Counter
	retries   prometheus.Counter
	dropped   *prometheus.CounterVec
	latency   prometheus.Histogram
}

// ErrPublisherStopped is returned by Run when called a second time.
var ErrPublisherStopped = errors.New("event publisher already ran")

// NewEventPublisher returns a publisher that puts events on pub (bus.Conn).
func NewEventPublisher(cfg EventPublisherConfig, pub Publisher, log zerolog.Logger) (*EventPublisher, error) {
	if pub == nil {
		return nil, errors.New("new event publisher: nil Publisher")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = 10000
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	p := &EventPublisher{
		cfg: cfg, pub: pub, seed: maphash.MakeSeed(),
		log:   log.With().Str("component", "bridge").Str("stage", "publish").Logger(),
		lanes: make([]chan Event, cfg.MaxInFlight),
		wake:  make([]chan struct{}, cfg.MaxInFlight),
	}
	per := max(1, cfg.MaxBuffer/cfg.MaxInFlight)
	for i := range p.lanes {
		p.lanes[i] = make(chan Event, per)
		p.wake[i] = make(chan struct{}, 1)
	}
	p.m = publisherMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_publisher_published_total", Help: "Events stored in the stream (including duplicates JetStream dropped)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_bridge_publisher_retries_total", Help: "Publish attempts that failed and were retried."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_bridge_publisher_dropped_total", Help: "Events never published, by reason (buffer_full, attempts, shutdown, encode, too_large)."}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "screenpop_bridge_publisher_latency_seconds", Help: "From the Genesys frame's arrival to the event stored in the stream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30}}),
	}
	for _, r := range []string{"buffer_full", "attempts", "shutdown", "encode", "too_large"} {
		p.m.dropped.WithLabelValues(r) // export zeros, so alerts see the series
	}
	if r := cfg.Registerer; r != nil {
		for _, c := range []prometheus.Collector{p.m.published, p.m.retries, p.m.dropped, p.m.latency,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_bridge_publisher_buffered", Help: "Events waiting to be published."},
				func() float64 { return float64(p.Status().Buffered) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_bridge_publisher_in_flight", Help: "Events being published (including waiting to retry)."},
				func() float64 { return float64(p.inFlight.Load()) }),
		} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("new event publisher: register metrics: %w", err)
			}
		}
	}
	return p, nil
}

// EventPublisherStatus is the publisher's state, for /status.
type EventPublisherStatus struct {
	Running  bool `json:"running"`
	Buffered int  `json:"buffered"`  // waiting
	Capacity int  `json:"capacity"`  // the most that can wait
	InFlight int  `json:"in_flight"` // being published or retried
}

// Status returns the publisher's state.
func (p *EventPublisher) Status() EventPublisherStatus {
	s := EventPublisherStatus{Running: p.running.Load() && !p.stopped.Load(), InFlight: int(p.inFlight.Load())}
	for _, l := range p.lanes {
		s.Buffered += len(l)
		s.Capacity += cap(l)
	}
	return s
}

// Enqueue queues events for publishing and returns how many it accepted. It
// never blocks: an event whose lane is full, or that arrives after Run has
// returned, is dropped, counted and logged at error.
func (p *EventPublisher) Enqueue(events ...Event) int {
	n := 0
	p.stopMu.RLock()
	defer p.stopMu.RUnlock()
	for _, e := range events {
		if p.stopped.Load() {
			p.drop(e.ID(), string(e.ConversationID), "shutdown")
			continue
		}
		i := p.lane(e.ConversationID)
		select {
		case p.lanes[i] <- e:
			n++
			select {
			case p.wake[i] <- struct{}{}:
			default:
			}
		default:
			p.drop(e.ID(), string(e.ConversationID), "buffer_full")
		}
	}
	return n
}

func (p *EventPublisher) lane(c ConversationID) int {
	return int(maphash.String(p.seed, string(c)) % uint64(len(p.lanes)))
}

// drop counts a lost event and logs it at error: each one while drops are
// rare, then at most one line a second with the count since the last line.
// Drops held back are told when the second is up even if no other drop
// follows, so the lines add up to every event lost.
func (p *EventPublisher) drop(eventID, convID, reason string) {
	p.m.dropped.WithLabelValues(reason).Inc()
	p.dropMu.Lock()
	now := time.Now()
	p.dropPending++
	if wait := time.Second - now.Sub(p.dropLogged); wait > 0 {
		p.dropReason, p.dropEvent, p.dropConv = reason, eventID, convID
		if p.dropTimer == nil {
			p.dropTimer = time.AfterFunc(wait, p.flushDrops)
		}
		p.dropMu.Unlock()
		return
	}
	n := p.dropPending
	p.dropPending, p.dropLogged = 0, now
	p.dropMu.Unlock()
	p.log.Error().Str("event_id", eventID).Str("conversation_id", convID).Str("reason", reason).
		Int("dropped", n).Msg("event dropped")
}

// flushDrops logs the drops held back since the last line, if any.
func (p *EventPublisher) flushDrops() {
	p.dropMu.Lock()
	if p.dropTimer != nil {
		p.dropTimer.Stop()
		p.dropTimer = nil
	}
	n := p.dropPending
	if n == 0 {
		p.dropMu.Unlock()
		return
	}
	reason, eventID, convID := p.dropReason, p.dropEvent, p.dropConv
	p.dropPending, p.dropLogged = 0, time.Now()
	p.dropMu.Unlock()
	// As every line, it names one of the events it counts (the latest).
	p.log.Error().Str("event_id", eventID).Str("conversation_id", convID).Str("reason", reason).
		Int("dropped", n).Msg("event dropped")
}

// Run publishes until ctx is cancelled, then drains the buffer for at most
// DrainTimeout and returns nil. Events left after that are dropped and
// counted.
func (p *EventPublisher) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrPublisherStopped
	}
	p.log.Info().Int("max_in_flight", len(p.lanes)).Int("max_buffer", p.Status().Capacity).Msg("event publisher started")
	// drainCtx outlives ctx by DrainTimeout, so what is buffered at shutdown
	// still gets its chance.
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.DrainTimeout, cancelDrain)
		context.AfterFunc(drainCtx, func() { t.Stop() })
	})
	defer stop()

	var wg sync.WaitGroup
	for i := range p.lanes {
		wg.Go(func() { p.runLane(ctx, drainCtx, p.lanes[i], p.wake[i]) })
	}
	wg.Wait()
	p.stopMu.Lock()
	p.stopped.Store(true)
	p.stopMu.Unlock()
	// Anything enqueued between the lanes' last look and stopped.
	left := 0
	for _, l := range p.lanes {
		for {
			select {
			case e := <-l:
				p.drop(e.ID(), string(e.ConversationID), "shutdown")
				left++
				continue
			default:
			}
			break
		}
	}
	p.flushDrops()
	p.log.Info().Int("dropped", left).Msg("event publisher stopped")
	return nil
}

// runLane publishes one lane's events in order. After ctx is done it keeps
// going until the lane is empty or drainCtx is done, then drops the rest.
func (p *EventPublisher) runLane(ctx, drainCtx context.Context, lane chan Event, wake chan struct{}) {
	for {
		var e Event
		select {
		case e = <-lane:
		case <-ctx.Done():
			select {
			case e = <-lane:
			default:
				return // drained
			}
		}
		if drainCtx.Err() != nil {
			p.drop(e.ID(), string(e.ConversationID), "shutdown")
			continue
		}
		p.publish(drainCtx, e, wake)
	}
}

// publish publishes e, retrying with backoff, until it is stored, its
// attempts are exhausted or ctx is done. An event enqueued in its lane
// meanwhile (wake) has the next attempt made at once: a call that rings
// once NATS or its store is back must not wait out the backoff (up to
// MaxBackoff) of an event that failed before, past the pop deadline or
// the max event age. At most one early attempt per event enqueued.
func (p *EventPublisher) publish(ctx context.Context, e Event, wake chan struct{}) {
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	select { // left by events enqueued before: only those enqueued from now on wake e's waits
	case <-wake:
	default:
	}
	at := e.OccurredAt.Time
	if at.IsZero() {
		at = e.ReceivedAt.Time
	}
	msg, err := EncodeEvent(&e, at)
	if err != nil {
		p.m.dropped.WithLabelValues("encode").Inc()
		p.log.Error().Err(err).Str("event_id", msg.ID).Str("conversation_id", string(e.ConversationID)).Str("reason", "encode").Int("dropped", 1).Msg("event dropped")
		return
	}
	backoff := p.cfg.MinBackoff
	warn := loglimit.Every{Period: retryWarnEvery}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
		err := p.pub.Publish(actx, msg)
		cancel()
		if err == nil {
			p.m.published.Inc()
			if !e.ReceivedAt.IsZero() {
				p.m.latency.Observe(time.Since(e.ReceivedAt.Time).Seconds())
			}
			if attempt > 1 {
				p.log.Info().Str("event_id", msg.ID).Int("attempt", attempt).Msg("event published after retries")
			} else {
				p.log.Debug().Str("event_id", msg.ID).Str("subject", msg.Subject).Msg("event published")
			}
			return
		}
		if errors.Is(err, ErrTooLarge) {
			// Only participant data can make an event that large: leave out
			// its largest attributes, as many as it takes, and try again at
			// once (the override rule's ids are short and stay), rather than
			// retry for ever in front of every later event of this lane.
			over := len(msg.Data) // without the bus's limit: every attribute
			var tl *TooLargeError
			if errors.As(err, &tl) && tl.Max > 0 {
				over = tl.Size - tl.Max + 1024 // and room for the headers
			}
			if attrs, dropped := withoutLargest(e.Customer.Attributes, over); dropped > 0 {
				p.log.Warn().Str("event_id", msg.ID).Int("bytes", len(msg.Data)).Int("attributes_left_out", dropped).
					Msg("event too large for the bus: its largest customer attributes are left out")
				e.Customer.Attributes = attrs
				if msg, err = EncodeEvent(&e, at); err == nil {
					attempt-- // not a failed attempt
					continue
				}
			}
			p.m.dropped.WithLabelValues("too_large").Inc()
			p.log.Error().Err(err).Str("event_id", msg.ID).Str("conversation_id", string(e.ConversationID)).Msg("event dropped: too large for the bus")
			return
		}
		if p.cfg.MaxAttempts > 0 && attempt >= p.cfg.MaxAttempts {
			p.m.dropped.WithLabelValues("attempts").Inc()
			p.log.Error().Err(err).Str("event_id", msg.ID).Str("conversation_id", string(e.ConversationID)).
				Str("reason", "attempts").Int("attempt", attempt).Int("dropped", 1).Msg("event dropped")
			return
		}
		if ctx.Err() != nil {
			p.drop(msg.ID, string(e.ConversationID), "shutdown")
			return
		}
		p.m.retries.Inc()
		if warn.Allow(time.Now()) {
			p.log.Warn().Err(err).Str("event_id", msg.ID).Int("attempt", attempt).Dur("backoff", backoff).Msg("publish failed, retrying")
		}
		// Full jitter in [backoff/2, backoff].
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-wake:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			p.drop(msg.ID, string(e.ConversationID), "shutdown")
			return
		}
		backoff = min(backoff*2, p.cfg.MaxBackoff)
	}
}

// retryWarnEvery is how often an event still being retried is logged
// again after its first failure: its attempts come as fast as events are
// enqueued behind it (wake), so a count of attempts would flood the log
// of a busy centre during an outage.
const retryWarnEvery = 30 * time.Second

// withoutLargest returns a copy of attrs without its largest attributes,
// enough of them to save at least over bytes (all of them if it takes
// that), and how many it left out.
func withoutLargest(attrs map[string]string, over int) (map[string]string, int) {
	keys := slices.Collect(maps.Keys(attrs))
	size := func(k string) int { return len(k) + len(attrs[k]) + 6 } // "k":"v",
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(size(b), size(a)) })
	out := maps.Clone(attrs)
	n, saved := 0, 0
	for _, k := range keys {
		if saved >= over {
			break
		}
		saved += size(k)
		delete(out, k)
		n++
	}
	return out, n
}

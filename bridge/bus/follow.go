package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/screenpop/screenpop/bridge"
)

// FollowPops calls fn for each pop stored from now on, for all agents, in
// stream order, until ctx is done. It reads them through an ephemeral
// consumer that it makes again, after the last pop it delivered, whenever
// the consumer may have gone: a reconnect, a missed heartbeat, a gap in the
// consumer's sequence, the consumer deleted. live is called once the first
// consumer exists on the server: it delivers every pop stored after that.
// fn runs on one goroutine at a time and may get pops before live has
// returned.
//
// It keeps its consumer itself, not through nats.go's ordered consumer,
// for how long a cluster failover takes: the ordered consumer waits a fixed
// 10 s for each attempt to make its consumer, and an attempt sent while the
// cluster still counts a lost node among its peers may be placed there and
// never answered, so pops reached the agents 11 s late or more.
func (c *Conn) FollowPops(ctx context.Context, fn func(bridge.StoredPop), live func()) error {
	// Start after the stream's last message, by sequence, not "new": a
	// consumer made again before it delivered anything must not skip the
	// pops stored meanwhile (push's live callback has run).
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Lost while no pop was followed (between two subscriptions):
		// nothing else would make it again, and no call would pop.
		if _, err = c.recheckStream(ctx); err == nil {
			st, err = c.js.Stream(ctx, c.cfg.Stream)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("follow pops: %w", err)
	}
	f := &follower{c: c, fn: fn, prefix: nuid.Next(), next: st.CachedInfo().State.LastSeq + 1, failed: make(chan struct{}, 1)}
	defer f.cleanups.Wait()

	// A consumer that is lost has the stream checked: recreated (here or
	// elsewhere, sequences from 1 again), FollowPops ends with an error,
	// so the caller follows the new stream from its end and tells its
	// agents to resume (their cursors are of the old epoch). A consumer
	// made after the old sequence would deliver nothing until the new
	// stream passed it.
	recreated := make(chan struct{})
	var recreatedOnce sync.Once
	var checking atomic.Bool
	check := func() {
		if checking.Swap(true) {
			return
		}
		// Checked until an answer: the loss may show only once (a
		// stream being deleted and created meanwhile).
		go func() {
			defer checking.Store(false)
			for {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				again, err := c.recheckStream(cctx)
				cancel()
				if err == nil {
					if again {
						recreatedOnce.Do(func() { close(recreated) })
					}
					return
				}
				c.log.Debug().Err(err).Msg("follow pops")
				if !sleepCtx(ctx, time.Second) {
					return
				}
			}
		}()
	}
	f.lost = check
	// A reconnect (to a server that may have lost its store, or away from
	// the node that held the consumer) has the consumer made again and
	// the stream checked.
	reconnected := c.nc.StatusChanged(nats.CONNECTED)
	defer c.nc.RemoveStatusListener(reconnected)

	if !f.start(ctx, recreated) {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return errors.New("follow pops: the stream was recreated")
	}
	if live != nil {
		live()
	}
	for err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-recreated:
			err = errors.New("follow pops: the stream was recreated")
		case <-reconnected:
			check()
			f.start(ctx, recreated)
		case <-f.failed:
			if f.broken.Load() {
				f.start(ctx, recreated)
			}
		}
	}
	if ctx.Err() != nil {
		err = nil
	}
	f.stop()
	return err
}

// PopsFollowed reports whether every FollowPops' consumer exists: false
// while one that was live is being made again and NATS refuses it (the
// stream's consumers all taken, JetStream away), when no pop reaches it.
func (c *Conn) PopsFollowed() bool { return c.followRemaking.Load() == 0 }

// followCreateTimeout bounds the first attempt to make FollowPops'
// consumer; each attempt that times out doubles it, up to 8 s. A healthy
// cluster answers in milliseconds; an attempt placed on a node that is
// gone is never answered, and the next one, under a new name, may be
// placed on a live node.
const followCreateTimeout = time.Second

// followHeartbeat is how often the server tells FollowPops' consumer that
// its pull is held: a consumer gone without a word (its node lost) is made
// again after two missed ones.
const followHeartbeat = 2 * time.Second

// follower is FollowPops' consumer and where it has got to.
type follower struct {
	c      *Conn
	fn     func(bridge.StoredPop)
	prefix string // consumer names: prefix_serial
	lost   func() // has the stream checked
	made   bool   // a consumer was live: start makes it again (start's goroutine)

	failed   chan struct{} // the current consumer needs making again
	broken   atomic.Bool
	cleanups sync.WaitGroup // deletes of consumers given up

	mu     sync.Mutex // held while fn runs: one consumer delivers at a time
	serial int        // of the current consumer; deliveries of others are dropped
	next   uint64     // stream sequence the next consumer starts at
	seq    uint64     // the current consumer's last delivered sequence
	cc     jetstream.ConsumeContext
	name   string
}

// start stops the current consumer, if any, and makes one that starts
// after the last pop delivered, trying until it exists or ctx is done or
// stop is closed (false).
func (f *follower) start(ctx context.Context, stop <-chan struct{}) bool {
	f.stop()
	wait, timeout := 250*time.Millisecond, followCreateTimeout
	// refused counts the attempts the consumer limit refused: the first
	// may be our own consumer not yet deleted (stop deletes it in the
	// background).
	// counted: this consumer, live before, is counted in followRemaking
	// until it is made again.
	refused, counted, told := 0, false, false
	defer func() {
		if counted {
			f.c.followRemaking.Add(-1)
		}
	}()
	for {
		f.mu.Lock()
		f.serial++
		serial, next := f.serial, f.next
		f.seq = 0
		f.broken.Store(false)
		f.mu.Unlock()
		name := fmt.Sprintf("%s_%d", f.prefix, serial)
		cctx, cancel := context.WithTimeout(ctx, timeout)
		cons, err := f.c.js.CreateConsumer(cctx, f.c.cfg.Stream, jetstream.ConsumerConfig{
			Name:              name,
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       next,
			AckPolicy:         jetstream.AckNonePolicy,
			FilterSubject:     bridge.SubjectPops,
			InactiveThreshold: 30 * time.Second,
			Replicas:          1,
			MemoryStorage:     true,
		})
		cancel()
		var cc jetstream.ConsumeContext
		if err == nil {
			cc, err = cons.Consume(f.deliver(serial), jetstream.PullHeartbeat(followHeartbeat),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { f.consumeErr(serial, err) }))
			if err != nil {
				f.forget(name)
			}
		} else if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			f.forget(name) // it may exist, unanswered
			timeout = min(2*timeout, 8*time.Second)
		}
		if err == nil {
			f.mu.Lock()
			f.cc, f.name = cc, name
			f.mu.Unlock()
			f.made = true
			if told {
				f.c.log.Info().Str("stream", f.c.cfg.Stream).Msg("the push server's consumer of the pops is made again: pops reach the agents again")
			}
			return true
		}
		f.c.log.Debug().Err(err).Msg("follow pops")
		if f.made && !counted {
			counted = true
			f.c.followRemaking.Add(1)
		}
		if errors.Is(err, jetstream.ErrMaximumConsumersLimit) {
			if refused++; refused > 1 {
				if ok, held := f.c.fullLines.Allow("follow", time.Now()); ok {
					told = true
					f.c.log.Error().Str("stream", f.c.cfg.Stream).Int("held_back", held).
						Msg("the stream has no room for the push server's consumer of the pops (nats-server's limit, 1,000 a stream by default): another service holds that many; no pop reaches any agent until it lets one go (nats consumer ls " + f.c.cfg.Stream + ")")
				}
			}
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			f.lost()
		}
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// stop stops the current consumer and deletes it in the background.
func (f *follower) stop() {
	f.mu.Lock()
	f.serial++ // its deliveries in flight are dropped
	cc, name := f.cc, f.name
	f.cc, f.name = nil, ""
	f.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Stop()
	f.forget(name)
}

// forget deletes a consumer no longer read, in the background and
// bounded; one not deleted goes at its inactivity threshold.
func (f *follower) forget(name string) {
	f.cleanups.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := f.c.js.DeleteConsumer(ctx, f.c.cfg.Stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			f.c.log.Debug().Err(err).Msg("follow pops: delete consumer")
		}
	})
}

// deliver hands the consumer's pops to fn in order, and has the consumer
// made again at a gap in its sequence (a pop it sent was not received).
func (f *follower) deliver(serial int) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if serial != f.serial {
			return
		}
		p, md, err := f.c.storedPop(m)
		if err != nil {
			f.c.log.Warn().Err(err).Msg("skip pop without metadata")
			return
		}
		if md.Sequence.Consumer != f.seq+1 {
			f.fail(serial)
			return
		}
		f.seq, f.next = md.Sequence.Consumer, p.Seq+1
		f.fn(p)
	}
}

// consumeErr has the consumer made again on an error that may mean it is
// gone or missed pops, and the stream checked when the consumer is lost.
func (f *follower) consumeErr(serial int, err error) {
	f.c.log.Debug().Err(err).Msg("follow pops")
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
		errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrNoResponders):
		f.lost()
	case errors.Is(err, jetstream.ErrBadRequest):
	default:
		return
	}
	f.mu.Lock()
	f.fail(serial)
	f.mu.Unlock()
}

// fail marks the consumer of serial for making again. f.mu is held.
func (f *follower) fail(serial int) {
	if serial != f.serial || f.broken.Swap(true) {
		return
	}
	select {
	case f.failed <- struct{}{}:
	default:
	}
}

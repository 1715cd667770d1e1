package notifications

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/egress"
	"github.com/screenpop/screenpop/internal/loglimit"
)

const (
	topicPrefix = "v2.users."
	topicSuffix = ".conversations"
	readLimit   = 4 << 20 // bytes; no documented maximum frame size, conversations can be large
)

func agentTopic(id string) string { return topicPrefix + id + topicSuffix }

// channelRef is how logs, /status and snapshots name a channel: its id cut
// to six characters after its last dash ("streaming-0-fmtdmf…"). The whole
// id is the socket's only credential (wss://…/channels/{id} opens with no
// token and receives every watched agent's conversations), so it is never
// written out; six characters still tell the channels of a log apart.
func channelRef(id string) string {
	keep := strings.LastIndexByte(id, '-') + 1 + 6
	if len(id) <= keep {
		if len(id) <= 6 {
			return id
		}
		keep = len(id) / 2
	}
	return id[:keep] + "…"
}

// shard is one channel slot: up to TopicsPerChannel agents, one channel at
// a time (two during a handover), one socket per channel.
type shard struct {
	c   *Client
	idx int

	mu         sync.Mutex
	agents     map[string]bool
	chID       string
	connectURI string
	expires    time.Time
	expAssumed bool          // expires is assumed, not Genesys' (pendingChannel.assumed)
	grace      time.Duration // the channel's handover grace (channelGrace)
	tokGen     int
	subscribed int
	connected  bool
	lastErr    string
	// putErr is the lastErr a failed subscription change left: its
	// success clears that one only, not a failing handover's.
	putErr     string
	reconnects int
	cur        *session
	lastPut    string // channel id and topic list of the last successful PUT
	// reput asks the next subscribe to put the list even when unchanged:
	// Genesys rejected some of its topics, and the org may have given the
	// permission back since (Genesys says nothing when it does).
	reput bool
	// putOutcome is the permitted and rejected counts of the last
	// successful PUT: a re-PUT of the same list (reput) that Genesys
	// answers the same way changed nothing and is logged at debug only,
	// not at info every RejectedRetry all night.
	putOutcome [2]int
	// pending is a channel created by an attempt that failed after the
	// create (its PUT or its dial). The next attempt reuses it rather than
	// create another: Genesys evicts the oldest of a client's channels past
	// 20, so a retry loop that creates channels would knock out live ones.
	pending pendingChannel
	// ver counts changes to agents; putVer is the ver of the list the
	// channel was last subscribed to: the agents added since (queue
	// members read after the channel came up) get nothing until a PUT of
	// their list succeeds.
	ver, putVer uint64

	// The handover retry schedule, used by run's goroutine only: after a
	// failed handover no trigger (socket_closing, expiry, token refresh)
	// tries again before hoAfter, which backs off and honours Retry-After.
	hoFails int
	hoAfter time.Time
	hoGen   int // the scheduled retry's; a handover done meanwhile cancels it
	// hoWarn limits the warnings of handovers failing in an outage, which
	// are retried every second.
	hoWarn loglimit.Every
	// gone is a channel found gone before its expiry, an eviction unless
	// its token turns out refused; judged when establish next succeeds.
	// Used by run's goroutine only.
	gone goneChannel
	// Taken-away topics (no_longer_subscribed) within a minute of the
	// last: two programs on one OAuth client take topics from each other.
	nlsAt      time.Time
	nlsRepeats int

	dirty  chan struct{}
	events chan sessEvent
}

type session struct {
	sh        *shard
	chID      string
	ref       string // channelRef(chID), made once: every snapshot carries it
	opened    time.Time
	ws        *websocket.Conn
	done      chan struct{}
	closeOnce sync.Once
	// lastFrame is when the last frame was read, in nanoseconds since
	// opened (monotonic: a step of the wall clock does not age it).
	lastFrame atomic.Int64
	// kept is set when the socket's channel was made by an earlier attempt
	// (a kept channel redialled, a pending one reused): a result 404 as
	// soon as it opens says the channel went while it had no socket (an
	// outage of the streaming host, the dials learning nothing of it), not
	// that the path refuses, and a new channel is made at once.
	kept bool
}

// frameRead records that a frame was read at now, a time.Now().
func (s *session) frameRead(now time.Time) { s.lastFrame.Store(int64(now.Sub(s.opened))) }

type sessEventKind int

const (
	evClosed sessEventKind = iota
	evSocketClosing
	evNoLongerSubscribed
	evChannelGone // {"result":"404"} on the socket: the channel no longer exists
	evHandoverDue // a handover put off (failed, or topics taken again) is due: of whichever session is current
)

// socketStable is how long a socket must stay open for its loss to be
// reconnected at once. One that closes sooner (a server that accepts the
// upgrade and then refuses, a proxy that cuts it) is retried with the
// reconnect backoff, or a closed-at-once socket would be redialled, and
// reconciled, in a tight loop.
const socketStable = 10 * time.Second

// errRedial marks an attempt that only redialled a kept channel's socket
// (or dialled a subscribed one's, whose next attempts only redial: the
// pending channel's dialOnly) and failed without the channel refusing it
// (a network error, a 5xx: Genesys or the path to it down). Such an
// attempt costs one upgrade request, no API request and no
// reconciliation, so it is retried within
// outageRetryMax, as are attempts that make or subscribe a channel and
// failed for want of an answer (apiOutage: a 5xx, a network error or
// timeout); a refusal, and sockets that close soon after they open, keep
// the full backoff.
type errRedial struct{ err error }

// genesysDown reports whether a channel's attempt (a redial, a creation,
// a subscription) failed for want of an answer from Genesys: retried
// within outageRetryMax.
func genesysDown(err error) bool { return errors.As(err, new(errRedial)) || apiOutage(err) }

func (e errRedial) Error() string { return e.err.Error() }
func (e errRedial) Unwrap() error { return e.err }

// redialed returns the error of a socket's dial that was all its attempt
// was, or all the next one will be: an errRedial when no answer came or
// the answer was a 5xx, else err (a 408, a 429, a proxy's refusal: the
// full backoff, or the answer's Retry-After).
func redialed(err error) error {
	var de *dialError
	if errors.As(err, &de) && (de.status == 0 || de.status >= 500) {
		return errRedial{err}
	}
	return err
}

// dialError is a socket's upgrade that failed: status is the answer's,
// or a forward proxy's to its CONNECT (0: none, a network error), and
// retryAfter the answer's Retry-After on a 429 or 503 (retryWait honours
// it, as it does an API call's).
type dialError struct {
	status     int
	retryAfter time.Duration
	err        error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// takenBackoff is the first wait before taking topics back that were taken
// away again within a minute; it doubles up to BackoffMax.
const takenBackoff = 5 * time.Second

type sessEvent struct {
	s    *session
	kind sessEventKind
	err  error
	why  string // evHandoverDue: the handover's first reason
	gen  int    // evHandoverDue: the retry's hoGen
}

func newShard(c *Client, idx int) *shard {
	return &shard{c: c, idx: idx, agents: map[string]bool{}, dirty: make(chan struct{}, 1), events: make(chan sessEvent, 16),
		hoWarn: loglimit.Every{Period: 30 * time.Second}}
}

func (sh *shard) add(a string)    { sh.mu.Lock(); sh.agents[a] = true; sh.ver++; sh.mu.Unlock() }
func (sh *shard) remove(a string) { sh.mu.Lock(); delete(sh.agents, a); sh.ver++; sh.mu.Unlock() }
func (sh *shard) size() int       { sh.mu.Lock(); defer sh.mu.Unlock(); return len(sh.agents) }

// live reports whether the shard's socket is up and its current topic
// list was answered: a list whose every topic was rejected (logged, in
// /status) counts, or one such shard would keep the client from ever
// being ready; a list answered before agents were added to it does not.
func (sh *shard) live() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.connected && sh.putVer == sh.ver && (sh.subscribed > 0 || sh.lastPut != "")
}

// unheard counts the shard's agents whose conversations no socket of the
// client receives now: all of them while the shard has no socket (its
// channel being made, subscribed or redialled, or refused), else those
// missing from the topic list its channel was last subscribed to (added
// since, with the change failing; all after no_longer_subscribed). Rejected
// topics are in that list: topics_rejected counts them.
func (sh *shard) unheard() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.agents) == 0 {
		return 0
	}
	if !sh.connected {
		return len(sh.agents)
	}
	_, list, _ := strings.Cut(sh.lastPut, "\n")
	put := make(map[string]bool, len(sh.agents))
	for _, t := range strings.Split(list, ",") {
		put[t] = true
	}
	n := 0
	for a := range sh.agents {
		if !put[agentTopic(a)] {
			n++
		}
	}
	return n
}

func (sh *shard) markDirty() {
	select {
	case sh.dirty <- struct{}{}:
	default:
	}
}

// topics is the shard's topic list, sorted, and its ver.
func (sh *shard) topics() ([]string, uint64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]string, 0, len(sh.agents))
	for a := range sh.agents {
		out = append(out, agentTopic(a))
	}
	sort.Strings(out)
	return out, sh.ver
}

func (sh *shard) status() ChannelStatus {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := ChannelStatus{ID: channelRef(sh.chID), Topics: len(sh.agents), Subscribed: sh.subscribed, Connected: sh.connected, Reconnects: sh.reconnects, LastError: sh.lastErr}
	if !sh.expires.IsZero() {
		st.Expires = sh.expires.UTC().Format(time.RFC3339)
	}
	if sh.cur != nil {
		if !sh.cur.opened.IsZero() {
			st.HeartbeatAgeMs = time.Since(sh.cur.opened.Add(time.Duration(sh.cur.lastFrame.Load()))).Milliseconds()
		}
	}
	return st
}

func (sh *shard) logger() *zerolog.Logger {
	l := sh.c.log.With().Int("shard", sh.idx).Logger()
	return &l
}

// run keeps the shard's topics delivered until ctx is done.
func (sh *shard) run(ctx context.Context) {
	log := sh.logger()
	backoff := sh.c.cfg.BackoffMin
	var expiry *time.Timer
	expiryC := func() <-chan time.Time {
		if expiry == nil {
			return nil
		}
		return expiry.C
	}
	resetExpiry := func() {
		if expiry != nil {
			expiry.Stop()
			expiry = nil
		}
		sh.mu.Lock()
		exp, grace := sh.expires, sh.grace
		sh.mu.Unlock()
		if !exp.IsZero() {
			expiry = time.NewTimer(max(time.Until(exp.Add(-grace)), time.Until(sh.hoAfter), time.Second))
		}
	}
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
		if s := sh.current(); s != nil {
			s.close()
		}
		sh.setConnected(false)
	}()
	tokenTick := time.NewTicker(time.Second)
	defer tokenTick.Stop()
	// While Genesys rejects some of the shard's topics, the list is put
	// again every RejectedRetry: with a static agent list nothing else
	// would until the next handover (up to 23 h), and the agents would
	// stay unwatched after the admin restores the role's permission.
	rejectTick := time.NewTicker(sh.c.cfg.RejectedRetry)
	defer rejectTick.Stop()
	failures := 0
	// Time-based, not every tenth attempt: redials come a second apart
	// (outageRetryMax) for as long as Genesys is down.
	warn := loglimit.Every{Period: 30 * time.Second}
	putWarn := loglimit.Every{Period: 30 * time.Second} // failed subscription changes, retried as often
	for ctx.Err() == nil {
		if sh.current() == nil {
			if sh.size() == 0 {
				select {
				case <-ctx.Done():
					return
				case <-sh.dirty:
					continue
				}
			}
			s, err := sh.establish(ctx, true)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				wait := retryWait(err, backoff)
				if genesysDown(err) {
					// Genesys is down (a redial, or a channel's creation
					// or subscription answered 5xx or not at all): once it is back the
					// agents must not wait out a backoff grown during
					// the outage to be heard again.
					wait = retryWait(err, min(backoff, outageRetryMax))
				}
				sh.setErr(err)
				if warn.Allow(time.Now()) {
					log.Warn().Err(err).Int("attempt", failures).Dur("backoff", wait).Msg("genesys channel not connected, retrying")
				}
				if !sleep(ctx, wait) {
					return
				}
				backoff = min(backoff*2, sh.c.cfg.BackoffMax)
				continue
			}
			if failures > 0 {
				log.Info().Int("attempts", failures+1).Str("channel_id", channelRef(s.chID)).Msg("genesys channel recovered")
			}
			failures = 0 // backoff stays until a socket proves stable (evClosed)
			warn.Reset()
			sh.install(s)
			resetExpiry()
			// A reconnected channel may still hold an older topic list (the
			// shard emptied and refilled while it had no socket): put the
			// current one; subscribe skips the PUT when nothing changed.
			sh.markDirty()
			sh.c.gap(sh)
		}
		select {
		case <-ctx.Done():
			return
		case ev := <-sh.events:
			if ev.kind != evHandoverDue && ev.s != sh.current() {
				continue // an old session's news
			}
			switch ev.kind {
			case evClosed, evChannelGone:
				sh.c.m.reconnects.Inc()
				sh.mu.Lock()
				sh.reconnects++
				gone := ev.kind == evChannelGone && sh.chID == ev.s.chID
				exp, gen := sh.evictionExpiryLocked(), sh.tokGen
				if gone {
					sh.forgetChannelLocked() // create a new one
				}
				sh.mu.Unlock()
				if gone {
					sh.goneEarly(ev.s.chID, exp, gen)
				}
				sh.drop(ev.s)
				ev.s.close() // after a result 404 the reader may still be waiting for the close
				lived := time.Since(ev.s.opened)
				e := log.Warn().Str("channel_id", channelRef(ev.s.chID)).Dur("lived", lived)
				if ev.err != nil {
					e = e.Str("reason", ev.err.Error())
				}
				if lived >= socketStable {
					backoff = sh.c.cfg.BackoffMin
					e.Msg("genesys socket closed, reconnecting")
					continue
				}
				if gone && ev.s.kept {
					// Its channel went while it had no socket: the first
					// answer about it after an outage of the streaming
					// host. The next attempt makes a new channel, at once:
					// the backoff the outage's redials grew would keep the
					// agents unheard for up to BackoffMax. A new channel
					// told gone as soon as it opens waits the backoff.
					e.Msg("genesys socket closed, its channel gone meanwhile, reconnecting to a new one")
					continue
				}
				wait := jitter(backoff)
				e.Dur("backoff", wait).Msg("genesys socket closed soon after it opened, reconnecting after a backoff")
				if !sleep(ctx, wait) {
					return
				}
				backoff = min(backoff*2, sh.c.cfg.BackoffMax)
			case evSocketClosing:
				log.Info().Str("channel_id", channelRef(ev.s.chID)).Msg("genesys socket closing, handing over")
				sh.handover(ctx, "socket_closing")
				resetExpiry()
			case evHandoverDue:
				if ev.gen != sh.hoGen || sh.current() == nil {
					continue // done meanwhile, or reconnecting (that makes or finds a channel anyway)
				}
				sh.handover(ctx, ev.why+", retried")
				resetExpiry()
			case evNoLongerSubscribed:
				// The channel holds none of the topics now: whatever socket
				// it gets next must put them again, even on the same channel.
				sh.mu.Lock()
				sh.lastPut = ""
				sh.mu.Unlock()
				if time.Since(sh.nlsAt) < time.Minute {
					sh.nlsRepeats++
				} else {
					sh.nlsRepeats = 0
				}
				sh.nlsAt = time.Now()
				if sh.nlsRepeats == 0 {
					log.Warn().Str("channel_id", channelRef(ev.s.chID)).Msg("genesys channel no longer subscribed, handing over")
					sh.handover(ctx, "no_longer_subscribed")
					resetExpiry()
					continue
				}
				// Taking the topics back at once would only take them from
				// whoever took them, who takes them back: back off.
				wait := jitter(min(takenBackoff<<min(sh.nlsRepeats-1, 4), max(sh.c.cfg.BackoffMax, takenBackoff)))
				e := log.Warn()
				if sh.nlsRepeats == 1 {
					e = log.Error() // once a burst; the repeats are warnings
				}
				e.Str("channel_id", channelRef(ev.s.chID)).Int("within_a_minute", sh.nlsRepeats+1).Dur("retry_in", wait).
					Msg("genesys keeps taking this channel's topics away: is another screenpopd or program using the same OAuth client? give each its own client")
				sh.retryHandover(ctx, "no_longer_subscribed", wait)
			}
		case <-sh.dirty:
			if !sleep(ctx, sh.c.cfg.PutDebounce) {
				return
			}
			select { // coalesce
			case <-sh.dirty:
			default:
			}
			s := sh.current()
			if s == nil {
				continue
			}
			if sh.size() == 0 {
				// No agents left: close the socket and forget it, so that
				// agents added later get a socket again (and a gap). The
				// channel still holds the topics of the agents who left,
				// which a socket dialled to it again would deliver until
				// the next PUT: keep it as pending, so that it is
				// subscribed to the new list before its socket is dialled.
				sh.drop(s)
				s.close()
				sh.mu.Lock()
				sh.pending = pendingChannel{id: sh.chID, uri: sh.connectURI, expires: sh.expires, grace: sh.grace, tokGen: sh.tokGen, assumed: sh.expAssumed}
				sh.forgetChannelLocked()
				sh.lastPut = ""
				sh.mu.Unlock()
				continue
			}
			if err := sh.subscribe(ctx, s.chID); err != nil {
				if errors.Is(err, errNotFound) {
					sh.handover(ctx, "channel_gone")
					resetExpiry()
				} else if ctx.Err() == nil {
					sh.setErr(err)
					sh.mu.Lock()
					sh.putErr = sh.lastErr
					sh.mu.Unlock()
					if putWarn.Allow(time.Now()) {
						log.Warn().Err(err).Str("channel_id", channelRef(s.chID)).Msg("genesys subscription change failed, retrying")
					}
					sh.retryDirty(ctx, err)
				}
			} else if sh.current() == s {
				// The change is in: an earlier failure of it is over (a
				// handover's, still failing, is not).
				putWarn.Reset()
				sh.mu.Lock()
				if sh.putErr != "" && sh.lastErr == sh.putErr {
					sh.lastErr = ""
				}
				sh.putErr = ""
				sh.mu.Unlock()
			}
		case <-expiryC():
			expiry = nil
			log.Info().Str("channel_id", channelRef(sh.chanID())).Msg("genesys channel expiring, handing over")
			sh.handover(ctx, "expiry")
			resetExpiry()
		case <-rejectTick.C:
			if sh.current() != nil && sh.hasRejected() {
				sh.mu.Lock()
				sh.reput = true
				sh.mu.Unlock()
				sh.markDirty()
			}
		case <-tokenTick.C:
			if sh.c.cfg.KeepChannelOnTokenRefresh {
				continue
			}
			t := sh.c.tok.Load()
			sh.mu.Lock()
			old := t != nil && sh.cur != nil && sh.tokGen != 0 && t.gen != sh.tokGen
			sh.mu.Unlock()
			if old && !time.Now().Before(sh.hoAfter) {
				log.Info().Str("channel_id", channelRef(sh.chanID())).Msg("genesys token refreshed, handing channel over")
				sh.handover(ctx, "token_refresh")
				resetExpiry()
			}
		}
	}
}

// retryDirty asks for the subscription change again after a backoff, or
// the Retry-After of err when longer. A change that failed for want of an
// answer (apiOutage) is asked again within outageRetryMax, as a channel's
// creation is: the agents it adds are not heard until it is in, and once
// Genesys is back they must not wait out a backoff.
func (sh *shard) retryDirty(ctx context.Context, err error) {
	wait := retryWait(err, sh.c.cfg.BackoffMax/4+sh.c.cfg.BackoffMin)
	if apiOutage(err) {
		wait = retryWait(err, outageRetryMax)
	}
	sh.c.wg.Add(1)
	go func() {
		defer sh.c.wg.Done()
		if sleep(ctx, wait) {
			sh.markDirty()
		}
	}()
}

func (sh *shard) current() *session {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.cur
}

func (sh *shard) chanID() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.chID
}

func (sh *shard) setErr(err error) {
	sh.mu.Lock()
	sh.lastErr = err.Error()
	sh.mu.Unlock()
}

func (sh *shard) setConnected(v bool) {
	sh.mu.Lock()
	was := sh.connected
	sh.connected = v
	sh.mu.Unlock()
	if was && !v {
		sh.c.m.channels.Dec()
	}
}

// drop forgets s as the shard's session, if it still is.
func (sh *shard) drop(s *session) {
	sh.mu.Lock()
	if sh.cur != s {
		sh.mu.Unlock()
		return
	}
	sh.cur = nil
	sh.mu.Unlock()
	sh.setConnected(false)
}

// install makes s the shard's session and starts its goroutines.
func (sh *shard) install(s *session) {
	sh.mu.Lock()
	sh.cur = s
	was := sh.connected
	sh.connected = true
	sh.lastErr = ""
	sh.mu.Unlock()
	if !was {
		sh.c.m.channels.Inc()
	}
	sh.c.wg.Add(2)
	go func() { defer sh.c.wg.Done(); s.read() }()
	go func() { defer sh.c.wg.Done(); s.ping() }()
}

// handover replaces the current session with one on a new channel: create,
// connect, subscribe, and only then drop the old socket. If it fails, the
// old session stays and the handover is retried later (a closed old
// socket falls back to the reconnect path).
func (sh *shard) handover(ctx context.Context, why string) {
	log := sh.logger()
	old := sh.current()
	if wait := time.Until(sh.hoAfter); wait > 0 {
		log.Debug().Str("reason", why).Dur("wait", wait).Msg("genesys handover already scheduled")
		return
	}
	s, err := sh.establish(ctx, false)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		sh.setErr(err)
		sh.hoFails++
		backoff := min(sh.c.cfg.BackoffMin*4<<min(sh.hoFails-1, 10), sh.c.cfg.BackoffMax)
		outage := genesysDown(err)
		if outage {
			// Genesys is down: the old socket may hold no topics (taken
			// away) or be about to close, and once Genesys is back the
			// agents must not wait out a backoff grown during the outage
			// (as for a channel's creation, run's establish).
			backoff = min(backoff, outageRetryMax)
		}
		wait := retryWait(err, backoff)
		if !outage || sh.hoWarn.Allow(time.Now()) {
			log.Warn().Err(err).Str("reason", why).Int("attempt", sh.hoFails).Dur("retry_in", wait).Msg("genesys handover failed, keeping the old socket")
		}
		sh.retryHandover(ctx, why, wait)
		sh.mu.Lock()
		changed := sh.putVer != sh.ver
		sh.mu.Unlock()
		if changed && old != nil && sh.current() == old {
			// A change of the agent list this handover's PUT was to
			// carry (its subscribe took the signal) goes on the old
			// channel meanwhile: its socket is live, and the retry may
			// be a minute away. Only then: the change's debounce holds
			// up the shard's loop.
			sh.markDirty()
		}
		return
	}
	sh.hoFails, sh.hoAfter = 0, time.Time{}
	sh.hoWarn.Reset()
	sh.hoGen++ // a retry still scheduled is not needed now
	sh.install(s)
	sh.c.m.handovers.Inc()
	if old != nil {
		old.close()
	}
	log.Info().Str("channel_id", channelRef(s.chID)).Str("reason", why).Msg("genesys channel handed over")
	// The old socket may have missed events while the new one was being
	// set up (e.g. the server closed it early): reconcile to be sure.
	sh.c.gap(sh)
}

// retryHandover hands the shard's session over after wait (whichever
// session it is by then: a reconnect in between must not cancel it), and
// no sooner from any other trigger. Only run's goroutine calls it.
func (sh *shard) retryHandover(ctx context.Context, why string, wait time.Duration) {
	sh.hoAfter = time.Now().Add(wait)
	sh.hoGen++
	gen := sh.hoGen
	sh.c.wg.Add(1)
	go func() {
		defer sh.c.wg.Done()
		if sleep(ctx, wait) {
			select {
			case sh.events <- sessEvent{kind: evHandoverDue, why: why, gen: gen}:
			default:
			}
		}
	}()
}

// establish returns a connected session: on the current channel when reuse
// is set and it still exists, else on a new, subscribed channel.
func (sh *shard) establish(ctx context.Context, reuse bool) (*session, error) {
	log := sh.logger()
	sh.mu.Lock()
	chID, uri, exp, gen := sh.chID, sh.connectURI, sh.evictionExpiryLocked(), sh.tokGen
	sh.mu.Unlock()
	if reuse && chID != "" {
		s, err := sh.dial(ctx, chID, uri)
		if err == nil {
			s.kept = true
			log.Info().Str("channel_id", channelRef(chID)).Msg("genesys socket reconnected")
			return s, nil
		}
		if !errors.Is(err, errNotFound) {
			return nil, redialed(err)
		}
		log.Info().Str("channel_id", channelRef(chID)).Msg("genesys channel gone, creating a new one")
		sh.goneEarly(chID, exp, gen)
		// Its 404 was the answer: should making the new one fail, the
		// retries do not dial (and report) the gone one again first.
		sh.mu.Lock()
		if sh.chID == chID {
			sh.forgetChannelLocked()
		}
		sh.mu.Unlock()
	}
	return sh.establishPending(ctx, reuse, true)
}

// forgetChannelLocked drops the shard's channel (gone, or kept aside as
// pending), with what /status says of it: until the next one connects,
// on-call sees no channel, no expiry and no topic subscribed, not the
// gone one's. sh.mu is held.
func (sh *shard) forgetChannelLocked() {
	sh.chID, sh.connectURI, sh.expires, sh.subscribed, sh.expAssumed = "", "", time.Time{}, 0, false
}

// establishPending returns a connected session on the shard's pending
// channel (one made by an earlier attempt that failed) or on a new one.
// again lets it make a new channel in the same attempt when the pending
// one turns out to be gone, rather than after the backoff that the failed
// attempts grew.
func (sh *shard) establishPending(ctx context.Context, reuse, again bool) (*session, error) {
	log := sh.logger()
	sh.mu.Lock()
	p := sh.pending
	sh.mu.Unlock()
	// A channel is bound to the token that created it: one made under an
	// older token is not reused (a token refresh hands channels over).
	reused := false
	if p.id == "" || p.tokGen != sh.c.tokenGen() || time.Until(p.expires) < p.grace {
		ch, date, err := sh.create(ctx)
		if err != nil {
			return nil, err
		}
		p = pendingChannel{id: *ch.Id, uri: *ch.ConnectUri, expires: time.Now().Add(24 * time.Hour), tokGen: sh.c.tokenGen()}
		if ch.Expires != nil && !ch.Expires.IsZero() {
			if exp := localExpiry(*ch.Expires, date, time.Now()); exp.After(time.Now()) {
				p.expires = exp
			} else {
				// Expired on Genesys' own clock as it was made: a fault
				// of Genesys'. Read as such, the channel would be
				// handed over at once, and so would each next one (a
				// channel, a PUT and a socket a second). It keeps the
				// documented 24 h instead; if Genesys closes its
				// socket, the reconnect path makes the next one, with
				// its backoff.
				ev := log.Warn().Str("channel_id", channelRef(p.id)).Time("genesys_expires", *ch.Expires)
				if !date.IsZero() {
					ev = ev.Time("genesys_date", date)
				}
				ev.Msg("genesys channel created already expired; taking it to live the documented 24 h")
				p.assumed = true
			}
		}
		p.grace = channelGrace(sh.c.cfg.HandoverGrace, time.Until(p.expires))
		log.Info().Str("channel_id", channelRef(p.id)).Time("expires", p.expires).Msg("genesys channel created")
		sh.setPending(p)
	} else {
		reused = true
		if !p.dialOnly {
			log.Info().Str("channel_id", channelRef(p.id)).Msg("genesys channel reused (of a failed attempt, or of a shard that emptied)")
			// Its subscription is put again, even unchanged: that is what
			// tells a channel gone since (404) from a path that refuses.
			sh.mu.Lock()
			sh.lastPut = ""
			sh.mu.Unlock()
		}
		// else its list was put and its socket's dial had no answer
		// about the channel: dialled again, its list put only if it
		// changed (subscribe compares it with lastPut).
	}
	var s *session
	if !reuse {
		// A handover: the old socket still delivers. Its new socket is
		// opened before the PUT, because the PUT may take the topics from
		// the old channel (no_longer_subscribed, another_channel_subscribed:
		// docs/assumptions.md #2): put first, what rang before the new
		// socket was up would reach no socket, and a new socket refused
		// would leave the old one, kept, holding nothing.
		var err error
		if s, err = sh.dial(ctx, p.id, p.uri); err != nil {
			if reused && errors.Is(err, errNotFound) {
				// A kept channel refused, with no PUT to tell gone from
				// a path that refuses: take it as gone (with no socket it
				// is the first Genesys evicts), or it is redialled until
				// it expires; the old socket shows the path works.
				sh.setPending(pendingChannel{})
			}
			return nil, err
		}
	}
	if err := sh.subscribe(ctx, p.id); err != nil {
		if s != nil {
			s.close()
		}
		if errors.Is(err, errNotFound) {
			sh.setPending(pendingChannel{})
			if reused && again {
				// Expired or evicted while it had no socket.
				log.Info().Str("channel_id", channelRef(p.id)).Msg("genesys channel gone, creating a new one")
				return sh.establishPending(ctx, reuse, false)
			}
		}
		return nil, err
	}
	if s == nil {
		var err error
		if s, err = sh.dial(ctx, p.id, p.uri); err != nil {
			// The channel stays pending even when its upgrade is refused: the
			// API has just accepted its subscription, so the refusal is more
			// likely the path (a proxy) than the channel, and a channel made
			// per attempt would evict the others'. The next attempt's
			// subscription tells a channel that is really gone (404).
			if errors.Is(err, errNotFound) {
				if p.dialOnly {
					// Refused after dials that had no answer (the host is
					// back): put the list now, to tell a channel gone
					// meanwhile (a new one) from a path that refuses.
					p.dialOnly = false
					sh.setPending(p)
					return sh.establishPending(ctx, reuse, again)
				}
				return nil, err
			}
			// No answer about the channel (the streaming host's name does
			// not resolve, it answers 5xx, a proxy refuses websockets): its
			// subscription is in, so the next attempts only dial, as a kept
			// channel's redial does, and as often. Putting the unchanged list
			// again before each (a second apart in an outage) would spend the
			// OAuth client's API budget, which the gap's reconciliation needs
			// once the socket is up, and tell nothing the dial does not.
			p.dialOnly = true
			sh.setPending(p)
			return nil, redialed(err)
		}
	}
	s.kept = reused
	sh.mu.Lock()
	sh.chID, sh.connectURI, sh.expires, sh.grace, sh.tokGen, sh.expAssumed = p.id, p.uri, p.expires, p.grace, p.tokGen, p.assumed
	sh.pending = pendingChannel{}
	sh.mu.Unlock()
	log.Info().Str("channel_id", channelRef(p.id)).Msg("genesys socket connected")
	sh.judgeGone()
	return s, nil
}

// goneChannel is a channel found gone before its expiry under the token
// that made it.
type goneChannel struct {
	id      string
	expires time.Time
	tokGen  int
}

// goneEarly notes channel id found gone before its expiry under the
// token that made it, while that token is still valid by its expiry.
// Nothing of the client's own ends a channel then, and Genesys evicts a
// client's least recently used channel past 20, so the likely cause is
// another program on the same OAuth client: two that together want more
// than 20 channels evict each other's for good, each eviction a gap for
// the agents on the channel. But a token Genesys stops honouring early
// (revoked, or its clock) takes its channels too, and the client learns
// that only from the next request's 401: judgeGone decides once
// establish's requests have shown which.
// evictionExpiryLocked is the current channel's expiry as goneEarly
// judges it: none (nothing judged) when it was assumed, not Genesys' own.
func (sh *shard) evictionExpiryLocked() time.Time {
	if sh.expAssumed {
		return time.Time{}
	}
	return sh.expires
}

func (sh *shard) goneEarly(id string, expires time.Time, tokGen int) {
	if expires.IsZero() || tokGen != sh.c.tokenGen() || !time.Now().Before(expires.Add(-sh.c.cfg.HandoverGrace)) {
		return
	}
	if t := sh.c.tok.Load(); t == nil || !time.Now().Before(t.expires) {
		return // the token ran out (no new one yet: the login failing), and its channels with it
	}
	sh.gone = goneChannel{id: id, expires: expires, tokGen: tokGen}
}

// judgeGone counts and reports the channel goneEarly noted as evicted if
// the token that made it is still the client's after establish's requests
// succeeded with it; refused, it was replaced (a new generation), and the
// channel went with it.
func (sh *shard) judgeGone() {
	g := sh.gone
	sh.gone = goneChannel{}
	if g.id == "" || g.tokGen != sh.c.tokenGen() {
		return
	}
	sh.c.m.evicted.Inc()
	// Two programs evicting each other do it at every reconnect: once a
	// minute says it, the counter counts each.
	now := time.Now()
	sh.c.mu.Lock()
	if now.Sub(sh.c.evictedLog) < time.Minute {
		sh.c.evictedHeld++
		sh.c.mu.Unlock()
		return
	}
	held := sh.c.evictedHeld
	sh.c.evictedLog, sh.c.evictedHeld = now, 0
	sh.c.mu.Unlock()
	sh.logger().Warn().Str("channel_id", channelRef(g.id)).Time("expires", g.expires).Int("held_back", held).
		Msg("genesys channel gone before it expired, most likely evicted: Genesys keeps 20 channels per OAuth client; is another screenpopd or program using this one? give each its own OAuth client, or watch fewer agents per instance")
}

// pendingChannel is a created channel not yet in use. dialOnly is set
// once its subscription was accepted (the shard's lastPut) and its socket's
// dial then failed without the channel being refused.
type pendingChannel struct {
	id, uri  string
	expires  time.Time
	grace    time.Duration // channelGrace
	tokGen   int
	dialOnly bool
	// assumed: Genesys answered it already expired, and expires is the
	// documented 24 h, not its own: its end says nothing of an eviction.
	assumed bool
}

// channelGrace is how long before its expiry a channel that lives life
// from its creation (localExpiry) is handed over: the configured grace, or
// half its life if that is shorter. Genesys' channels live 24 h; were one
// to live less than the grace (another setting on Genesys' side), the
// handover would be due at once, and the new channel's again: one a
// second, each a channel, a PUT, a socket and a reconciliation.
func channelGrace(grace, life time.Duration) time.Duration {
	return max(0, min(grace, life/2))
}

// tokenGen is the generation of the current token, 0 before the first
// login.
func (c *Client) tokenGen() int {
	if t := c.tok.Load(); t != nil {
		return t.gen
	}
	return 0
}

func (sh *shard) setPending(p pendingChannel) {
	sh.mu.Lock()
	sh.pending = p
	sh.mu.Unlock()
}

// create makes a new notification channel.
func (sh *shard) create(ctx context.Context) (*platformclientv2.Channel, time.Time, error) {
	var ch *platformclientv2.Channel
	var date time.Time
	err := sh.c.call(ctx, "create channel", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		ch, resp, err = sh.c.notif.PostNotificationsChannels()
		if resp != nil && len(resp.Header["Date"]) > 0 {
			date, _ = http.ParseTime(resp.Header["Date"][0])
		}
		return resp, err
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	if ch == nil || ch.Id == nil || ch.ConnectUri == nil {
		return nil, time.Time{}, errors.New("create channel: answer without id or connectUri")
	}
	return ch, date, nil
}

// localExpiry is a new channel's expiry on the local clock: its life, as
// Genesys' clock reads it (expires less the answer's Date), from now. A
// local clock a day ahead reads Genesys' expires as past: every channel
// would be handed over at once. Without a Date, expires as it is.
func localExpiry(expires, date, now time.Time) time.Time {
	if date.IsZero() {
		return expires
	}
	return now.Add(expires.Sub(date))
}

// subscribe PUTs the shard's full topic list on channel id with
// ignoreErrors=true and records rejected topics.
func (sh *shard) subscribe(ctx context.Context, id string) error {
	select { // this PUT carries every change made so far
	case <-sh.dirty:
	default:
	}
	topics, ver := sh.topics()
	key := id + "\n" + strings.Join(topics, ",")
	sh.mu.Lock()
	last, reput := sh.lastPut, sh.reput
	sh.reput = false
	if last == key && !reput {
		sh.putVer = ver
	}
	sh.mu.Unlock()
	if last == key && !reput {
		return nil // this channel already holds exactly this list
	}
	// On the channel whose socket is up, topics that were not delivered
	// before (new agents, and agents whose topic was rejected) get no
	// gap from the socket: they are reconciled from the time of this PUT.
	var before map[string]bool
	if prev, ok := strings.CutPrefix(last, id+"\n"); ok {
		before = make(map[string]bool, len(topics))
		for _, t := range strings.Split(prev, ",") {
			before[t] = true
		}
		sh.c.mu.Lock()
		for t := range sh.c.rejected {
			delete(before, t)
		}
		sh.c.mu.Unlock()
	}
	putAt := time.Now()
	body := make([]platformclientv2.Channeltopic, len(topics))
	for i := range topics {
		body[i] = platformclientv2.Channeltopic{Id: &topics[i]}
	}
	// One attempt: a 429 goes back to the caller, which waits for its
	// Retry-After (establish's backoff, the handover schedule,
	// retryDirty) without holding up the shard's loop, which must still
	// see its socket close or a socket_closing meanwhile.
	var listing *platformclientv2.Channeltopicentitylisting
	err := sh.c.call(ctx, "subscribe", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		listing, resp, err = sh.c.notif.PutNotificationsChannelSubscriptions(id, body, true)
		return resp, err
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
		sh.logger().Warn().Dur("retry_after", ae.RetryAfter).Str("channel_id", channelRef(id)).Msg("genesys subscription rate limited, waiting")
	}
	if err != nil {
		if reput { // still to do: the retry after this failure must put it
			sh.mu.Lock()
			sh.reput = true
			sh.mu.Unlock()
		}
		return err
	}
	sh.c.m.puts.Inc()
	permitted := 0
	rejected := map[string]rejection{}
	if listing != nil && listing.Entities != nil {
		for _, e := range *listing.Entities {
			if e.Id == nil {
				continue
			}
			if e.State != nil && strings.EqualFold(*e.State, "Rejected") {
				reason := "rejected"
				if e.RejectionReason != nil && *e.RejectionReason != "" {
					reason = *e.RejectionReason
				}
				rejected[*e.Id] = rejection{Topic: *e.Id, UserID: userOfTopic(*e.Id), Reason: reason}
				continue
			}
			permitted++
		}
	}
	outcome := [2]int{permitted, len(rejected)}
	sh.mu.Lock()
	sh.subscribed = permitted
	sh.lastPut = key
	sh.putVer = ver
	same := last == key && sh.putOutcome == outcome
	sh.putOutcome = outcome
	sh.mu.Unlock()
	sh.c.recordRejections(topics, rejected)
	if before != nil {
		var joined []string
		for _, t := range topics {
			if !before[t] && rejected[t].Topic == "" {
				joined = append(joined, userOfTopic(t))
			}
		}
		if len(joined) > 0 {
			sh.c.gapAgents(joined, putAt)
		}
	}
	e := sh.logger().Info()
	if same {
		e = sh.logger().Debug() // the periodic re-PUT of a still-rejected list: nothing changed
	}
	e.Str("channel_id", channelRef(id)).Int("topics", len(topics)).Int("permitted", permitted).Int("rejected", len(rejected)).Msg("genesys channel subscribed")
	return nil
}

// hasRejected reports whether Genesys rejected any of the shard's topics
// at their last PUT.
func (sh *shard) hasRejected() bool {
	topics, _ := sh.topics()
	sh.c.mu.Lock()
	defer sh.c.mu.Unlock()
	for _, t := range topics {
		if _, ok := sh.c.rejected[t]; ok {
			return true
		}
	}
	return false
}

// userOfTopic returns the user id of a v2.users.{id}.conversations topic,
// or "" for anything else (including "v2.users.conversations", whose prefix
// and suffix overlap).
func userOfTopic(t string) string {
	if len(t) > len(topicPrefix)+len(topicSuffix) && strings.HasPrefix(t, topicPrefix) && strings.HasSuffix(t, topicSuffix) {
		return t[len(topicPrefix) : len(t)-len(topicSuffix)]
	}
	return ""
}

// recordRejections replaces the rejections of topics (one shard's list)
// and logs each new one with the user and the reason.
func (c *Client) recordRejections(topics []string, rejected map[string]rejection) {
	c.mu.Lock()
	var fresh []rejection
	for _, t := range topics {
		r, bad := rejected[t]
		if bad && c.agentShard[r.UserID] == nil {
			bad = false // removed (apply) while this PUT was in flight
		}
		old, had := c.rejected[t]
		if bad {
			c.rejected[t] = r
			if !had || old.Reason != r.Reason {
				fresh = append(fresh, r)
			}
		} else if had {
			delete(c.rejected, t)
		}
	}
	n := len(c.rejected)
	c.mu.Unlock()
	c.m.rejected.Set(float64(n))
	for _, r := range fresh {
		c.log.Error().Str("agent_id", r.UserID).Str("topic", r.Topic).Str("reason", r.Reason).
			Msg("genesys rejected the topic subscription: give the OAuth client's role conversation:communication:view in the user's division")
	}
}

var dialer = websocket.Dialer{HandshakeTimeout: 15 * time.Second, ReadBufferSize: 32 << 10, WriteBufferSize: 4 << 10, Proxy: http.ProxyFromEnvironment}

// proxiedDialer is dialer for uri, opening the tunnel through the proxy
// itself when there is one (egress.NetDialer): gorilla's own proxy dialer
// panics on a refusal without a reason phrase ("HTTP/1.1 407").
func proxiedDialer(uri string) *websocket.Dialer {
	d := dialer
	if nd := egress.NetDialer(dialer.Proxy, uri); nd != nil {
		d.Proxy, d.NetDialContext = nil, nd
	}
	return &d
}

// cancelable makes ctx's end, a stop as well as its deadline, end d's dial
// wherever it waits: gorilla's DialContext reads the answer to the upgrade
// bounded by the context's deadline alone, so a stop while the streaming
// host (or the path to it) said nothing waited out the whole HTTPTimeout,
// past the daemon's stop budget. unwatch, called once the dial returned,
// reports whether the connection was left alone.
func cancelable(ctx context.Context, d *websocket.Dialer) (_ *websocket.Dialer, unwatch func() bool) {
	next := d.NetDialContext
	if next == nil {
		var nd net.Dialer
		next = nd.DialContext
	}
	var mu sync.Mutex
	var stops []func() bool
	d.NetDialContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		mu.Lock()
		stops = append(stops, stop)
		mu.Unlock()
		return c, nil
	}
	return d, func() bool {
		mu.Lock()
		defer mu.Unlock()
		ok := true
		for _, stop := range stops {
			ok = stop() && ok
		}
		return ok
	}
}

func (sh *shard) dial(ctx context.Context, id, uri string) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, sh.c.cfg.HTTPTimeout)
	defer cancel()
	d, unwatch := cancelable(dctx, proxiedDialer(uri))
	ws, resp, err := d.DialContext(dctx, uri, nil)
	if !unwatch() && err == nil {
		// Stopped just as the answer came: the socket's deadline is past.
		_ = ws.Close()
		ws, err = nil, dctx.Err()
	}
	if err != nil {
		if resp != nil && channelRefused(resp.StatusCode) {
			return nil, &APIError{Op: "connect channel", Status: http.StatusNotFound}
		}
		status, wait := 0, time.Duration(0)
		if resp == nil {
			err = egress.DialError(dialer.Proxy, uri, err) // "Forbidden" is the proxy's, not Genesys'
			if pe := (*egress.ProxyError)(nil); errors.As(err, &pe) {
				status = pe.Status // a refusal (403, 407) is no outage
			}
		} else {
			status = resp.StatusCode
			if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
				wait = retryAfter(resp.Header.Get("Retry-After"))
			}
			// gorilla's "bad handshake" alone tells on-call nothing.
			err = fmt.Errorf("the streaming host answered %s: %w", resp.Status, err)
		}
		return nil, &dialError{status: status, retryAfter: wait, err: fmt.Errorf("connect channel: %w", err)}
	}
	ws.SetReadLimit(readLimit)
	s := &session{sh: sh, chID: id, ref: channelRef(id), opened: time.Now(), ws: ws, done: make(chan struct{})}
	s.frameRead(s.opened)
	return s, nil
}

// channelRefused reports whether the streaming host's answer to a
// socket's upgrade means the channel cannot be used again: 404 and 410 for
// one that is gone, and any other 4xx but 408 and 429 (a refusal of this
// channel, such as 401 or 403, which the service does not document), so
// that a new channel is made rather than the same one redialled for good.
func channelRefused(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = s.ws.Close()
	})
}

func (s *session) report(kind sessEventKind, err error) {
	select {
	case s.sh.events <- sessEvent{s: s, kind: kind, err: err}:
	case <-s.done:
	}
}

var pingFrame = []byte(`{"message":"ping"}`)

// ping is the socket's only writer (close frames aside): a JSON ping every
// PingInterval.
func (s *session) ping() {
	t := time.NewTicker(s.sh.c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			_ = s.ws.SetWriteDeadline(time.Now().Add(s.sh.c.cfg.HTTPTimeout))
			if err := s.ws.WriteMessage(websocket.TextMessage, pingFrame); err != nil {
				return // the reader sees the failure
			}
		}
	}
}

// read is the socket's only reader. Every frame (events, heartbeats,
// pongs) pushes the read deadline HeartbeatTimeout ahead, so a socket that
// stays silent that long is dead.
func (s *session) read() {
	c := s.sh.c
	ctx := c.doer.context()
	defer s.close()
	// One buffer for every frame of the socket: heartbeats and pongs cost
	// nothing, and a conversation frame costs one exact copy of its event
	// body (ReadMessage allocated each frame afresh, growing it by
	// doubling: most of the daemon's allocations at 500 calls a second).
	var buf bytes.Buffer
	for {
		_ = s.ws.SetReadDeadline(time.Now().Add(c.cfg.HeartbeatTimeout))
		_, r, err := s.ws.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			select {
			case <-s.done: // we closed it
			default:
				s.report(evClosed, err)
			}
			return
		}
		now := time.Now()
		s.frameRead(now)
		s.dispatch(ctx, buf.Bytes(), now)
		if buf.Cap() > maxKeptBuffer {
			buf = bytes.Buffer{} // after an unusually large frame
		}
	}
}

// maxKeptBuffer is the largest read buffer a session keeps between frames.
const maxKeptBuffer = 64 << 10

// dispatch handles one frame. b is the session's read buffer, overwritten by
// the next frame: what outlives the call (the snapshot, the conversation
// seen) is copied out of it.
func (s *session) dispatch(ctx context.Context, b []byte, now time.Time) {
	c := s.sh.c
	if len(b) == 0 {
		c.m.junk.Inc()
		return
	}
	// gjson reads the frame in place; its strings point into b.
	frame := unsafe.String(unsafe.SliceData(b), len(b))
	topic := gjson.Get(frame, "topicName")
	if !topic.Exists() || topic.Type != gjson.String {
		// {"result":"404"} (sent after the upgrade) says the channel is
		// gone: expired, evicted by a newer channel, or its token expired.
		if r := gjson.Get(frame, "result"); r.Exists() {
			c.m.events.WithLabelValues("system").Inc()
			if r.String() == "404" {
				c.log.Warn().Str("channel_id", channelRef(s.chID)).Msg("genesys channel gone (result 404 on its socket), creating a new one")
				s.report(evChannelGone, nil)
				return
			}
			c.log.Info().Str("result", r.String()).Str("channel_id", channelRef(s.chID)).Msg("genesys result frame")
			return
		}
		c.m.junk.Inc()
		if !gjson.ValidBytes(b) {
			c.log.Debug().Int("bytes", len(b)).Str("channel_id", channelRef(s.chID)).Msg("genesys junk frame skipped")
		}
		return
	}
	name := topic.Str
	switch {
	case name == "channel.metadata":
		msg := gjson.Get(frame, "eventBody.message").Str
		if msg == "pong" {
			c.m.events.WithLabelValues("pong").Inc()
		} else {
			c.m.events.WithLabelValues("heartbeat").Inc()
		}
	case name == "v2.system.socket_closing":
		c.m.events.WithLabelValues("system").Inc()
		s.report(evSocketClosing, nil)
	case strings.HasPrefix(name, "v2.system.no_longer_subscribed"):
		c.m.events.WithLabelValues("system").Inc()
		s.report(evNoLongerSubscribed, nil)
	case strings.HasPrefix(name, "v2.system.token_revoked"):
		// The channel's token is gone: get a new one, and a channel made
		// with it.
		c.m.events.WithLabelValues("system").Inc()
		c.log.Warn().Str("channel_id", channelRef(s.chID)).Msg("genesys token revoked, logging in again")
		// The token that made this channel, not one fetched since (the
		// other channels' token_revoked, or a 401, may have replaced it).
		s.sh.mu.Lock()
		gen := s.sh.tokGen
		s.sh.mu.Unlock()
		c.invalidateGen(gen)
		s.report(evNoLongerSubscribed, nil)
	case strings.HasPrefix(name, "v2.system."):
		c.m.events.WithLabelValues("system").Inc()
		c.log.Info().Str("topic", strings.ReplaceAll(name, s.chID, channelRef(s.chID))).Str("channel_id", channelRef(s.chID)).Msg("genesys system message")
	case userOfTopic(name) != "":
		body := gjson.Get(frame, "eventBody")
		if !body.IsObject() {
			c.m.junk.Inc()
			return
		}
		raw := []byte(body.Raw) // the copy that outlives b
		name = strings.Clone(name)
		agent := userOfTopic(name)
		c.m.events.WithLabelValues("conversations").Inc()
		c.markSeen(body.Raw, agent, now)
		c.emit(ctx, bridge.Snapshot{Topic: name, Agent: bridge.AgentID(agent), ChannelID: s.ref, Body: raw, ReceivedAt: now})
	default:
		c.m.events.WithLabelValues("other").Inc()
	}
}

package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/tidwall/gjson"
	"golang.org/x/sync/errgroup"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/loglimit"
)

// activityBatch is how many agents one activity query asks about.
const activityBatch = 100

// liveMetrics are the observations of an agent's live conversations: the
// ones ringing (they pop) and the ones in progress.
var liveMetrics = []string{"oAlerting", "oInteracting"}

// reconcileLoop runs a reconciliation after each gap (coalescing gaps that
// arrive while one runs). A failed reconciliation is retried with backoff.
func (c *Client) reconcileLoop(ctx context.Context) error {
	backoff := c.cfg.BackoffMin
	// Time-based: in an outage of the API the passes come a second apart
	// (outageRetryMax).
	warn := loglimit.Every{Period: 30 * time.Second}
	for {
		// A conversation whose fetch failed is tried again on its own
		// schedule, with no gap to start a pass.
		var retry <-chan time.Time
		var t *time.Timer
		if at, ok := c.backlogRetryAt(); ok {
			t = time.NewTimer(time.Until(at))
			retry = t.C
		}
		select {
		case <-ctx.Done():
		case <-c.gapCh:
		case <-retry:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Let the other shards of a mass reconnect land first.
		if !sleep(ctx, min(c.cfg.PutDebounce, time.Second)) {
			return ctx.Err()
		}
		select {
		case <-c.gapCh:
		default:
		}
		c.mu.Lock()
		pending, joined := c.pendingGaps, c.pendingAgents
		c.pendingGaps, c.pendingAgents = nil, nil
		c.mu.Unlock()
		if err := c.reconcile(ctx, pending, joined); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait := retryWait(err, backoff)
			if apiOutage(err) {
				// The API is down (a 5xx, no answer): a retry costs one
				// request (the pass stops at the first failed activity
				// query, or at two failed fetches), and the calls that
				// rang during the gap are heard only by it: once the API
				// is back they must not wait out a backoff grown during
				// the outage (up to BackoffMax), as the socket's redial
				// and the login do not.
				wait = retryWait(err, min(backoff, outageRetryMax))
			}
			if warn.Allow(time.Now()) {
				c.log.Warn().Err(err).Dur("backoff", wait).Msg("genesys reconciliation failed, retrying")
			}
			var fe *fetchError
			if !errors.As(err, &fe) {
				c.mu.Lock() // put the gaps back (newer gaps of the same shard win)
				if c.pendingGaps == nil {
					c.pendingGaps = map[*shard]time.Time{}
				}
				for sh, at := range pending {
					if _, ok := c.pendingGaps[sh]; !ok {
						c.pendingGaps[sh] = at
					}
				}
				if c.pendingAgents == nil {
					c.pendingAgents = map[string]time.Time{}
				}
				for a, at := range joined {
					if c.agentShard[a] == nil {
						continue // left meanwhile: a failing pass must not keep it for good
					}
					if _, ok := c.pendingAgents[a]; !ok {
						c.pendingAgents[a] = at
					}
				}
				c.mu.Unlock()
			} // else the gaps' conversations are listed: the backlog holds the rest
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			backoff = min(backoff*2, c.cfg.BackoffMax)
			select {
			case c.gapCh <- struct{}{}:
			default:
			}
			continue
		}
		backoff = c.cfg.BackoffMin
		warn.Reset()
	}
}

type activityEntity struct {
	ConversationID string
	UserID         string
	Alerting       bool
}

// reconcile finds the live conversations of the agents of the shards
// that had a gap, and of the agents joined to a live channel, and hands
// on each (conversation, agent) not seen on the socket since that shard's
// socket came back (or the agent's topic was put). Conversations alerting
// come first: they are the ones that pop.
func (c *Client) reconcile(ctx context.Context, pending map[*shard]time.Time, joined map[string]time.Time) error {
	start := time.Now()
	since := map[string]time.Time{} // agent -> when its shard's socket came back
	for sh, at := range pending {
		sh.mu.Lock()
		for a := range sh.agents {
			since[a] = at
		}
		sh.mu.Unlock()
	}
	c.mu.Lock()
	for a, at := range joined {
		if c.agentShard[a] == nil {
			continue // removed meanwhile
		}
		if prev, ok := since[a]; !ok || at.After(prev) {
			since[a] = at
		}
	}
	c.mu.Unlock()
	agents := make([]string, 0, len(since))
	for a := range since {
		agents = append(agents, a)
	}
	todo := map[string][]string{} // conversation -> agents whose view is stale
	var order []string            // conversations in the order listed, then sorted by place
	place := map[string]int{}     // conversation -> where it goes in order (the lowest of its agents')
	var truncated []string        // agents with more conversations than one answer lists
	var ents []activityEntity
	// rank lists a conversation, or moves it up to p.
	rank := func(conv string, p int) {
		if prev, dup := place[conv]; dup {
			place[conv] = min(prev, p)
			return
		}
		order = append(order, conv)
		place[conv] = p
	}
	for i := 0; i < len(agents); i += activityBatch {
		batch := agents[i:min(i+activityBatch, len(agents))]
		got, trunc, err := c.activity(ctx, batch, liveMetrics...)
		if err != nil {
			return err
		}
		ents = append(ents, got...)
		truncated = append(truncated, trunc...)
	}
	if len(truncated) > 0 {
		// A truncated list keeps the oldest and the newest of an agent's
		// conversations and leaves out the middle, where an alerting one
		// can be. Ask for the alerting ones alone: an agent has few.
		still := 0
		for i := 0; i < len(truncated); i += activityBatch {
			got, trunc, err := c.activity(ctx, truncated[i:min(i+activityBatch, len(truncated))], "oAlerting")
			if err != nil {
				return err
			}
			ents = append(ents, got...)
			still += len(trunc)
		}
		if still > 0 {
			c.log.Warn().Int("agents", still).Msg("genesys reconciliation: the activity query truncated even the alerting conversations of some agents; those that alerted during the gap may not pop")
		}
	}
	// Conversations whose fetch failed and whose retry is not due yet
	// stay in the backlog, out of this pass.
	now := time.Now()
	for conv, at := range c.givenUp {
		if now.Sub(at) >= givenUpFor {
			delete(c.givenUp, conv)
		}
	}
	held := map[string]*reconcileItem{}
	prior := map[string]reconcileItem{}
	for i := range c.backlog {
		b := &c.backlog[i]
		prior[b.conv] = *b
		if b.failures > 0 && now.Before(b.retryAt) {
			held[b.conv] = b
		}
	}
	listed := map[legPair]bool{} // an alerting one may be in both answers
	for _, e := range ents {
		if e.ConversationID == "" || e.UserID == "" || listed[legPair{e.ConversationID, e.UserID}] {
			continue
		}
		listed[legPair{e.ConversationID, e.UserID}] = true
		last, connected, ok := c.seen.last(e.ConversationID, e.UserID, time.Now())
		// A conversation seen since the socket came back needs no
		// fetch, nor one the agent is in (oInteracting) and was
		// already connected to when last seen: nothing of it can pop.
		// One the agent was not connected to is fetched: a leg
		// answered during the gap (it pops with SCREENPOP_POP_ON=
		// connected), or a new leg of the agent's, transferred back.
		if ok && (!last.Before(since[e.UserID]) || !e.Alerting && connected) {
			continue
		}
		if _, ok := c.givenUp[e.ConversationID]; ok {
			continue // listed again by a later gap: not tried again for a while
		}
		if h := held[e.ConversationID]; h != nil {
			// A ring it was not held for (a consult or transfer to
			// another agent, or one held while not ringing) is new: it
			// is fetched now, not after the retry. One held as ringing
			// for this agent waits for its retry.
			ring := e.Alerting && (!h.alerting || !slices.Contains(h.users, e.UserID))
			if !slices.Contains(h.users, e.UserID) {
				h.users = append(h.users, e.UserID)
			}
			h.alerting = h.alerting || e.Alerting
			if !ring {
				continue
			}
			delete(held, e.ConversationID) // its agents join it below, from the backlog
		}
		// A conversation ringing for any of its agents is a ringing one
		// (a consult to a second watched agent), whichever agent's entity
		// the answer lists first.
		p := placeSeen
		switch {
		case e.Alerting && ok && !connected:
			// Seen before the gap and not answered then: most likely
			// ringing then too, and popped. It is fetched (it may have
			// been answered meanwhile), but after the calls that rang
			// unseen, which a large gap's hundreds of these would
			// otherwise hold up for minutes.
			p = placeRingingSeen
		case e.Alerting:
			p = placeRinging
		case !ok:
			p = placeUnseen
		}
		rank(e.ConversationID, p)
		todo[e.ConversationID] = append(todo[e.ConversationID], e.UserID)
	}
	// What an earlier pass left unfetched comes after this pass's ringing
	// conversations and before the rest; what was ringing when it was
	// listed (a pass failed by a 429) is still ringing: a pass never gives
	// way before it, or a newer gap after each pass would starve it. One
	// whose fetch failed waits for its retry, even when listed again,
	// unless it rings anew.
	for _, b := range c.backlog {
		if held[b.conv] != nil {
			continue
		}
		p := placeLeft
		switch {
		case b.alerting && b.seenRinging:
			// Seen ringing before its gap, and popped then: it waits
			// for the newer gaps' unseen ringing ones as it did in the
			// pass that left it, or a pass that gave way before it
			// would hand the next pass dozens of fetches it never
			// gives way before.
			p = placeRingingSeen
		case b.alerting:
			p = placeRinging
		case b.ended:
			p = placeEnded
		}
		rank(b.conv, p)
		for _, u := range b.users {
			if !slices.Contains(todo[b.conv], u) {
				todo[b.conv] = append(todo[b.conv], u)
			}
		}
	}
	// A leg last seen open before the gap that the activity query no
	// longer lists for its agent ended during the gap (or went away with a
	// transfer): nothing else would ever hand on its end, and the events'
	// consumers, the resolver's pop marker and the normalizer would hold it
	// open. It is fetched last: its snapshot shows the leg disconnected.
	// Not for an agent whose list was truncated: a leg left out of it may
	// be live.
	for _, ep := range c.openBefore(since, truncated, listed, now) {
		if _, ok := c.givenUp[ep.conv]; ok {
			continue
		}
		if h := held[ep.conv]; h != nil {
			// Its retry hands it on for this agent too.
			if !slices.Contains(h.users, ep.user) {
				h.users = append(h.users, ep.user)
			}
			continue
		}
		rank(ep.conv, placeEnded)
		if !slices.Contains(todo[ep.conv], ep.user) {
			todo[ep.conv] = append(todo[ep.conv], ep.user)
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return place[a] - place[b] })
	// The calls that rang unseen come first, and a newer gap does not
	// interrupt them; those seen ringing before the gap (popped then, most
	// likely) wait for a newer gap's unseen ones: a large gap's hundreds
	// of them held up the calls ringing unseen behind a later socket's
	// gap for seconds (TestClient_MaintenanceGapPopsUnseenRingingCallsBeforeSeenOnes).
	ringing := 0
	for ringing < len(order) && place[order[ringing]] == placeRinging {
		ringing++
	}
	var n, ended atomic.Int64
	var fetchedMu sync.Mutex
	fetched := map[string]bool{}
	failed := map[string]error{} // conversation -> why its fetch failed
	inARow := 0                  // API errors with no fetch answered in between
	paused := false
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4) // a few in flight; the rate limiter sets the pace
	// A fetch that hangs (Genesys slow for one conversation, a connection
	// gone dark) would hold the pass, and so every newer gap's ringing
	// calls, for up to HTTPTimeout (15 s): once every fetch is started and
	// a newer gap waits, the ones still out are cut short (the request
	// runs on to its timeout, its answer unused) and fetched again by the
	// next pass, with the newer gap's.
	fctx, cut := context.WithCancelCause(gctx)
	defer cut(nil)
	fetch := func(conv string) ([]byte, error) {
		type result struct {
			body []byte
			err  error
		}
		ch := make(chan result, 1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			body, err := c.fetchConversation(gctx, conv)
			ch <- result{body, err}
		}()
		select {
		case r := <-ch:
			return r.body, r.err
		case <-fctx.Done():
			return nil, context.Cause(fctx)
		}
	}
	for i, conv := range order {
		// A pass can last minutes (every live conversation after a
		// restart, at ReconcileRate): a newer gap's ringing calls must not
		// wait for it. Past this pass's own unseen ringing ones, give way; but
		// only once one more is fetched, or gaps arriving back to back
		// (sockets that flap) would starve the rest for as long as they do.
		if i > ringing && c.gapPending() {
			paused = true
			break
		}
		users := todo[conv]
		isEnded := place[conv] == placeEnded
		if err := c.getLimit.Wait(gctx); err != nil {
			break
		}
		g.Go(func() error {
			// Seen as of the request, not the answer: the body is the
			// conversation when Genesys answered, and a newer gap that
			// ended while the answer was on its way must still fetch it
			// (its pass skips a pair seen since the gap began).
			asked := time.Now()
			body, err := fetch(conv)
			if errors.Is(err, errGaveWay) && ctx.Err() == nil {
				// Cut short, not failed: no failure of the conversation or
				// of the API, so no retry delay grown for it (an outage's
				// flapping sockets cut slow answers pass after pass). It is
				// in the next pass's backlog, fetched with it.
				return nil
			}
			if err != nil {
				switch status(err) {
				case http.StatusNotFound:
					fetchedMu.Lock()
					fetched[conv] = true
					fetchedMu.Unlock()
					c.forgetOpen(conv, users) // gone: no later pass can fetch its end either
					return nil                // ended in between
				case http.StatusForbidden:
					// One conversation the client may not read (another
					// division) must not hold up the others, nor fail
					// every pass until it ends.
					c.log.Warn().Err(err).Str("conversation_id", conv).Msg("genesys reconciliation cannot read a conversation, skipped: give the OAuth client's role conversation:communication:view in its division")
					fetchedMu.Lock()
					fetched[conv] = true
					fetchedMu.Unlock()
					c.forgetOpen(conv, users) // or every later gap fetches it again
					return nil
				case http.StatusTooManyRequests:
					return err // the token's budget: the pass waits for the Retry-After
				}
				if gctx.Err() != nil {
					return err // the pass stopped
				}
				// One conversation that cannot be read (a 5xx for it
				// alone, a body the adapter cannot read) must not hold up
				// the others nor later gaps: it is tried again on its own
				// schedule, a bounded number of times. Two API errors in
				// a row with no answer between are the API failing, not
				// one conversation: the pass stops and is retried with
				// backoff, as before.
				fetchedMu.Lock()
				defer fetchedMu.Unlock()
				failed[conv] = err
				if !errors.Is(err, errAdapt) {
					inARow++
				}
				c.log.Debug().Err(err).Str("conversation_id", conv).Msg("genesys reconciliation could not fetch a conversation; trying it again later")
				if inARow >= 2 {
					return err
				}
				return nil
			}
			fetchedMu.Lock()
			fetched[conv] = true
			inARow = 0
			fetchedMu.Unlock()
			now := time.Now()
			for _, u := range users {
				c.markSeen(string(body), u, asked)
				// Marked fetched and seen: handed on even when the pass
				// stops meanwhile (two failures in a row, a 429), or it is lost.
				if !c.emit(ctx, bridge.Snapshot{Topic: agentTopic(u), Agent: bridge.AgentID(u), Body: body, ReceivedAt: now, Reconciled: true}) {
					return ctx.Err()
				}
			}
			n.Add(1)
			if isEnded {
				ended.Add(1)
			}
			c.m.reconciled.Inc()
			return nil
		})
	}
	// Fetches answer in tens of milliseconds: only one still out after
	// half a second is cut, so that a newer gap (sockets that flap) does
	// not cut this pass's ringing calls as a rule.
	launched := make(chan struct{})
	waiting := time.Now()
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-launched:
				return
			case <-t.C:
				if time.Since(waiting) >= 500*time.Millisecond && c.gapPending() {
					cut(errGaveWay)
					return
				}
			}
		}
	}()
	err := g.Wait()
	close(launched)
	if errors.Is(context.Cause(fctx), errGaveWay) {
		paused = true
	}
	// A pass that stopped at fetches failing in a row for want of an
	// answer found the conversations API down; a fetch that succeeds
	// finds it back. Meanwhile each backlog retry fetches one
	// conversation, which fails alone.
	if n.Load() > 0 {
		c.convOutage = false
	}
	if err != nil && ctx.Err() == nil && apiOutage(err) {
		c.convOutage = true
	}
	// Whatever was not fetched (a pass that gave way or failed) is the
	// next pass's backlog: its activity query lists only the newer gap's
	// agents.
	backlog := make([]reconcileItem, 0, len(order)+len(held))
	for _, conv := range order {
		if fetched[conv] {
			continue
		}
		it := reconcileItem{conv: conv, users: todo[conv], alerting: place[conv] <= placeRingingSeen, seenRinging: place[conv] == placeRingingSeen, ended: place[conv] == placeEnded}
		it.failures, it.firstFailed = prior[conv].failures, prior[conv].firstFailed
		if ferr := failed[conv]; ferr != nil {
			if it.failures == 0 {
				it.firstFailed = time.Now()
			}
			it.failures++
			// Given up only after failing for twice the longest backoff
			// too: an outage of the API (which fails the pass after two
			// errors in a row, and is ridden out with backoff) must not
			// drop the calls that rang during the gap before it.
			if it.failures >= fetchTries && time.Since(it.firstFailed) >= 2*c.cfg.BackoffMax {
				c.m.givenUp.Inc()
				if c.givenUp == nil {
					c.givenUp = map[string]time.Time{}
				}
				c.givenUp[conv] = time.Now()
				c.log.Warn().Err(ferr).Str("conversation_id", conv).Int("attempts", it.failures).
					Msg("genesys reconciliation gave up on a conversation: its fetch failed every time; dropped (if it rang during a gap it does not pop)")
				continue
			}
			delay := min(4*c.cfg.BackoffMin<<min(it.failures-1, 16), c.cfg.BackoffMax)
			if c.convOutage && apiOutage(ferr) {
				// The API failing, not this conversation: the pass is
				// retried within outageRetryMax (reconcileLoop), and
				// this call, which may still ring, with it once the API
				// is back, not after a delay grown during the outage.
				delay = min(delay, outageRetryMax)
			}
			it.retryAt = time.Now().Add(jitter(delay))
		}
		backlog = append(backlog, it)
	}
	for _, b := range c.backlog {
		if h := held[b.conv]; h != nil {
			backlog = append(backlog, *h)
		}
	}
	c.backlog = backlog
	c.mu.Lock()
	c.reconciled += int(n.Load())
	c.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		return &fetchError{err}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if paused {
		c.log.Info().Int("agents", len(agents)).Int64("conversations", n.Load()).Int("left", len(c.backlog)).Int64("elapsed_ms", time.Since(start).Milliseconds()).Msg("genesys reconciliation giving way to a newer gap")
		return nil
	}
	e := c.log.Info().Int("agents", len(agents)).Int64("conversations", n.Load()).Int64("elapsed_ms", time.Since(start).Milliseconds())
	if len(failed) > 0 {
		e = e.Int("failed", len(failed))
	}
	if k := ended.Load(); k > 0 {
		e = e.Int64("ended", k)
	}
	e.Msg("genesys reconciliation done")
	return nil
}

// errGaveWay cuts a pass's fetches still out when a newer gap waits.
var errGaveWay = errors.New("fetch still out when a newer gap came: retried later")

// fetchTries is how often a pass fetches one conversation before it gives
// up on it: the first try and four retries, after about 2, 4, 8 and 16 s
// (BackoffMin × 4, doubling; jittered, then every BackoffMax), and at least
// twice BackoffMax (2 minutes) after the first failure.
const fetchTries = 5

// givenUpFor is how long a conversation given up on is not fetched again
// when a later gap lists it: each try would fail as the last five did,
// and log and count it again.
const givenUpFor = 15 * time.Minute

// backlogRetryAt is when the earliest retry of a conversation whose fetch
// failed is due.
func (c *Client) backlogRetryAt() (time.Time, bool) {
	var at time.Time
	for _, b := range c.backlog {
		if b.failures > 0 && (at.IsZero() || b.retryAt.Before(at)) {
			at = b.retryAt
		}
	}
	return at, !at.IsZero()
}

// reconcileItem is a conversation a pass left unfetched, the agents
// whose view of it is stale, and whether it was ringing when listed.
type reconcileItem struct {
	conv        string
	users       []string
	alerting    bool
	seenRinging bool      // with alerting: seen ringing before its gap (popped then, placeRingingSeen)
	ended       bool      // listed for no agent: fetched for the end of legs last seen open (placeEnded)
	failures    int       // fetches that failed (not a 429, not a stopped pass)
	firstFailed time.Time // with failures: when the first one failed
	retryAt     time.Time // with failures: not fetched again before then
}

// A pass fetches ringing conversations first (those not seen ringing
// before the gap ahead of those that were), then what an earlier pass
// left, then those never seen (answered during the gap), then those seen,
// the agent not connected then, and last those no longer listed whose
// agent's leg was open when last seen (it ended during the gap: nothing
// pops, its end only frees what the leg holds downstream).
const (
	placeRinging = iota
	placeRingingSeen
	placeLeft
	placeUnseen
	placeSeen
	placeEnded
)

// legPair is an agent's leg of a conversation: the conversation and the
// agent.
type legPair struct{ conv, user string }

// openBefore returns the legs remembered open for the agents of since,
// last seen before since[agent] (before the gap: one seen since is
// current), that listed does not hold, leaving out the agents of
// truncated. It forgets the legs older than seenHorizon on the way.
func (c *Client) openBefore(since map[string]time.Time, truncated []string, listed map[legPair]bool, now time.Time) []legPair {
	skip := make(map[string]bool, len(truncated))
	for _, a := range truncated {
		skip[a] = true
	}
	var out []legPair
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	for a, at := range since {
		m := c.open[a]
		if len(m) == 0 || skip[a] {
			continue
		}
		for conv, seen := range m {
			if now.Sub(*seen) >= seenHorizon {
				delete(m, conv)
				continue
			}
			if seen.Before(at) && !listed[legPair{conv, a}] {
				out = append(out, legPair{conv, a})
			}
		}
		if len(m) == 0 {
			delete(c.open, a)
		}
	}
	return out
}

// fetchError is a pass that failed after its activity queries: what it
// did not fetch is in the backlog, so its gaps need no new query.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// apiOutage reports whether err is an API call that failed for want of
// an answer from Genesys (a 5xx, a network error or timeout), not a
// refusal nor an answer screenpop cannot read (which a retry a second
// would not mend).
func apiOutage(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// gapPending reports whether a gap waits for the next pass.
func (c *Client) gapPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pendingGaps) > 0 || len(c.pendingAgents) > 0
}

// activity asks the analytics activity query for the live conversations
// of users, with the given observation metrics and their details. It
// also returns the users whose list the answer truncated.
func (c *Client) activity(ctx context.Context, users []string, metrics ...string) ([]activityEntity, []string, error) {
	preds := make([]platformclientv2.Conversationactivityquerypredicate, len(users))
	for i := range users {
		preds[i] = platformclientv2.Conversationactivityquerypredicate{Dimension: platformclientv2.String("userId"), Value: &users[i]}
	}
	ms := make([]platformclientv2.Conversationactivityquerymetric, len(metrics))
	for i := range metrics {
		ms[i] = platformclientv2.Conversationactivityquerymetric{Metric: &metrics[i], Details: platformclientv2.Bool(true)}
	}
	q := platformclientv2.Conversationactivityquery{
		Metrics: &ms,
		GroupBy: &[]string{"userId"},
		Filter:  &platformclientv2.Conversationactivityqueryfilter{VarType: platformclientv2.String("or"), Predicates: &preds},
	}
	var out []activityEntity
	var truncated []string
	// The answer is paged by group (here: by user), with no total: the
	// page size is given, not left to an undocumented default, and a full
	// page is followed by the next one.
	for page := 1; ; page++ {
		var raw []byte
		err := c.call(ctx, "activity query", func() (*platformclientv2.APIResponse, error) {
			resp, err := c.raw(http.MethodPost, "/api/v2/analytics/conversations/activity/query?pageSize="+strconv.Itoa(activityPageSize)+"&pageNumber="+strconv.Itoa(page), q)
			if resp != nil {
				raw = resp.RawBody
			}
			return resp, err
		})
		if err != nil {
			return nil, nil, err
		}
		results := gjson.GetBytes(raw, "results")
		groups := 0
		results.ForEach(func(_, res gjson.Result) bool {
			groups++
			group := res.Get("group.userId").Str
			if res.Get("truncated").Bool() && group != "" {
				truncated = append(truncated, group)
			}
			res.Get("entities").ForEach(func(_, e gjson.Result) bool {
				u := e.Get("userId").Str
				if u == "" {
					u = group
				}
				out = append(out, activityEntity{ConversationID: e.Get("conversationId").Str, UserID: u, Alerting: e.Get("metric").Str == "oAlerting"})
				return true
			})
			return true
		})
		if groups < activityPageSize || page > len(users) {
			return out, truncated, nil
		}
	}
}

// activityPageSize is the groups (users) an activity query answer page
// holds: a batch's worth, so one page is the rule.
const activityPageSize = activityBatch

// raw calls the API through the SDK's API client without decoding the
// answer into SDK models: their generated decoders re-encode every nested
// field (slow) and drop times they cannot parse. The body stays in
// RawBody.
func (c *Client) raw(method, path string, body any) (*platformclientv2.APIResponse, error) {
	headers := map[string]string{"Accept": "application/json"}
	return c.api.APIClient.CallAPI(c.api.BasePath+path, method, body, headers, nil, nil, "", nil, "other")
}

// fetchConversation GETs a conversation and adapts it to the topic shape.
func (c *Client) fetchConversation(ctx context.Context, id string) ([]byte, error) {
	var raw []byte
	err := c.call(ctx, "get conversation", func() (*platformclientv2.APIResponse, error) {
		resp, err := c.raw(http.MethodGet, "/api/v2/conversations/"+url.PathEscape(id), nil)
		if resp != nil {
			raw = resp.RawBody
		}
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	return AdaptConversation(raw)
}

// The slim shapes below carry what the v2.users.{id}.conversations topic
// carries and the normalizer reads. The REST Conversation uses the same
// field names, so decoding the REST body into them and encoding again
// yields the topic shape. Times stay strings: they pass through as sent.
type topicConversation struct {
	ID              string             `json:"id"`
	Participants    []topicParticipant `json:"participants"`
	RecentTransfers json.RawMessage    `json:"recentTransfers,omitempty"`
	RecordingState  string             `json:"recordingState,omitempty"`
	Address         string             `json:"address,omitempty"`
	ExternalTag     string             `json:"externalTag,omitempty"`
	Divisions       json.RawMessage    `json:"divisions,omitempty"`
}

type topicParticipant struct {
	ID                      string            `json:"id"`
	ConnectedTime           string            `json:"connectedTime,omitempty"`
	EndTime                 string            `json:"endTime,omitempty"`
	UserID                  string            `json:"userId,omitempty"`
	ExternalContactID       string            `json:"externalContactId,omitempty"`
	ExternalOrganizationID  string            `json:"externalOrganizationId,omitempty"`
	Name                    string            `json:"name,omitempty"`
	QueueID                 string            `json:"queueId,omitempty"`
	GroupID                 string            `json:"groupId,omitempty"`
	TeamID                  string            `json:"teamId,omitempty"`
	Purpose                 string            `json:"purpose,omitempty"`
	ConsultParticipantID    string            `json:"consultParticipantId,omitempty"`
	MonitoredParticipantID  string            `json:"monitoredParticipantId,omitempty"`
	CoachedParticipantID    string            `json:"coachedParticipantId,omitempty"`
	BargedParticipantID     string            `json:"bargedParticipantId,omitempty"`
	Address                 string            `json:"address,omitempty"`
	WrapupRequired          *bool             `json:"wrapupRequired,omitempty"`
	AlertingTimeoutMs       *int              `json:"alertingTimeoutMs,omitempty"`
	ConversationRoutingData json.RawMessage   `json:"conversationRoutingData,omitempty"`
	StartAcwTime            string            `json:"startAcwTime,omitempty"`
	EndAcwTime              string            `json:"endAcwTime,omitempty"`
	Attributes              map[string]string `json:"attributes,omitempty"`
	Calls                   []topicComm       `json:"calls,omitempty"`
	Callbacks               []topicComm       `json:"callbacks,omitempty"`
	Chats                   []topicComm       `json:"chats,omitempty"`
	Messages                []topicComm       `json:"messages,omitempty"`
	Emails                  []topicComm       `json:"emails,omitempty"`
}

type topicComm struct {
	ID                    string          `json:"id"`
	State                 string          `json:"state,omitempty"`
	InitialState          string          `json:"initialState,omitempty"`
	Direction             string          `json:"direction,omitempty"`
	Held                  *bool           `json:"held,omitempty"`
	Confined              *bool           `json:"confined,omitempty"`
	Muted                 *bool           `json:"muted,omitempty"`
	Recording             *bool           `json:"recording,omitempty"`
	RecordingState        string          `json:"recordingState,omitempty"`
	Provider              string          `json:"provider,omitempty"`
	ScriptID              string          `json:"scriptId,omitempty"`
	PeerID                string          `json:"peerId,omitempty"`
	DisconnectType        string          `json:"disconnectType,omitempty"`
	StartHoldTime         string          `json:"startHoldTime,omitempty"`
	ConnectedTime         string          `json:"connectedTime,omitempty"`
	DisconnectedTime      string          `json:"disconnectedTime,omitempty"`
	Self                  json.RawMessage `json:"self,omitempty"`
	Other                 json.RawMessage `json:"other,omitempty"`
	CallbackNumbers       []string        `json:"callbackNumbers,omitempty"`
	CallbackUserName      string          `json:"callbackUserName,omitempty"`
	CallbackScheduledTime string          `json:"callbackScheduledTime,omitempty"`
	RoomID                string          `json:"roomId,omitempty"`
	Type                  string          `json:"type,omitempty"`
	ToAddress             json.RawMessage `json:"toAddress,omitempty"`
	FromAddress           json.RawMessage `json:"fromAddress,omitempty"`
	Subject               string          `json:"subject,omitempty"`
	MessagesSent          *int            `json:"messagesSent,omitempty"`
	AfterCallWork         json.RawMessage `json:"afterCallWork,omitempty"`
	AfterCallWorkRequired *bool           `json:"afterCallWorkRequired,omitempty"`
	QueueMediaSettings    json.RawMessage `json:"queueMediaSettings,omitempty"`
}

// errAdapt is a conversation body the adapter cannot read: the API
// answered, so it says nothing of the API's health.
var errAdapt = errors.New("adapt conversation")

// AdaptConversation turns a GET /api/v2/conversations/{id} body into the
// v2.users.{id}.conversations eventBody shape.
func AdaptConversation(rest []byte) ([]byte, error) {
	var conv topicConversation
	if err := json.Unmarshal(rest, &conv); err != nil {
		return nil, fmt.Errorf("%w: %w", errAdapt, err)
	}
	if conv.ID == "" {
		return nil, fmt.Errorf("%w: no id", errAdapt)
	}
	b, err := json.Marshal(&conv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errAdapt, err)
	}
	return b, nil
}

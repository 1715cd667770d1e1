package push

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/bridge"
)

// Close codes of the agent protocol (DESIGN.md); 1001 is sent on shutdown
// and 1013 when the server could not authenticate or replay right now.
const (
	CloseMalformed     = 4400 // malformed or unexpected frame
	CloseInvalidToken  = 4401 // invalid or expired token
	CloseHelloTimeout  = 4408 // no hello in time
	CloseTooSlow       = 4008 // too slow: reconnect and resume
	CloseTooMany       = 4429 // the agent has Config.AgentSockets open already
	CloseGoingAway     = websocket.CloseGoingAway
	CloseTryAgainLater = websocket.CloseTryAgainLater
)

// The error frame's messages are generic: never internal text.
const (
	msgMalformed    = "malformed or unexpected frame"
	msgInvalidToken = "invalid or expired token"
	msgHelloTimeout = "no hello in time"
	msgTooSlow      = "too slow, reconnect and resume"
	msgUnavailable  = "temporarily unavailable, reconnect later"
	msgTooMany      = "too many connections for this agent, close other tabs"
)

var heartbeatFrame = []byte(`{"type":"heartbeat"}`)

const (
	kindText uint8 = iota
	kindPop
	kindPing
	kindClose
)

// frame is one queued write.
type frame struct {
	kind uint8
	code int       // kindClose
	data []byte    // kindText
	pop  *popFrame // kindPop (shared, read-only)
}

// sentMax is how many pops a socket remembers until their ack. Only what
// the ack needs is kept (sentPop), not the frame (about 1.5 KB with its
// JSON), and only until the ack: a socket holds what is outstanding, most
// often nothing or one pop. A page that processes a resume's missed pops
// one at a time acks the first ones after many more were written, so it
// is more than a replay usually brings; the oldest go past it.
const sentMax = 64

// sentPop is a pop sent on a socket and not acked yet.
type sentPop struct {
	seq     uint64
	id      string
	eventAt time.Time
}

// maxLoggedPops bounds the pop ids an "agent connected" line lists.
const maxLoggedPops = 10

// conn is one agent socket. Its reader goroutine (readLoop, then
// readFrames) lives as long as the socket; the writer goroutine (writeLoop)
// only while frames are queued.
type conn struct {
	s  *Server
	ws *websocket.Conn

	// Set by the reader before the socket is registered or marked ready,
	// read-only afterwards.
	agent bridge.AgentID
	token string // kept in memory to revalidate; never logged

	// Owned by the server's ticker once ready is set.
	nextPing, nextBeat int64        // monoNanos
	nextAuth           atomic.Int64 // UnixNano: a token's expiry is on the wall clock
	// nextAuthMono is nextAuth as monoNanos (0: unset): a check due an
	// interval after the last answer comes then, whatever the wall clock
	// was stepped by meanwhile.
	nextAuthMono atomic.Int64
	authUntil    atomic.Int64 // until when its token's last answer holds
	ready        atomic.Bool
	revalidating atomic.Bool

	mu        sync.Mutex
	q         []frame
	writing   bool          // a writer goroutine is running
	closing   bool          // a close frame is queued, or the socket failed: nothing more is queued
	closed    bool          // torn down
	closeSent chan struct{} // closed by the writer once the close frame is written (or given up)
	replaying bool          // live pops go to pending until the replay is queued
	pending   []*popFrame
	lastSeq   uint64        // highest pop seq queued on this socket
	space     chan struct{} // made on demand: the replay waits here for queue space
	sent      []sentPop     // sent and not yet acked, oldest first (see sentMax)
}

func (c *conn) readTimeout() time.Duration { return 2 * c.s.cfg.PingInterval }

// extendRead moves the read deadline, unless the socket is closing (then the
// writer's close grace stands).
func (c *conn) extendRead() {
	c.mu.Lock()
	if !c.closing {
		_ = c.ws.SetReadDeadline(time.Now().Add(c.readTimeout()))
	}
	c.mu.Unlock()
}

// readLoop reads and handles the hello, then hands the socket to a fresh
// goroutine, readFrames, for the rest of its life: the hello's work (the
// token check, the replay, their log lines) grows the reader's stack to
// 8 KB, and the collector halves a stack only while less than a quarter of
// it is in use. Parked in ReadMessage over plaintext the reader uses under
// 2 KB, so its stack came back to 4 KB; over TLS (tls.Conn.Read and its
// record reads below gorilla's) it uses more, so every idle TLS socket kept
// 8 KB of stack for good, where a goroutine started after the hello needs
// 4 KB (TestIdleConnection_TLSOneSmallStack). Between the two the socket
// has one reader at a time, and teardown runs once, in whichever ends it.
func (c *conn) readLoop() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.teardown()
		}
	}()
	s := c.s
	c.ws.SetReadLimit(s.cfg.MaxFrame)
	_ = c.ws.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	mt, data, err := c.ws.ReadMessage()
	s.awaiting.Add(-1)
	if err != nil {
		switch {
		case isTimeout(err):
			s.m.connects.WithLabelValues("hello_timeout").Inc()
			s.log.Debug().Msg("websocket closed: no hello in time")
			c.closeWith(CloseHelloTimeout, msgHelloTimeout)
		case errors.Is(err, websocket.ErrReadLimit):
			s.m.badFrames.Inc()
			s.m.connects.WithLabelValues("malformed").Inc()
			// A constant label: strconv.Itoa inlined here grew the
			// reader's frame enough to double every idle socket's
			// stack (TestIdleConnection_OneSmallStack).
			s.m.closes.WithLabelValues("1009").Inc() // websocket.CloseMessageTooBig
			if ok, held := s.logLimit.Allow("oversized", time.Now()); ok {
				s.log.Info().Int("held_back", held).Msg("websocket closed: oversized frame")
			}
			c.discardInput()
		}
		return
	}
	if !c.hello(mt, data) {
		c.drain()
		return
	}
	c.ws.SetPongHandler(func(string) error { c.extendRead(); return nil })
	c.extendRead()
	handedOff = true
	go c.readFrames()
}

// readFrames is the reader after the hello (see readLoop): acks, pongs and
// the close, until the socket ends.
func (c *conn) readFrames() {
	defer c.teardown()
	s := c.s
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.m.badFrames.Inc()
				// gorilla has sent the 1009 close itself.
				s.m.closes.WithLabelValues("1009").Inc()
				s.log.Info().Str("agent_id", string(c.agent)).Msg("websocket closed: oversized frame")
				c.discardInput()
			}
			return
		}
		c.extendRead()
		if !c.handle(mt, data) {
			c.drain()
			return
		}
	}
}

// discardInput reads and drops what the peer still sends, until it closes
// or the close grace ends. gorilla has already sent 1009 for an oversized
// frame; closing the socket with the rest of that frame unread would make
// the kernel answer with a reset, and the peer would lose the close frame
// and see 1006 instead of 1009.
func (c *conn) discardInput() {
	nc := c.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, nc)
}

// drain reads until the browser answers the close or the close grace ends.
func (c *conn) drain() {
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

type helloMsg struct {
	Type    string  `json:"type"`
	Token   string  `json:"token"`
	LastSeq *uint64 `json:"lastSeq"`
	Epoch   string  `json:"epoch"`
	// AgentID is the agent of the ready frame the cursor came from: a
	// cursor of another agent (a second agent signed in on the tab) is no
	// place for this one to resume from.
	AgentID string `json:"agentId"`
	// LastPopID is the id of the pop at LastSeq, the last one the page
	// processed (optional): with it a stream set back that holds another
	// pop of the agent at that seq is told apart.
	LastPopID string `json:"lastPopId"`
}

type readyMsg struct {
	Type    string         `json:"type"`
	AgentID bridge.AgentID `json:"agentId"`
	Epoch   string         `json:"epoch"`
	Seq     uint64         `json:"seq"`
}

type errorMsg struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// hello authenticates the first frame, registers the socket for live pops,
// sends ready and replays what the agent missed. Live pops that arrive
// meanwhile wait in pending and are queued after the replay, skipping any
// the replay already sent, so no pop is sent twice or out of order.
func (c *conn) hello(mt int, data []byte) bool {
	s := c.s
	var h helloMsg
	if mt != websocket.TextMessage || json.Unmarshal(data, &h) != nil || h.Type != "hello" {
		s.m.badFrames.Inc()
		s.m.connects.WithLabelValues("malformed").Inc()
		if ok, held := s.logLimit.Allow("not hello", time.Now()); ok {
			s.log.Info().Int("held_back", held).Msg("websocket closed: first frame is not a hello")
		}
		c.closeWith(CloseMalformed, msgMalformed)
		return false
	}
	actx, cancel := context.WithTimeout(s.base, 10*time.Second)
	agent, until, err := s.auth.check(actx, h.Token, time.Now())
	cancel()
	if err != nil {
		if errors.Is(err, bridge.ErrInvalidToken) {
			s.m.connects.WithLabelValues("auth").Inc()
			if ok, held := s.logLimit.Allow("invalid token", time.Now()); ok {
				// Why (expired, another org, Genesys' 403, another
				// secret): every agent refused for one reason is a setup
				// problem, not sign-ins.
				s.log.Info().Err(err).Int("held_back", held).Msg("websocket closed: invalid or expired token")
			}
			if errors.Is(err, jwt.ErrTokenNotValidYet) {
				// A token signed a moment ago: its issuer's clock is ahead.
				if ok, held := s.logLimit.Allow("token not valid yet", time.Now()); ok {
					s.log.Warn().Int("held_back", held).Msg("agent token not valid yet (nbf): the token issuer's clock is ahead of this host's by more than 5 s; check NTP on the issuer and here")
				}
			}
			c.closeWith(CloseInvalidToken, msgInvalidToken)
		} else {
			s.m.connects.WithLabelValues("unavailable").Inc()
			if ok, held := s.logLimit.Allow("check", time.Now()); ok && s.base.Err() == nil {
				s.log.Warn().Err(err).Int("held_back", held).Msg("websocket closed: token could not be checked")
			}
			c.closeWith(CloseTryAgainLater, msgUnavailable)
		}
		return false
	}
	c.agent, c.token = agent, h.Token
	log := s.log.With().Str("agent_id", string(agent)).Logger()

	now := time.Now()
	epoch := s.store.Epoch()
	var after uint64
	since := now.Add(-s.cfg.FreshWindow)
	// A lastSeq from another stream (another epoch), or of another agent,
	// means nothing here.
	if h.LastSeq != nil && (h.Epoch == "" || h.Epoch == epoch) && (h.AgentID == "" || bridge.AgentID(h.AgentID) == agent) {
		after, since = *h.LastSeq, now.Add(-s.cfg.ReplayWindow)
	}
	c.mu.Lock()
	c.replaying, c.lastSeq = true, after
	c.mu.Unlock()
	switch s.register(c) {
	case registerStopping:
		return false // the 1001 close is on its way
	case registerFull:
		s.m.connects.WithLabelValues("limit").Inc()
		if ok, held := s.capLimit.Allow(string(agent), time.Now()); ok {
			log.Warn().Int("sockets", s.cfg.AgentSockets).Int("held_back", held).Msg("websocket closed: agent has too many sockets open")
		}
		c.closeWith(CloseTooMany, msgTooMany)
		return false
	}

	rctx, cancel := context.WithTimeout(s.base, 30*time.Second)
	defer cancel()
	latest, err := s.store.LatestPop(rctx, agent)
	if lr, ok := s.store.(leaderReader); ok && err == nil && after > latest {
		// latest may be a replica's, behind its leader: the cursor is
		// then from a pop the replica has not yet.
		latest, err = lr.LeaderLatestPop(rctx, agent)
	}
	readySeq := latest
	if pc, ok := s.store.(popChecker); ok && err == nil && after > 0 && after <= latest {
		// A cursor at or below the agent's newest pop may still be from
		// before a set back: a stream that has passed the cursor again
		// since (the restart's reconciliation, a busy centre) holds pops of
		// the agent below it that the page never saw. A cursor is the seq
		// of one of the agent's pops (processed, or the ready's seq it
		// started from): where the stream holds no pop of this agent
		// there, the cursor tells nothing, and the page is sent the pops
		// of the replay window; the ready's seq is then 0, below the
		// cursor, so that the client starts its cursor afresh (a cursor
		// whose pop has aged out gets the same pops: every one younger
		// than the window is after it). A page that names its last pop
		// (lastPopId) is checked against that pop's id too: a set-back
		// stream may hold a new pop of the same agent at exactly the
		// cursor's seq.
		var id string
		var mine bool
		if id, mine, err = pc.PopAt(rctx, agent, after); err == nil && (!mine || h.LastPopID != "" && id != h.LastPopID) {
			after, readySeq = 0, 0
			c.mu.Lock()
			c.lastSeq = after
			c.mu.Unlock()
			log.Debug().Uint64("cursor", *h.LastSeq).Uint64("seq", latest).Bool("other_pop", mine).Msg("resume cursor is no pop of the agent (a store set back): replaying the replay window")
		}
	}
	if err != nil {
		// One a socket during a NATS outage, every page's every retry:
		// once a minute, as the token check's line.
		if ok, held := s.logLimit.Allow("latest pop", time.Now()); ok && s.base.Err() == nil {
			log.Warn().Err(err).Int("held_back", held).Msg("websocket closed: latest pop unavailable")
		}
		s.m.connects.WithLabelValues("unavailable").Inc()
		c.closeWith(CloseTryAgainLater, msgUnavailable)
		return false
	}
	if after > latest {
		// A cursor beyond the agent's newest pop is from before the stream
		// was set back (restored from a backup, or its last writes lost to
		// a power cut): same epoch, but the pops stored since take
		// sequences the page has passed. Its cursor tells nothing of the
		// pops up to latest: those stored before the set back it may have
		// seen, those after it (the start-up reconciliation's pop of a
		// call still ringing, made while the page waited out its backoff)
		// it has not. So it gets the agent's pops of the replay window, as
		// any resuming page; the ready's seq, below its cursor, makes it
		// take them (screenpop.js starts its cursor afresh).
		after = 0
		c.mu.Lock()
		c.lastSeq = after
		c.mu.Unlock()
	}
	ready, _ := json.Marshal(readyMsg{Type: "ready", AgentID: agent, Epoch: epoch, Seq: readySeq})
	c.push(frame{kind: kindText, data: ready})
	n := 0
	var replayed []string // the first maxLoggedPops, for the connect line
	err = s.store.ReplayPops(rctx, agent, after, since, func(p bridge.StoredPop) error {
		pf, err := newPopFrame(p)
		if err != nil {
			s.m.popsInvalid.Inc()
			if ok, held := s.logLimit.Allow("stored pop", time.Now()); ok {
				log.Warn().Err(err).Int("held_back", held).Uint64("seq", p.Seq).Msg("skip stored pop")
			}
			return nil
		}
		n++
		if len(replayed) < maxLoggedPops {
			replayed = append(replayed, pf.id)
		}
		return c.queueReplay(rctx, pf)
	})
	if err != nil {
		if errors.Is(err, errClosing) {
			// The server closed the socket meanwhile (4008 too slow or
			// resubscribed, 1001): counted under that close code, not as
			// the NATS trouble "unavailable" stands for.
			return false
		}
		if s.base.Err() == nil {
			if ok, held := s.logLimit.Allow("replay", time.Now()); ok {
				log.Warn().Err(err).Int("held_back", held).Msg("websocket closed: replay failed")
			}
		}
		s.m.connects.WithLabelValues("unavailable").Inc()
		c.closeWith(CloseTryAgainLater, msgUnavailable)
		return false
	}
	c.finishReplay()
	s.m.popsReplay.Add(float64(n))
	s.nReplayed.Add(uint64(n))

	// The first ping and heartbeat come at a random point of their
	// interval, so that sockets that connected together (every agent
	// reconnecting after a restart) do not get theirs in the same few
	// ticks for ever after: 10,000 sockets were 20,000 writer goroutines
	// and writes in a burst every 25 s, which stalled live pops. Later ones
	// keep the interval, so no socket waits longer than before.
	// With equal intervals (the default) a socket's ping and heartbeat
	// stay due together: one writer wake-up sends both.
	t := monoNanos(time.Now())
	c.nextPing = t + int64(spread(s.cfg.PingInterval))
	c.nextBeat = c.nextPing
	if s.cfg.HeartbeatInterval != s.cfg.PingInterval {
		c.nextBeat = t + int64(spread(s.cfg.HeartbeatInterval))
	}
	s.scheduleCheck(c, until)
	c.ready.Store(true)
	s.m.connects.WithLabelValues("ok").Inc()
	// At info, as its "agent disconnected": with them the on-call engineer
	// reads whether the agent had a page open when a call popped, and
	// whether a pop made while none was reached the next one (the pop ids
	// are pop:<conversation>:<participant>).
	log.Info().Bool("resume", h.LastSeq != nil).Uint64("after_seq", after).Int("replayed", n).Strs("replayed_pops", replayed).Msg("agent connected")
	return true
}

type ackMsg struct {
	Type string  `json:"type"`
	Seq  *uint64 `json:"seq"`
}

// handle takes one frame after the hello: acks. A frame of a type this
// version does not know is ignored, as the page ignores the server's: a page
// of a later version (its web resource published before this daemon is
// upgraded, or the old instance of a rolling upgrade) would otherwise be
// closed (4400), reconnect and send it again, in a loop.
//
// The type is read on its own first: a later version's frame may carry a
// field named seq of its own shape, which would not decode as an ack's.
func (c *conn) handle(mt int, data []byte) bool {
	var head struct {
		Type string `json:"type"`
	}
	ok := mt == websocket.TextMessage && json.Unmarshal(data, &head) == nil
	if ok && head.Type != "" && head.Type != "ack" && head.Type != "hello" {
		return true
	}
	var a ackMsg
	ok = ok && json.Unmarshal(data, &a) == nil
	if !ok || a.Type != "ack" || a.Seq == nil {
		c.s.m.badFrames.Inc()
		c.s.log.Info().Str("agent_id", string(c.agent)).Msg("websocket closed: unexpected frame")
		c.closeWith(CloseMalformed, msgMalformed)
		return false
	}
	c.ack(*a.Seq)
	return true
}

var errClosing = errors.New("socket closing")

// push queues f unless the socket is closing; a full queue closes it (4008).
func (c *conn) push(f frame) {
	c.mu.Lock()
	if !c.closing && !c.closed {
		c.enqueueLocked(f)
	}
	c.mu.Unlock()
}

// deliverLive is the fan-out's entry: it never blocks.
func (c *conn) deliverLive(pf *popFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.closed {
		return
	}
	if c.replaying {
		if len(c.pending) >= c.s.cfg.SendQueue {
			c.overflowLocked()
			return
		}
		c.pending = append(c.pending, pf)
		return
	}
	if pf.seq <= c.lastSeq {
		return
	}
	c.lastSeq = pf.seq
	c.enqueueLocked(frame{kind: kindPop, pop: pf})
}

// queueReplay queues a replayed pop, waiting for queue space: it runs on the
// socket's own reader, so waiting slows only this agent.
func (c *conn) queueReplay(ctx context.Context, pf *popFrame) error {
	for {
		c.mu.Lock()
		if c.closing || c.closed {
			c.mu.Unlock()
			return errClosing
		}
		if pf.seq <= c.lastSeq {
			c.mu.Unlock()
			return nil
		}
		if len(c.q) < c.s.cfg.SendQueue {
			c.lastSeq = pf.seq
			c.enqueueLocked(frame{kind: kindPop, pop: pf})
			c.mu.Unlock()
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{}, 1)
		}
		sp := c.space
		c.mu.Unlock()
		select {
		case <-sp:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finishReplay queues the live pops that arrived during the replay, in
// order, dropping those the replay already queued, and then a heartbeat.
//
// That heartbeat tells the browser the replay is complete: every pop the
// hello asked for has been sent before it (the ticker's heartbeats only
// start once the socket is ready, after this). Until a browser has seen it,
// the ready frame's seq is no safe place to resume from: a socket that ends
// before the replayed pops arrive (a failed replay's 1013, the 4008 when the
// pop subscription goes live, a shutdown, a dropped network) would resume
// after pops it never got (docs/agents.md).
func (c *conn) finishReplay() {
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := c.pending
	c.pending, c.replaying, c.space = nil, false, nil
	if c.closing || c.closed {
		return
	}
	for _, pf := range pending {
		if pf.seq <= c.lastSeq {
			continue
		}
		c.lastSeq = pf.seq
		c.enqueueLocked(frame{kind: kindPop, pop: pf})
		if c.closing {
			return
		}
	}
	c.enqueueLocked(frame{kind: kindText, data: heartbeatFrame})
}

func (c *conn) enqueueLocked(f frame) {
	if len(c.q) >= c.s.cfg.SendQueue {
		c.overflowLocked()
		return
	}
	c.q = append(c.q, f)
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// overflowLocked closes a socket that cannot keep up: the queue is dropped
// for a 4008 close, and the write in flight gets a short deadline.
func (c *conn) overflowLocked() {
	c.s.nSlow.Add(1)
	c.s.log.Warn().Str("agent_id", string(c.agent)).Int("queued", len(c.q)).Msg("agent socket too slow; closing")
	c.closing = true
	c.closeSent = make(chan struct{})
	c.pending = nil
	ef, _ := json.Marshal(errorMsg{Type: "error", Code: CloseTooSlow, Message: msgTooSlow})
	c.q = []frame{{kind: kindText, data: ef}, {kind: kindClose, code: CloseTooSlow}}
	c.s.m.closes.WithLabelValues(strconv.Itoa(CloseTooSlow)).Inc()
	_ = c.ws.NetConn().SetWriteDeadline(time.Now().Add(closeGrace))
	c.wakeLocked()
	c.startWriterLocked()
}

// closeWith queues an optional error frame and the close frame; frames
// already queued go first. It is a no-op on a socket already closing.
func (c *conn) closeWith(code int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.closed {
		return
	}
	c.closing = true
	c.closeSent = make(chan struct{})
	c.pending = nil
	if msg != "" {
		ef, _ := json.Marshal(errorMsg{Type: "error", Code: code, Message: msg})
		c.q = append(c.q, frame{kind: kindText, data: ef})
	}
	c.q = append(c.q, frame{kind: kindClose, code: code})
	c.s.m.closes.WithLabelValues(strconv.Itoa(code)).Inc()
	c.wakeLocked()
	c.startWriterLocked()
}

func (c *conn) wakeLocked() {
	if c.space != nil {
		select {
		case c.space <- struct{}{}:
		default:
		}
	}
}

// writeLoop is the socket's only writer. It exits when the queue is empty.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.q) == 0 || c.closed {
			c.q, c.writing = nil, false
			c.mu.Unlock()
			return
		}
		f := c.q[0]
		c.q[0] = frame{}
		c.q = c.q[1:]
		if len(c.q) == 0 {
			c.q = nil
		}
		timeout := c.s.cfg.WriteTimeout
		if c.closing {
			timeout = closeGrace
		}
		if f.kind == kindPop {
			// Recorded before the write: the browser's ack can come back
			// before the write call returns, and an ack of a seq not
			// recorded is ignored.
			c.recordSentLocked(f.pop)
		}
		c.wakeLocked()
		c.mu.Unlock()

		err := c.write(f, timeout)
		if f.kind == kindClose {
			c.mu.Lock()
			// The browser has closeGrace to answer the close; then the
			// reader gives up and tears the socket down.
			_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
			cs := c.closeSent
			c.q, c.writing = nil, false
			c.mu.Unlock()
			close(cs)
			if err != nil {
				_ = c.ws.Close()
			}
			return
		}
		if err != nil {
			c.mu.Lock()
			// A frame the browser did not take within WriteTimeout (a
			// stalled or too narrow link): too slow, as a full queue is,
			// though no 4008 can follow a frame half written. Said so
			// as for a full queue: otherwise the socket was cut with no
			// log line or count at all (operations.md reads 4008 and
			// slow_closed for slow browsers and networks).
			slow := !c.closing && isTimeout(err)
			queued := len(c.q)
			c.closing = true
			cs := c.closeSent
			c.closeSent = nil
			c.q, c.writing = nil, false
			c.wakeLocked()
			c.mu.Unlock()
			if slow {
				c.s.nSlow.Add(1)
				c.s.m.closes.WithLabelValues(strconv.Itoa(CloseTooSlow)).Inc()
				c.s.log.Warn().Str("agent_id", string(c.agent)).Int("queued", queued).Dur("write_timeout", timeout).Msg("agent socket too slow; closing")
			}
			if cs != nil {
				close(cs)
			}
			_ = c.ws.Close() // the reader fails and tears down
			return
		}
		if f.kind == kindPop {
			c.s.m.popsSent.Inc()
			c.s.nSent.Add(1)
		}
	}
}

func (c *conn) write(f frame, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	switch f.kind {
	case kindPing:
		return c.ws.WriteControl(websocket.PingMessage, nil, deadline)
	case kindClose:
		return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.code, ""), deadline)
	case kindPop:
		_ = c.ws.SetWriteDeadline(deadline)
		return c.ws.WriteMessage(websocket.TextMessage, f.pop.data)
	default:
		_ = c.ws.SetWriteDeadline(deadline)
		return c.ws.WriteMessage(websocket.TextMessage, f.data)
	}
}

// recordSentLocked remembers pf for its ack. c.mu is held.
func (c *conn) recordSentLocked(pf *popFrame) {
	if len(c.sent) == sentMax {
		c.sent = append(c.sent[:0], c.sent[1:]...) // the oldest goes
	}
	c.sent = append(c.sent, sentPop{seq: pf.seq, id: pf.id, eventAt: pf.eventAt})
}

// ack records the browser's ack of seq: counted once, with the delivery
// latency from the bridge's receipt of the Genesys frame. An ack of a seq
// not sent on this socket (or long ago) is ignored.
func (c *conn) ack(seq uint64) {
	c.mu.Lock()
	var pf sentPop
	for i, p := range c.sent {
		if p.seq == seq {
			pf = p
			c.sent = append(c.sent[:i], c.sent[i+1:]...)
			if len(c.sent) == 0 && cap(c.sent) > 4 {
				c.sent = nil // after a replay's burst, back to nothing held
			}
			break
		}
	}
	c.mu.Unlock()
	if pf.seq == 0 {
		return
	}
	c.s.m.popsAcked.Inc()
	c.s.nAcked.Add(1)
	if !pf.eventAt.IsZero() {
		d := time.Since(pf.eventAt)
		c.s.m.delivery.Observe(d.Seconds())
		c.s.log.Debug().Str("agent_id", string(c.agent)).Str("pop_id", pf.id).Uint64("seq", seq).Int64("delivery_ms", d.Milliseconds()).Msg("pop acked")
	}
}

// teardown runs once, when the reader ends: it lets a queued close frame go
// out (bounded), then closes the socket and forgets it.
func (c *conn) teardown() {
	c.mu.Lock()
	cs := c.closeSent
	c.mu.Unlock()
	if cs != nil {
		t := time.NewTimer(2 * closeGrace)
		select {
		case <-cs:
		case <-t.C:
		}
		t.Stop()
	}
	c.mu.Lock()
	c.closed, c.closing = true, true
	var unacked []string
	for _, pf := range c.sent[max(0, len(c.sent)-maxLoggedPops):] { // the newest, oldest first
		unacked = append(unacked, pf.id)
	}
	c.q, c.pending, c.sent = nil, nil, nil
	c.mu.Unlock()
	_ = c.ws.Close()
	c.s.forget(c)
	c.s.wg.Done()
	if c.agent != "" && c.ready.Load() {
		// unacked: pops written to this socket that the page never
		// acknowledged (its handler failed or hung, or it closed first).
		c.s.log.Info().Str("agent_id", string(c.agent)).Strs("unacked_pops", unacked).Msg("agent disconnected")
	} else if c.agent != "" {
		c.s.log.Debug().Str("agent_id", string(c.agent)).Msg("agent disconnected")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

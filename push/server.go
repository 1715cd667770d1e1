package push

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/httplog"
	"github.com/screenpop/screenpop/internal/loglimit"
)

//go:embed web
var webFS embed.FS

// Server is the agent websocket server. Build it with New, serve it with Run.
type Server struct {
	cfg     Config
	store   bridge.PopStore
	auth    *authCache
	log     zerolog.Logger
	m       *metrics
	origins map[string]bool
	// logLimit holds back repeats of the lines a client or an outage can
	// cause on every socket: one a minute each, with the count held back.
	logLimit *loglimit.Limiter
	// originLimit is the refused origins' own: their keys are whatever
	// clients send, and in logLimit they would crowd out its fixed keys
	// (past its 64 keys a new key shares one line a minute).
	originLimit *loglimit.Limiter
	// capLimit is the socket cap's, one key per agent over it: so many
	// keys would crowd out logLimit's fixed ones too.
	capLimit *loglimit.Limiter
	// originList is origins as served at /web/origins.json, for the OAuth
	// callback page to post the authorization code to them only.
	originList []string
	up         websocket.Upgrader
	web        http.Handler
	tick       time.Duration

	// base is the context of hello handling (authentication, replay); it is
	// cancelled when Run stops.
	base       context.Context
	cancelBase context.CancelFunc

	mu       sync.RWMutex
	conns    map[*conn]struct{}         // every open socket
	agents   map[bridge.AgentID][]*conn // authenticated sockets by agent
	stopping bool
	wg       sync.WaitGroup // one per open socket (its reader)
	revalWG  sync.WaitGroup // revalidations in flight
	revalMu  sync.Mutex
	revalQ   []*conn // genesys mode: sockets waiting for a revalidation worker
	revalN   int     // revalidation workers running

	serving   atomic.Bool
	following atomic.Bool
	ran       atomic.Bool

	// Counters for Status (the same facts as the metrics).
	nSent, nAcked, nReplayed, nUnrouted, nSlow atomic.Uint64
	// followed counts the pops follow handed to deliver (drainFollow).
	followed atomic.Uint64
	// awaiting counts the sockets upgraded (or being upgraded) whose first
	// frame has not been read (Config.HelloPending).
	awaiting atomic.Int64
}

// New returns a server for cfg that reads pops from store. auth checks
// tokens in mode genesys (required there); in mode jwt it may be nil and a
// JWTAuthenticator for cfg.JWTSecret and cfg.JWTAudience is used.
func New(cfg Config, store bridge.PopStore, auth bridge.AgentAuthenticator, log zerolog.Logger) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if store == nil {
		return nil, errors.New("push: a pop store is required")
	}
	switch {
	case cfg.Auth == AuthJWT && auth == nil:
		a, err := NewJWTAuthenticator(cfg.JWTSecret, cfg.JWTAudience)
		if err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		auth = a
	case auth == nil:
		return nil, errors.New("push: auth mode genesys needs an agent authenticator")
	}
	origins := map[string]bool{}
	originList := []string{}
	for _, o := range cfg.AllowedOrigins {
		n, ok := normalizeOrigin(o)
		if !ok {
			return nil, fmt.Errorf("push: allowed origin %q: want scheme://host[:port] (SCREENPOP_ALLOWED_ORIGINS)", o)
		}
		if !origins[n] {
			originList = append(originList, n)
		}
		origins[n] = true
	}
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, fmt.Errorf("push: web assets: %w", err)
	}
	m := newMetrics(cfg.Registerer)
	s := &Server{
		cfg:         cfg,
		store:       store,
		auth:        newAuthCache(auth, cfg.Revalidate, m),
		log:         log.With().Str("component", "push").Logger(),
		m:           m,
		origins:     origins,
		originList:  originList,
		web:         webHandler(sub),
		conns:       map[*conn]struct{}{},
		logLimit:    loglimit.New(time.Minute, 64),
		originLimit: loglimit.New(time.Minute, 64),
		capLimit:    loglimit.New(time.Minute, 64),
		agents:      map[bridge.AgentID][]*conn{},
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.up = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   256, // acks and pongs fit; a hello (its token) and larger frames are read in pieces
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},                             // a buffer is held only while a frame is written
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before Upgrade
	}
	s.tick = min(cfg.PingInterval, cfg.HeartbeatInterval, cfg.HelloTimeout) / 25
	s.tick = max(10*time.Millisecond, min(s.tick, time.Second))
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_push_following",
			Help: "1 while the push server's consumer of the pops is live; 0: no pop reaches any agent of this instance."},
			func() float64 {
				if s.isFollowing() {
					return 1
				}
				return 0
			}))
	}
	return s, nil
}

// Handler serves GET /v1/ws, the browser assets at /web/, GET /healthz (a
// load balancer's health probe) and, in demo mode, GET /demo/agents.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// For the load balancer in front (its probe is on the traffic
		// port): 200 while this listener takes agents, 503 while it
		// starts, resubscribes or stops, or while the process is stuck
		// (Config.Stuck; asked first: a push server wedged under its
		// lock would not answer Ready). No detail: anyone can ask.
		w.Header().Set("Cache-Control", "no-store")
		if (s.cfg.Stuck != nil && s.cfg.Stuck()) || (s.cfg.Stopping != nil && s.cfg.Stopping()) || !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /web/", http.StripPrefix("/web", s.web))
	mux.HandleFunc("GET /web/origins.json", func(w http.ResponseWriter, r *http.Request) {
		// The origins the OAuth callback may hand an authorization code to.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_ = json.NewEncoder(w).Encode(s.originList)
	})
	if s.cfg.DemoAgents != nil {
		mux.HandleFunc("GET /demo/agents", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(s.cfg.DemoAgents())
		})
	}
	return mux
}

// shutdownGrace bounds how long Run waits for agents to answer the 1001
// close before it cuts their connections.
const shutdownGrace = 2 * time.Second

// closeGrace is how long a socket waits for the browser's close frame after
// sending its own.
const closeGrace = time.Second

// Run serves the agent listener ln and follows the pops until ctx is done;
// then it closes every agent socket with 1001 and returns nil within a few
// seconds. It returns an error only when it cannot serve.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	if s.ran.Swap(true) {
		return errors.New("push: Run called twice")
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No request here has a body: one that is not read in the time a
		// hello has, or a connection idle after its request as long as an
		// idle websocket without pongs, is closed rather than held for good
		// (a slowloris). A websocket sets its own deadlines once upgraded.
		ReadTimeout: s.cfg.HelloTimeout,
		// An answer (a web asset) not taken within a frame's write timeout
		// is given up: without it, a client that never reads held the
		// handler, its goroutine and descriptor, for good. The upgrade's
		// hijack clears it for the websocket.
		WriteTimeout:   s.cfg.WriteTimeout,
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: 32 << 10,
		// net/http's own lines (a failed TLS handshake, a handler's
		// panic) in the JSON log, not plain text on stderr.
		ErrorLog: httplog.ErrorLog(s.log),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.serving.Store(true)
	s.log.Info().Str("addr", ln.Addr().String()).Str("auth", s.cfg.Auth).Msg("agent listener serving")

	// Not ended by ctx: follow outlives it by drainFollow at a stop.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); s.follow(runCtx) }()
	go func() { defer bg.Done(); s.ticker(runCtx) }()

	var err error
	select {
	case <-ctx.Done():
		s.drainFollow()
	case err = <-serveErr:
		err = fmt.Errorf("push: serve: %w", err)
	}
	s.serving.Store(false)
	stop()

	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = srv.Shutdown(sctx) // stops accepting; hijacked sockets are ours to close
	cancel()
	s.shutdown()
	bg.Wait()
	s.revalWG.Wait()
	s.log.Info().Msg("agent listener stopped")
	return err
}

// After a stop, pops keep being followed until none has come for
// followQuiet, for at most followDrain.
const (
	followQuiet = 100 * time.Millisecond
	followDrain = time.Second
)

// drainFollow waits, at a stop, for the pops stored just before it to
// reach their sockets. The daemon stops push after the resolver (the stop
// follows the data), and the pops the resolver stored while it finished
// the events in flight are still on their way back from NATS: closed at
// once, the sockets would miss them live and get them only on their
// reconnect's replay. It returns once no pop has come for followQuiet.
func (s *Server) drainFollow() {
	const poll = 10 * time.Millisecond
	n, quiet := s.followed.Load(), time.Duration(0)
	for waited := time.Duration(0); quiet < followQuiet && waited < followDrain; waited += poll {
		time.Sleep(poll)
		if m := s.followed.Load(); m != n {
			n, quiet = m, 0
		} else {
			quiet += poll
		}
	}
}

// shutdown closes every agent socket with 1001 and waits for them, cutting
// those that do not answer within shutdownGrace.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.stopping = true
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	s.cancelBase()
	for _, c := range all {
		c.closeWith(websocket.CloseGoingAway, "")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	for _, c := range all {
		_ = c.ws.Close()
	}
	<-done
}

// follow fans every stored pop out to the connected agents, with one
// PopStore subscription for the whole instance. A browser's hello replays
// what was stored before its ready frame, and live delivery must cover
// everything after, so a socket let in while no subscription was live (at
// start-up, or while one is made again after a failure) may have missed
// pops: once the subscription is live, every socket then open is closed
// with 4008 and resumes from its last seq, and only then are live pops
// delivered. (Closed earlier, a socket could resume before the subscription
// is back; given a live pop before its close, a browser would resume after
// that pop and skip the ones before it.) The server reports ready from then
// on.
func (s *Server) follow(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		resumed := make(chan struct{})
		err := s.store.FollowPops(ctx, func(p bridge.StoredPop) {
			select {
			case <-resumed:
				s.deliver(p)
			case <-ctx.Done():
			}
		}, func() {
			if n := s.closeAll(CloseTooSlow, "reconnect"); n > 0 {
				s.log.Info().Int("sockets", n).Msg("pop subscription live; sockets opened without it told to resume (4008)")
			}
			s.following.Store(true)
			close(resumed)
		})
		s.following.Store(false)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-resumed:
			// It was live: a loss (a recreated stream) starts the backoff
			// over; the backoff is for subscriptions that cannot be made.
			backoff = 100 * time.Millisecond
		default:
		}
		s.log.Warn().Err(err).Dur("backoff", backoff).Msg("following pops failed; resubscribing")
		t := time.NewTimer(jitter(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// closeAll closes every open socket and returns how many there were.
func (s *Server) closeAll(code int, msg string) int {
	s.mu.RLock()
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.RUnlock()
	for _, c := range all {
		c.closeWith(code, msg)
	}
	return len(all)
}

// deliver is the FollowPops callback: it builds the pop's frame once and
// queues it, without blocking, on each socket of its agent.
func (s *Server) deliver(p bridge.StoredPop) {
	s.followed.Add(1)
	pf, err := newPopFrame(p)
	if err != nil {
		s.m.popsInvalid.Inc()
		if ok, held := s.logLimit.Allow("stored pop", time.Now()); ok {
			s.log.Warn().Err(err).Int("held_back", held).Uint64("seq", p.Seq).Str("agent_id", string(p.Agent)).Msg("skip stored pop")
		}
		return
	}
	s.mu.RLock()
	cs := s.agents[p.Agent]
	for _, c := range cs {
		c.deliverLive(pf)
	}
	s.mu.RUnlock()
	if len(cs) == 0 {
		s.m.popsNoAgent.Inc()
		s.nUnrouted.Add(1)
	}
	s.log.Debug().Str("pop_id", pf.id).Uint64("seq", pf.seq).Str("agent_id", string(p.Agent)).Int("connections", len(cs)).Msg("pop fanned out")
}

// keepAliveSlices is how many parts of a tick the keep-alives found due
// at a sweep are spread over while pops are flowing. Sent at the sweep,
// 10,000 sockets' pings and heartbeats (a socket in 62 at each 400 ms tick,
// at the default 25 s) woke 160 writer goroutines at once, and the
// browsers' 160 pongs came back together: a pop written in that burst
// waited behind it, which nearly doubled the p99 of the push path at
// 10,000 agents (docs/performance-log.md). While no pop is flowing they go out
// at once: spread, they woke the idle daemon 16 times as often and doubled
// its CPU.
const keepAliveSlices = 16

// keepAlive is a ping and/or heartbeat frame due on a socket.
type keepAlive struct {
	c          *conn
	ping, beat bool
}

func (k keepAlive) send() {
	if k.ping {
		k.c.push(frame{kind: kindPing})
	}
	if k.beat {
		k.c.push(frame{kind: kindText, data: heartbeatFrame})
	}
}

// keepAlives holds the keep-alives a sweep found due and hands them out a
// slice at a time: evenly over up to keepAliveSlices calls of take when
// paced, all in the first otherwise.
type keepAlives struct {
	due    []keepAlive
	slices int // the calls of take they are spread over
	k      int // the calls made
}

// reset forgets the last sweep's keep-alives, for the next sweep to append
// to due; spread is called after it has.
func (q *keepAlives) reset() {
	clear(q.due)
	q.due, q.slices, q.k = q.due[:0], 0, 0
}

// spread sets the slices: one, or when paced keepAliveSlices (fewer when
// fewer are due, so that no slice is empty).
func (q *keepAlives) spread(paced bool) {
	q.slices, q.k = min(len(q.due), 1), 0
	if paced {
		q.slices = min(len(q.due), keepAliveSlices)
	}
}

// mark is where slice k starts in due.
func (q *keepAlives) mark(k int) int { return k * len(q.due) / max(q.slices, 1) }

// take returns the keep-alives of the next slice.
func (q *keepAlives) take() []keepAlive {
	if q.k >= q.slices {
		return nil
	}
	k := q.due[q.mark(q.k):q.mark(q.k+1)]
	q.k++
	return k
}

// rest returns every keep-alive not handed out yet, as handed out.
func (q *keepAlives) rest() []keepAlive {
	if q.k >= q.slices {
		return nil
	}
	k := q.due[q.mark(q.k):]
	q.k = q.slices
	return k
}

// pending reports whether a slice is still to be taken.
func (q *keepAlives) pending() bool { return q.k < q.slices }

// ticker drives pings, heartbeat frames and token revalidation for every
// socket from one goroutine. It sweeps the sockets every tick and sends the
// keep-alives it found due: while pops are flowing (one was sent since the
// last sweep), over the tick, a slice every tick/keepAliveSlices from the
// sweep; otherwise at once, and it sleeps until the next sweep.
func (s *Server) ticker(ctx context.Context) {
	slice := s.tick / keepAliveSlices
	nextSweep := time.Now().Add(s.tick)
	t := time.NewTimer(time.Until(nextSweep))
	defer t.Stop()
	var due []*conn
	var ka keepAlives
	var sent uint64
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !now.Before(nextSweep) {
				for _, k := range ka.rest() { // slices ran late: none is skipped
					k.send()
				}
				swept, nextSweep = now, now.Add(s.tick)
				ka.reset()
				due, ka.due = s.sweep(now, due[:0], ka.due)
				last := sent
				sent = s.nSent.Load()
				ka.spread(sent != last)
				for _, c := range due {
					s.revalidate(ctx, c)
				}
				clear(due)
				s.auth.sweep(now)
			}
			for _, k := range ka.take() {
				k.send()
			}
			if ka.pending() {
				t.Reset(time.Until(swept.Add(time.Duration(ka.k) * slice)))
			} else {
				t.Reset(time.Until(nextSweep))
			}
		}
	}
}

// sweep finds the sockets whose keep-alives are due (appended to ka) and
// those whose token is to be checked again (appended to due).
func (s *Server) sweep(now time.Time, due []*conn, ka []keepAlive) ([]*conn, []keepAlive) {
	n, wall := monoNanos(now), now.UnixNano()
	ping, beat := int64(s.cfg.PingInterval), int64(s.cfg.HeartbeatInterval)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.conns {
		if !c.ready.Load() {
			continue
		}
		k := keepAlive{c: c, ping: n >= c.nextPing, beat: n >= c.nextBeat}
		if k.ping {
			c.nextPing = n + ping
		}
		if k.beat {
			c.nextBeat = n + beat
		}
		if k.ping || k.beat {
			ka = append(ka, k)
		}
		if (wall >= c.nextAuth.Load() || authDue(n, c.nextAuthMono.Load())) && !c.revalidating.Swap(true) {
			due = append(due, c)
		}
	}
	return due, ka
}

// authDue reports whether a token check due at mono (monoNanos, 0 for
// none) is due at n.
func authDue(n, mono int64) bool { return mono != 0 && n >= mono }

// monoEpoch is this process's reference for the keep-alive schedule.
var monoEpoch = time.Now()

// monoNanos is t, a time.Now() of this process, in nanoseconds since
// monoEpoch on the monotonic clock: unlike UnixNano, a step of the wall
// clock (NTP) does not move it, so the keep-alives neither stop for as
// long as a step back nor all come due at a step forward.
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// revalPool is how many token checks that ask the identity provider
// (genesys mode) run at once: at Genesys' 100 ms or so, 160 a second, for
// the first round after 10,000 agents reconnected together (their checks
// spread over revalEarly, 75 s: 133 a second).
const revalPool = 16

// revalidate checks a socket's token again. In genesys mode the check waits
// in a queue for one of revalPool workers, which take the next socket as
// soon as they are done with one: handed out only at the ticker's sweeps,
// 8 every 400 ms, 10,000 sockets' checks (33 a second at 5 minutes) could
// not keep up, and after a reconnect storm, whose tokens were all checked
// in the same few seconds, most were checked again minutes late.
func (s *Server) revalidate(ctx context.Context, c *conn) {
	// A jwt check is local and takes microseconds: it needs no pool, and
	// with one, sockets whose tokens expire together (minted together at
	// a shift start) would close 8 a tick, seconds after exp, not within
	// the second docs/agents.md promises.
	if s.cfg.Auth == AuthJWT {
		s.revalWG.Add(1)
		go func() {
			defer s.revalWG.Done()
			s.revalidateOne(ctx, c)
		}()
		return
	}
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	s.revalQ = append(s.revalQ, c)
	for s.revalN < revalPool && s.revalN < len(s.revalQ) {
		s.revalN++
		s.revalWG.Add(1)
		go s.revalWorker(ctx)
	}
}

// revalWorker checks the queued sockets' tokens until the queue is empty.
func (s *Server) revalWorker(ctx context.Context) {
	defer s.revalWG.Done()
	for {
		s.revalMu.Lock()
		if len(s.revalQ) == 0 || ctx.Err() != nil {
			for _, c := range s.revalQ {
				c.revalidating.Store(false)
			}
			clear(s.revalQ)
			s.revalQ = s.revalQ[:0]
			s.revalN--
			s.revalMu.Unlock()
			return
		}
		c := s.revalQ[0]
		s.revalQ[0] = nil
		s.revalQ = s.revalQ[1:]
		s.revalMu.Unlock()
		s.revalidateOne(ctx, c)
	}
}

// revalEarly is how much before its answer runs out a genesys token may be
// checked again (a quarter of the answer's life at most): each socket's
// next check is at a random point of that last part, so that the checks of
// sockets that connected together (every agent reconnecting at once) are
// spread over it instead of all due in the same second, and a check that
// waits for the pool still comes before the answer runs out.
func (s *Server) revalEarly() time.Duration {
	if s.cfg.Auth == AuthJWT {
		return 0 // checked at exp, within the second
	}
	return s.cfg.Revalidate / 4
}

// scheduleCheck records that c's token holds until until and sets when it
// is to be checked again.
func (s *Server) scheduleCheck(c *conn, until time.Time) {
	c.authUntil.Store(until.UnixNano())
	next := until
	if e := min(s.revalEarly(), time.Until(until)/4); e > 0 {
		next = until.Add(-spread(e))
	}
	c.setNextAuth(next)
}

// setNextAuth sets when c's token is to be checked again: at next on the
// wall clock (a token's expiry), or as long from now as next is on the
// monotonic one (an answer held for an interval), whichever comes first.
func (c *conn) setNextAuth(next time.Time) {
	c.nextAuth.Store(next.UnixNano())
	// time.Until reads a next without a monotonic reading (a token's
	// exp) on the wall clock as it is now.
	now := time.Now()
	c.nextAuthMono.Store(max(monoNanos(now)+int64(next.Sub(now)), 1))
}

func (s *Server) revalidateOne(ctx context.Context, c *conn) {
	defer c.revalidating.Store(false)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The answer this socket was let in on is not taken from the cache
	// again (this check renews it); a newer one (another tab's check of
	// the same token) is.
	at := time.Unix(0, max(time.Now().UnixNano(), c.authUntil.Load()))
	agent, until, err := s.auth.check(actx, c.token, at)
	switch {
	case err == nil && agent == c.agent:
		s.scheduleCheck(c, until)
	case err == nil || errors.Is(err, bridge.ErrInvalidToken):
		if err == nil {
			err = errors.New("the token names another agent now")
		}
		s.log.Info().Err(err).Str("agent_id", string(c.agent)).Msg("agent token no longer valid; closing socket")
		c.closeWith(CloseInvalidToken, msgInvalidToken)
	default:
		// The identity provider could not tell: keep the agent and ask again soon.
		if ok, held := s.logLimit.Allow("revalidate", time.Now()); ok && ctx.Err() == nil {
			s.log.Warn().Err(err).Str("agent_id", string(c.agent)).Int("held_back", held).Msg("token revalidation failed; retrying")
		}
		c.setNextAuth(time.Now().Add(30 * time.Second))
	}
}

// Ready reports whether the agent listener is serving, the pop
// subscription is up (and not being made again), and the store answers:
// while NATS is disconnected every hello is refused (1013, the agent's
// newest pop unreadable), so the load balancer's /healthz is 503 and new
// pages go to another instance.
func (s *Server) Ready() bool {
	s.mu.RLock()
	stopping := s.stopping
	s.mu.RUnlock()
	if c, ok := s.store.(connChecker); ok && !c.Connected() {
		return false
	}
	return s.serving.Load() && s.isFollowing() && !stopping
}

// connChecker is optionally implemented by a PopStore (bus.Conn does):
// false while it is disconnected from NATS.
type connChecker interface {
	Connected() bool
}

// followChecker is optionally implemented by a PopStore (bus.Conn does):
// false while a FollowPops' consumer that was live is being made again and
// refused, when no pop reaches FollowPops.
type followChecker interface {
	PopsFollowed() bool
}

// leaderReader is optionally implemented by a PopStore (bus.Conn does)
// whose LatestPop may be answered by a replica behind the stream's leader:
// LeaderLatestPop asks the leader. A hello asks it only when a page's
// cursor is beyond LatestPop's answer, before taking the stream for set
// back.
type leaderReader interface {
	LeaderLatestPop(ctx context.Context, agent bridge.AgentID) (uint64, error)
}

// popChecker is optionally implemented by a PopStore (bus.Conn does):
// PopAt reports whether the stream holds a pop of agent at seq, and its
// id. A hello asks it of a cursor at or below the agent's newest pop,
// which a stream set back and then passed the cursor again also shows.
type popChecker interface {
	PopAt(ctx context.Context, agent bridge.AgentID, seq uint64) (popID string, found bool, err error)
}

// isFollowing reports whether the pops' consumer is live: false before it
// is first made, and while one that was live is being made again and
// refused (the stream's consumers all taken, JetStream away).
func (s *Server) isFollowing() bool {
	if f, ok := s.store.(followChecker); ok && !f.PopsFollowed() {
		return false // its consumer is being made again
	}
	return s.following.Load()
}

// Status is push's part of /status.
type Status struct {
	Serving      bool   `json:"serving"`
	Following    bool   `json:"following"`
	Auth         string `json:"auth"`
	Connections  int    `json:"connections"`
	Agents       int    `json:"agents"`
	CachedTokens int    `json:"cached_tokens"`
	PopsSent     uint64 `json:"pops_sent"`
	PopsAcked    uint64 `json:"pops_acked"`
	PopsReplayed uint64 `json:"pops_replayed"`
	PopsUnrouted uint64 `json:"pops_unrouted"`
	SlowClosed   uint64 `json:"slow_closed"`
}

// Status returns a snapshot without PII or secrets.
func (s *Server) Status() any {
	s.mu.RLock()
	st := Status{Connections: len(s.conns), Agents: len(s.agents)}
	s.mu.RUnlock()
	st.Serving, st.Following, st.Auth = s.serving.Load(), s.isFollowing(), s.cfg.Auth
	st.CachedTokens = s.auth.len()
	st.PopsSent, st.PopsAcked, st.PopsReplayed = s.nSent.Load(), s.nAcked.Load(), s.nReplayed.Load()
	st.PopsUnrouted, st.SlowClosed = s.nUnrouted.Load(), s.nSlow.Load()
	return st
}

// serveWS checks the origin, upgrades, hands the socket to its reader
// goroutine and returns, so an idle socket holds only that goroutine.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		s.m.connects.WithLabelValues("origin").Inc()
		// The origin is what an admin adds to SCREENPOP_ALLOWED_ORIGINS
		// (docs/operations.md); capped, as any client can send anything.
		origin := capLog(r.Header.Get("Origin"), maxLoggedOrigin)
		if ok, held := s.originLimit.Allow(origin, time.Now()); ok {
			s.log.Info().Str("remote_addr", r.RemoteAddr).Str("origin", origin).Int("held_back", held).Msg("websocket refused: origin not allowed")
		}
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	s.mu.RLock()
	stopping := s.stopping
	s.mu.RUnlock()
	// The daemon's own stop starts seconds before push's (Config.Stopping):
	// a page that reaches this instance then is turned away before its
	// upgrade, as docs/agents.md says, not given a ready and a 1001.
	if stopping || (s.cfg.Stopping != nil && s.cfg.Stopping()) {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if s.awaiting.Add(1) > int64(s.cfg.HelloPending) {
		s.awaiting.Add(-1)
		s.m.connects.WithLabelValues("busy").Inc()
		if ok, held := s.logLimit.Allow("busy", time.Now()); ok {
			s.log.Warn().Int("hello_pending", s.cfg.HelloPending).Int("held_back", held).Msg("websocket refused: too many sockets waiting for their hello")
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy, retry", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		s.awaiting.Add(-1)
		s.m.connects.WithLabelValues("upgrade").Inc()
		s.log.Debug().Err(err).Msg("websocket upgrade failed")
		return
	}
	c := &conn{s: s, ws: ws}
	s.mu.Lock()
	if s.stopping {
		// Upgraded while shutdown began: say so (1001), as to every other
		// socket, so the client reconnects instead of seeing an abnormal
		// closure.
		s.mu.Unlock()
		s.awaiting.Add(-1)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.connections.Inc()
	go c.readLoop()
}

// maxLoggedOrigin caps the refused origin in the log line; a real origin
// (scheme, host and port) is far shorter.
const maxLoggedOrigin = 200

// capLog returns s cut to at most n bytes, without splitting a UTF-8
// sequence.
func capLog(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// originAllowed: no Origin (not a browser), the server's own origin, or one
// of AllowedOrigins.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	n, ok := normalizeOrigin(o)
	if !ok {
		return false
	}
	if s.origins[n] {
		return true
	}
	// An IPv6 zone comes back unescaped ("[fe80::1%en0]"), which does
	// not parse again: no host of this server's.
	u, err := url.Parse(n)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// normalizeOrigin lower-cases scheme and host and drops default ports, so
// that https://Contoso.crm.dynamics.com:443 matches the browser's
// https://contoso.crm.dynamics.com.
func normalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(strings.TrimSpace(o), "/"))
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, true
}

// register's answers.
const (
	registered = iota
	registerStopping
	registerFull // the agent has Config.AgentSockets sockets already
)

// register makes c receive its agent's live pops.
func (s *Server) register(c *conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return registerStopping
	}
	if _, ok := s.conns[c]; !ok {
		return registerStopping
	}
	if len(s.agents[c.agent]) >= s.cfg.AgentSockets {
		return registerFull
	}
	if len(s.agents[c.agent]) == 0 {
		s.m.agents.Inc()
	}
	s.agents[c.agent] = append(s.agents[c.agent], c)
	return registered
}

// forget removes c from every set.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if cs := s.agents[c.agent]; c.agent != "" {
		for i, x := range cs {
			if x == c {
				cs[i] = cs[len(cs)-1]
				cs[len(cs)-1] = nil
				cs = cs[:len(cs)-1]
				if len(cs) == 0 {
					delete(s.agents, c.agent)
					s.m.agents.Dec()
				} else {
					s.agents[c.agent] = cs
				}
				break
			}
		}
	}
	s.mu.Unlock()
	s.m.connections.Dec()
}

// popFrame is one pop's websocket message, built once and shared, read-only,
// by every socket it goes to.
type popFrame struct {
	seq     uint64
	id      string
	agent   bridge.AgentID
	eventAt time.Time // eventReceivedAt, for the delivery latency
	data    []byte
}

// newPopFrame turns a stored pop CloudEvent into the agent message: its
// data object with "type":"pop" and "seq" put first, without decoding and
// re-encoding the pop itself.
func newPopFrame(p bridge.StoredPop) (*popFrame, error) {
	// One validation pass, then gjson reads the few fields in place: two
	// encoding/json passes over the pop (the envelope, then the head of
	// its data) were most of the cost of fanning a pop out.
	if !gjson.ValidBytes(p.Data) {
		return nil, errors.New("pop frame: not valid JSON")
	}
	ce := gjson.GetManyBytes(p.Data, "type", "data")
	if ce[0].Str != bridge.TypePop {
		return nil, fmt.Errorf("pop frame: unexpected type %q", ce[0].Str)
	}
	d := ce[1]
	if !d.IsObject() || d.Index <= 0 || d.Index+len(d.Raw) > len(p.Data) {
		return nil, errors.New("pop frame: data is not an object")
	}
	data := p.Data[d.Index : d.Index+len(d.Raw)]
	head := gjson.GetManyBytes(data, "id", "agentId", "eventReceivedAt")
	if head[1].Type != gjson.String || bridge.AgentID(head[1].Str) != p.Agent {
		// Never let a pop stored under one agent's subject reach another.
		return nil, errors.New("pop frame: agentId does not match the subject")
	}
	var eventAt bridge.Time
	if head[2].Exists() {
		if err := eventAt.UnmarshalJSON([]byte(head[2].Raw)); err != nil {
			return nil, fmt.Errorf("pop frame: eventReceivedAt: %w", err)
		}
	}
	rest := bytes.TrimLeft(data[1:], " \t\r\n")
	b := make([]byte, 0, len(data)+40)
	b = append(b, `{"type":"pop","seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	if rest[0] != '}' {
		b = append(b, ',')
	}
	b = append(b, rest...)
	if !eventAt.IsZero() {
		// On the resolving instance's clock: put it on this host's.
		eventAt.Time = eventAt.Add(p.ClockCorrection)
	}
	return &popFrame{seq: p.Seq, id: head[0].Str, agent: p.Agent, eventAt: eventAt.Time, data: b}, nil
}

func webHandler(sub fs.FS) http.Handler {
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasSuffix(r.URL.Path, ".html") {
			h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
		}
		files.ServeHTTP(w, r)
	})
}

// spread returns a random duration in (0, d].
func spread(d time.Duration) time.Duration {
	return 1 + rand.N(d)
}

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

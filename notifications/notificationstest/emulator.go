// Package notificationstest is an in-process Genesys Cloud emulator that
// speaks the real wire protocol of the parts screenpop uses: the OAuth token
// endpoint (client credentials; authorization code with PKCE and the implicit
// grant for browser logins), users/me and tokens/me, notification channels
// and subscriptions, the channel websocket (envelopes, heartbeats, pong,
// socket_closing), routing queue members, the analytics activity query and
// GET /api/v2/conversations/{id}.
//
// Like net/http/httptest it does not import testing: tests, `screenpopd demo`
// and the benchmarks build one with New, serve its Handler (or call Serve),
// script conversations (InboundCall, Chat, ...) and inject faults
// (DropConnections, SocketClosing, FailNext, RejectTopicsFor, ExpireTokens,
// SetFrameFaults, ...).
//
// Conversation payloads are built from the Genesys SDK's own topic models
// (platformclientv2.Conversationeventtopicconversation and friends) and
// marshaled with encoding/json; the SDK writes microsecond fractions where
// the service writes milliseconds, so times are trimmed to milliseconds.
//
// Deliberate gaps: no divisions or permissions beyond RejectTopicsFor, no
// websocket subscribe for combined topics, no rate limiting except what is
// injected (FailNext) or configured (Config.RateLimit). Behaviours taken from unverified sources are switches in Config
// (see docs/assumptions.md).
//
// Concurrency: all methods are safe for concurrent use.
package notificationstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// AgentSpec is one emulated Genesys user.
type AgentSpec struct {
	ID    string
	Name  string
	Email string
}

// Config configures an Emulator. Zero fields mean defaults.
type Config struct {
	ClientID     string // default "screenpop-client"
	ClientSecret string // default "screenpop-secret"
	// Clients are further client-credentials OAuth clients of the org
	// (client id -> secret), as for a second screenpopd instance, which
	// needs its own (docs/architecture.md, "Several instances"); AddClient
	// adds one to a running emulator. Each client owns its own channels.
	Clients map[string]string
	// BrowserClientID is the OAuth client for browser logins (code+PKCE,
	// implicit). Default "screenpop-browser". RedirectURIs lists its
	// allowed redirect URIs; empty allows any http(s)://127.0.0.1 or
	// localhost URI.
	BrowserClientID string
	RedirectURIs    []string
	OrgID           string // default "org-emulated"

	Agents []AgentSpec
	Queues map[string][]string // queue id -> member user ids

	HeartbeatInterval  time.Duration // default 30s; negative disables heartbeats
	TokenLifetime      time.Duration // client-credentials tokens; default 24h; expires_in is whole seconds (at least 1)
	UserTokenLifetime  time.Duration // agent tokens; default 24h
	ChannelLifetime    time.Duration // default 24h; a PUT or POST of subscriptions extends it
	SocketClosingGrace time.Duration // how long after socket_closing the server closes the socket; default 60s
	MaxChannels        int           // per owner (user+app); default 20
	MaxTopics          int           // per channel; default 1000

	// Forget, when set, bounds what a long-running emulator (screenpopd
	// demo) keeps: a conversation every participant of which left longer
	// than Forget ago, a token expired longer ago and a logged request
	// older than that are dropped as conversations are scripted. Zero
	// keeps everything (tests read the request log).
	Forget time.Duration

	// ExclusiveTopics models the UNVERIFIED reading of
	// reason=another_channel_subscribed: subscribing a topic on a second
	// channel of the same owner takes it from the first, which gets
	// v2.system.no_longer_subscribed. Default off (topics may overlap).
	ExclusiveTopics bool
	// CloseOnTokenExpiry models "a channel dies when its token expires"
	// (C-HB, UNVERIFIED): when set, a channel whose creating token has
	// expired (its lifetime ran out, or ExpireTokens) is removed and its
	// socket closed. Default off.
	CloseOnTokenExpiry bool
	// GoneAsResult answers a socket for a channel that does not exist
	// (expired, evicted) the other way the service is reported to (KOO):
	// it accepts the upgrade, sends {"result":"404",...} and closes,
	// instead of refusing the upgrade with HTTP 404. Default off.
	GoneAsResult bool
	// GoneStatus is the HTTP status with which the upgrade of a socket
	// for a channel that does not exist is refused: 404 by default; what
	// the service answers is not documented, and clients of it are seen
	// to handle 401 and 403 there too.
	GoneStatus int
	// ActivityEntityLimit is the most entities one group (one user) of
	// the analytics activity query lists. Over it the group is
	// truncated as the API documents: "truncated": true, the first half
	// of the list the oldest entities and the second half the newest.
	// Default 0: no limit (the real limit is not documented).
	ActivityEntityLimit int
	// SendQueue is the per-socket outbound frame queue; a socket whose
	// queue overflows is dropped (like a slow consumer). Default 4096.
	SendQueue int

	// RateLimit, when set, enforces Genesys' request limit on the API
	// (/api/v2/...): at most RateLimit requests answered per RateWindow
	// (default 1 minute; tests compress it) per OAuth client and user
	// (300 a minute for a client-credentials client, C-RL), counted over
	// a sliding window. Past it a request is answered 429 with the
	// ErrorBody code too.many.requests.retry.after and a Retry-After of
	// the whole seconds until the window has room again; refused
	// requests do not count. RateLimitNoRetryAfter leaves the header out
	// (code too.many.requests), as some 429s are reported to come.
	RateLimit             int
	RateWindow            time.Duration
	RateLimitNoRetryAfter bool
}

func (c *Config) defaults() {
	if c.ClientID == "" {
		c.ClientID = "screenpop-client"
	}
	if c.ClientSecret == "" {
		c.ClientSecret = "screenpop-secret"
	}
	if c.BrowserClientID == "" {
		c.BrowserClientID = "screenpop-browser"
	}
	if c.OrgID == "" {
		c.OrgID = "org-emulated"
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = 24 * time.Hour
	}
	if c.UserTokenLifetime <= 0 {
		c.UserTokenLifetime = 24 * time.Hour
	}
	if c.ChannelLifetime <= 0 {
		c.ChannelLifetime = 24 * time.Hour
	}
	if c.SocketClosingGrace <= 0 {
		c.SocketClosingGrace = 60 * time.Second
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = 20
	}
	if c.MaxTopics <= 0 {
		c.MaxTopics = 1000
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 4096
	}
	if c.RateWindow <= 0 {
		c.RateWindow = time.Minute
	}
}

// Request is one HTTP request the emulator answered.
type Request struct {
	Method string
	Path   string
	Query  string
	Status int
	Time   time.Time
}

type token struct {
	value    string
	clientID string
	userID   string // "" for client credentials
	expires  time.Time
}

type fault struct {
	method     string
	prefix     string
	status     int
	retryAfter time.Duration
	n          int
}

type authCode struct {
	userID, redirectURI, challenge, clientID string
	expires                                  time.Time
}

// Emulator is an in-process Genesys Cloud.
type Emulator struct {
	cfg Config
	mux *http.ServeMux

	mu            sync.Mutex
	agents        map[string]AgentSpec
	queues        map[string][]string
	unjoined      map[string]map[string]bool // queue -> members who left it (joined=false)
	tokens        map[string]*token
	codes         map[string]*authCode
	channels      map[string]*channel
	convs         map[string]*Conversation
	convOrder     []string
	faults        []*fault
	garbled       map[string]bool        // conversation ids whose GET answers 200 with a cut body
	garbledQueues map[string]bool        // queue ids whose member pages answer 200 with a cut body
	rateLog       map[string][]time.Time // RateLimit: client+user -> answered requests in the window
	requests      []Request
	rejected      map[string]string // user id -> rejection code
	refuseSockets map[string]int    // user id -> status refusing the upgrade of its channels' sockets
	clients       map[string]string // further client-credentials clients: id -> secret
	loginDown     bool
	loginDelay    time.Duration
	apiDelays     map[string]time.Duration // path prefix -> how long its requests take
	frame         FrameFaults
	blackhole     bool
	heartbeatsOff bool
	chanSeq       int
	closed        bool
	url           string
	servers       []*http.Server
	conns         map[*wsConn]struct{}
	timers        map[*time.Timer]struct{}
	subscribed    chan struct{} // closed and replaced on every subscription change
	connected     chan struct{} // closed and replaced on every socket connect
	wg            sync.WaitGroup
}

// New returns an emulator; serve its Handler or call Serve.
func New(cfg Config) *Emulator {
	cfg.defaults()
	e := &Emulator{
		cfg:           cfg,
		mux:           http.NewServeMux(),
		agents:        map[string]AgentSpec{},
		queues:        map[string][]string{},
		unjoined:      map[string]map[string]bool{},
		tokens:        map[string]*token{},
		codes:         map[string]*authCode{},
		channels:      map[string]*channel{},
		convs:         map[string]*Conversation{},
		rejected:      map[string]string{},
		refuseSockets: map[string]int{},
		clients:       map[string]string{},
		garbled:       map[string]bool{},
		garbledQueues: map[string]bool{},
		rateLog:       map[string][]time.Time{},
		conns:         map[*wsConn]struct{}{},
		timers:        map[*time.Timer]struct{}{},
		subscribed:    make(chan struct{}),
		connected:     make(chan struct{}),
	}
	for _, a := range cfg.Agents {
		e.agents[a.ID] = a
	}
	for q, m := range cfg.Queues {
		e.queues[q] = append([]string(nil), m...)
	}
	for id, secret := range cfg.Clients {
		e.clients[id] = secret
	}
	e.routes()
	return e
}

// Config returns the effective configuration (defaults filled in).
func (e *Emulator) Config() Config { return e.cfg }

// Handler serves the whole emulated API, login host and streaming host.
func (e *Emulator) Handler() http.Handler { return http.HandlerFunc(e.serveHTTP) }

// Serve serves on ln until ctx is done or Close is called. URL() then
// returns the base URL (http://host:port), to be used as GENESYS_API_URL.
func (e *Emulator) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errors.New("emulator closed")
	}
	e.url = "http://" + ln.Addr().String()
	e.servers = append(e.servers, srv)
	e.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			e.Close()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Start listens on 127.0.0.1:0 and serves in the background until Close.
func (e *Emulator) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.url = "http://" + ln.Addr().String()
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.Serve(context.Background(), ln)
	}()
	return e.URL(), nil
}

// URL is the base URL once serving (Serve or Start).
func (e *Emulator) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.url
}

// Close stops the servers, closes every websocket and stops timers.
func (e *Emulator) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.wg.Wait()
		return
	}
	e.closed = true
	servers := e.servers
	conns := make([]*wsConn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	for t := range e.timers {
		if t.Stop() {
			e.wg.Done() // its func will never run
		}
	}
	e.timers = map[*time.Timer]struct{}{}
	e.mu.Unlock()
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
		_ = s.Close()
	}
	for _, c := range conns {
		c.kill()
	}
	e.wg.Wait()
}

// afterFunc runs f after d unless the emulator closes first.
func (e *Emulator) afterFunc(d time.Duration, f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	var t *time.Timer
	e.wg.Add(1)
	t = time.AfterFunc(d, func() {
		defer e.wg.Done()
		e.mu.Lock()
		_, live := e.timers[t]
		delete(e.timers, t)
		e.mu.Unlock()
		if live {
			f()
		}
	})
	e.timers[t] = struct{}{}
}

func (e *Emulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// The login host answers browsers' cross-origin token exchanges (PKCE
	// clients run in the page), preflight included.
	if o := r.Header.Get("Origin"); o != "" && r.URL.Path == "/oauth/token" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Vary", "Origin")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if d := e.apiDelay(r.URL.Path); d > 0 {
		// The Internet between the daemon and Genesys: the answer, refusal
		// or fault, comes d later.
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if e.fail(w, r) {
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: 200, e: e, r: r}
	e.mux.ServeHTTP(rec, r)
	rec.done()
}

// statusRecorder records the request when the status is written, before
// the client can see the answer, so that counts are exact once a client
// has acted on a response.
type statusRecorder struct {
	http.ResponseWriter
	status   int
	e        *Emulator
	r        *http.Request
	recorded bool
}

func (s *statusRecorder) done() {
	if !s.recorded {
		s.recorded = true
		s.e.record(s.r, s.status)
	}
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.done()
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.done()
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the websocket upgrader reach the
// hijacker.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	s.status = http.StatusSwitchingProtocols
	s.done()
	return h.Hijack()
}

func (e *Emulator) record(r *http.Request, status int) {
	e.mu.Lock()
	e.requests = append(e.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: status, Time: time.Now()})
	e.mu.Unlock()
}

// Requests returns the requests answered so far (including injected faults).
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.requests...)
}

// CountRequests counts answered requests with method and a path starting
// with prefix ("" matches any).
func (e *Emulator) CountRequests(method, prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.requests {
		if (method == "" || r.Method == method) && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// FailNext makes the next n requests whose method matches (""=any) and
// whose path starts with prefix fail with status. For 429 and 503 a
// Retry-After header (whole seconds, rounded up) is sent when retryAfter > 0.
// The body is a Genesys ErrorBody, or on /oauth/token an OAuth error (4xx)
// or a gateway's HTML page (5xx). A 3xx status is a redirect to the same
// URL (a gateway in front of the API that moved it), with no body.
func (e *Emulator) FailNext(method, prefix string, status int, retryAfter time.Duration, n int) {
	if n <= 0 {
		n = 1
	}
	e.mu.Lock()
	e.faults = append(e.faults, &fault{method: method, prefix: prefix, status: status, retryAfter: retryAfter, n: n})
	e.mu.Unlock()
}

// GarbleConversation makes GET /api/v2/conversations/{id} of one
// conversation answer 200 with its body cut in half (as a proxy that
// truncates a response), which no JSON reader accepts, until called again
// with on=false.
func (e *Emulator) GarbleConversation(id string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.garbled[id] = true
	} else {
		delete(e.garbled, id)
	}
}

// SetLoginDelay makes /oauth/token take d before it answers, as a login
// over the Internet takes a few hundred milliseconds.
func (e *Emulator) SetLoginDelay(d time.Duration) {
	e.mu.Lock()
	e.loginDelay = d
	e.mu.Unlock()
}

// SetAPIDelay makes every request whose path starts with prefix (e.g.
// "/api/v2/users/me") take d before it is answered, as a call over the
// Internet takes tens to hundreds of milliseconds; 0 removes it.
func (e *Emulator) SetAPIDelay(prefix string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiDelays == nil {
		e.apiDelays = map[string]time.Duration{}
	}
	if d <= 0 {
		delete(e.apiDelays, prefix)
		return
	}
	e.apiDelays[prefix] = d
}

func (e *Emulator) apiDelay(path string) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	for p, d := range e.apiDelays {
		if strings.HasPrefix(path, p) {
			return d
		}
	}
	return 0
}

// SetLoginDown makes /oauth/token answer 503 (true) or work again (false).
func (e *Emulator) SetLoginDown(down bool) {
	e.mu.Lock()
	e.loginDown = down
	e.mu.Unlock()
}

func (e *Emulator) fail(w http.ResponseWriter, r *http.Request) bool {
	e.mu.Lock()
	var f *fault
	for i, x := range e.faults {
		if (x.method == "" || x.method == r.Method) && strings.HasPrefix(r.URL.Path, x.prefix) {
			f = x
			x.n--
			if x.n <= 0 {
				e.faults = append(e.faults[:i], e.faults[i+1:]...)
			}
			break
		}
	}
	if f == nil && e.loginDown && r.URL.Path == "/oauth/token" {
		f = &fault{status: http.StatusServiceUnavailable}
	}
	e.mu.Unlock()
	if f == nil {
		return false
	}
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
	}
	switch {
	case f.status >= 300 && f.status < 400:
		w.Header().Set("Location", r.URL.RequestURI())
		w.WriteHeader(f.status)
	case r.URL.Path == "/oauth/token" && f.status >= 500:
		// An outage of the login host is answered by the gateway in front
		// of it, with an HTML page, not an OAuth error.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.status)
		_, _ = fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>\n", f.status, http.StatusText(f.status), f.status, http.StatusText(f.status))
	case r.URL.Path == "/oauth/token":
		writeJSON(w, f.status, map[string]string{"error": "temporarily_unavailable", "description": "injected fault", "error_description": "injected fault"})
	default:
		code := "internal.server.error"
		switch f.status {
		case http.StatusTooManyRequests:
			code = "too.many.requests" // the code of a 429 without Retry-After
			if f.retryAfter > 0 {
				code = "too.many.requests.retry.after"
			}
		case http.StatusUnauthorized:
			code = "bad.credentials"
		case http.StatusNotFound:
			code = "not.found"
		case http.StatusServiceUnavailable:
			code = "service.unavailable"
		}
		writeError(w, f.status, code, "injected fault", nil)
	}
	e.record(r, f.status)
	return true
}

// ErrorBody is Genesys' error shape.
type ErrorBody struct {
	Message           string            `json:"message"`
	Code              string            `json:"code"`
	Status            int               `json:"status"`
	MessageWithParams string            `json:"messageWithParams,omitempty"`
	MessageParams     map[string]string `json:"messageParams,omitempty"`
	ContextID         string            `json:"contextId"`
	Details           []any             `json:"details"`
	Errors            []any             `json:"errors"`
}

func writeError(w http.ResponseWriter, status int, code, msg string, params map[string]string) {
	writeJSON(w, status, ErrorBody{Message: msg, Code: code, Status: status, MessageParams: params, ContextID: newID(), Details: []any{}, Errors: []any{}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ININ-Correlation-Id", newID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// newID returns a random UUID (version 4), as Genesys ids are.
func newID() string { return uuid.NewString() }

func randToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ---- tokens ----

func (e *Emulator) mint(clientID, userID string, life time.Duration) *token {
	t := &token{value: randToken(), clientID: clientID, userID: userID, expires: time.Now().Add(life)}
	e.mu.Lock()
	e.tokens[t.value] = t
	e.mu.Unlock()
	if e.cfg.CloseOnTokenExpiry {
		// "A channel also dies when its token expires (C-HB)" (reference
		// genesys.md §3 Limits; §9 WebSocket 6 "closing the channel when
		// its token expires"): at the token's own expiry, not only at
		// ExpireTokens.
		e.afterFunc(life+time.Millisecond, e.closeExpiredTokenChannels)
	}
	return t
}

// AgentToken mints an access token for user id (as a browser login would),
// valid for UserTokenLifetime. The user need not be in Config.Agents.
func (e *Emulator) AgentToken(userID string) string {
	return e.mint(e.cfg.BrowserClientID, userID, e.cfg.UserTokenLifetime).value
}

// ClientToken mints a client-credentials token, as POST /oauth/token would.
func (e *Emulator) ClientToken() string {
	return e.mint(e.cfg.ClientID, "", e.cfg.TokenLifetime).value
}

// AddClient adds a client-credentials OAuth client to the org (see
// Config.Clients).
func (e *Emulator) AddClient(id, secret string) {
	e.mu.Lock()
	e.clients[id] = secret
	e.mu.Unlock()
}

// clientSecret returns the secret of client-credentials client id.
func (e *Emulator) clientSecret(id string) (string, bool) {
	if id == e.cfg.ClientID {
		return e.cfg.ClientSecret, true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.clients[id]
	return s, ok
}

// ExpireTokens expires every token issued so far: the next API call with
// one gets 401. Channels follow their token when CloseOnTokenExpiry is set.
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	past := time.Now().Add(-time.Second)
	for _, t := range e.tokens {
		t.expires = past
	}
	e.mu.Unlock()
	if e.cfg.CloseOnTokenExpiry {
		e.closeExpiredTokenChannels()
	}
}

// TokensIssued counts tokens issued to the client-credentials client.
func (e *Emulator) TokensIssued() int {
	return e.CountRequests(http.MethodPost, "/oauth/token")
}

func (e *Emulator) bearer(r *http.Request) *token {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tokens[strings.TrimSpace(h[7:])]
	if t == nil || time.Now().After(t.expires) {
		return nil
	}
	return t
}

// authed wraps an API handler with bearer-token checking.
func (e *Emulator) authed(h func(w http.ResponseWriter, r *http.Request, t *token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := e.bearer(r)
		if t == nil {
			writeError(w, http.StatusUnauthorized, "bad.credentials", "Invalid login credentials.", nil)
			return
		}
		if wait, limited := e.rateLimited(t); limited {
			if e.cfg.RateLimitNoRetryAfter {
				writeError(w, http.StatusTooManyRequests, "too.many.requests", fmt.Sprintf("Rate limit exceeded the maximum [%d] requests within [%d] seconds", e.cfg.RateLimit, int(e.cfg.RateWindow/time.Second)), nil)
				return
			}
			secs := int((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "too.many.requests.retry.after", fmt.Sprintf("Rate limit exceeded the maximum. Retry the request in [%d] seconds", secs), map[string]string{"retryAfter": strconv.Itoa(secs)})
			return
		}
		h(w, r, t)
	}
}

// rateLimited counts a request of t's client and user against RateLimit,
// or reports how long until the window has room again.
func (e *Emulator) rateLimited(t *token) (time.Duration, bool) {
	if e.cfg.RateLimit <= 0 {
		return 0, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := t.clientID + "/" + t.userID
	now := time.Now()
	log := e.rateLog[key]
	i := 0
	for i < len(log) && now.Sub(log[i]) >= e.cfg.RateWindow {
		i++
	}
	log = log[i:]
	if len(log) >= e.cfg.RateLimit {
		e.rateLog[key] = log
		return log[0].Add(e.cfg.RateWindow).Sub(now), true
	}
	e.rateLog[key] = append(log, now)
	return 0, false
}

func (e *Emulator) routes() {
	m := e.mux
	m.HandleFunc("POST /oauth/token", e.handleToken)
	m.HandleFunc("GET /oauth/authorize", e.handleAuthorize)
	m.HandleFunc("POST /oauth/authorize", e.handleAuthorize)
	m.HandleFunc("GET /api/v2/users/me", e.authed(e.handleUsersMe))
	m.HandleFunc("GET /api/v2/tokens/me", e.authed(e.handleTokensMe))
	m.HandleFunc("HEAD /api/v2/tokens/me", e.authed(func(w http.ResponseWriter, r *http.Request, t *token) { w.WriteHeader(http.StatusOK) }))
	m.HandleFunc("POST /api/v2/notifications/channels", e.authed(e.handleCreateChannel))
	m.HandleFunc("GET /api/v2/notifications/channels", e.authed(e.handleListChannels))
	m.HandleFunc("HEAD /api/v2/notifications/channels/{id}", e.authed(e.handleHeadChannel))
	m.HandleFunc("GET /api/v2/notifications/channels/{id}/subscriptions", e.authed(e.handleGetSubs))
	m.HandleFunc("PUT /api/v2/notifications/channels/{id}/subscriptions", e.authed(e.handleSetSubs))
	m.HandleFunc("POST /api/v2/notifications/channels/{id}/subscriptions", e.authed(e.handleSetSubs))
	m.HandleFunc("DELETE /api/v2/notifications/channels/{id}/subscriptions", e.authed(e.handleDeleteSubs))
	m.HandleFunc("GET /api/v2/notifications/availabletopics", e.authed(e.handleAvailableTopics))
	m.HandleFunc("GET /api/v2/routing/queues/{id}/members", e.authed(e.handleQueueMembers))
	m.HandleFunc("POST /api/v2/analytics/conversations/activity/query", e.authed(e.handleActivityQuery))
	m.HandleFunc("GET /api/v2/conversations/{id}", e.authed(e.handleGetConversation))
	m.HandleFunc("GET /channels/{id}", e.handleSocket)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not.found", fmt.Sprintf("The requested operation %s %s is not supported by the emulator.", r.Method, r.URL.Path), nil)
	})
}

// Package notifications is screenpop's Genesys Cloud input, and the only
// package that imports the Genesys SDK (platformclientv2).
//
// Client logs in with OAuth client credentials (refreshing the token itself
// before expiry and on 401), discovers the watched agents (a static list
// and the members of routing queues), subscribes each agent's
// v2.users.{id}.conversations topic on notification channels (at most
// TopicsPerChannel topics per channel, one full-list PUT with
// ignoreErrors=true per change), reads the channel websockets and hands
// every conversation snapshot to the caller's bounded channel as a
// bridge.Snapshot whose Body is the raw eventBody bytes.
//
// Genesys keeps nothing for a disconnected channel, so after every gap
// (start-up, reconnect, new channel) the client asks the analytics
// activity query which conversations the watched agents are in and
// fetches each one it has not seen since the gap began with GET
// /api/v2/conversations/{id}, adapted to the same snapshot shape
// (Reconciled=true); and, last, each conversation whose agent leg it last
// saw open before the gap that the query no longer lists (the leg ended
// during the gap: its snapshot carries the end). A v2.system.socket_closing or an approaching channel
// expiry is handled as a handover: a new channel is created, its socket
// connected and its topics subscribed before the old socket is dropped.
//
// Why v2.users.{id}.conversations: it is the one topic that covers every
// media type (calls, callbacks, chats, messages, emails) with full
// conversation snapshots (all participants, attributes, transfers), so one
// topic per agent suffices and 1,000 agents fit one channel.
//
// What it does not do: it does not interpret snapshots (bridge's normalizer
// does) nor deduplicate them (reconnects, handovers and reconciliation can
// repeat a snapshot; snapshots are idempotent).
//
// Concurrency: New, then one Run. Ready, Status and the metrics are safe
// to call from any goroutine while Run runs. Snapshots are sent from
// several goroutines (one reader per channel plus the reconciler); the out
// channel is never closed by the client.
package notifications

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/egress"
	"github.com/screenpop/screenpop/internal/loglimit"
	"github.com/screenpop/screenpop/internal/statuslabel"
)

// Config configures a Client. Zero fields mean defaults.
type Config struct {
	Region       string // GENESYS_REGION, e.g. mypurecloud.ie
	APIURL       string // GENESYS_API_URL: overrides the region's API (and login) host
	ClientID     string // GENESYS_CLIENT_ID
	ClientSecret string // GENESYS_CLIENT_SECRET

	Agents       []string      // user ids to watch
	AgentsChange bool          // SetAgents may replace Agents at run time (an agents file that is watched)
	Queues       []string      // queue ids whose members are watched
	QueueRefresh time.Duration // how often queue membership is re-read; default 5m
	// RejectedRetry is how often a channel puts its topic list again
	// while Genesys rejects some of its topics (a role without the
	// permission in an agent's division), so that the agents are watched
	// again once the permission is back; default 5m.
	RejectedRetry time.Duration

	HeartbeatTimeout   time.Duration // a socket silent this long is dead; default 75s
	PingInterval       time.Duration // {"message":"ping"} period; default 30s
	HandoverGrace      time.Duration // hand a channel over this long before it expires; default 1h
	TokenRefreshMargin time.Duration // refresh this long before the token expires; default 5m (at most half the lifetime)
	BackoffMin         time.Duration // default 500ms
	BackoffMax         time.Duration // default 60s
	HTTPTimeout        time.Duration // per API request; default 15s
	PutDebounce        time.Duration // coalesce subscription changes; default 250ms

	TopicsPerChannel int // default 1000 (the service limit)
	// MaxChannels caps the channels used for topics; a handover needs a
	// second channel per shard for a moment and Genesys allows 20 per
	// client, so the default is 10 (10,000 agents).
	MaxChannels int
	// ReconcileRate limits GET /api/v2/conversations/{id} (per second);
	// default 5, burst 10.
	ReconcileRate  float64
	ReconcileBurst int
	// APIRate limits all API requests together (per second): Genesys
	// allows a client-credentials token 300 a minute. Default 4 with
	// burst APIBurst 60: at most 300 in any minute.
	APIRate  float64
	APIBurst int
	// KeepChannelOnTokenRefresh keeps channels across token refreshes.
	// By default a refreshed token hands every channel over to a channel
	// created with the new token, because a channel is said to die with
	// the token that created it (UNVERIFIED, docs/assumptions.md).
	KeepChannelOnTokenRefresh bool

	Registerer prometheus.Registerer

	// ringingSweep is how often, without queues, the calls seen ringing
	// whose end was lost are forgotten; 1h (a test sets it shorter).
	ringingSweep time.Duration
}

// AgentCapacity is the most agents one client watches: MaxChannels
// channels of TopicsPerChannel topics (10 × 1,000 by default).
func (c Config) AgentCapacity() int {
	c.defaults()
	return c.MaxChannels * c.TopicsPerChannel
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.QueueRefresh, 5*time.Minute)
	def(&c.RejectedRetry, 5*time.Minute)
	def(&c.HeartbeatTimeout, 75*time.Second)
	def(&c.PingInterval, 30*time.Second)
	def(&c.HandoverGrace, time.Hour)
	def(&c.TokenRefreshMargin, 5*time.Minute)
	def(&c.BackoffMin, 500*time.Millisecond)
	def(&c.BackoffMax, 60*time.Second)
	def(&c.HTTPTimeout, 15*time.Second)
	def(&c.PutDebounce, 250*time.Millisecond)
	def(&c.ringingSweep, time.Hour)
	if c.TopicsPerChannel <= 0 || c.TopicsPerChannel > 1000 {
		c.TopicsPerChannel = 1000
	}
	if c.MaxChannels <= 0 || c.MaxChannels > 20 {
		c.MaxChannels = 10
	}
	if c.ReconcileRate <= 0 {
		c.ReconcileRate = 5
	}
	if c.ReconcileBurst <= 0 {
		c.ReconcileBurst = 10
	}
	if c.APIRate <= 0 {
		c.APIRate = 4
	}
	if c.APIBurst <= 0 {
		c.APIBurst = 60
	}
}

// Client is the Genesys Cloud notifications input.
type Client struct {
	cfg   Config
	log   zerolog.Logger
	out   chan<- bridge.Snapshot
	hosts Hosts
	m     *metrics

	doer     *sdkHTTP
	api      *platformclientv2.Configuration // AccessToken stays empty: doer adds the bearer
	loginCfg *platformclientv2.Configuration // used by the auth loop only
	notif    *platformclientv2.NotificationsApi
	getLimit *rate.Limiter
	apiLimit *rate.Limiter          // every API request: the token's budget
	org      atomic.Pointer[string] // the organization of the client's token, learned at login

	tok       atomic.Pointer[tokenState]
	tokMu     sync.Mutex
	tokWait   chan struct{} // closed and replaced when a new token is stored
	refreshCh chan string   // ask the auth loop for a new token now: the token refused

	mu           sync.Mutex
	shards       []*shard
	agentShard   map[string]*shard
	static       map[string]bool
	queueAgents  map[string]map[string]bool // queue -> members
	queuesDone   bool
	queueMissing map[string]bool // queues answered 404 (logged once)
	// lingering are agents no longer wanted (they left their queues) kept
	// watched while a call rings for them: its answer is still to come.
	lingering   map[string]bool
	applyCh     chan struct{} // a lingering agent's call stopped ringing, or SetAgents: apply again
	ringMu      sync.Mutex
	ringing     map[string]map[string]*time.Time // agent -> conversation ringing for them -> when last seen so (with queues or AgentsChange only); a pointer, so a snapshot updates it without a map write (see noteRinging)
	rejected    map[string]rejection             // topic -> rejection
	unwatched   int                              // agents wanted that no channel has room for
	evictedLog  time.Time                        // when an eviction was last logged (once a minute)
	evictedHeld int                              // evictions not logged since
	loginErr    string
	badCreds    bool
	seen        *seenSet // (conversation, agent) -> last snapshot; has its own lock
	reconciled  int
	lastGap     time.Time
	pendingGaps map[*shard]time.Time // shards to reconcile -> when their socket came back
	// agents to reconcile -> when their topic was put on a live channel:
	// a shard's socket brings no gap for the agents that join it.
	pendingAgents map[string]time.Time
	backlog       []reconcileItem      // left unfetched by the last pass; the reconciler's own
	givenUp       map[string]time.Time // conversations whose fetch failed fetchTries times -> when; the reconciler's own
	convOutage    bool                 // the conversations API failing since the last fetch that succeeded; the reconciler's own
	// open is, per agent, the conversations whose leg for them was last
	// seen open (ringing, dialing, connected, held: not ended) -> when, so
	// that a leg that ends during a gap, which no activity query lists any
	// more, is fetched for its end. Under ringMu; conversation ids, not the
	// seen set's hashes: reconciliation fetches them.
	open map[string]map[string]*time.Time

	gapCh chan struct{}
	wg    sync.WaitGroup
}

type tokenState struct {
	value   string
	expires time.Time
	gen     int
}

type rejection struct {
	Topic  string `json:"topic"`
	UserID string `json:"userId"`
	Reason string `json:"reason"`
}

// New validates cfg and returns a client that will send snapshots to out.
func New(cfg Config, log zerolog.Logger, out chan<- bridge.Snapshot) (*Client, error) {
	cfg.defaults()
	hosts, err := RegionHosts(cfg.Region, cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET are required (a client-credentials OAuth client)")
	}
	if out == nil {
		return nil, errors.New("notifications: a snapshot channel is required")
	}
	for _, a := range cfg.Agents {
		if !validID(a) {
			return nil, fmt.Errorf("GENESYS_AGENTS: %q is not a Genesys user id", a)
		}
	}
	for _, q := range cfg.Queues {
		if !validID(q) {
			return nil, fmt.Errorf("GENESYS_QUEUES: %q is not a Genesys queue id", q)
		}
	}
	c := &Client{
		cfg: cfg, log: log.With().Str("component", "notifications").Logger(), out: out, hosts: hosts,
		m:            newMetrics(cfg.Registerer),
		tokWait:      make(chan struct{}),
		refreshCh:    make(chan string, 1),
		agentShard:   map[string]*shard{},
		static:       map[string]bool{},
		queueAgents:  map[string]map[string]bool{},
		queueMissing: map[string]bool{},
		lingering:    map[string]bool{},
		ringing:      map[string]map[string]*time.Time{},
		open:         map[string]map[string]*time.Time{},
		applyCh:      make(chan struct{}, 1),
		rejected:     map[string]rejection{},
		seen:         newSeenSet(seenHorizon, time.Now()),
		gapCh:        make(chan struct{}, 1),
		getLimit:     rate.NewLimiter(rate.Limit(cfg.ReconcileRate), cfg.ReconcileBurst),
		apiLimit:     rate.NewLimiter(rate.Limit(cfg.APIRate), cfg.APIBurst),
	}
	c.doer = &sdkHTTP{hc: &http.Client{Timeout: cfg.HTTPTimeout, CheckRedirect: noRedirects, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, OnProxyConnectResponse: egress.OnProxyConnectResponse,
		MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: cfg.HTTPTimeout,
		HTTP2: egress.HTTP2(), // a connection gone silent is replaced within 10 s
	}}, token: c.token}
	if c.api, err = newSDKConfig(hosts.API, c.doer); err != nil {
		return nil, err
	}
	if c.loginCfg, err = newSDKConfig(hosts.API, c.doer); err != nil {
		return nil, err
	}
	c.notif = platformclientv2.NewNotificationsApiWithConfig(c.api)
	for _, a := range cfg.Agents {
		c.static[a] = true
	}
	if err := c.registerMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return c, nil
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func validID(s string) bool { return idRE.MatchString(s) }

// Run logs in, subscribes and reads until ctx is done. It returns nil on
// cancellation; login and network failures are retried, not returned.
func (c *Client) Run(ctx context.Context) error {
	c.doer.setContext(ctx)
	defer c.doer.hc.CloseIdleConnections()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.authLoop(ctx) })
	g.Go(func() error { return c.agentLoop(ctx) })
	g.Go(func() error { return c.reconcileLoop(ctx) })
	err := g.Wait()
	c.wg.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ---- tokens ----

func (c *Client) token() string {
	if t := c.tok.Load(); t != nil {
		return t.value
	}
	return ""
}

// awaitToken returns a usable token, waiting for the auth loop.
func (c *Client) awaitToken(ctx context.Context) (*tokenState, error) {
	for {
		c.tokMu.Lock()
		t := c.tok.Load()
		w := c.tokWait
		c.tokMu.Unlock()
		if t != nil && time.Now().Before(t.expires) {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w:
		}
	}
}

// invalidate reports that value got a 401: the auth loop fetches a new
// token at once (unless value is already replaced). Every request in
// flight with a refused token is refused: their reports name the token,
// so that those arriving while the new one is fetched do not fetch
// another (and hand every channel over again).
func (c *Client) invalidate(value string) {
	if t := c.tok.Load(); t == nil || t.value != value {
		return
	}
	select {
	case c.refreshCh <- value:
	default:
	}
}

// invalidateGen invalidates the current token if it is of generation gen.
func (c *Client) invalidateGen(gen int) {
	if t := c.tok.Load(); t != nil && t.gen == gen {
		c.invalidate(t.value)
	}
}

var authStatusRE = regexp.MustCompile(`Auth Error: (\d+) - (\S*)`)

// outageRetryMax caps the wait before retrying what failed because Genesys
// Cloud, or the path to it, is down (a network error, a 5xx) when a retry
// costs one request: a login, the redial of a channel's socket. The wait
// is how long after Genesys is back that no call is heard (a call that
// rings meanwhile pops only at the reconciliation after the reconnect,
// past its pop deadline), and the doubling backoff made it up to
// BackoffMax (60 s) after an outage. Refusals (bad credentials, a 4xx,
// a Retry-After) keep the full backoff.
const outageRetryMax = time.Second

// loginOutage reports whether a login failed for want of an answer from
// Genesys (a network error, a 5xx), not a refusal.
func loginOutage(err error) bool {
	if pe := (*egress.ProxyError)(nil); errors.As(err, &pe) && pe.Status < 500 {
		return false // a forward proxy's refusal (403, 407)
	}
	m := authStatusRE.FindStringSubmatch(err.Error())
	return m == nil || strings.HasPrefix(m[1], "5")
}

// authLoop keeps a valid client-credentials token.
// loginLogEvery is how often a login failing over and over is logged.
var loginLogEvery = 30 * time.Second

func (c *Client) authLoop(ctx context.Context) error {
	backoff := c.cfg.BackoffMin
	failures := 0
	warn := loglimit.Every{Period: loginLogEvery} // in an outage attempts are a second apart
	gen := 0
	for {
		start := time.Now()
		err := sdkLogin(c.loginCfg, c.cfg.ClientID, c.cfg.ClientSecret)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failures++
			c.m.loginFailures.Inc()
			bad := false
			if m := authStatusRE.FindStringSubmatch(err.Error()); m != nil && (m[1] == "401" || m[2] == "invalid_client" || m[2] == "unauthorized_client") {
				bad = true
			}
			c.mu.Lock()
			first := !c.badCreds && bad
			if bad {
				c.badCreds = true
				c.loginErr = "genesys login rejected the client credentials: check GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET (a client-credentials OAuth client of this region)"
			} else {
				c.loginErr = "genesys login failed: " + loginErrorText(err)
			}
			c.mu.Unlock()
			wait := jitter(backoff)
			if !bad && loginOutage(err) {
				wait = jitter(min(backoff, outageRetryMax))
			}
			if ra := c.doer.takeLoginRetryAfter(); ra > wait {
				wait = ra // the token endpoint's own rate limit
			}
			// A refusal of the credentials is said as such each time
			// (at the first, then every loginLogEvery while it lasts),
			// never as the outage line: on-call reading the log an hour
			// on would be sent to the network.
			allow := warn.Allow(time.Now())
			switch {
			case bad && (first || allow):
				c.log.Error().Int("attempt", failures).Dur("backoff", wait).Msg("genesys login rejected the client credentials: check GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET")
			case !bad && allow:
				c.log.Warn().Err(errors.New(loginErrorText(err))).Int("attempt", failures).Dur("backoff", wait).Msg("genesys login failed, retrying")
			}
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			backoff = min(backoff*2, c.cfg.BackoffMax)
			continue
		}
		life := time.Duration(c.loginCfg.AccessTokenExpiresIn) * time.Second
		if life <= 0 {
			life = time.Hour
		}
		gen++
		t := &tokenState{value: c.loginCfg.AccessToken, expires: start.Add(life), gen: gen}
		c.tokMu.Lock()
		c.tok.Store(t)
		close(c.tokWait)
		c.tokWait = make(chan struct{})
		c.tokMu.Unlock()
		select { // a refusal of the replaced token, reported while logging in
		case <-c.refreshCh:
		default:
		}
		c.m.tokenRefreshes.Inc()
		c.mu.Lock()
		recovered := c.loginErr != ""
		c.loginErr, c.badCreds = "", false
		c.mu.Unlock()
		if recovered {
			c.log.Info().Int("attempts", failures+1).Msg("genesys login recovered")
		} else {
			c.log.Debug().Dur("lifetime", life).Msg("genesys token obtained")
		}
		failures, backoff = 0, c.cfg.BackoffMin
		warn.Reset()
		// The organization is asked again after a refusal (429, 5xx, a
		// timeout) with backoff, not a token lifetime later: push lets in
		// tokens of any organization while it is unknown.
		var orgRetry *time.Timer
		var orgC <-chan time.Time
		orgBackoff := c.cfg.BackoffMin
		if c.OrgID() == "" {
			if err := c.learnOrg(ctx); err != nil && ctx.Err() == nil {
				orgRetry = time.NewTimer(retryWait(err, orgBackoff))
				orgC = orgRetry.C
			}
		}
		margin := min(c.cfg.TokenRefreshMargin, life/2)
		timer := time.NewTimer(time.Until(t.expires.Add(-margin)))
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				if orgRetry != nil {
					orgRetry.Stop()
				}
				return ctx.Err()
			case <-orgC:
				if err := c.learnOrg(ctx); err != nil && ctx.Err() == nil {
					orgBackoff = min(orgBackoff*2, c.cfg.BackoffMax)
					orgRetry.Reset(retryWait(err, orgBackoff))
				} else {
					orgC = nil
				}
			case <-timer.C:
				break wait
			case v := <-c.refreshCh:
				if v != t.value {
					continue // a refusal of a token replaced already
				}
				timer.Stop()
				c.log.Info().Msg("genesys token refused, logging in again")
				break wait
			}
		}
		if orgRetry != nil {
			orgRetry.Stop()
		}
	}
}

var authDescRE = regexp.MustCompile(`^Auth Error: (\d+) - (\S*) \((.*)\)$`)

// loginErrorText is the text of a failed login: for a refusal, its HTTP
// status, OAuth error code and description ("HTTP 503: a non-JSON
// answer (text/html) from the login host"), else the error itself.
func loginErrorText(err error) string {
	m := authDescRE.FindStringSubmatch(err.Error())
	if m == nil {
		return sanitize(err.Error())
	}
	s := "HTTP " + m[1]
	if m[2] != "" {
		s += " " + m[2]
	}
	if m[3] != "" {
		s += ": " + m[3]
	}
	return sanitize(s)
}

// sanitize keeps error text free of secrets (the SDK's messages hold none,
// but be sure: drop anything after "Basic ").
func sanitize(s string) string {
	if i := strings.Index(s, "Basic "); i >= 0 {
		return s[:i]
	}
	return s
}

// learnOrg reads the organization of the client's token (tokens/me), so
// that agent tokens of other organizations can be refused. The auth loop
// retries a failure. It runs on the auth loop: a 401 of its request
// reports the token refused and fails at once, for the auth loop to log
// in again (call would wait for that new token, which nobody else gets).
func (c *Client) learnOrg(ctx context.Context) error {
	var ti *platformclientv2.Tokeninfo
	tokens := platformclientv2.NewTokensApiWithConfig(c.api)
	err := c.call(context.WithValue(ctx, onAuthLoop{}, true), "tokens/me", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		ti, resp, err = tokens.GetTokensMe(true) // preserveIdleTTL
		return resp, err
	})
	if err == nil && (ti == nil || ti.Organization == nil || ti.Organization.Id == nil || *ti.Organization.Id == "") {
		err = errors.New("tokens/me: answer without an organization")
	}
	if err != nil {
		c.log.Debug().Err(err).Msg("genesys organization not learned; retrying")
		return err
	}
	org := *ti.Organization.Id
	c.org.Store(&org)
	c.log.Info().Str("org_id", org).Msg("genesys organization learned")
	return nil
}

// OrgID is the organization of the client's token, "" until the first
// login has read it.
func (c *Client) OrgID() string {
	if p := c.org.Load(); p != nil {
		return *p
	}
	return ""
}

// onAuthLoop marks the context of a call made by the auth loop itself.
type onAuthLoop struct{}

// call runs one SDK call with a token, refreshing once on 401 (except
// with Probe's token, which no auth loop refreshes, and on the auth loop,
// which would wait for itself: there the 401 only reports the refusal).
func (c *Client) call(ctx context.Context, op string, fn func() (*platformclientv2.APIResponse, error)) error {
	for attempt := 0; ; attempt++ {
		t, err := c.awaitToken(ctx)
		if err != nil {
			return err
		}
		// Queue pages, channels, PUTs, activity queries and fetches all
		// count against the token's 300 a minute: past it, every request
		// gets 429, the handover and the reconciliation too.
		if err := c.apiLimit.Wait(ctx); err != nil {
			return err
		}
		sdkMu.RLock()
		resp, err := fn()
		sdkMu.RUnlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = apiError(op, resp, err)
		code := "error"
		if resp != nil {
			code = statuslabel.Of(resp.StatusCode)
		}
		c.m.apiRequests.WithLabelValues(op, code).Inc()
		if status(err) == http.StatusUnauthorized && ctx.Value(onAuthLoop{}) != nil {
			c.invalidate(t.value)
			return err
		}
		if status(err) == http.StatusUnauthorized && attempt == 0 && t.gen != probeTokenGen {
			c.invalidate(t.value)
			wctx, cancel := context.WithTimeout(ctx, c.cfg.HTTPTimeout)
			for {
				nt, werr := c.awaitToken(wctx)
				if werr != nil || nt.gen != t.gen {
					break
				}
				// Still the refused token: wait for the auth loop's next one.
				c.tokMu.Lock()
				w := c.tokWait
				c.tokMu.Unlock()
				select {
				case <-wctx.Done():
				case <-w:
				}
				if wctx.Err() != nil {
					break
				}
			}
			cancel()
			continue
		}
		return err
	}
}

// ---- agents ----

// agentLoop reads queue membership (now and every QueueRefresh) and keeps
// the shards' topic lists in line with the watched agents. A queue whose
// members could not be read is read again at the error backoff (or after
// a 429's Retry-After), alone: the others wait for the next refresh.
func (c *Client) agentLoop(ctx context.Context) error {
	c.apply()
	if len(c.cfg.Queues) == 0 {
		c.mu.Lock()
		c.queuesDone = true
		c.mu.Unlock()
		for c.sleepApplying(ctx, c.cfg.ringingSweep) { // applying SetAgents' lists
			// Nothing else sweeps without queues: the calls whose end
			// was lost in a gap would pile up.
			c.sweepRinging(time.Now())
		}
		return ctx.Err()
	}
	backoff := c.cfg.BackoffMin
	// Time-based: in an outage at start the retries come a second apart.
	warn := loglimit.Every{Period: 30 * time.Second}
	var nextFull time.Time // when every queue is read again
	var retry []string     // queues left unread by the last pass
	// anyRead: a queue was read since the start. Until then a 5xx or no
	// answer is Genesys down; after, a queue still failing fails on its
	// own (a 5xx for it alone) and keeps the backoff, as a conversation's
	// fetch does in the reconciliation.
	anyRead := false
	for {
		queues, full := retry, !time.Now().Before(nextFull)
		if full {
			queues = c.cfg.Queues
		}
		left, read, err := c.refreshQueues(ctx, queues)
		anyRead = anyRead || read > 0
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if full {
			nextFull = time.Now().Add(jitter(c.cfg.QueueRefresh))
		}
		retry = left
		wait := time.Until(nextFull)
		if err != nil {
			wait = retryWait(err, backoff)
			if apiOutage(err) && !anyRead && !c.queuesRead() {
				// Genesys is down and a queue's members were never read:
				// they are not watched. Once it is back they must not
				// wait out a backoff grown during the outage, as the
				// login, the socket and the reconciliation do not.
				wait = retryWait(err, min(backoff, outageRetryMax))
			}
			if warn.Allow(time.Now()) {
				c.log.Warn().Err(err).Dur("backoff", wait).Msg("genesys queue members not read, retrying")
			}
			backoff = min(backoff*2, c.cfg.BackoffMax)
		} else {
			backoff = c.cfg.BackoffMin
			warn.Reset()
		}
		if !c.sleepApplying(ctx, wait) {
			return ctx.Err()
		}
	}
}

// SetAgents replaces the agents watched by id (Config.Agents, with
// Config.AgentsChange): the agents file was edited. Queue members stay as
// they are. New agents are subscribed (and their conversations in
// progress reconciled); agents no longer named by the list or a queue go
// once no call rings for them, as members who leave a queue do. A list
// with an id that is not a user id changes nothing.
func (c *Client) SetAgents(agents []string) error {
	static := make(map[string]bool, len(agents))
	for _, a := range agents {
		if !validID(a) {
			return fmt.Errorf("%q is not a Genesys user id", a)
		}
		static[a] = true
	}
	c.mu.Lock()
	c.static = static
	c.mu.Unlock()
	// The agent loop applies it: every apply runs there.
	select {
	case c.applyCh <- struct{}{}:
	default:
	}
	return nil
}

// sleepApplying sleeps for d, applying the agent list whenever an agent
// kept for a ringing call (lingering) may go, or SetAgents changed it. A
// lingering agent may go once their call has not been seen ringing for
// lingerMax, its end lost in a gap: that wakes it too, or without queues
// (nothing else applies the list) they would be kept for good.
func (c *Client) sleepApplying(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		wait, linger := time.Until(end), false
		if l, ok := c.lingerWait(time.Now()); ok && l < wait {
			wait, linger = l, true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			if !linger {
				return true
			}
			c.apply()
		case <-c.applyCh:
			t.Stop()
			c.apply()
		}
	}
}

// lingerWait is how long until a call ringing for a lingering agent was
// last seen so lingerMax ago; ok is false when no agent lingers.
func (c *Client) lingerWait(now time.Time) (wait time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ringMu.Lock() // after mu, as in apply
	defer c.ringMu.Unlock()
	for a := range c.lingering {
		for _, at := range c.ringing[a] {
			if w := at.Add(lingerMax).Sub(now); !ok || w < wait {
				wait, ok = w, true
			}
		}
	}
	return max(wait, 0), ok
}

// refreshQueues reads the members of queues and applies them. It returns
// the queues left unread (refused, or not reached after a 429) and the
// error to wait on: a 429's, for its Retry-After, else the first; read is
// how many queues were read.
func (c *Client) refreshQueues(ctx context.Context, queues []string) (left []string, read int, _ error) {
	var firstErr error
	for i, q := range queues {
		members, err := c.queueMembers(ctx, q)
		if status(err) == http.StatusNotFound {
			// Deleted (or never there): a queue without members, as it
			// is after a restart. Its members stop being watched unless
			// another queue or the agent list names them.
			c.mu.Lock()
			first := !c.queueMissing[q]
			c.queueMissing[q] = true
			c.mu.Unlock()
			if first {
				c.log.Warn().Str("queue_id", q).Err(err).Msg("genesys queue not found: its members are not watched; remove it from GENESYS_QUEUES if it was deleted")
			}
			members, err = map[string]bool{}, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, read, ctx.Err()
			}
			left = append(left, q)
			if status(err) == http.StatusTooManyRequests {
				// The client's token is throttled: every other queue
				// would be refused too, and each refusal counts. Go on
				// from this queue after the Retry-After.
				left = append(left, queues[i+1:]...)
				firstErr = err
				break
			}
			if apiOutage(err) {
				// Genesys is down: the other queues would fail too. Go on
				// from the next queue (this one last) at the retry, which
				// comes within outageRetryMax while no queue was read
				// (agentLoop): one request a retry.
				left = append(append(left[:len(left)-1], queues[i+1:]...), q)
				firstErr = err
				break
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		read++
		c.mu.Lock()
		c.queueAgents[q] = members
		if len(members) > 0 {
			delete(c.queueMissing, q)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	done := true
	for _, q := range c.cfg.Queues {
		if _, ok := c.queueAgents[q]; !ok {
			done = false
		}
	}
	c.mu.Unlock()
	// Done once the members are on the shards (Ready): not before apply.
	c.apply()
	if done {
		c.mu.Lock()
		c.queuesDone = true
		c.mu.Unlock()
	}
	return left, read, firstErr
}

// queuesRead reports whether every queue's members were read once.
func (c *Client) queuesRead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queuesDone
}

func (c *Client) queueMembers(ctx context.Context, queue string) (map[string]bool, error) {
	out := map[string]bool{}
	for page := 1; ; page++ {
		var (
			ids  []string
			more bool
		)
		err := c.call(ctx, "get queue members", func() (*platformclientv2.APIResponse, error) {
			var resp *platformclientv2.APIResponse
			var err error
			ids, more, resp, err = c.queuePage(queue, page)
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", queue, err)
		}
		c.applyIfAsked()
		added := 0
		for _, id := range ids {
			if !out[id] {
				out[id] = true
				added++
			}
		}
		if !more {
			break
		}
		// A page of members all read already, with a next page announced,
		// is a page repeated: a gateway or cache in front of the API that
		// drops the query string answers page 1 to every pageNumber, and
		// the queue would be read for ever, spending the OAuth client's
		// request budget, and never applied.
		if len(ids) > 0 && added == 0 {
			return nil, fmt.Errorf("queue %s: page %d repeats members of earlier pages (does a proxy in front of the Genesys API drop the query string?)", queue, page)
		}
		if page >= maxQueuePages {
			return nil, fmt.Errorf("queue %s: more than %d pages of members", queue, maxQueuePages)
		}
	}
	return out, nil
}

// applyIfAsked applies the agent list now if SetAgents changed it (or a
// lingering agent may go) while the agent loop reads queue pages: a
// refresh of big queues lasts minutes within the request budget (400 pages
// are 90 s), and an edit of the agents file must not wait for it.
func (c *Client) applyIfAsked() {
	select {
	case <-c.applyCh:
		c.apply()
	default:
	}
}

// maxQueuePages bounds the member pages read of one queue: 100,000
// members, ten times what one instance can watch.
const maxQueuePages = 1000

// queuePage reads one page (100) of a queue's members: their user ids and
// whether another page follows. It does not go through the SDK's
// GetRoutingQueueMembers: its joined parameter is a plain bool that is
// always sent, and joined=false is a filter (only the members who are NOT
// joined to the queue), so every call would miss the agents who take the
// queue's interactions. All members are wanted, joined or not.
func (c *Client) queuePage(queue string, page int) ([]string, bool, *platformclientv2.APIResponse, error) {
	resp, err := c.raw(http.MethodGet, "/api/v2/routing/queues/"+url.PathEscape(queue)+"/members?pageSize=100&pageNumber="+strconv.Itoa(page), nil)
	if err != nil || resp == nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, false, resp, err
	}
	ents := gjson.GetBytes(resp.RawBody, "entities")
	if !gjson.ValidBytes(resp.RawBody) || !ents.IsArray() {
		// A body cut short (framed as whole, so the read had no error)
		// still yields the members before the cut, and without the
		// nextUri after them it would pass for the last page.
		return nil, false, nil, fmt.Errorf("an answer of %d bytes that is not a whole page of members", len(resp.RawBody))
	}
	var ids []string
	n := 0
	ents.ForEach(func(_, m gjson.Result) bool {
		n++
		id := m.Get("user.id").Str
		if id == "" {
			id = m.Get("id").Str
		}
		if validID(id) {
			ids = append(ids, id)
		}
		return true
	})
	more := gjson.GetBytes(resp.RawBody, "nextUri").Str != "" && n > 0
	return ids, more, resp, err
}

// watchedLocked returns the desired agents, sorted; c.mu is held.
func (c *Client) watchedLocked() []string {
	set := map[string]bool{}
	for a := range c.static {
		set[a] = true
	}
	for _, m := range c.queueAgents {
		for a := range m {
			set[a] = true
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// maxNamedUnwatched bounds the agent ids the over-limit line names: enough
// for the on-call engineer to find an agent who asks why nothing pops, not
// thousands of ids in one line when a whole site is over the limit.
const maxNamedUnwatched = 100

// apply adds and removes agents on the shards incrementally: removed
// agents leave their shard, new ones fill the first shard with room. Each
// touched shard does one full-list PUT.
func (c *Client) apply() {
	c.mu.Lock()
	want := c.watchedLocked()
	wantSet := make(map[string]bool, len(want))
	for _, a := range want {
		wantSet[a] = true
	}
	touched := map[*shard]bool{}
	now := time.Now()
	c.sweepRinging(now)
	for a := range c.lingering {
		if wantSet[a] || c.agentShard[a] == nil {
			delete(c.lingering, a)
		}
	}
	for a, sh := range c.agentShard {
		if !wantSet[a] {
			if c.ringingFor(a, now) {
				// A call rings for them: its answer (the pop with
				// SCREENPOP_POP_ON=connected) is still to come.
				c.lingering[a] = true
				continue
			}
			delete(c.lingering, a)
			sh.remove(a)
			delete(c.agentShard, a)
			c.forgetOpenAgent(a)
			// A rejection is news about a watched agent only: kept, it
			// would stay in /status and the gauge for good.
			delete(c.rejected, agentTopic(a))
			touched[sh] = true
		}
	}
	c.m.rejected.Set(float64(len(c.rejected)))
	dropped := 0
	var droppedIDs []string // the first maxNamedUnwatched, for the log line
	var fresh []*shard
	for _, a := range want {
		if c.agentShard[a] != nil {
			continue
		}
		var target *shard
		for _, sh := range c.shards {
			if sh.size() < c.cfg.TopicsPerChannel {
				target = sh
				break
			}
		}
		if target == nil {
			if len(c.shards) >= c.cfg.MaxChannels {
				if dropped < maxNamedUnwatched {
					droppedIDs = append(droppedIDs, a)
				}
				dropped++
				continue
			}
			target = newShard(c, len(c.shards))
			c.shards = append(c.shards, target)
			fresh = append(fresh, target)
		}
		target.add(a)
		c.agentShard[a] = target
		touched[target] = true
	}
	c.m.agents.Set(float64(len(c.agentShard)))
	c.unwatched = dropped
	c.m.unwatched.Set(float64(dropped))
	c.mu.Unlock()
	// New shards start with their full list: no extra PUT for a partial one.
	for _, sh := range fresh {
		delete(touched, sh)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); sh.run(c.doer.context()) }()
	}
	if dropped > 0 {
		c.log.Error().Int("agents", dropped).Strs("agent_ids", droppedIDs).Int("max_channels", c.cfg.MaxChannels).Int("topics_per_channel", c.cfg.TopicsPerChannel).
			Msg("too many agents for the channel limit: some agents are not watched; give them to another screenpopd with its own OAuth client (one watches at most max_channels × topics_per_channel)")
	}
	for sh := range touched {
		sh.markDirty()
	}
}

// ---- output ----

func (c *Client) emit(ctx context.Context, s bridge.Snapshot) bool {
	select {
	case c.out <- s:
		return true
	default:
	}
	c.m.backpressure.Inc()
	select {
	case c.out <- s:
		return true
	case <-ctx.Done():
		return false
	}
}

// markSeen records a snapshot body of a conversation on agent's topic.
func (c *Client) markSeen(body, agent string, at time.Time) {
	conv := gjson.Get(body, "id").Str
	if conv == "" {
		return
	}
	// Only queue members, and the agents of a list that changes, leave:
	// the others need no ringing.
	leave := len(c.cfg.Queues) > 0 || c.cfg.AgentsChange
	connected, ringing, open := agentLegs(body, agent, leave)
	c.seen.mark(conv, agent, at, connected)
	c.noteOpen(conv, agent, at, open)
	if leave {
		c.noteRinging(conv, agent, at, ringing)
	}
}

// lingerMax is how long after a call was last seen ringing for an agent
// who left the watched queues the agent is still kept for it: longer than
// a call rings, so that an end lost in a gap does not keep them for good.
const lingerMax = 10 * time.Minute

// noteRinging records whether conv rings for agent, and lets a lingering
// agent go once nothing rings for them any more.
func (c *Client) noteRinging(conv, agent string, at time.Time, ringing bool) {
	c.ringMu.Lock()
	m := c.ringing[agent]
	if ringing {
		if p := m[conv]; p != nil {
			*p = at // no map write: it would store this frame's slice as the key
			c.ringMu.Unlock()
			return
		}
		if m == nil {
			m = map[string]*time.Time{}
			c.ringing[strings.Clone(agent)] = m
		}
		// conv is a slice of the frame (of the socket's read buffer, or of
		// a frame over maxKeptBuffer with a buffer of its own): kept as it
		// is, it would keep the whole frame, every participant's
		// attributes, for as long as the call rings.
		first := at
		m[strings.Clone(conv)] = &first
		c.ringMu.Unlock()
		return
	}
	if _, ok := m[conv]; !ok {
		c.ringMu.Unlock()
		return
	}
	delete(m, conv)
	empty := len(m) == 0
	if empty {
		delete(c.ringing, agent)
	}
	c.ringMu.Unlock()
	if !empty {
		return
	}
	c.mu.Lock()
	lingering := c.lingering[agent]
	c.mu.Unlock()
	if lingering {
		select {
		case c.applyCh <- struct{}{}:
		default:
		}
	}
}

// ringingFor reports whether a call was seen ringing for agent within
// lingerMax, forgetting older ones.
func (c *Client) ringingFor(agent string, now time.Time) bool {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	m := c.ringing[agent]
	for conv, at := range m {
		if now.Sub(*at) < lingerMax {
			return true
		}
		delete(m, conv)
	}
	delete(c.ringing, agent)
	return false
}

// sweepRinging forgets the calls seen ringing longer than lingerMax ago:
// their end was lost (a gap), or came after the agent's topic went. It
// also forgets the legs last seen open longer than seenHorizon ago (see
// noteOpen).
func (c *Client) sweepRinging(now time.Time) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	for a, m := range c.ringing {
		for conv, at := range m {
			if now.Sub(*at) >= lingerMax {
				delete(m, conv)
			}
		}
		if len(m) == 0 {
			delete(c.ringing, a)
		}
	}
	for a, m := range c.open {
		for conv, at := range m {
			if now.Sub(*at) >= seenHorizon {
				delete(m, conv)
			}
		}
		if len(m) == 0 {
			delete(c.open, a)
		}
	}
}

// noteOpen records whether agent's leg of conv was open (not ended) in a
// snapshot seen at at. A leg that ends while its agent's socket is down is
// not live after the gap, so the activity query no longer lists it:
// reconciliation fetches the legs remembered open instead, for their end.
// A leg is forgotten when a snapshot shows it ended, when its agent is no
// longer watched, and seenHorizon after it was last seen (a conversation
// stays silent no longer while the agent is in it). It runs on every
// frame: one small map per agent with a leg open, an agent's few calls,
// chats and emails.
func (c *Client) noteOpen(conv, agent string, at time.Time, open bool) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	m := c.open[agent]
	if !open {
		if _, ok := m[conv]; ok {
			delete(m, conv)
			if len(m) == 0 {
				delete(c.open, agent)
			}
		}
		return
	}
	if p := m[conv]; p != nil {
		*p = at // no map write: it would store this frame's slice as the key
		return
	}
	if m == nil {
		m = make(map[string]*time.Time, 1)
		c.open[strings.Clone(agent)] = m
	}
	// The id is a slice of the frame: kept as it is, it would keep the
	// whole frame.
	first := at // allocated here only: taking at's address would move it to the heap on every call
	m[strings.Clone(conv)] = &first
}

// forgetOpen forgets the legs of conv of users remembered open: its
// reconciliation learned that it is gone (404) or cannot be read (403).
func (c *Client) forgetOpen(conv string, users []string) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	for _, u := range users {
		if m := c.open[u]; m != nil {
			delete(m, conv)
			if len(m) == 0 {
				delete(c.open, u)
			}
		}
	}
}

// forgetOpenAgent forgets the legs of an agent no longer watched: no
// snapshot of theirs will end them, and no gap reconciles them.
func (c *Client) forgetOpenAgent(agent string) {
	c.ringMu.Lock()
	delete(c.open, agent)
	c.ringMu.Unlock()
}

// agentLegs reports whether agent has a connected leg in the conversation
// snapshot body, whether it has an open one (any communication of the
// agent's not disconnected or terminated: ringing, dialing, connected,
// held) and, with ring, whether it has one not answered yet (alerting, or
// the agent's own outbound call dialing): one pass. A supervisor's
// participant that monitors, coaches or barges in on another one carries
// the supervisor's user id but is no leg of theirs (the normalizer makes no
// event of it): counted as connected, it would keep the reconciliation
// from fetching a leg the supervisor is then given in the same
// conversation (a transfer to them) and answers during a gap. Nor is a
// voicemail participant (purpose voicemail) a leg, whatever user id it
// carries.
func agentLegs(body, agent string, ring bool) (connected, ringing, open bool) {
	done := func() bool { return connected && (ringing || !ring) }
	gjson.Get(body, "participants").ForEach(func(_, p gjson.Result) bool {
		if p.Get("userId").Str != agent {
			return true
		}
		if p.Get("monitoredParticipantId").Str != "" || p.Get("coachedParticipantId").Str != "" || p.Get("bargedParticipantId").Str != "" ||
			strings.EqualFold(p.Get("purpose").Str, "voicemail") {
			return true // no leg, as the normalizer has it (docs/events.md)
		}
		p.ForEach(func(_, media gjson.Result) bool {
			if media.IsArray() {
				media.ForEach(func(_, m gjson.Result) bool {
					switch m.Get("state").Str {
					case "connected":
						connected, open = true, true
					case "alerting", "offering", "dialing", "contacting":
						ringing = ringing || ring
						open = true
					case "disconnected", "terminated", "":
					default:
						open = true // held, scheduled (a callback), converting...
					}
					return !done()
				})
			}
			return !done()
		})
		return !done()
	})
	return connected, ringing, open
}

// gap asks for a reconciliation of sh's agents: sh's socket (re)connected
// now, so snapshots seen from now on reflect the state after the gap.
func (c *Client) gap(sh *shard) {
	c.m.gaps.Inc()
	now := time.Now()
	c.mu.Lock()
	c.lastGap = now
	if c.pendingGaps == nil {
		c.pendingGaps = map[*shard]time.Time{}
	}
	c.pendingGaps[sh] = now
	c.mu.Unlock()
	select {
	case c.gapCh <- struct{}{}:
	default:
	}
}

// gapAgents asks for a reconciliation of agents newly subscribed on a
// live channel at since: Genesys sends nothing about a conversation they
// are in until it changes, and the call ringing for an agent who just
// joined a queue must pop now, not at the answer.
func (c *Client) gapAgents(agents []string, since time.Time) {
	c.mu.Lock()
	if c.pendingAgents == nil {
		c.pendingAgents = map[string]time.Time{}
	}
	for _, a := range agents {
		if at, ok := c.pendingAgents[a]; !ok || since.After(at) {
			c.pendingAgents[a] = since
		}
	}
	c.mu.Unlock()
	select {
	case c.gapCh <- struct{}{}:
	default:
	}
}

// ---- helpers ----

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryWait is how long to wait before retrying after err: the jittered
// backoff, or the server's Retry-After when that is longer (an API call's,
// or a socket's upgrade's).
func retryWait(err error, backoff time.Duration) time.Duration {
	wait := jitter(backoff)
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > wait {
		wait = ae.RetryAfter
	}
	var de *dialError
	if errors.As(err, &de) && de.retryAfter > wait {
		wait = de.retryAfter
	}
	return wait
}

// jitter spreads d over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)))
}

// ---- readiness and status ----

// Ready reports whether the client is logged in, has read the queues and
// has every channel that holds topics subscribed and connected.
func (c *Client) Ready() bool {
	if t := c.tok.Load(); t == nil || time.Now().After(t.expires) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.queuesDone {
		return false
	}
	for _, sh := range c.shards {
		if sh.size() > 0 && !sh.live() {
			return false
		}
	}
	return true
}

// Status is the /status snapshot of the client.
type Status struct {
	Ready        bool   `json:"ready"`
	LoggedIn     bool   `json:"loggedIn"`
	LoginError   string `json:"loginError,omitempty"`
	TokenExpires string `json:"tokenExpires,omitempty"`
	Agents       int    `json:"agents"`
	// UnwatchedAgents counts the agents to watch that no channel has
	// room for (past MaxChannels × TopicsPerChannel): they get no pops.
	UnwatchedAgents int             `json:"unwatchedAgents"`
	Channels        []ChannelStatus `json:"channels"`
	// RejectedTopics lists the first maxStatusRejections rejected topics
	// in topic order, and RejectedTopicsTotal counts them all: a role
	// missing the permission in a large division refuses thousands, and
	// a list of each would make /status megabytes. The log has a line per
	// refused agent.
	RejectedTopics      []rejection `json:"rejectedTopics,omitempty"`
	RejectedTopicsTotal int         `json:"rejectedTopicsTotal"`
	Reconciled          int         `json:"reconciledConversations"`
	LastGap             string      `json:"lastGap,omitempty"`
}

// ChannelStatus is one channel slot in Status.
type ChannelStatus struct {
	ID             string `json:"id,omitempty"`
	Topics         int    `json:"topics"`
	Subscribed     int    `json:"subscribed"`
	Connected      bool   `json:"connected"`
	HeartbeatAgeMs int64  `json:"heartbeatAgeMs"`
	Expires        string `json:"expires,omitempty"`
	Reconnects     int    `json:"reconnects"`
	LastError      string `json:"lastError,omitempty"`
}

// Status returns the client's state (no PII, no secrets).
func (c *Client) Status() any { return c.status() }

func (c *Client) status() Status {
	s := Status{Ready: c.Ready()}
	if t := c.tok.Load(); t != nil && time.Now().Before(t.expires) {
		s.LoggedIn = true
		s.TokenExpires = t.expires.UTC().Format(time.RFC3339)
	}
	c.mu.Lock()
	s.LoginError = c.loginErr
	s.Agents = len(c.agentShard)
	s.UnwatchedAgents = c.unwatched
	shards := append([]*shard(nil), c.shards...)
	s.RejectedTopicsTotal = len(c.rejected)
	s.RejectedTopics = firstRejections(c.rejected, maxStatusRejections)
	s.Reconciled = c.reconciled
	if !c.lastGap.IsZero() {
		s.LastGap = c.lastGap.UTC().Format(time.RFC3339)
	}
	c.mu.Unlock()
	s.Channels = channelStatuses(shards)
	return s
}

// maxStatusRejections is the most rejected topics Status lists.
const maxStatusRejections = 100

// firstRejections returns the n first rejections of m in topic order,
// keeping no more than n at a time (m may hold thousands).
func firstRejections(m map[string]rejection, n int) []rejection {
	var out []rejection
	for _, r := range m {
		if len(out) == n && r.Topic >= out[n-1].Topic {
			continue
		}
		i, _ := slices.BinarySearchFunc(out, r.Topic, func(e rejection, t string) int { return strings.Compare(e.Topic, t) })
		if len(out) < n {
			out = slices.Insert(out, i, r)
		} else {
			copy(out[i+1:], out[i:n-1])
			out[i] = r
		}
	}
	return out
}

func channelStatuses(shards []*shard) []ChannelStatus {
	out := make([]ChannelStatus, 0, len(shards))
	for _, sh := range shards {
		out = append(out, sh.status())
	}
	return out
}

// channels is the channels' part of Status, for the heartbeat-age gauge
// that each scrape reads.
func (c *Client) channels() []ChannelStatus {
	c.mu.Lock()
	shards := append([]*shard(nil), c.shards...)
	c.mu.Unlock()
	return channelStatuses(shards)
}

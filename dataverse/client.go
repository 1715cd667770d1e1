package dataverse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"
	"golang.org/x/net/idna"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/loglimit"
	"github.com/screenpop/screenpop/internal/statuslabel"
)

// Client looks customers up in Dataverse. It implements bridge.Directory.
type Client struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	api     string // <URL>/api/data/v9.2/

	tokens  *tokenSource
	certs   *certSource // the client certificate, nil with a client secret
	gate    *gate
	breaker *breaker
	sem     chan struct{}
	// sending counts the API requests sent and not yet answered: a
	// request slot (sem) is also held while its lookup waits out a
	// Retry-After or a token, when nothing is in flight.
	sending atomic.Int64
	pos     *ttlCache
	neg     *ttlCache
	ready   atomic.Bool
	// tokenErr is the last failure of a token request, Run's or a
	// lookup's (nil after a success), for /status: /readyz sends the
	// admin there.
	tokenErr atomic.Pointer[string]

	ctx    context.Context // ends background flights on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	flights map[string]*flight

	refusals *loglimit.Limiter // the refused lookups' warnings, once a minute per cause
	failures *loglimit.Limiter // the failed lookups' warnings, once every 10 s per cause
}

var _ bridge.Directory = (*Client)(nil)

// flight is one lookup in progress, shared by every caller asking for the
// same identifier meanwhile (single-flight).
type flight struct {
	done  chan struct{}
	start time.Time // when it began: its answer is no newer (Key.Since)
	recs  []bridge.Record
	err   error

	mu     sync.Mutex
	held   time.Time     // the gate holds the flight's request until then (Retry-After)
	onWire bool          // its request has passed the gate (and is not being tried again)
	heldCh chan struct{} // closed and replaced when held or onWire changes
}

func newFlight(start time.Time) *flight {
	return &flight{done: make(chan struct{}), start: start, heldCh: make(chan struct{})}
}

// hold records that the gate holds the flight's request until until
// (gateWatcher).
func (f *flight) hold(until time.Time) {
	f.mu.Lock()
	f.held = until
	close(f.heldCh)
	f.heldCh = make(chan struct{})
	f.mu.Unlock()
}

// sent records that the flight's request has passed the gate (on), or is
// about to be tried again and goes back to it (gateWatcher).
func (f *flight) sent(on bool) {
	f.mu.Lock()
	f.onWire = on
	close(f.heldCh)
	f.heldCh = make(chan struct{})
	f.mu.Unlock()
}

// holding returns how long the gate holds the flight's request (a past or
// zero time: it does not), whether that request is on its way (then no
// Retry-After given meanwhile holds it), and a channel closed when either
// changes.
func (f *flight) holding() (until time.Time, onWire bool, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held, f.onWire, f.heldCh
}

// New validates cfg and returns a Client. It makes no request: Run (or the
// first Lookup) fetches the token.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	full, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      full,
		log:      log.With().Str("component", "dataverse").Logger(),
		api:      full.URL + apiPath,
		sem:      make(chan struct{}, full.Concurrency),
		gate:     newGate(),
		pos:      newTTLCache(full.MaxCacheEntries),
		neg:      newTTLCache(full.MaxCacheEntries),
		flights:  make(map[string]*flight),
		refusals: loglimit.New(time.Minute, 64),
		failures: loglimit.New(10*time.Second, 64),
	}
	if full.ClientCertificate != "" {
		cert, err := ReadClientCertificate(full.ClientCertificate)
		if err != nil {
			return nil, fmt.Errorf("%w: DATAVERSE_CLIENT_CERTIFICATE: %w", ErrConfig, err)
		}
		c.certs = newCertSource(full.ClientCertificate, cert, c.log, full.Now)
	}
	c.tokens = &tokenSource{c: c}
	c.metrics = newMetrics(full.Registerer, c)
	c.breaker = &breaker{threshold: full.BreakerFailures, cooldown: full.BreakerCooldown, onChange: func(from, s int) {
		c.metrics.breaker.Set(float64(s))
		switch {
		case s == breakerOpen && from == breakerClosed:
			// Not again after each failed probe (one a cooldown): the
			// outage is one warning, and one info line when it ends.
			c.log.Warn().Int("consecutive_errors", full.BreakerFailures).Dur("cooldown", full.BreakerCooldown).Msg("dataverse circuit breaker open")
		case s == breakerClosed:
			c.log.Info().Msg("dataverse circuit breaker closed")
		}
	}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Run obtains the first token and keeps refreshing it ahead of its expiry
// (at 80% of expires_in), so lookups never wait for one; it also sweeps
// expired cache entries. It returns nil when ctx is done. Token failures
// are logged (with the fix) and retried with backoff; they do not end Run.
func (c *Client) Run(ctx context.Context) error {
	c.log.Info().Str("dataverse_host", strings.TrimPrefix(strings.TrimPrefix(c.cfg.URL, "https://"), "http://")).Int("concurrency", c.cfg.Concurrency).Msg("dataverse client started")
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	failures := 0
	for {
		var wait time.Duration
		if err := c.tokens.refresh(ctx, 30*time.Second); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			msg := err.Error()
			c.tokenErr.Store(&msg)
			wait = min(time.Second<<min(failures-1, 6), time.Minute)
			if failures == 1 || failures%10 == 0 {
				c.log.Error().Err(err).Int("consecutive_errors", failures).Dur("backoff", wait).Msg("dataverse token request failed")
			}
		} else {
			if failures > 0 {
				c.log.Info().Int("consecutive_errors", failures).Msg("dataverse token obtained after failures")
			}
			c.tokenErr.Store(nil)
			failures = 0
			at, _ := c.tokens.next()
			wait = max(time.Until(at)-30*time.Second+time.Second, time.Second)
		}
		t := time.NewTimer(wait)
	loop:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-sweep.C:
				now := c.cfg.Now()
				c.pos.sweep(now)
				c.neg.sweep(now)
			case <-t.C:
				break loop
			}
		}
	}
}

// Close ends lookups still running in the background and waits for them.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.cfg.HTTPClient.CloseIdleConnections()
	return nil
}

// Ready reports whether a first token was obtained.
func (c *Client) Ready() bool { return c.ready.Load() }

// Status is the Client's /status snapshot.
type Status struct {
	Ready               bool       `json:"ready"`
	Breaker             string     `json:"breaker"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	BreakerOpenUntil    *time.Time `json:"breaker_open_until,omitempty"`
	ThrottledUntil      *time.Time `json:"throttled_until,omitempty"`
	CachePositive       int        `json:"cache_positive"`
	CacheNegative       int        `json:"cache_negative"`
	RequestsInFlight    int        `json:"requests_in_flight"`
	LookupsInFlight     int        `json:"lookups_in_flight"`
	TokenExpiresAt      *time.Time `json:"token_expires_at,omitempty"`
	// TokenError is why the last token request failed, with its fix
	// (the text of the "dataverse token request failed" log line); empty
	// once a token is obtained.
	TokenError string `json:"token_error,omitempty"`
	// CertificateThumbprint and CertificateNotAfter describe the client
	// certificate the token requests are signed with (SHA-1 thumbprint, as
	// the Azure portal shows it); absent with a client secret.
	CertificateThumbprint string     `json:"certificate_thumbprint,omitempty"`
	CertificateNotAfter   *time.Time `json:"certificate_not_after,omitempty"`
}

// Status returns a JSON-marshalable snapshot: breaker, throttling, caches,
// token expiry. No PII, no secrets.
func (c *Client) Status() any {
	st := Status{Ready: c.Ready(), CachePositive: c.pos.len(), CacheNegative: c.neg.len(), RequestsInFlight: int(c.sending.Load())}
	var openUntil time.Time
	st.Breaker, st.ConsecutiveFailures, openUntil = c.breaker.snapshot()
	if st.Breaker == "open" {
		st.BreakerOpenUntil = &openUntil
	}
	if u := c.gate.get(); time.Now().Before(u) {
		st.ThrottledUntil = &u
	}
	if e := c.tokens.expiry(); !e.IsZero() {
		st.TokenExpiresAt = &e
	}
	if e := c.tokenErr.Load(); e != nil {
		st.TokenError = *e
	}
	if c.certs != nil {
		cur := c.certs.current()
		na := cur.Cert.NotAfter
		st.CertificateThumbprint, st.CertificateNotAfter = cur.Thumbprint(), &na
	}
	c.mu.Lock()
	st.LookupsInFlight = len(c.flights)
	c.mu.Unlock()
	return st
}

// RecordURL returns the model-driven app URL of a record,
// <URL>/main.aspx?appid=…&pagetype=entityrecord&etn=…&id=…, or of a new
// record's form when id is empty. It returns "" for an entity the client
// does not know (Config.Entities: the built-ins and SCREENPOP_ENTITIES) or
// an id that is not a GUID: nothing but a known logical name and a GUID
// ever goes into the URL, and a pop override taken from participant data
// (which customers can write on some channels) opens no other table.
func (c *Client) RecordURL(entity, id string) string {
	if _, known := c.cfg.Entities[entity]; !known || !validName(entity) || (id != "" && !IsGUID(id)) {
		return ""
	}
	var b strings.Builder
	b.Grow(len(c.cfg.URL) + 120)
	b.WriteString(c.cfg.URL)
	b.WriteString("/main.aspx?")
	if c.cfg.AppID != "" {
		b.WriteString("appid=")
		b.WriteString(queryEscape(c.cfg.AppID))
		b.WriteByte('&')
	}
	b.WriteString("pagetype=entityrecord&etn=")
	b.WriteString(entity)
	if id != "" {
		b.WriteString("&id=")
		b.WriteString(strings.ToLower(strings.Trim(id, "{}")))
	}
	return b.String()
}

// IsGUID reports whether s is a GUID (optionally in braces), as Dataverse
// record ids are.
func IsGUID(s string) bool {
	if strings.HasPrefix(s, "{") || strings.HasSuffix(s, "}") {
		// Braces in pairs only: "{guid" is no GUID.
		if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
			return false
		}
		s = s[1 : len(s)-1]
	}
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// cacheKey normalizes key: phone numbers to E.164, emails to lower case
// (Dataverse compares strings case-insensitively).
func (c *Client) cacheKey(key bridge.Key) (k, value string, list []EntityColumns, err error) {
	switch key.Kind {
	case bridge.KeyPhone:
		if isE164(key.Value) { // the normalizer's output: skip the parse on the hot path
			return "p:" + key.Value, key.Value, c.cfg.Phone, nil
		}
		e164, err := NormalizePhone(key.Value, c.cfg.PhoneRegion)
		if err != nil {
			return "", "", nil, err
		}
		return "p:" + e164, e164, c.cfg.Phone, nil
	case bridge.KeyEmail:
		v := strings.TrimSpace(key.Value)
		if strings.ContainsFunc(v, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 0x80 }) {
			v = strings.ToLower(v)
		}
		if v == "" || len(v) > 320 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", "", nil, ErrInvalidKey
		}
		return "e:" + v, v, c.cfg.Email, nil
	}
	return "", "", nil, ErrInvalidKey
}

// Lookup implements bridge.Directory. It answers from the caches when it
// can (with an answer stored at or after key.Since, when that is set:
// records found before it are the answer only should the fresh lookup
// fail, be throttled past ctx's deadline, or miss it);
// otherwise it joins or starts the single flight for key and waits
// for it until ctx is done, or returns a ThrottledError at once when a
// Retry-After holds the flight's request past ctx's deadline. The flight
// itself runs on after ctx ends (up to FlightTimeout) and fills the cache
// for the next event of the same caller. The returned slice is shared:
// callers must not modify it.
func (c *Client) Lookup(ctx context.Context, key bridge.Key) ([]bridge.Record, error) {
	k, value, list, err := c.cacheKey(key)
	if err != nil {
		c.metrics.lookups.WithLabelValues(string(key.Kind), "invalid").Inc()
		return nil, fmt.Errorf("lookup %s: %w", key.Kind, err)
	}
	now := c.cfg.Now()
	if recs, ok := c.pos.get(k, now, key.Since); ok {
		c.metrics.hit(key.Kind, false).Inc()
		return recs, nil
	}
	if _, ok := c.neg.get(k, now, key.Since); ok {
		c.metrics.hit(key.Kind, true).Inc()
		return nil, nil
	}
	// Records found before key.Since, still within their TTL: what a
	// conversation's later leg gets should the fresh lookup fail, be
	// throttled or miss ctx's deadline, rather than the search fallback.
	// (A cached not-found is no fallback: its create pop could make a
	// duplicate of the record saved since.)
	var stale []bridge.Record
	if !key.Since.IsZero() {
		stale, _ = c.pos.get(k, now, time.Time{})
	}
	f, err := c.join(k, key.Since, key.Kind, value, list)
	if err != nil {
		return nil, err
	}
	for {
		held, onWire, changed := f.holding()
		// The gate holds every request of the client not yet sent, also
		// that of a flight still waiting for a request slot (the slots'
		// holders wait at the gate); one on its way, passed before
		// another caller's 429, is answered all the same.
		until, gateChanged := c.gate.watch()
		if !onWire && until.After(held) {
			held = until
		}
		if dl, ok := ctx.Deadline(); ok && dl.Before(held) {
			// Dataverse's Retry-After holds the flight's request past
			// this caller's deadline, so waiting could only end in it.
			// The flight goes on, for the cache and for callers with
			// more time.
			if stale != nil {
				return stale, nil
			}
			return nil, fmt.Errorf("lookup %s: %w", key.Kind, &ThrottledError{Until: held})
		}
		select {
		case <-f.done:
			if f.err != nil {
				if stale != nil {
					return stale, nil
				}
				return nil, fmt.Errorf("lookup %s: %w", key.Kind, f.err)
			}
			return f.recs, nil
		case <-ctx.Done():
			if stale != nil {
				return stale, nil
			}
			return nil, fmt.Errorf("lookup %s: %w", key.Kind, ctx.Err())
		case <-changed:
		case <-gateChanged:
		}
	}
}

// Prefetch starts a lookup for key in the background, unless the answer is
// cached or already on its way, so that a later Lookup is a cache hit (the
// resolver calls it at alerting when it pops at connected).
func (c *Client) Prefetch(key bridge.Key) {
	k, value, list, err := c.cacheKey(key)
	if err != nil {
		return
	}
	now := c.cfg.Now()
	if _, ok := c.pos.get(k, now, key.Since); ok {
		return
	}
	if _, ok := c.neg.get(k, now, key.Since); ok {
		return
	}
	_, _ = c.join(k, key.Since, key.Kind, value, list)
}

// join returns the flight for k, started now unless one is on its way
// that began at or after since: a lookup that wants an answer read after
// since (Key.Since) gets no older one from a flight that began before it
// (its request asked Dataverse before the agent saved the caller, say).
// That flight runs on, but is no longer the one later callers join.
func (c *Client) join(k string, since time.Time, kind bridge.KeyKind, value string, list []EntityColumns) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if f := c.flights[k]; f != nil && !f.start.Before(since) {
		return f, nil
	}
	f := newFlight(c.cfg.Now())
	c.flights[k] = f
	c.wg.Add(1)
	go c.fly(f, k, kind, value, list)
	return f, nil
}

func (c *Client) fly(f *flight, k string, kind bridge.KeyKind, value string, list []EntityColumns) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(withGateWatcher(c.ctx, f), c.cfg.FlightTimeout)
	start := time.Now()
	var afterOpen bool
	f.recs, afterOpen, f.err = c.remote(ctx, kind, value, list)
	cancel()
	now := c.cfg.Now()
	result := "match"
	// Under c.mu, so that of two flights of k (see join) the one that
	// began later is cached, whichever ends last.
	c.mu.Lock()
	after := f.start.Add(time.Nanosecond)
	_, newerPos := c.pos.get(k, now, after)
	_, newerNeg := c.neg.get(k, now, after)
	newer := newerPos || newerNeg
	switch {
	case errors.Is(f.err, ErrCircuitOpen):
		result = "circuit_open"
	case errors.Is(f.err, ErrBusy):
		result = "busy"
	case f.err != nil:
		result = "error"
	case len(f.recs) == 0:
		result = "none"
		if newer {
			break
		}
		// An answer of the other kind may still be cached: a lookup that
		// passed over it (Key.Since) replaces it. The answer is stored as
		// read when the flight began, not when it arrived: one that
		// outlived a pop's deadline was asked for before that pop, and is
		// no answer since it for the conversation's next leg.
		c.pos.del(k)
		c.neg.put(k, nil, now.Add(c.cfg.NegativeCacheTTL), f.start, now)
	default:
		if newer {
			break
		}
		c.neg.del(k)
		c.pos.put(k, f.recs, now.Add(c.cfg.CacheTTL), f.start, now)
	}
	c.mu.Unlock()
	c.metrics.lookups.WithLabelValues(string(kind), result).Inc()
	ev := c.log.Debug()
	// A lookup let through before the breaker opened and failing after
	// it is one of the outage the breaker's line stands for: at a few
	// hundred pops a second, the lookups in flight when Dataverse fails
	// were a warning each, hundreds in a second (lookups_total counts
	// them).
	if f.err != nil && !errors.Is(f.err, ErrCircuitOpen) && !errors.Is(f.err, ErrBusy) && c.ctx.Err() == nil && !afterOpen {
		limit := c.failures
		if refused(f.err) {
			// A refusal does not open the breaker: once a minute per
			// cause, or a table the role cannot read is a warning for
			// every caller no earlier table matches.
			limit = c.refusals
		}
		// Nor do failures that never come five in a row (a Dataverse
		// failing every other request): once every 10 s per cause.
		if ok, held := limit.Allow(cause(f.err), time.Now()); ok {
			ev = c.log.Warn().Int("held_back", held)
		}
	}
	if f.err != nil {
		ev = ev.Err(f.err)
	}
	ev.Str("kind", string(kind)).Str("result", result).Int("records", len(f.recs)).
		Int64("lookup_ms", time.Since(start).Milliseconds()).Msg("dataverse lookup finished")
	c.mu.Lock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	c.mu.Unlock()
	close(f.done)
}

// remote asks Dataverse, through the breaker. afterOpen: the lookup
// failed once the breaker had opened (it was let through before).
func (c *Client) remote(ctx context.Context, kind bridge.KeyKind, value string, list []EntityColumns) (_ []bridge.Record, afterOpen bool, _ error) {
	if len(list) == 0 {
		return nil, false, nil
	}
	var values []string
	if kind == bridge.KeyPhone {
		var err error
		if values, err = PhoneVariants(value, c.cfg.PhoneRegion); err != nil {
			return nil, false, err
		}
	} else {
		values = emailVariants(value)
	}
	if !c.breaker.allow(c.cfg.Now()) {
		return nil, false, ErrCircuitOpen
	}
	var recs []bridge.Record
	var err error
	// A single entity's query goes in a $batch too: its URL holds the
	// caller's number or email, and a request URL is what proxies,
	// gateways and request telemetry record; a batch body is not.
	ctx = withBreakerGate(ctx)
	// Email answers are checked for the address itself (see exact);
	// phone values are ASCII, which the collation compares as Go does.
	verify := kind == bridge.KeyEmail
	if c.cfg.SequentialLookups {
		recs, err = c.sequential(ctx, list, values, verify)
	} else {
		recs, err = c.batch(ctx, list, values, verify)
	}
	switch {
	case errors.Is(err, ErrBusy):
		// Never sent (it waited for a request slot until nobody waited
		// for it): that says nothing of Dataverse.
		c.breaker.abandon()
	case errors.Is(err, ErrCircuitOpen):
		// Never sent: the breaker opened while it waited for a slot.
	case errors.As(err, new(*ThrottledError)):
		// Never sent (again): a Retry-After longer than the flight's
		// life. Dataverse answers, with 429s: the throttling line tells
		// it, and an open breaker would tell an outage.
		c.breaker.abandon()
	case c.ctx.Err() == nil:
		// A refusal is Dataverse answering: it is up. Counted as a
		// failure, a table the role cannot read (or a wrong entity set or
		// column) would open the breaker after a few unknown callers and
		// stop the pops of every caller an earlier table matches.
		afterOpen = c.breaker.record(err == nil || refused(err), c.cfg.Now())
	}
	return recs, afterOpen, err
}

// refused reports whether err is Dataverse's definite refusal of a query
// (403 a missing privilege, 404 an unknown entity set, 400 an unknown
// column, another 4xx), not a failure to answer: an outage, a timeout, a
// throttle, or a token it does not accept.
func refused(err error) bool {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusForbidden && ae.Code == "0x80040220"
	}
	var pe *APIError
	return errors.As(err, &pe) && pe.Status >= 400 && pe.Status < 500 &&
		pe.Status != http.StatusRequestTimeout && pe.Status != http.StatusTooManyRequests
}

// sequential queries the entities one after the other and stops at the
// first with a match.
func (c *Client) sequential(ctx context.Context, list []EntityColumns, values []string, verify bool) ([]bridge.Record, error) {
	for _, ec := range list {
		info := c.cfg.Entities[ec.Entity]
		u := entityQuery(c.api, info, ec.Columns, values, verify)
		_, body, err := c.send(ctx, "query", ec.Entity, func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		}, nil)
		if err != nil {
			return nil, err
		}
		var x *exact
		if verify {
			x = newExact(ec.Columns, values)
		}
		recs, err := c.records(info, body, x)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			return recs, nil
		}
	}
	return nil, nil
}

// batch sends all entity queries in one $batch request and takes the first
// entity, in configured order, with a match.
func (c *Client) batch(ctx context.Context, list []EntityColumns, values []string, verify bool) ([]bridge.Record, error) {
	urls := make([]string, len(list))
	for i, ec := range list {
		urls[i] = entityQuery(c.api, c.cfg.Entities[ec.Entity], ec.Columns, values, verify)
	}
	body, ctype, err := buildBatch(urls)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	var found []bridge.Record
	_, _, err = c.send(ctx, "batch", "", func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.api+"$batch", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", ctype)
			// Without it Dataverse stops at the first failed request and
			// answers the batch with that request's status; with it every
			// query is answered, failed ones with their own error.
			req.Header.Set("Prefer", "odata.continue-on-error")
		}
		return req, err
	}, func(tok string, resp *http.Response, rbody []byte) error {
		ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
		ps, err := parseBatch(resp.Header.Get("Content-Type"), rbody)
		if err != nil {
			if !ok {
				return nil // not a batch answer: its own status says what went wrong
			}
			return fmt.Errorf("%w: not the Dataverse Web API's answer (an HTML page?): check DATAVERSE_URL and any proxy between this host and it", err)
		}
		// The parts in the entities' order: the first with a row decides,
		// whatever the later ones answered. A failed part before it is the
		// error, even when the batch was stopped there and the answer is
		// short, and it names the entity (a missing read privilege), is
		// retried (503, 408) or gets a fresh token (401) as a request of
		// its own would.
		found = nil
		for i, p := range ps[:min(len(ps), len(list))] {
			if p.Status < 200 || p.Status > 299 {
				if ok {
					// The batch answered 200, the refused query its own
					// status: count that one too, or a lost read
					// privilege (403) or a throttled query never shows
					// in requests_total by its code.
					c.metrics.requests.WithLabelValues("batch_part", statuslabel.Of(p.Status)).Inc()
				}
				h := p.Header
				if h.Get("Retry-After") == "" && resp.Header.Get("Retry-After") != "" {
					h = h.Clone()
					h.Set("Retry-After", resp.Header.Get("Retry-After"))
				}
				if h.Get("Date") == "" && resp.Header.Get("Date") != "" {
					// A Retry-After date is read against the server's Date.
					h = h.Clone()
					h.Set("Date", resp.Header.Get("Date"))
				}
				return c.statusError("batch", list[i].Entity, tok, &http.Response{StatusCode: p.Status, Header: h}, p.Body)
			}
			var x *exact
			if verify {
				x = newExact(list[i].Columns, values)
			}
			recs, err := c.records(c.cfg.Entities[list[i].Entity], p.Body, x)
			if err != nil {
				return err
			}
			if len(recs) > 0 {
				if ok {
					found = recs
				}
				return nil
			}
		}
		if !ok {
			return nil
		}
		if len(ps) != len(list) {
			return fmt.Errorf("batch: %d answers for %d queries", len(ps), len(list))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// records decodes an entity collection answer, keeping only the rows that
// hold x's values when x is not nil.
func (c *Client) records(info EntityInfo, body []byte, x *exact) ([]bridge.Record, error) {
	// gjson reads the two columns in place; decoding every row into a map
	// was the costliest step of a miss.
	if !gjson.ValidBytes(body) {
		return nil, fmt.Errorf("decode %s answer: not valid JSON", info.LogicalName)
	}
	value := gjson.GetBytes(body, "value")
	if value.Exists() && value.Type != gjson.Null && !value.IsArray() {
		return nil, fmt.Errorf("decode %s answer: value is not an array", info.LogicalName)
	}
	var recs []bridge.Record
	value.ForEach(func(_, row gjson.Result) bool {
		id := row.Get(gjson.Escape(info.IDColumn))
		if id.Type != gjson.String || !IsGUID(id.Str) || x != nil && !x.holds(row) {
			return true
		}
		var name string
		if n := row.Get(gjson.Escape(info.NameColumn)); info.NameColumn != "" && n.Type == gjson.String {
			name = n.Str
		}
		recs = append(recs, bridge.Record{Entity: info.LogicalName, ID: id.Str, Name: name, URL: c.RecordURL(info.LogicalName, id.Str)})
		return len(recs) < MaxRecords
	})
	return recs, nil
}

// isE164 reports whether s is strictly +<7 to 15 digits>, not starting
// with 0.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// emailVariants returns the email value (lower case, see cacheKey) and,
// for an internationalized domain, the same address with the domain's
// other form: an agent types münchen.de into Dynamics, mail headers carry
// xn--mnchen-3ya.de, and Dataverse compares them as different text.
func emailVariants(value string) []string {
	out := []string{value}
	at := strings.LastIndexByte(value, '@')
	if at < 0 {
		return out
	}
	local, domain := value[:at+1], value[at+1:]
	var other string
	var err error
	if strings.Contains(domain, "xn--") {
		other, err = idna.Lookup.ToUnicode(domain)
	} else if strings.ContainsFunc(domain, func(r rune) bool { return r >= 0x80 }) {
		other, err = idna.Lookup.ToASCII(domain)
	}
	if err == nil && other != "" && other != domain {
		out = append(out, local+strings.ToLower(other))
	}
	return out
}

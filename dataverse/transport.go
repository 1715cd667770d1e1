package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/screenpop/screenpop/internal/statuslabel"
)

// gate holds Dataverse's Retry-After for the whole client: the
// service-protection limits are per application user, so after a 429 no
// request of this client leaves before the time it was given. When the
// wait is over, one request goes first as a probe and the others follow
// only once it was not throttled again, so a backlog does not hit
// Dataverse all at once ("start slow and let Retry-After set the pace").
type gate struct {
	mu         sync.Mutex
	until      time.Time
	recovering bool // a 429 was seen and no request has passed since
	probing    bool // the probe is out
	changed    chan struct{}
}

func newGate() *gate { return &gate{changed: make(chan struct{})} }

// watch returns the end of the Retry-After and a channel closed when the
// gate changes.
func (g *gate) watch() (until time.Time, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until, g.changed
}

func (g *gate) get() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until
}

func (g *gate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// extend records a Retry-After ending at t. It reports whether this 429
// begins a throttling episode: none since a request last passed.
func (g *gate) extend(t time.Time) (began bool) {
	g.mu.Lock()
	began = !g.recovering
	if t.After(g.until) {
		g.until = t
	}
	g.recovering = true
	g.broadcastLocked()
	g.mu.Unlock()
	return began
}

// probeDone reports the probe's outcome.
func (g *gate) probeDone(throttled bool) {
	g.mu.Lock()
	g.probing = false
	if !throttled {
		g.recovering = false
	}
	g.broadcastLocked()
	g.mu.Unlock()
}

// gateWatcher, in a flight's context, is told how the gate treats the
// flight's requests: gate.wait calls hold before it holds one back for a
// Retry-After, and attempt calls sent(false) as it begins (a retry goes
// back to the gate) and sent(true) once the request has passed the gate.
// The wait happens in the flight, whose deadline is FlightTimeout; the
// callers waiting for the flight have their own (the pop deadline), and
// this is how they learn whether it will pass first.
type gateWatcher interface {
	hold(until time.Time)
	sent(on bool)
}

type watcherKey struct{}

func withGateWatcher(ctx context.Context, w gateWatcher) context.Context {
	return context.WithValue(ctx, watcherKey{}, w)
}

// breakerKey marks a lookup's requests (not check's): attempt sends none
// while the breaker refuses.
type breakerKey struct{}

func withBreakerGate(ctx context.Context) context.Context {
	return context.WithValue(ctx, breakerKey{}, true)
}

func breakerGated(ctx context.Context) bool {
	gated, _ := ctx.Value(breakerKey{}).(bool)
	return gated
}

// wait blocks until the gate lets this request go; probe says it goes as
// the probe and must call probeDone. If ctx's deadline falls before the
// Retry-After ends, it returns a ThrottledError at once instead of waiting
// in vain.
func (g *gate) wait(ctx context.Context) (probe bool, err error) {
	for {
		g.mu.Lock()
		until, ch := g.until, g.changed
		if d := time.Until(until); d > 0 {
			g.mu.Unlock()
			if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
				return false, &ThrottledError{Until: until}
			}
			if w, ok := ctx.Value(watcherKey{}).(gateWatcher); ok {
				w.hold(until)
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			case <-ch:
				t.Stop()
			}
			continue
		}
		if !g.recovering {
			g.mu.Unlock()
			return false, nil
		}
		if !g.probing {
			g.probing = true
			g.mu.Unlock()
			return true, nil
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-ch:
		}
	}
}

// breaker is a consecutive-failure circuit breaker over lookups.
type breaker struct {
	mu        sync.Mutex
	state     int // breakerClosed, breakerOpen, breakerHalfOpen
	fails     int
	openUntil time.Time
	probing   bool // half-open: the probe is out
	threshold int
	cooldown  time.Duration
	onChange  func(from, to int)
}

const (
	breakerClosed = iota
	breakerOpen
	breakerHalfOpen
)

func breakerName(s int) string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// allow reports whether a lookup may call Dataverse. In the half-open state
// exactly one probe is let through until its result is known.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return true
	case breakerOpen:
		if now.Before(b.openUntil) {
			return false
		}
		b.setLocked(breakerHalfOpen)
		b.probing = true
		return true
	default: // half-open
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

// refuses reports whether the breaker is open and cooling down: a lookup
// let through before it opened sends nothing more (see attempt).
func (b *breaker) refuses(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == breakerOpen && now.Before(b.openUntil)
}

// abandon ends a lookup allow let through that sent nothing (ErrBusy): its
// outcome is not recorded, and a half-open breaker lets the next one probe.
func (b *breaker) abandon() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// record reports whether the breaker was already open: the outcome is of
// a lookup let through before it opened.
func (b *breaker) record(ok bool, now time.Time) (wasOpen bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasOpen = b.state == breakerOpen
	b.probing = false
	if ok {
		b.fails = 0
		b.setLocked(breakerClosed)
		return wasOpen
	}
	b.fails++
	if b.state == breakerHalfOpen || b.fails >= b.threshold {
		b.openUntil = now.Add(b.cooldown)
		b.setLocked(breakerOpen)
	}
	return wasOpen
}

func (b *breaker) setLocked(s int) {
	if b.state != s {
		from := b.state
		b.state = s
		if b.onChange != nil {
			b.onChange(from, s)
		}
	}
}

func (b *breaker) snapshot() (state string, fails int, openUntil time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return breakerName(b.state), b.fails, b.openUntil
}

// odataError is the Web API's error body.
type odataError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// send performs one Dataverse request with the client's protections: the
// Retry-After gate, the concurrency limit, a per-attempt timeout, and
// retries with jittered exponential backoff on 429, 5xx, timeouts and
// network errors. build makes a fresh request for each attempt; send adds
// the authorization and OData headers. check, if not nil, inspects each
// answer before send looks at its status: a $batch's parts, which Dataverse
// also sends under a failed status when it stopped the batch at a failed
// request. It may fail the attempt, retryably or not; a non-2xx answer it
// lets pass is classified by its own status. send returns the body of a
// 2xx answer.
func (c *Client) send(ctx context.Context, op, entity string, build func(ctx context.Context) (*http.Request, error), check func(tok string, resp *http.Response, body []byte) error) (*http.Response, []byte, error) {
	var lastErr error
	made := 0 // the attempts sent that failed: lastErr's count
	refreshed := false
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		resp, body, err := c.attempt(ctx, op, entity, build, check)
		var te *temporaryError
		if errors.As(err, &te) && te.reason == "throttled" && te.retryAfter > 0 {
			// A 429 with Retry-After costs no attempt: the gate makes
			// the wait, ctx (FlightTimeout, or the caller's deadline)
			// bounds it.
			attempt--
			c.metrics.retries.WithLabelValues(te.reason).Inc()
			continue
		}
		if err == nil {
			return resp, body, nil
		}
		if errors.Is(err, ErrBusy) || errors.Is(err, ErrCircuitOpen) {
			// Not sent: an earlier attempt's failure, if any, is the
			// lookup's outcome.
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		lastErr, made = err, attempt
		var ae *AuthError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && !refreshed {
			// The token may have been revoked or rotated server-side:
			// one more try with a fresh one.
			refreshed = true
			c.metrics.retries.WithLabelValues("token").Inc()
			continue
		}
		if !errors.As(err, &te) || attempt == c.cfg.MaxAttempts || ctx.Err() != nil {
			break
		}
		c.metrics.retries.WithLabelValues(te.reason).Inc()
		if err := sleepCtx(ctx, backoff(attempt)); err != nil {
			return nil, nil, err
		}
	}
	var te *temporaryError
	if errors.As(lastErr, &te) {
		// The attempts made: a lookup stopped by the breaker, or one that
		// found no request slot, made fewer than MaxAttempts.
		return nil, nil, &retriedError{op: op, made: made, err: te.err}
	}
	return nil, nil, lastErr
}

// retriedError is a request's last failure after the attempts it made.
// Its cause, for the log's once-per-cause limit, is the failure without
// the count: a lookup whose retry found no slot fails of the same cause
// as one that made every attempt.
type retriedError struct {
	op   string
	made int
	err  error
}

func (e *retriedError) Error() string {
	// The attempt's error already starts with the op ("whoami: dataverse:
	// HTTP 503"): named once, before the count.
	msg := strings.TrimPrefix(e.err.Error(), e.op+": ")
	if e.made == 1 {
		return e.op + " after 1 attempt: " + msg
	}
	return fmt.Sprintf("%s after %d attempts: %s", e.op, e.made, msg)
}

func (e *retriedError) Unwrap() error { return e.err }

// cause is err's text without a count of attempts.
func cause(err error) string {
	var re *retriedError
	if errors.As(err, &re) {
		return re.op + ": " + strings.TrimPrefix(re.err.Error(), re.op+": ")
	}
	return err.Error()
}

// acquire takes a request slot, waiting at most QueueTimeout (then
// ErrBusy); a free slot is taken without a timer.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	default:
	}
	queue := time.NewTimer(c.cfg.QueueTimeout)
	defer queue.Stop()
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-queue.C:
		return ErrBusy
	}
}

func (c *Client) attempt(ctx context.Context, op, entity string, build func(ctx context.Context) (*http.Request, error), check func(tok string, resp *http.Response, body []byte) error) (_ *http.Response, _ []byte, err error) {
	// A flight's request is on its way from the gate on, until it is
	// tried again (or the flight ends with its answer).
	w, _ := ctx.Value(watcherKey{}).(gateWatcher)
	if w != nil {
		w.sent(false)
	}
	if err := c.acquire(ctx); err != nil {
		return nil, nil, err
	}
	defer func() { <-c.sem }()
	if breakerGated(ctx) && c.breaker.refuses(c.cfg.Now()) {
		// A lookup let through before the breaker opened: its retries,
		// or its first request after waiting for this slot, would go to
		// a Dataverse just judged down, each holding one of the slots.
		return nil, nil, ErrCircuitOpen
	}
	probe, err := c.gate.wait(ctx)
	if err != nil {
		return nil, nil, err
	}
	if w != nil {
		w.sent(true)
	}
	if probe {
		throttled := false
		defer func() { c.gate.probeDone(throttled) }()
		defer func() {
			var te *temporaryError
			throttled = errors.As(err, &te) && te.reason == "throttled"
		}()
	}
	tok, err := c.tokens.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := build(actx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("OData-Version", "4.0")
	req.Header.Set("If-None-Match", "null")
	start := time.Now()
	c.sending.Add(1)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.sending.Add(-1)
		c.metrics.request(op, "error", time.Since(start))
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		reason := "network"
		if actx.Err() != nil {
			reason = "timeout"
		}
		// *url.Error quotes the request URL, whose $filter holds the
		// caller's number or email: keep only the cause, so no log line
		// ever carries it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s %s: %w", ue.Op, hostOf(c.api), withoutLocalAddr(ue.Err))
		} else {
			err = withoutLocalAddr(err)
		}
		return nil, nil, &temporaryError{reason: reason, err: fmt.Errorf("%s: %w", op, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	c.sending.Add(-1)
	c.metrics.request(op, statuslabel.Of(resp.StatusCode), time.Since(start))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &temporaryError{reason: "timeout", err: fmt.Errorf("%s: read response: %w", op, withoutLocalAddr(err))}
	}
	if check != nil {
		if err := check(tok, resp, body); err != nil {
			return nil, nil, err
		}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, body, nil
	}
	return nil, nil, c.statusError(op, entity, tok, resp, body)
}

// statusError classifies a non-2xx answer.
func (c *Client) statusError(op, entity, tok string, resp *http.Response, body []byte) error {
	var oe odataError
	_ = json.Unmarshal(body, &oe)
	code := oe.Error.Code
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		c.metrics.throttled.Inc()
		// A Retry-After date is on the answering server's clock: it is
		// read against the answer's Date, not this host's clock.
		now := time.Now()
		if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			now = d
		}
		ra := parseRetryAfter(resp.Header.Get("Retry-After"), now)
		hint := throttleHint(code)
		if ra > 0 && c.gate.extend(time.Now().Add(ra)) {
			// Once per episode: the pops it turns into search say only
			// lookup_error, and the limit hit decides the fix. The
			// x-ms-ratelimit headers are Dataverse's own debugging aid.
			c.log.Warn().Str("code", code).Dur("retry_after", ra).
				Str("burst_remaining", rateLimitValue(resp.Header.Get("x-ms-ratelimit-burst-remaining-xrm-requests"))).
				Str("time_remaining", rateLimitValue(resp.Header.Get("x-ms-ratelimit-time-remaining-xrm-requests"))).
				Str("fix", hint).Msg("dataverse throttled, waiting for Retry-After")
		}
		return &temporaryError{reason: "throttled", retryAfter: ra,
			err: fmt.Errorf("%s: %w", op, &APIError{Status: s, Code: code, Entity: entity, Hint: hint})}
	case s == http.StatusUnauthorized:
		c.tokens.invalidate(tok)
		return &AuthError{Status: s, Code: code, Hint: "Dataverse rejected the access token: check that DATAVERSE_URL is the environment the application user was created in, and that DATAVERSE_TENANT_ID is the environment's tenant"}
	case s == http.StatusForbidden:
		hint := "the application user lacks privileges (give it a security role with Read on the looked-up tables), or the environment is in administration mode or disabled (Power Platform admin center → Environments → (env): turn administration mode off, or enable it)"
		switch code {
		case "0x80072560", "0x8004430c":
			hint = "the app registration has no enabled application user in this environment: Power Platform admin center → Environments → (env) → Settings → Users + permissions → Application users → New app user, with DATAVERSE_CLIENT_ID and a security role"
		case "0x80040220":
			hint = "the application user is missing a read privilege on " + entity + ": add Read (organization or business-unit level) on it to the application user's security role"
		}
		return &AuthError{Status: s, Code: code, Hint: hint}
	case s >= 300 && s < 400:
		return &APIError{Status: s, Code: code, Entity: entity, Hint: "Dataverse answered with a redirect to " + redirectHost(resp.Header.Get("Location")) +
			" (not followed: the token is for DATAVERSE_URL): the environment's URL has changed, or a proxy redirects; set DATAVERSE_URL to the environment URL that Power Platform admin center shows"}
	case s == http.StatusRequestTimeout || s >= 500:
		return &temporaryError{reason: "server", err: fmt.Errorf("%s: %w", op, &APIError{Status: s, Code: code, Entity: entity})}
	case s == http.StatusNotFound:
		return &APIError{Status: s, Code: code, Entity: entity, Hint: "no such entity set: check SCREENPOP_ENTITIES (entity set names are usually plural) and DATAVERSE_URL"}
	case s == http.StatusBadRequest && isQueryError(code):
		return &APIError{Status: s, Code: code, Entity: entity, Hint: "a column does not exist (or is not a text column): check the column names in SCREENPOP_LOOKUP_PHONE, SCREENPOP_LOOKUP_EMAIL and SCREENPOP_ENTITIES"}
	default:
		return &APIError{Status: s, Code: code, Entity: entity}
	}
}

// throttleHint names the service protection limit a 429's code reports
// (api-limits.md, "Service protection API limit errors returned") and what
// lowers the load on it.
func throttleHint(code string) string {
	const shared = "the limits are per application user: other integrations using it count too; give screenpop its own"
	switch code {
	case "0x80072322":
		return "service protection limit of 6,000 requests per 5 minutes reached (Retry-After honoured): raise SCREENPOP_CACHE_TTL / SCREENPOP_NEGATIVE_CACHE_TTL; " + shared
	case "0x80072321":
		return "service protection limit of 20 minutes of execution time per 5 minutes reached (Retry-After honoured): look up fewer entities and columns (SCREENPOP_LOOKUP_PHONE, SCREENPOP_LOOKUP_EMAIL); " + shared
	case "0x80072326":
		return "service protection limit of 52 concurrent requests reached (Retry-After honoured): screenpop sends at most SCREENPOP_DATAVERSE_CONCURRENCY; " + shared
	}
	return "service protection limit reached (Retry-After honoured): " + shared
}

// rateLimitValue keeps an x-ms-ratelimit header's value when it is a
// number, for the log.
func rateLimitValue(v string) string {
	if v == "" || len(v) > 32 || strings.ContainsFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != ',' }) {
		return ""
	}
	return v
}

// isQueryError reports whether a 400's code is the OData URI parser's: 0x0,
// which Dataverse answers for a property it does not know ("Could not find
// a property named …") or one of the wrong type in the $filter, or
// 0x80060888, which older versions used.
func isQueryError(code string) bool { return code == "0x0" || code == "0x80060888" }

// maxRetryAfter caps a Retry-After: Dataverse's service protection counts
// over 5-minute windows, so it never asks for longer, and the wait holds
// every lookup of the client (a broken proxy's "9000000000" would stop
// them until a restart).
const maxRetryAfter = 5 * time.Minute

// parseRetryAfter reads Retry-After as delta-seconds (whole seconds, RFC
// 9110) or an HTTP date, at most maxRetryAfter. A fraction such as 0.001
// is not delta-seconds: honoured, it would buy a request that costs no
// attempt every millisecond.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// backoff is exponential from 100ms, capped at 5s, with full jitter over
// its upper half.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// withoutLocalAddr drops the local address from the text of the network
// errors in err's chain, before err is formatted into another: its port
// differs with every connection, and a failure's text is its cause for the log
// limiter (one warning per cause every 10 s), so a Dataverse resetting
// connections was a warning per lookup. The remote address, which node
// failed, stays. The same goes for a DNS query's failure, whose text Go
// writes with the query's own local port ("lookup dv.example.com on
// 127.0.0.53:53: read udp 127.0.0.1:48572->127.0.0.53:53: read: connection
// refused", the host's resolver not running): a warning per lookup for as
// long as DNS failed.
func withoutLocalAddr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := localAddr.ReplaceAllString(msg, "$1")
	if clean == msg {
		return err
	}
	// The text only: the error itself may be shared (HTTP/2 gives every
	// request on a failed connection the same one), and is not ours to
	// write into.
	return &scrubbedError{msg: clean, err: err}
}

// scrubbedError is err with another text (withoutLocalAddr).
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// localAddr is the local address in the text of a network error ("read
// tcp 10.0.0.5:51234->20.1.2.3:443", and a DNS query's "read udp
// 127.0.0.1:48572->127.0.0.53:53"), as net.OpError writes it with a
// Source.
var localAddr = regexp.MustCompile(`\b((?:read|write|dial|close) (?:udp|tcp)[46]? )\S+->`)

// redirectHost is a Location's scheme and host, without its path or query
// (which may quote the query's values).
func redirectHost(loc string) string {
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" {
		return "another path of the same host"
	}
	return u.Scheme + "://" + u.Host
}

// hostOf is the host of a URL, for errors that must not carry its path or
// query.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "dataverse"
	}
	return u.Host
}

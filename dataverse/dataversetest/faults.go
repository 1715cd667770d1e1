package dataversetest

import (
	"context"
	"strings"
	"time"
)

// ThrottleNext answers the next n API requests with 429, Retry-After
// (whole seconds, at least 1) and the service-protection error body.
func (s *Server) ThrottleNext(n int, retryAfter time.Duration) {
	s.mu.Lock()
	s.throttleNext, s.throttleRA = n, retryAfter
	s.mu.Unlock()
}

// ThrottleEvery answers every k-th API request that arrives outside a
// Retry-After window with 429 (k = 2: half of them); 0 turns it off.
// Requests that arrive inside a window are answered 429 too and, past the
// in-flight grace, recorded as violations.
func (s *Server) ThrottleEvery(k int, retryAfter time.Duration) {
	s.mu.Lock()
	s.throttleEvery, s.throttleRA, s.throttleCount = k, retryAfter, 0
	s.mu.Unlock()
}

// The service protection limits a 429 can report, by the hex code the Web
// API returns in error.code (api-limits.md, "Service protection API limit
// errors returned").
const (
	LimitRequests      = "0x80072322" // 6,000 requests per 5 minutes
	LimitExecutionTime = "0x80072321" // 20 minutes of execution per 5 minutes
	LimitConcurrency   = "0x80072326" // 52 concurrent requests
)

// ThrottleLimit sets which service protection limit the 429s of
// ThrottleNext and ThrottleEvery report (LimitRequests by default).
func (s *Server) ThrottleLimit(code string) {
	s.mu.Lock()
	s.throttleLimit = code
	s.mu.Unlock()
}

// ExpireSecret makes the token endpoint answer the right client secret as
// Entra ID answers one past its expiry: 401 invalid_client, AADSTS7000222.
func (s *Server) ExpireSecret(expired bool) {
	s.mu.Lock()
	s.secretExpired = expired
	s.mu.Unlock()
}

// FailNextHTML answers the next n API requests with status and an HTML
// page instead of an OData error body, as a gateway or load balancer in
// front of the Web API does (502, 503, 504), or a proxy's block page.
func (s *Server) FailNextHTML(n, status int) {
	s.mu.Lock()
	s.htmlNext, s.htmlStatus = n, status
	s.mu.Unlock()
}

// FailTokenNext answers the next n token requests with status (503, 500
// or 429, with Retry-After: 1) and the OAuth error temporarily_unavailable,
// as an identity platform that cannot answer now does.
func (s *Server) FailTokenNext(n, status int) {
	s.mu.Lock()
	s.tokenFail, s.tokenStatus = n, status
	s.mu.Unlock()
}

// FailNext answers the next n API requests with status (e.g. 503).
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	s.failNext, s.failStatus = n, status
	s.mu.Unlock()
}

// setFailure is a FailNextIn fault: the next n queries of an entity set
// fail with status.
type setFailure struct{ n, status int }

// FailNextIn answers the next n queries of entitySet, alone or inside a
// $batch, with status: 401 without a body, as Dataverse answers a token it
// does not accept, anything else with an OData error body. Inside a batch
// only that request fails; without Prefer: odata.continue-on-error the
// batch stops there.
func (s *Server) FailNextIn(entitySet string, n, status int) {
	s.mu.Lock()
	s.failSet[entitySet] = setFailure{n: n, status: status}
	s.mu.Unlock()
}

// IgnoreContinueOnError makes $batch stop at the first failed request even
// when the batch asks for Prefer: odata.continue-on-error, as a service may
// ignore a preference, so a client's handling of a stopped batch can be
// tested.
func (s *Server) IgnoreContinueOnError(ignore bool) {
	s.mu.Lock()
	s.ignoreCOE = ignore
	s.mu.Unlock()
}

// SetLatency delays every API answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// DenyRead makes queries of entitySet fail with 403 "missing prvRead…
// privilege", as for an application user whose role lacks Read.
func (s *Server) DenyRead(entitySet string, deny bool) {
	s.mu.Lock()
	s.denied[entitySet] = deny
	s.mu.Unlock()
}

// DisableAppUser makes every API request fail with 403 "The user is not a
// member of the organization", as when the app registration has no
// application user in the environment.
func (s *Server) DisableAppUser(off bool) {
	s.mu.Lock()
	s.appUserOff = off
	s.mu.Unlock()
}

// RedirectAPI answers every Web API request with status (301, 302, 307,
// 308) and a Location on to (another environment's URL, keeping the path
// and query), as a front door does for an environment whose URL was
// changed or that moved; "" turns it off. The token endpoint is not
// redirected.
func (s *Server) RedirectAPI(status int, to string) {
	s.mu.Lock()
	s.redirectCode, s.redirectTo = status, strings.TrimSuffix(to, "/")
	s.mu.Unlock()
}

// ExpireTokens invalidates every token issued so far (the next API request
// with one gets 401).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}

// Requests returns a copy of the request log.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests.all()
}

// HTTPRequests counts the API requests that were HTTP requests of their
// own ($batch parts not counted, token requests not counted).
func (s *Server) HTTPRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests.http
}

// TokenRequests counts requests to the token endpoint.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReq
}

// ResetLog clears the request log and the violations.
func (s *Server) ResetLog() {
	s.mu.Lock()
	s.requests, s.violations, s.maxInflight, s.arrived = requestLog{}, nil, s.inflight, 0
	s.mu.Unlock()
}

// Arrived counts the authenticated API requests received since the last
// ResetLog, answered or not: one the client gave up on (its timeout, while
// the emulator waits out SetLatency) is in no other count.
func (s *Server) Arrived() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived
}

// Violations returns the requests that arrived inside a Retry-After window
// after the in-flight grace.
func (s *Server) Violations() []Violation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Violation(nil), s.violations...)
}

// AwaitRequests waits until at least n API requests (HTTPRequests) are
// logged, or ctx is done.
func (s *Server) AwaitRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if s.HTTPRequests() >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// MaxConcurrent returns the most authenticated API requests that were in
// progress at once since the last ResetLog.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInflight
}

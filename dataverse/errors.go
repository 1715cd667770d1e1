package dataverse

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	// ErrCircuitOpen is returned by Lookup while the circuit breaker is
	// open after repeated failures: Dataverse is not called.
	ErrCircuitOpen = errors.New("dataverse circuit breaker open")
	// ErrClosed is returned once Close was called.
	ErrClosed = errors.New("dataverse client closed")
	// ErrBusy ends a lookup that waited QueueTimeout for one of the
	// Concurrency request slots and never sent its request: more cache
	// misses than Dataverse answers (a burst, a slow Dataverse). It is
	// screenpop's own queue, not Dataverse failing: not cached, and not
	// counted toward the circuit breaker.
	ErrBusy = errors.New("dataverse requests all busy: lookup not sent")
)

// AuthError is a failed authentication or authorization: a token request
// Entra ID refused, or a Dataverse 401/403. Hint names the setting or the
// admin action that fixes it. It never carries the secret or a token.
type AuthError struct {
	Status int    // HTTP status
	Code   string // Entra ID error and AADSTS code, or the Dataverse error code
	AADSTS int    // Entra ID's first AADSTS code (700027 for 'AADSTS700027'); 0 if none
	Hint   string
}

func (e *AuthError) Error() string {
	return "dataverse auth: " + e.Hint + " (HTTP " + strconv.Itoa(e.Status) + " " + e.Code + ")"
}

// APIError is a Dataverse Web API error answer that is not retried. It
// carries the OData error code but not the message, which may quote the
// query's values.
type APIError struct {
	Status int
	Code   string // e.g. 0x0 (an unknown column), 0x80040220
	Entity string // the entity queried, if one
	Hint   string
}

func (e *APIError) Error() string {
	s := "dataverse: HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Entity != "" {
		s += " querying " + e.Entity
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// ThrottledError is returned when Dataverse asked the client to wait
// (429 Retry-After) beyond what the lookup may wait.
type ThrottledError struct{ Until time.Time }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("dataverse throttled until %s", e.Until.UTC().Format(time.RFC3339))
}

// temporaryError marks an attempt's failure as retryable.
type temporaryError struct {
	reason     string // "throttled", "server", "timeout", "network"
	retryAfter time.Duration
	err        error
}

func (e *temporaryError) Error() string { return e.err.Error() }
func (e *temporaryError) Unwrap() error { return e.err }

// Package dataverse finds the Dynamics 365 (Dataverse) records that belong to
// a caller: it is screenpop's bridge.Directory.
//
// It wraps the Dataverse Web API (v9.2) with an Entra ID client-credentials
// token, obtained with the app registration's client secret or with a client
// assertion signed by its certificate (ClientCertificate, read again from its
// file at each token request), and turns a customer identifier (an E.164 phone number or an email
// address) into at most a few records of the first configured entity that has
// any match. Phone numbers are stored by people as free text, so a number is
// matched against the small set of formats people type (see PhoneVariants),
// with indexed eq comparisons only; the entity queries of one lookup travel
// together in one $batch request.
//
// Around the HTTP calls sit the protections Dataverse's service-protection
// limits ask for: a client-wide gate that honours Retry-After (no request
// leaves before it elapses), retries with jittered exponential backoff on 5xx
// and timeouts, a concurrency limit, a circuit breaker, and positive and
// negative caches with single-flight so that a burst of events for one caller
// costs one request.
//
// What it does not do: write to Dataverse, keep a local phone index (change
// tracking is a later step), or decide what to pop (package bridge does).
//
// Concurrency: a Client is safe for concurrent use. Lookups run on a
// background flight that outlives the caller's context (a lookup that
// finishes after the pop deadline still fills the cache); Close ends those
// flights. Run refreshes the token ahead of its expiry.
package dataverse

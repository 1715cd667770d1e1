package notifications

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"
)

// PendingAgents returns the agents waiting for the reconciliation of
// their newly put topic (Client.pendingAgents), for the tests of what the
// client keeps while a reconciliation fails.
func PendingAgents(c *Client) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.pendingAgents))
	for a := range c.pendingAgents {
		out = append(out, a)
	}
	return out
}

// Watched reports whether agent is on a shard (Client.agentShard).
func Watched(c *Client, agent string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agentShard[agent] != nil
}

// AgeRinging makes every call seen ringing look d older, so that a test
// of what lingerMax (10 minutes) bounds does not wait for it.
func AgeRinging(c *Client, d time.Duration) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	for _, m := range c.ringing {
		for _, at := range m {
			*at = at.Add(-d)
		}
	}
}

// LingerMax is lingerMax.
const LingerMax = lingerMax

// SetRingingSweep sets how often, without queues, the calls seen ringing
// whose end was lost are forgotten (1h by default).
func SetRingingSweep(c *Config, d time.Duration) { c.ringingSweep = d }

// RingingCalls counts the calls the client holds as ringing, over all
// agents.
func RingingCalls(c *Client) int {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	n := 0
	for _, m := range c.ringing {
		n += len(m)
	}
	return n
}

// CloseIdleConnections closes the Authenticator's idle connections to
// Genesys, for tests that check for leaked goroutines.
func CloseIdleConnections(a *Authenticator) { a.hc.CloseIdleConnections() }

// AgeOpen makes every leg remembered open look d older, so that a test of
// what seenHorizon (12 hours) bounds does not wait for it.
func AgeOpen(c *Client, d time.Duration) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	for _, m := range c.open {
		for _, at := range m {
			*at = at.Add(-d)
		}
	}
}

// TrustRoots makes a's own transport trust roots (a test server's
// certificate), keeping the rest of it: HTTP/2 and its health checks.
func TrustRoots(a *Authenticator, roots *x509.CertPool) {
	a.hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
}

// SDKConfigPath is the configuration file the SDK is given (sdkConfigPath).
var SDKConfigPath = sdkConfigPath

// SetLoginLogEvery sets how often a login failing over and over is logged
// (30 s), for a test to see the repeat; it returns a func that puts it
// back.
func SetLoginLogEvery(d time.Duration) func() {
	old := loginLogEvery
	loginLogEvery = d
	return func() { loginLogEvery = old }
}

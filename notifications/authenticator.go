package notifications

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/egress"
)

// AuthConfig configures an Authenticator. Zero fields mean defaults.
type AuthConfig struct {
	Region string // GENESYS_REGION
	APIURL string // GENESYS_API_URL
	OrgID  string // if set, tokens of another organization are refused
	// Org, if set and OrgID is empty, gives the organization to pin to
	// (Client.OrgID: the daemon's own org, learned at its login); while it
	// returns "" no organization is checked.
	Org        func() string
	Revalidate time.Duration // how long an answer is trusted; default 5m
	Timeout    time.Duration // per request; default 10s
}

// Authenticator turns an agent's Genesys access token into the agent's
// user id with GET /api/v2/users/me?expand=token. It implements
// bridge.AgentAuthenticator for push's genesys auth mode. Safe for
// concurrent use.
type Authenticator struct {
	cfg  AuthConfig
	base string
	hc   *http.Client
	log  zerolog.Logger
}

var _ bridge.AgentAuthenticator = (*Authenticator)(nil)

// NewAuthenticator validates cfg and returns an Authenticator.
func NewAuthenticator(cfg AuthConfig, log zerolog.Logger) (*Authenticator, error) {
	if cfg.Revalidate <= 0 {
		cfg.Revalidate = 5 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	h, err := RegionHosts(cfg.Region, cfg.APIURL)
	if err != nil {
		return nil, err
	}
	// Its own transport, for a proxy's refusal named as the proxy's
	// (internal/egress), not as Genesys' answer to the agent's token.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.OnProxyConnectResponse = egress.OnProxyConnectResponse
	// Every check goes to the one API host, push's revalidation pool
	// several at once: keep their connections (Go keeps 2 a host), or
	// each check pays a new TCP and TLS handshake with Genesys.
	tr.MaxIdleConnsPerHost = 32
	// HTTP/2 to the API host, all checks on one connection: one gone
	// silent would refuse every page's token until the kernel gave up on
	// it (TestAuthenticator_HTTP2DeadConnection).
	tr.HTTP2 = egress.HTTP2()
	return &Authenticator{cfg: cfg, base: h.API, hc: &http.Client{Timeout: cfg.Timeout, Transport: tr},
		log: log.With().Str("component", "notifications").Logger()}, nil
}

// Close closes the connections to Genesys kept for the next check. The
// daemon calls it at its stop: the transport is the Authenticator's own,
// and its keep-alive connections (up to 32) would otherwise stay open
// after the stop, until the idle timeout.
func (a *Authenticator) Close() error {
	a.hc.CloseIdleConnections()
	return nil
}

// Authenticate implements bridge.AgentAuthenticator. TokenInfo carries no
// expiry, so the answer is trusted until now+Revalidate.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (bridge.AgentID, time.Time, error) {
	token = strings.TrimSpace(token)
	// A space or control character (NUL, DEL, a line break) cannot go in
	// an Authorization header: net/http would refuse the request, which
	// reads as Genesys unreachable (1013, retried with the same token).
	if token == "" || len(token) > 4096 || strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", time.Time{}, fmt.Errorf("authenticate agent: %w", bridge.ErrInvalidToken)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/v2/users/me?expand=token", nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("authenticate agent: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("authenticate agent: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("authenticate agent: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", time.Time{}, fmt.Errorf("authenticate agent: genesys answered %d: %w", resp.StatusCode, bridge.ErrInvalidToken)
	case resp.StatusCode == http.StatusBadRequest:
		// A client-credentials token has no user: not an agent's token.
		return "", time.Time{}, fmt.Errorf("authenticate agent: not a user token (%s): %w", gjson.GetBytes(body, "code").Str, bridge.ErrInvalidToken)
	case resp.StatusCode != http.StatusOK:
		return "", time.Time{}, fmt.Errorf("authenticate agent: genesys answered %d", resp.StatusCode)
	}
	id := gjson.GetBytes(body, "id").Str
	if !validID(id) || !bridge.ValidSubjectToken(id) {
		return "", time.Time{}, errors.New("authenticate agent: users/me answered without a valid id")
	}
	want := a.cfg.OrgID
	if want == "" && a.cfg.Org != nil {
		want = a.cfg.Org()
	}
	if want != "" {
		org := gjson.GetBytes(body, "organization.id").Str
		if org == "" {
			org = gjson.GetBytes(body, "token.organization.id").Str
		}
		if org != want {
			return "", time.Time{}, fmt.Errorf("authenticate agent: token of another organization: %w", bridge.ErrInvalidToken)
		}
	}
	return bridge.AgentID(id), time.Now().Add(a.cfg.Revalidate), nil
}

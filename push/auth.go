package push

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/screenpop/screenpop/bridge"
)

// MinJWTSecret is the shortest HS256 secret accepted (256 bits).
const MinJWTSecret = 32

// maxToken bounds the token a hello may carry; anything longer is refused
// without asking the authenticator. It is the default frame limit
// (Config.MaxFrame), as docs/agents.md says: a token that fits in a hello
// is read (an SSO bridge's JWT with many group claims runs to 10 KB).
const maxToken = 16 << 10

// JWTAuthenticator validates HS256 tokens whose sub is the agent's Genesys
// user id and whose exp is required; with an audience, their aud must name
// it. It implements bridge.AgentAuthenticator.
type JWTAuthenticator struct {
	keys   jwt.VerificationKeySet // the secret, then the previous ones
	parser *jwt.Parser
}

var _ bridge.AgentAuthenticator = (*JWTAuthenticator)(nil)

// NewJWTAuthenticator returns an authenticator for secret, which must be at
// least MinJWTSecret bytes. A non-empty audience (SCREENPOP_JWT_AUDIENCE)
// must be in every token's aud: where one login signs tokens for several
// services with the same secret, a token made for another is refused.
// Tokens signed with a previous secret (SCREENPOP_JWT_SECRET_PREVIOUS) are
// accepted too, so that a new secret can be rolled out instance by
// instance while pages still hold tokens of the old one.
func NewJWTAuthenticator(secret []byte, audience string, previous ...[]byte) (*JWTAuthenticator, error) {
	if len(secret) < MinJWTSecret {
		return nil, fmt.Errorf("jwt secret: %d bytes, want at least %d (SCREENPOP_JWT_SECRET)", len(secret), MinJWTSecret)
	}
	keys := jwt.VerificationKeySet{Keys: []jwt.VerificationKey{append([]byte(nil), secret...)}}
	for _, p := range previous {
		if len(p) == 0 {
			continue
		}
		if len(p) < MinJWTSecret {
			return nil, fmt.Errorf("previous jwt secret: %d bytes, want at least %d (SCREENPOP_JWT_SECRET_PREVIOUS)", len(p), MinJWTSecret)
		}
		keys.Keys = append(keys.Keys, append([]byte(nil), p...))
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(), jwt.WithLeeway(5 * time.Second)}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	return &JWTAuthenticator{keys: keys, parser: jwt.NewParser(opts...)}, nil
}

// Authenticate implements bridge.AgentAuthenticator: the answer holds until
// the token's exp.
func (a *JWTAuthenticator) Authenticate(_ context.Context, token string) (bridge.AgentID, time.Time, error) {
	var claims jwt.RegisteredClaims
	_, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.keys, nil })
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", bridge.ErrInvalidToken, err)
	}
	if !bridge.ValidSubjectToken(claims.Subject) {
		return "", time.Time{}, fmt.Errorf("%w: sub is not a user id", bridge.ErrInvalidToken)
	}
	// A login that writes the user id in capitals or in braces names the
	// same agent, as GENESYS_AGENTS is read.
	return bridge.AgentID(bridge.GenesysID(claims.Subject)), claims.ExpiresAt.Time, nil
}

// MintToken returns an HS256 token for agent valid for ttl, for
// `screenpopd token` and the demo; its aud is audience, if any
// (SCREENPOP_JWT_AUDIENCE).
func MintToken(secret []byte, agent bridge.AgentID, ttl time.Duration, audience ...string) (string, error) {
	if len(secret) < MinJWTSecret {
		return "", fmt.Errorf("mint token: secret shorter than %d bytes", MinJWTSecret)
	}
	if !bridge.ValidSubjectToken(string(agent)) {
		return "", errors.New("mint token: agent id is not a valid user id")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   string(agent),
		Issuer:    "screenpop",
		Audience:  jwt.ClaimStrings(audience),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// refusedTTL is how long a refused token is refused without asking the
// authenticator again: a client that keeps presenting one (a stale page,
// or a flood of hellos) costs one round trip to Genesys per refusedTTL.
const refusedTTL = 30 * time.Second

// maxRefused bounds the refused tokens remembered; past it a refusal is
// not remembered (fresh bogus tokens are not worth the memory).
const maxRefused = 10000

// authCache remembers authenticator answers by the SHA-256 of the token
// (never the token itself): accepted ones until they must be revalidated,
// refused ones for refusedTTL. It collapses concurrent checks of one token
// (several tabs of one agent).
type authCache struct {
	auth       bridge.AgentAuthenticator
	revalidate time.Duration
	m          *metrics

	mu      sync.Mutex
	entries map[[32]byte]authEntry
	refused map[[32]byte]refusal
	sf      singleflight.Group
}

// maxReason bounds the reason a refusal keeps, and its log line quotes: a
// token's claims are the client's to write, and the JWT parser quotes a
// value it cannot read whole (an exp of 6,000 digits), so that thousands
// of bogus hellos would be kept as megabytes of their own text.
const maxReason = 256

// shortReason is err, an ErrInvalidToken, with its text cut to maxReason.
// Not valid yet keeps its error: it is told apart (not cached, and its own
// line about the issuer's clock).
func shortReason(err error) error {
	s := err.Error()
	if len(s) <= maxReason || errors.Is(err, jwt.ErrTokenNotValidYet) {
		return err
	}
	return cutReason(strings.ToValidUTF8(s[:maxReason], "") + "…")
}

// cutReason is a refusal's reason cut short; it is an ErrInvalidToken.
type cutReason string

func (e cutReason) Error() string        { return string(e) }
func (e cutReason) Is(target error) bool { return target == bridge.ErrInvalidToken }

// refusal is a refused token's answer, kept until when it is refused
// without asking again: its error still says why (the log line of each
// refusal names it).
type refusal struct {
	until time.Time
	err   error
}

type authEntry struct {
	agent bridge.AgentID
	until time.Time
}

type authResult struct {
	agent bridge.AgentID
	until time.Time
}

func newAuthCache(auth bridge.AgentAuthenticator, revalidate time.Duration, m *metrics) *authCache {
	return &authCache{auth: auth, revalidate: revalidate, m: m, entries: map[[32]byte]authEntry{}, refused: map[[32]byte]refusal{}}
}

// check returns the agent for token and until when that holds. A cached
// answer is used only if it still holds at now (a revalidation passes
// when the answer it renews runs out).
func (a *authCache) check(ctx context.Context, token string, now time.Time) (bridge.AgentID, time.Time, error) {
	if token == "" || len(token) > maxToken {
		return "", time.Time{}, fmt.Errorf("%w: no token, or one over %d bytes", bridge.ErrInvalidToken, maxToken)
	}
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	e, ok := a.entries[key]
	no, refused := a.refused[key]
	a.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.agent, e.until, nil
	}
	if refused && now.Before(no.until) {
		return "", time.Time{}, no.err
	}
	v, err, _ := a.sf.Do(string(key[:]), func() (any, error) {
		agent, until, err := a.auth.Authenticate(ctx, token)
		if err == nil && !bridge.ValidSubjectToken(string(agent)) {
			err = fmt.Errorf("%w: authenticator returned an unusable user id", bridge.ErrInvalidToken)
		}
		switch {
		case errors.Is(err, bridge.ErrInvalidToken):
			a.m.authChecks.WithLabelValues("invalid").Inc()
			err = shortReason(err)
			a.mu.Lock()
			delete(a.entries, key)
			// Not valid yet (its issuer's clock ahead of this one's) is
			// valid in a moment: the page's next try must not be refused
			// for the rest of refusedTTL. Checking it costs no round trip.
			if len(a.refused) < maxRefused && !errors.Is(err, jwt.ErrTokenNotValidYet) {
				a.refused[key] = refusal{until: time.Now().Add(refusedTTL), err: err}
			}
			a.mu.Unlock()
			return nil, err
		case err != nil:
			a.m.authChecks.WithLabelValues("error").Inc()
			return nil, err
		}
		a.m.authChecks.WithLabelValues("ok").Inc()
		t := time.Now()
		if max := t.Add(a.revalidate); until.IsZero() || until.After(max) {
			until = max
		}
		if !until.After(t) {
			// Already expired by the authenticator's own account.
			return nil, bridge.ErrInvalidToken
		}
		a.mu.Lock()
		delete(a.refused, key)
		a.entries[key] = authEntry{agent: agent, until: until}
		a.mu.Unlock()
		return authResult{agent, until}, nil
	})
	if err != nil {
		return "", time.Time{}, err
	}
	r := v.(authResult)
	return r.agent, r.until, nil
}

// sweep drops answers that are no longer trusted.
func (a *authCache) sweep(now time.Time) {
	a.mu.Lock()
	for k, e := range a.entries {
		if !now.Before(e.until) {
			delete(a.entries, k)
		}
	}
	for k, r := range a.refused {
		if !now.Before(r.until) {
			delete(a.refused, k)
		}
	}
	a.mu.Unlock()
}

// len returns how many accepted tokens are remembered.
func (a *authCache) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

package push

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens that a holder of another service's token, or of a wildcard or
// unusable sub, might try: each is refused at the hello (4401). alg none,
// no exp, an expired token and a wrong secret are in TestServer_Auth.
func TestServer_AuthRefusesMisusedJWTs(t *testing.T) {
	e := newEnv(t, Config{JWTAudience: "screenpop"}, nil, nil)
	exp := jwt.NewNumericDate(time.Now().Add(time.Hour))
	aud := jwt.ClaimStrings{"screenpop"}
	sign := func(m jwt.SigningMethod, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tok := range map[string]string{
		"HS512":          sign(jwt.SigningMethodHS512, jwt.RegisteredClaims{Subject: "agent-a", Audience: aud, ExpiresAt: exp}),
		"NotBeforeLater": sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", Audience: aud, ExpiresAt: exp, NotBefore: jwt.NewNumericDate(time.Now().Add(time.Minute))}),
		"OtherAudience":  sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", Audience: jwt.ClaimStrings{"another-service"}, ExpiresAt: exp}),
		"NoAudience":     sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", ExpiresAt: exp}),
		"WildcardSub":    sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "*", Audience: aud, ExpiresAt: exp}),
		"TailSub":        sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: ">", Audience: aud, ExpiresAt: exp}),
		"DottedSub":      sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a.x", Audience: aud, ExpiresAt: exp}),
		"NoSub":          sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Audience: aud, ExpiresAt: exp}),
		"ExpiredInLeeway": sign(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a", Audience: aud,
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(-2 * time.Second))}),
	} {
		t.Run(name, func(t *testing.T) {
			c := e.rawClient()
			c.send(map[string]any{"type": "hello", "token": tok})
			c.expectClose(CloseInvalidToken)
		})
	}
}

// With a previous secret (SCREENPOP_JWT_SECRET_PREVIOUS) tokens of both
// secrets are taken, and a token of any other secret is still refused.
func TestJWTAuthenticator_PreviousSecret(t *testing.T) {
	cur, prev, other := []byte("current-secret-0123456789abcdef-0123"), []byte("previous-secret-0123456789abcdef-012"), []byte("another-secret-0123456789abcdef-01234")
	a, err := NewJWTAuthenticator(cur, "", prev)
	if err != nil {
		t.Fatal(err)
	}
	const agent = "5e1f0a1c-0000-4000-8000-000000000001"
	for name, secret := range map[string][]byte{"Current": cur, "Previous": prev, "Other": other} {
		tok, err := MintToken(secret, agent, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := a.Authenticate(t.Context(), tok)
		if want := name != "Other"; (err == nil && string(got) == agent) != want {
			t.Errorf("%s secret: agent %q, err %v; want accepted %v", name, got, err, want)
		}
	}
	if _, err := NewJWTAuthenticator(cur, "", []byte("short")); err == nil {
		t.Error("a previous secret shorter than 32 bytes was taken")
	}
}

// A login that writes the agent's Genesys user id in capitals in sub names
// the same user Genesys writes in lower case (in the conversations the
// pops come from): the socket must be that agent's, or it gets no pop.
func TestJWTAuthenticator_SubInCapitals(t *testing.T) {
	secret := []byte("current-secret-0123456789abcdef-0123")
	a, err := NewJWTAuthenticator(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := MintToken(secret, "5E1F0A1C-0000-4000-8000-0000000000AB", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := a.Authenticate(t.Context(), tok)
	if err != nil || got != "5e1f0a1c-0000-4000-8000-0000000000ab" {
		t.Fatalf("agent %q (%v), want the id in lower case", got, err)
	}
}

// The twin of TestJWTAuthenticator_SubInCapitals for braces: a login that
// writes the agent's user id as Windows tools and Dynamics copy a GUID,
// {5E1F…}, names the same user (GENESYS_AGENTS, the agents file and token
// --agent read such an id without its braces, docs/configuration.md). The
// socket must be that agent's: under "{5e1f…}" the page says ready and
// never gets a pop.
func TestJWTAuthenticator_SubInBraces(t *testing.T) {
	secret := []byte("current-secret-0123456789abcdef-0123")
	a, err := NewJWTAuthenticator(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := MintToken(secret, "{5E1F0A1C-0000-4000-8000-0000000000AB}", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := a.Authenticate(t.Context(), tok)
	if err != nil || got != "5e1f0a1c-0000-4000-8000-0000000000ab" {
		t.Fatalf("agent %q (%v), want the id in lower case without braces", got, err)
	}
}

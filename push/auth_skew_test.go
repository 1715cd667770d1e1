package push

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// A token issuer whose clock is a few seconds ahead of this host's (past
// nbf's 5 s) makes a fresh token not valid yet here for those seconds. The
// refusal must not outlive them (it was remembered 30 s, so the page's
// reconnects with the same token were refused too and the agent was asked
// to sign in), and on-call must be told the clocks may be the cause.
func TestServer_AuthTokenFromAnIssuerAhead(t *testing.T) {
	var logs syncbuf.Buffer
	e := startEnvLog(t, Config{}, nil, nil, zerolog.New(&logs))
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	issuerNow := time.Now().Add(6 * time.Second) // the issuer's clock: 6 s ahead
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "agent-a",
		IssuedAt: jwt.NewNumericDate(issuerNow), NotBefore: jwt.NewNumericDate(issuerNow), ExpiresAt: jwt.NewNumericDate(issuerNow.Add(time.Hour))}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": tok})
	c.expectClose(CloseInvalidToken)
	if l := logs.String(); !strings.Contains(l, "clock") || !strings.Contains(l, "NTP") {
		t.Errorf("the refusal of a token not valid yet does not name the clocks; log:\n%s", l)
	}
	time.Sleep(time.Until(issuerNow.Add(-5*time.Second)) + 100*time.Millisecond) // its nbf less the leeway has passed
	c = e.rawClient()
	c.send(map[string]any{"type": "hello", "token": tok})
	if m := c.next(); m.Type != "ready" {
		t.Fatalf("the same token once valid: %+v, want ready (the earlier refusal was remembered)", m)
	}
}

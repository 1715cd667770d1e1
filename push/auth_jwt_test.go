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

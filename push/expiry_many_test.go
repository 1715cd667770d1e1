package push

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// docs/agents.md: in jwt mode "the socket closes with 4401 when exp passes
// (at the server's next check of its sockets, within a second)". Many
// agents whose tokens expire in the same second (minted together at a
// shift start) must all be closed within that second, not a pool of 8 per
// tick.
func TestServer_ManyTokensExpireWithinASecond(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	const n = 120
	// 5 to 6 s ahead: connecting 120 sockets takes seconds under -race on
	// a loaded machine, and a token expired before its hello is refused.
	exp := time.Now().Add(6 * time.Second).Truncate(time.Second)
	var mu sync.Mutex
	var last time.Time
	var wg sync.WaitGroup
	for i := range n {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: fmt.Sprintf("agent-x%03d", i), ExpiresAt: jwt.NewNumericDate(exp)})
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := e.connect(s, nil, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, _, err := c.ws.ReadMessage()
				if err == nil {
					continue
				}
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code == CloseInvalidToken {
					mu.Lock()
					if now := time.Now(); now.After(last) {
						last = now
					}
					mu.Unlock()
				}
				return
			}
		}()
	}
	if time.Now().After(exp) {
		t.Skip("connecting took past the tokens' exp")
	}
	wg.Wait()
	// Within about a second, with room for a loaded machine; a pool of 8
	// a tick (400 ms) would take 6 s for 120 sockets.
	if late := last.Sub(exp); late > 3*time.Second {
		t.Fatalf("the last of %d sockets whose token expired together closed %v after exp, want within about a second", n, late.Round(time.Millisecond))
	}
}

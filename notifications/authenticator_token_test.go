package notifications_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/push"
)

// TestAuthenticator_UnsendableTokenIsInvalid: a hello token with a
// control character (NUL, DEL, VT: anything a client sends) cannot go in
// an Authorization header, so net/http refuses the users/me request before
// it leaves. That is the token's fault, not Genesys': the socket must close
// 4401 (docs/agents.md: get a new token, do not retry with this one), not
// 1013 "token check unavailable", which has the page retry the same token
// for ever, counts auth_checks_total{result="error"} and logs "token could
// not be checked" as if Genesys were down.
func TestAuthenticator_UnsendableTokenIsInvalid(t *testing.T) {
	s := startAuthStorm(t, push.Config{}, 0)
	for _, tok := range []string{"abc\x00def", "abc\x7f", "a\vb"} {
		ws, _, err := websocket.DefaultDialer.Dial(s.wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteJSON(map[string]any{"type": "hello", "token": tok}); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, _, err := ws.ReadMessage()
			if err == nil {
				continue // the error frame
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != push.CloseInvalidToken {
				t.Errorf("token %q: %v, want close %d", tok, err, push.CloseInvalidToken)
			}
			break
		}
		ws.Close()
	}
}

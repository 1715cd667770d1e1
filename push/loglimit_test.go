package push

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// While the identity provider is down (Genesys' users/me answering 503 or
// not at all), every open socket's token revalidation fails and is retried
// 30 s later. Each failure must not be a warn line of its own: with 10,000
// agents connected that is 10,000 lines every 30 s (about 330 a second)
// for as long as the outage lasts. One sweep's worth of failures here
// (1,000 sockets) stands for one 30 s round.
func TestServer_RevalidationOutageDoesNotFloodTheLog(t *testing.T) {
	auth := authFunc(func(context.Context, string) (bridge.AgentID, time.Time, error) {
		return "", time.Time{}, errors.New("authenticate agent: genesys answered 503")
	})
	var logs logBuffer
	s, err := New(Config{Auth: AuthGenesys}, newMemStore(), auth, zerolog.New(&logs).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const sockets = 1000
	for i := range sockets {
		c := &conn{s: s, agent: bridge.AgentID(fmt.Sprintf("agent-%d", i)), token: fmt.Sprintf("token-%d", i)}
		c.revalidating.Store(true) // as sweep leaves it
		s.revalidate(ctx, c)
		s.revalWG.Wait()
		if next := time.Unix(0, c.nextAuth.Load()); time.Until(next) < 20*time.Second {
			t.Fatalf("socket %d: next revalidation in %v, want about 30 s", i, time.Until(next))
		}
	}
	n := 0
	for _, l := range logs.lines() {
		if l["level"] == "warn" || l["level"] == "error" {
			n++
		}
	}
	if n > 5 {
		t.Fatalf("%d warn lines for one round of %d failed revalidations (one outage, one cause): want a handful, rate limited with a count", n, sockets)
	}
}

// A page on an origin missing from SCREENPOP_ALLOWED_ORIGINS (a new
// Dynamics org or app host that nobody added) is refused on every
// reconnect, and screenpop.js reconnects with a backoff capped at 30 s:
// 10,000 agents on it are several hundred refusals a second for as long as
// the setting is wrong, and any client can send them. The origin must
// still reach the log (the admin copies it from there), but not once per
// request.
func TestServer_RepeatedOriginRefusalsDoNotFloodTheLog(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, newMemStore(), nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	waitFor(t, 5*time.Second, "listener serving", e.srv.serving.Load)
	const refusals = 300
	for range refusals {
		ws, resp, err := e.dial(map[string][]string{"Origin": {"https://contoso.crm4.dynamics.com"}})
		if err == nil {
			ws.Close()
			t.Fatal("origin accepted")
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	n := 0
	for _, l := range logs.lines() {
		if l["message"] == "websocket refused: origin not allowed" {
			n++
		}
	}
	if n > 5 {
		t.Fatalf("%d info lines for %d refusals of one origin, want a handful (first one, then a count per interval)", n, refusals)
	}
}

// Refused hellos (a bogus token, a first frame that is no hello) are
// lines any client can cause: logged at most once a minute each.
func TestServer_RefusedHellosDoNotFloodTheLog(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, newMemStore(), nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	waitFor(t, 5*time.Second, "listener serving", e.srv.serving.Load)
	for i := range 20 {
		c := e.rawClient()
		c.send(map[string]any{"type": "hello", "token": fmt.Sprintf("bogus-%d", i)})
		c.expectClose(CloseInvalidToken)
		c = e.rawClient()
		c.send(map[string]any{"type": "ack", "seq": 1})
		c.expectClose(CloseMalformed)
	}
	n := map[string]int{}
	for _, l := range logs.lines() {
		if m, _ := l["message"].(string); m != "" {
			n[m]++
		}
	}
	for _, m := range []string{"websocket closed: invalid or expired token", "websocket closed: first frame is not a hello"} {
		if n[m] != 1 {
			t.Errorf("%q logged %d times for 20, want once (then a count a minute)", m, n[m])
		}
	}
}

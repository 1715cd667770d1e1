package push

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// The origin of a refused upgrade is a log limiter key any client chooses
// (one request each, no token needed), and the limiter holds 64 keys: past
// them every new key shares one line a minute. The daemon's own warnings
// (sockets waiting for their hello past the cap, token checks or the
// latest pop unavailable during an outage) used the same limiter: a client
// sending a few dozen made-up origins a minute kept them out of the log,
// and on-call saw an Info line about an origin instead of the warning that
// names the outage.
func TestServer_MadeUpOriginsDoNotHideTheDaemonsWarnings(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{HelloTimeout: 10 * time.Second, HelloPending: 1}, nil, nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	// Ready, not just serving: a socket let in before the pop
	// subscription is live is told to resume (4008) once it is.
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	for i := range 100 {
		ws, resp, err := e.dial(http.Header{"Origin": {fmt.Sprintf("https://made-up-%d.example", i)}})
		if err == nil {
			ws.Close()
			t.Fatal("origin accepted")
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	if helloCapWarned(t, e, &logs) {
		return
	}
	t.Fatal("no warning for a socket refused past HelloPending after a client sent 100 made-up origins: the origins' keys crowded it out of the log limiter")
}

// The socket cap's warning is kept per agent (each agent's repeats held
// back on their own), so its keys grow with the agents over the cap: a
// floor's pages that all open one socket too many (a script bug, a kiosk
// reloading) made 64 of them, and the daemon's own warnings then shared
// the overflow line with the 65th agent's.
func TestServer_AgentsOverTheSocketCapDoNotHideTheDaemonsWarnings(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{AgentSockets: 1, HelloTimeout: 10 * time.Second, HelloPending: 1}, nil, nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	// Ready, not just serving: a socket let in before the pop
	// subscription is live is told to resume (4008) once it is.
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	for i := range 70 {
		tok := e.token(bridge.AgentID(fmt.Sprintf("agent-cap-%d", i)))
		first, _ := e.connect(tok, nil, "")
		second := e.rawClient()
		second.send(map[string]any{"type": "hello", "token": tok})
		second.expectClose(CloseTooMany)
		first.ws.Close()
	}
	capped := 0
	for _, l := range logs.lines() {
		if l["message"] == "websocket closed: agent has too many sockets open" {
			capped++
		}
	}
	if capped < 64 {
		t.Fatalf("%d socket-cap warnings for 70 agents over the cap, want one per agent", capped)
	}
	if helloCapWarned(t, e, &logs) {
		return
	}
	t.Fatal("no warning for a socket refused past HelloPending after 70 agents went over the socket cap: their keys crowded it out of the log limiter")
}

// helloCapWarned fills e's only place for a hello (HelloPending 1), has
// the next socket refused, and reports whether that refusal was logged.
func helloCapWarned(t *testing.T, e *env, logs *logBuffer) bool {
	t.Helper()
	ws, _, err := e.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, resp, err := e.dial(nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second socket without a hello: %v (%v), want 503", err, resp)
	}
	resp.Body.Close()
	for _, l := range logs.lines() {
		if l["message"] == "websocket refused: too many sockets waiting for their hello" {
			return true
		}
	}
	return false
}

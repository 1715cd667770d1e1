package push

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
)

// TestServer_KeepAlivesSurviveAWallClockStepBack: a socket's next ping and
// heartbeat are kept as wall-clock UnixNano and the sweep compares them
// with the wall clock (the ticker's timers themselves run on the
// monotonic clock). When NTP steps the wall clock back (a host that ran
// minutes fast), every socket's keep-alives stop for as long as the step:
// no ping, so no pong, and the server's own read deadline (2 pings) closes
// every agent's socket at once, as does each page's 60 s watchdog: a
// reconnect storm of every agent (in genesys mode a token check to Genesys
// each), and pops made meanwhile wait for the reconnect.
func TestServer_KeepAlivesSurviveAWallClockStepBack(t *testing.T) {
	const ping = 25 * time.Second
	s, err := New(Config{Auth: AuthJWT, JWTSecret: testSecret, PingInterval: ping, HeartbeatInterval: ping}, newMemStore(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{s: s}
	c.nextAuth.Store(time.Now().Add(time.Hour).UnixNano())
	c.ready.Store(true)
	s.conns[c] = struct{}{}
	t0 := time.Now()
	if _, ka := s.sweep(t0, nil, nil); len(ka) != 1 {
		t.Fatalf("a new socket's keep-alives not due at its first sweep: %+v", ka)
	}
	// A ping interval and a second later, after NTP stepped the clock
	// back 5 minutes.
	later := testenv.StepWall(t, t0.Add(ping+time.Second), -5*time.Minute)
	if _, ka := s.sweep(later, nil, nil); len(ka) != 1 || !ka[0].ping || !ka[0].beat {
		t.Fatalf("%v after the last ping, with the wall clock stepped back 5 min: keep-alives due %+v, want the ping and the heartbeat (the read deadline, %v, would close the socket first)", ping+time.Second, ka, c.readTimeout())
	}
}

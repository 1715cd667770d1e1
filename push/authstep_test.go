package push

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
)

// TestServer_TokenCheckDueAfterAWallClockStepBack: in genesys mode a
// socket's token is checked again Revalidate (5 min) after its last
// answer (the auth cache's until: a time.Now() plus the interval), so that
// a token revoked in Genesys (an agent logged out, removed, a role taken
// away) stops getting pops within that time. The check's due time is kept
// as wall-clock UnixNano and compared with the wall clock (69e8d71 moved
// the keep-alives to the monotonic clock, not this): after NTP steps the
// clock back 5 minutes every socket's check comes 5 minutes late, and a
// revoked token keeps getting the customers' pops that long.
func TestServer_TokenCheckDueAfterAWallClockStepBack(t *testing.T) {
	const revalidate = 5 * time.Minute
	s := &Server{cfg: Config{Auth: AuthGenesys, Revalidate: revalidate, PingInterval: 25 * time.Second, HeartbeatInterval: 25 * time.Second}, conns: map[*conn]struct{}{}}
	c := &conn{s: s}
	c.ready.Store(true)
	s.conns[c] = struct{}{}
	t0 := time.Now()
	s.scheduleCheck(c, t0.Add(revalidate)) // the cache's answer: t + Revalidate
	if due, _ := s.sweep(t0, nil, nil); len(due) != 0 {
		t.Fatalf("a token just checked is due again at once")
	}
	// The whole interval and a second later, after NTP stepped the clock
	// back 5 minutes.
	later := testenv.StepWall(t, t0.Add(revalidate+time.Second), -5*time.Minute)
	if due, _ := s.sweep(later, nil, nil); len(due) != 1 {
		t.Fatalf("%v after its last check (the revalidation interval %v), the wall clock stepped back 5 min meanwhile: the token is not due for its check (a revoked token keeps its pops 5 min longer)", revalidate+time.Second, revalidate)
	}
}

package push

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// collect reads pops from a until want pops have come or the socket ends,
// checking that each is new and in order after *last. It returns whether
// the socket ended.
func collect(t *testing.T, a *linkAgent, last *uint64, got *[]uint64, want int, d time.Duration) (ended bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(*got) < want {
		f := a.next(time.Until(deadline))
		if f.err == errNoFrame {
			t.Fatalf("after %v: %d of %d pops (%v)", d, len(*got), want, *got)
		}
		if f.err != nil {
			return true
		}
		if f.m.Type != "pop" {
			continue
		}
		if f.m.Seq <= *last {
			t.Fatalf("pop %d after %d: repeated or out of order", f.m.Seq, *last)
		}
		*last = f.m.Seq
		*got = append(*got, f.m.Seq)
	}
	return false
}

// A 64 kbit/s link (600 ms VPN and 1.5 s satellite round trips and a
// 128 kbit/s link passed before too; not kept, for CI's time): an agent resumes after 100 pops stored while
// it was away (a replay far larger than usual), with live pops arriving
// while the replay crawls through. Every pop arrives once, in order, the
// heartbeat that ends the replay follows them, and the link is not closed
// as too slow: it is slow, but it reads.
func TestSlowLink_NarrowLinkReplayFinishes(t *testing.T) {
	for _, bps := range []int{64000} {
		t.Run(fmt.Sprintf("%dkbit", bps/1000), func(t *testing.T) {
			var logs logBuffer
			e := newSlowEnv(t, Config{}, zerolog.New(&logs))
			l := newSlowLink(t, e.ln.Addr().String(), linkDir{delay: 100 * time.Millisecond, bps: bps}, linkDir{delay: 100 * time.Millisecond, bps: bps})
			agent := bridge.AgentID(fmt.Sprintf("agent-narrow-%d", bps))
			tok := e.token(agent)
			c, r := e.connect(tok, nil, "") // the page's last socket, on a good link
			c.ws.Close()
			const n = 100
			var want []uint64
			for i := range n {
				want = append(want, e.publish(agent, fmt.Sprintf("conv-narrow-%d", i)))
			}
			start := time.Now()
			cursor := r.Seq
			a := e.dialVia(l, tok, &cursor, r.Epoch)
			var got []uint64
			last := cursor
			// Live pops while the replay is on its way.
			time.Sleep(500 * time.Millisecond)
			for i := range 3 {
				want = append(want, e.publish(agent, fmt.Sprintf("conv-narrow-live-%d", i)))
			}
			if collect(t, a, &last, &got, len(want), 50*time.Second) {
				t.Fatalf("socket ended after %d of %d pops (%v); slow_closed %d; log:\n%s", len(got), len(want), time.Since(start), e.srv.Status().(Status).SlowClosed, logs.String())
			}
			t.Logf("%d pops over %d bit/s in %v", len(got), bps, time.Since(start))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if n := e.srv.Status().(Status).SlowClosed; n != 0 {
				t.Fatalf("slow_closed = %d on a slow but healthy link", n)
			}
		})
	}
}

// An agent's Wi-Fi stalls (a handover: TCP keeps the connection, nothing
// moves for a while, then everything does) while a burst of pops is sent
// to it: more than the kernel buffers hold, so the server's write waits
// for the link. Timeouts here are a tenth of the daemon's (WriteTimeout
// 1 s for 10 s, pings and heartbeats every 2.5 s for 25 s), and the stall
// is 2 s (20 s).
//
// Every pop must reach the agent once and in order, on the same socket or
// after a resume. And if the server gives up on the socket because the
// agent did not take its frames, operations.md says how that shows:
// "agent socket too slow; closing" (warn: "the browser did not read for a
// while (4008); it resumes by itself"), slow_closed in /status ("sockets
// closed as too slow", docs/agents.md §6), and closes_total{code="4008"}
// ("4008 rising: slow browsers or network"). A socket cut for it without
// any of them leaves the on-call engineer with agents reconnecting for no
// reason the daemon gives.
func TestSlowLink_StallDuringABurst(t *testing.T) {
	cfg := Config{WriteTimeout: time.Second, PingInterval: 2500 * time.Millisecond, HeartbeatInterval: 2500 * time.Millisecond}
	const n, stall = 200, 2 * time.Second
	for _, replay := range []bool{false, true} {
		name := "LivePops"
		if replay {
			name = "ResumeReplay" // the pops were stored while the page was away
		}
		t.Run(name, func(t *testing.T) {
			var logs logBuffer
			e := newSlowEnv(t, cfg, zerolog.New(&logs))
			down := linkDir{delay: 20 * time.Millisecond}
			if replay {
				down.bps = 256000 // the replay takes a few seconds: the stall comes in the middle of it
			}
			l := newSlowLink(t, e.ln.Addr().String(), down, linkDir{delay: 20 * time.Millisecond})
			agent := bridge.AgentID("agent-stall-" + strings.ToLower(name))
			tok := e.token(agent)
			var want []uint64
			var a *linkAgent
			var epoch string
			var last uint64
			if replay {
				c, r := e.connect(tok, nil, "")
				c.ws.Close()
				epoch, last = r.Epoch, r.Seq
				for i := range n {
					want = append(want, e.publish(agent, fmt.Sprintf("conv-stall-%d", i)))
				}
				cursor := last
				a = e.dialVia(l, tok, &cursor, epoch)
				time.Sleep(500 * time.Millisecond) // the hello is through, the replay on its way
				l.stallDown()
			} else {
				a = e.dialVia(l, tok, nil, "")
				r := a.next(10 * time.Second)
				if r.err != nil || r.m.Type != "ready" {
					t.Fatalf("first frame %+v, want ready", r)
				}
				epoch = r.m.Epoch
				time.Sleep(300 * time.Millisecond) // the replay's heartbeat has come
				l.stall()
				for i := range n {
					want = append(want, e.publish(agent, fmt.Sprintf("conv-stall-%d", i)))
				}
			}
			time.Sleep(stall)
			l.resume()

			var got []uint64
			drops := 0
			for collect(t, a, &last, &got, n, 20*time.Second) {
				drops++
				if drops > 3 {
					t.Fatalf("socket dropped %d times; %d of %d pops", drops, len(got), n)
				}
				cursor := last
				a = e.dialVia(l, tok, &cursor, epoch)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			st := e.srv.Status().(Status)
			closes4008 := testutil.ToFloat64(e.srv.m.closes.WithLabelValues("4008"))
			t.Logf("drops %d, slow_closed %d, closes_total{4008} %v", drops, st.SlowClosed, closes4008)
			if drops > 0 {
				tooSlow := strings.Count(logs.String(), "agent socket too slow; closing")
				if st.SlowClosed == 0 || tooSlow == 0 || closes4008 == 0 {
					t.Errorf("the server cut the socket of an agent that did not take its frames during a %v stall, and said nothing: slow_closed %d, closes_total{code=\"4008\"} %v, %d \"agent socket too slow; closing\" lines; log:\n%s",
						stall, st.SlowClosed, closes4008, tooSlow, logs.String())
				}
			}
		})
	}
}

// One agent's link stalls with a burst of pops backed up in the server's
// write; the other agents' pops go on, promptly and in order, meanwhile
// and after (the fan-out never waits for a socket).
func TestSlowLink_StalledAgentDoesNotHoldUpOthers(t *testing.T) {
	var logs logBuffer
	e := newSlowEnv(t, Config{WriteTimeout: 2 * time.Second}, zerolog.New(&logs))
	l := newSlowLink(t, e.ln.Addr().String(), linkDir{}, linkDir{})
	slow := e.dialVia(l, e.token("agent-stuck"), nil, "")
	if f := slow.next(10 * time.Second); f.err != nil || f.m.Type != "ready" {
		t.Fatalf("first frame %+v", f)
	}
	fast, _ := e.connect(e.token("agent-quick"), nil, "")
	time.Sleep(300 * time.Millisecond)
	l.stall()
	defer l.resume()
	for i := range 150 {
		e.publish("agent-stuck", fmt.Sprintf("conv-stuck-%d", i))
	}
	deadline := time.Now().Add(3 * time.Second) // past the stuck socket's write timeout
	for i := 0; time.Now().Before(deadline); i++ {
		start := time.Now()
		seq := e.publish("agent-quick", fmt.Sprintf("conv-quick-%d", i))
		if m := fast.next(); m.Type != "pop" || m.Seq != seq {
			t.Fatalf("fast agent got %+v, want pop %d", m, seq)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("fast agent's pop %d took %v while another agent's link was stalled", i, d)
		}
		e.publish("agent-stuck", fmt.Sprintf("conv-stuck-more-%d", i))
		time.Sleep(50 * time.Millisecond)
	}
}

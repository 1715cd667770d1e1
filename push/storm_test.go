package push

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/fdlimit"
)

// raiseNoFile makes room for n descriptors: the soft RLIMIT_NOFILE up to
// the hard limit, as Go does at start (fdlimit.Limit reads it). It fails
// the test when the hard limit is too low: raise it (ulimit -Hn).
func raiseNoFile(t testing.TB, n uint64) {
	t.Helper()
	if lim, ok := fdlimit.Limit(); ok && lim >= n {
		return
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if l.Max < n {
		t.Fatalf("hard open-file limit %d < %d", l.Max, n)
	}
	old := l.Cur
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	t.Cleanup(func() { l.Cur = old; _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) })
}

// stormClient is one agent page of a reconnect storm: it dials, says hello
// at once and reads until told to stop.
type stormClient struct {
	agent   bridge.AgentID
	token   string
	lastSeq *uint64
	epoch   string

	dialErr  error
	readyAt  time.Duration // from the storm's start; 0 = never
	replayAt time.Duration // the first heartbeat: replay complete
	closeErr error         // how the socket ended before the test ended it
	mu       sync.Mutex
	pops     map[uint64]int // seq -> times received
	ws       *websocket.Conn
}

func (c *stormClient) run(wsURL string, start time.Time, release <-chan struct{}, done *sync.WaitGroup, ready *atomic.Int64) {
	defer done.Done()
	<-release
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, _, err := d.Dial(wsURL, nil)
	if err != nil {
		c.mu.Lock()
		c.dialErr = err
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	h := map[string]any{"type": "hello", "token": c.token}
	if c.lastSeq != nil {
		h["lastSeq"], h["epoch"] = *c.lastSeq, c.epoch
	}
	if err := ws.WriteJSON(h); err != nil {
		c.mu.Lock()
		c.closeErr = err
		c.mu.Unlock()
		return
	}
	for {
		var m msg
		err := ws.ReadJSON(&m)
		c.mu.Lock()
		switch {
		case err != nil:
			c.closeErr = err
		case m.Type == "ready":
			c.readyAt = time.Since(start)
			ready.Add(1)
		case m.Type == "heartbeat" && c.replayAt == 0:
			c.replayAt = time.Since(start)
		case m.Type == "pop":
			c.pops[m.Seq]++
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// state returns how far the page got.
func (c *stormClient) state() (readyAt, replayAt time.Duration, dialErr, closeErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyAt, c.replayAt, c.dialErr, c.closeErr
}

func (c *stormClient) popCount(seq uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pops[seq]
}

// pct is the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// TestServer_ReconnectStorm: every agent's page reconnects at the same
// moment (a daemon restart, a load balancer dropping every socket), each
// dialling and saying hello at once, over real loopback sockets to a server
// on a real embedded NATS. Every page must be ready, and have its replay,
// well within the hello deadline, none refused; a pop published while the
// storm is under way reaches its agent exactly once.
func TestServer_ReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm of thousands of sockets")
	}
	n := 3000
	deadline := 10 * time.Second // the hello deadline (Config.HelloTimeout)
	if raceEnabled {
		// The race detector's cost on two cores is not the server's: fewer
		// pages, still past nats-server's 1,000 consumers a stream, and no
		// bound on how long they take.
		n, deadline = 1500, 40*time.Second
	}
	raiseNoFile(t, uint64(2*n+512))
	for _, tc := range []struct {
		name   string
		replay bool // each agent has one pop to replay (an ordered consumer per hello)
	}{
		{"NothingToReplay", false},
		{"OnePopEachToReplay", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, nil, nil)
			epoch := e.bus.Epoch()
			clients := make([]*stormClient, n)
			// Publish the agents' earlier pops in parallel: each page
			// resumes from the seq before its own (replay) or at it.
			var pw sync.WaitGroup
			sem := make(chan struct{}, 16)
			for i := range clients {
				agent := bridge.AgentID(fmt.Sprintf("agent-storm-%05d", i))
				c := &stormClient{agent: agent, token: e.token(agent), epoch: epoch, pops: map[uint64]int{}}
				clients[i] = c
				pw.Add(1)
				sem <- struct{}{}
				go func() {
					defer pw.Done()
					defer func() { <-sem }()
					m, err := bridge.EncodePop(testPop(agent, "conv-before-"+string(agent)), time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if err := e.bus.Publish(ctx, m); err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					seq, err := e.bus.LatestPop(ctx, agent)
					if err != nil {
						t.Error(err)
						return
					}
					if tc.replay {
						seq--
					}
					c.lastSeq = &seq
				}()
			}
			pw.Wait()
			if t.Failed() {
				return
			}

			// Agents that get a live pop during the storm: spread over the
			// order the pages start in.
			var live []int
			for i := 7; i < n; i += n / 25 {
				live = append(live, i)
			}

			var ready atomic.Int64
			var wg sync.WaitGroup
			release := make(chan struct{})
			start := time.Now()
			for _, c := range clients {
				wg.Add(1)
				go c.run(e.wsURL, start, release, &wg, &ready)
			}
			t.Cleanup(func() {
				for _, c := range clients {
					c.mu.Lock()
					if c.ws != nil {
						c.ws.Close()
					}
					c.mu.Unlock()
				}
				wg.Wait()
			})
			close(release)

			// Publish the live pops once a tenth of the pages are ready:
			// the rest are dialling, in their hello or in their replay.
			waitFor(t, 30*time.Second, "a tenth of the pages ready", func() bool { return ready.Load() >= int64(n/10) })
			pubFrom := time.Since(start)
			liveSeq := map[int]uint64{}
			for _, i := range live {
				liveSeq[i] = e.publish(clients[i].agent, "conv-storm-"+string(clients[i].agent))
			}
			pubAt := time.Since(start)

			waitFor(t, deadline+5*time.Second, "every page ready and replayed", func() bool {
				all := true
				for _, c := range clients {
					_, replayAt, dialErr, closeErr := c.state()
					if dialErr != nil || closeErr != nil {
						return true // ended: reported below
					}
					all = all && replayAt != 0
				}
				return all
			}, true)
			elapsed := time.Since(start)
			// Let the live pops land everywhere they are going to.
			waitFor(t, 5*time.Second, "live pops", func() bool {
				for i, seq := range liveSeq {
					if clients[i].popCount(seq) == 0 {
						return false
					}
				}
				return true
			}, true)

			var dialFail, ended, notReady, notReplayed, late int
			var readies, replays []time.Duration
			var firstErrs []string
			for _, c := range clients {
				readyAt, replayAt, dialErr, closeErr := c.state()
				switch {
				case dialErr != nil:
					dialFail++
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, "dial: "+dialErr.Error())
					}
					continue
				case closeErr != nil:
					ended++
					if len(firstErrs) < 5 {
						var ce *websocket.CloseError
						if errors.As(closeErr, &ce) {
							firstErrs = append(firstErrs, fmt.Sprintf("closed %d", ce.Code))
						} else {
							firstErrs = append(firstErrs, closeErr.Error())
						}
					}
				}
				if readyAt == 0 {
					notReady++
					continue
				}
				readies = append(readies, readyAt)
				if replayAt == 0 {
					notReplayed++
					continue
				}
				replays = append(replays, replayAt)
				if replayAt > deadline {
					late++
				}
			}
			st := e.srv.Status().(Status)
			t.Logf("%d pages, storm %v: ready p50 %v p99 %v max %v; replay done p50 %v p99 %v max %v; live pops published %v-%v",
				n, elapsed.Round(time.Millisecond), pct(readies, .5).Round(time.Millisecond), pct(readies, .99).Round(time.Millisecond), pct(readies, 1).Round(time.Millisecond),
				pct(replays, .5).Round(time.Millisecond), pct(replays, .99).Round(time.Millisecond), pct(replays, 1).Round(time.Millisecond), pubFrom.Round(time.Millisecond), pubAt.Round(time.Millisecond))
			t.Logf("server: connections %d agents %d replayed %d sent %d", st.Connections, st.Agents, st.PopsReplayed, st.PopsSent)
			if dialFail+ended+notReady+notReplayed+late > 0 {
				t.Errorf("of %d pages: %d not connected, %d closed, %d never ready, %d ready without their replay, %d replayed after the %v hello deadline; first: %v",
					n, dialFail, ended, notReady, notReplayed, late, deadline, firstErrs)
			}
			for i, seq := range liveSeq {
				if got := clients[i].popCount(seq); got != 1 {
					t.Errorf("agent %s got its storm pop (seq %d) %d times, want once", clients[i].agent, seq, got)
				}
				if tc.replay {
					if got := clients[i].popCount(*clients[i].lastSeq + 1); got != 1 {
						t.Errorf("agent %s got its replayed pop %d times, want once", clients[i].agent, got)
					}
				}
			}
		})
	}
}

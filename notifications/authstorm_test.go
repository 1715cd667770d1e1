package notifications_test

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

// usersMeLog records, per agent token, when Genesys answered its users/me
// and with what status: the emulator behind a recorder.
type usersMeLog struct {
	mu  sync.Mutex
	at  map[string][]time.Time // token -> 200 answers
	non map[int]int            // other statuses -> count
}

func (l *usersMeLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v2/users/me") {
			h.ServeHTTP(w, r)
			return
		}
		rec := &codeRecorder{ResponseWriter: w, code: 200}
		h.ServeHTTP(rec, r)
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		l.mu.Lock()
		if rec.code == http.StatusOK {
			l.at[tok] = append(l.at[tok], time.Now())
		} else {
			l.non[rec.code]++
		}
		l.mu.Unlock()
	})
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }

// authStorm is a push server in genesys mode (this package's Authenticator,
// against the Genesys emulator behind usersMeLog) on a real embedded NATS.
type authStorm struct {
	emu   *notificationstest.Emulator
	log   *usersMeLog
	srv   *push.Server
	wsURL string
	conns *atomic.Int64 // connections opened to the emulated Genesys
}

func startAuthStorm(t *testing.T, cfg push.Config, usersMeDelay time.Duration) *authStorm {
	t.Helper()
	emu := notificationstest.New(notificationstest.Config{})
	emu.SetAPIDelay("/api/v2/users/me", usersMeDelay)
	l := &usersMeLog{at: map[string][]time.Time{}, non: map[int]int{}}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int64
	gsrv := &http.Server{Handler: l.wrap(emu.Handler()), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}}
	go func() { _ = gsrv.Serve(gln) }()
	t.Cleanup(func() { _ = gsrv.Close(); emu.Close() })

	auth, err := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: "http://" + gln.Addr().String(), OrgID: emu.Config().OrgID}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv, wsURL := startGenesysPush(t, cfg, auth, zerolog.Nop())
	return &authStorm{emu: emu, log: l, srv: srv, wsURL: wsURL, conns: &opened}
}

// connectAll opens n agent pages at once, each with its own agent's
// Genesys token, and returns their tokens and when each was ready.
func (a *authStorm) connectAll(t *testing.T, n int) (tokens []string, readyAt []time.Duration) {
	t.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < uint64(4*n+512) {
		old := l.Cur
		l.Cur = min(l.Max, uint64(4*n+512))
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		t.Cleanup(func() { l.Cur = old; _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) })
	}
	tokens = make([]string, n)
	for i := range tokens {
		tokens[i] = a.emu.AgentToken(fmt.Sprintf("agent-storm-%05d", i))
	}
	readyAt = make([]time.Duration, n)
	var conns sync.Map
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := websocket.Dialer{HandshakeTimeout: 20 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
			ws, _, err := d.Dial(a.wsURL, nil)
			if err == nil {
				conns.Store(i, ws)
				err = ws.WriteJSON(map[string]any{"type": "hello", "token": tokens[i]})
			}
			if err == nil {
				var m struct{ Type string }
				_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				err = ws.ReadJSON(&m)
				if err == nil && m.Type != "ready" {
					err = fmt.Errorf("first frame %q", m.Type)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			readyAt[i] = time.Since(start)
			// Keep reading (pings, heartbeats) so the socket stays healthy.
			go func() {
				_ = ws.SetReadDeadline(time.Time{})
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
				}
			}()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		conns.Range(func(_, v any) bool { v.(*websocket.Conn).Close(); return true })
	})
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d pages not ready; first: %v", f, n, firstErr.Load())
	}
	return tokens, readyAt
}

// With SCREENPOP_AUTH=genesys, every agent page reconnecting at once (a
// restart, a deploy, a load balancer dropping every socket) has each token
// checked with users/me within the same second or two. docs/agents.md
// promises each token is "checked again at least every 5 minutes": a token
// revoked (an agent disabled, signed out everywhere) stops getting that
// agent's pops — customers' names and numbers — within that time. The
// re-checks of all those sockets come due together; the pool that makes
// them must still make each within the revalidation period (a tick of
// slack), not hand out 8 a tick (20 a second) while the rest wait.
//
// Scaled down: a 10 s revalidation period and 1,500 sockets stand for
// 5 minutes and 45,000 sockets' rate, users/me answering in 20 ms for
// Genesys' 100 ms or so (so the pool of 8 is as busy as with 10,000
// sockets at 5 minutes).
func TestPushGenesysAuth_RecheckedWithinThePeriodAfterAStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm of thousands of sockets")
	}
	n := 1500
	if raceEnabled {
		n = 600
	}
	const period = 10 * time.Second
	a := startAuthStorm(t, push.Config{Revalidate: period}, 20*time.Millisecond)
	tokens, readyAt := a.connectAll(t, n)
	t.Logf("%d pages ready: p50 %v p99 %v max %v", n, pctl(readyAt, .5), pctl(readyAt, .99), pctl(readyAt, 1))

	// Wait for every token's second check, or the period and 4 s more
	// after the last first check.
	a.log.mu.Lock()
	var lastFirst time.Time
	for _, tok := range tokens {
		if at := a.log.at[tok]; len(at) > 0 && at[0].After(lastFirst) {
			lastFirst = at[0]
		}
	}
	a.log.mu.Unlock()
	deadline := lastFirst.Add(period + 4*time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	a.log.mu.Lock()
	defer a.log.mu.Unlock()
	var late []time.Duration // how long after its period a token was re-checked (or still was not)
	var gaps []time.Duration
	for _, tok := range tokens {
		at := a.log.at[tok]
		if len(at) == 0 {
			t.Fatalf("a token never checked")
		}
		next := deadline
		if len(at) > 1 {
			next = at[1]
		}
		gaps = append(gaps, next.Sub(at[0]))
		// 2 s of slack, not a tick: on a machine loaded by other tests
		// (go test -p 4 with cmd/screenpopd's parallel tests) a re-check
		// made on time came 1.06 s late (p99 0.77 s); a pool handing out
		// 8 a tick leaves tokens 10 s and more past their period, and a
		// token never checked again is 4 s past it here.
		if over := next.Sub(at[0]) - period; over > 2*time.Second {
			late = append(late, over)
		}
	}
	var seconds []time.Time
	for _, tok := range tokens {
		if at := a.log.at[tok]; len(at) > 1 {
			seconds = append(seconds, at[1])
		}
	}
	slices.SortFunc(seconds, func(x, y time.Time) int { return x.Compare(y) })
	if len(seconds) > 1 {
		t.Logf("second checks: %d from %v to %v after the last first check", len(seconds), seconds[0].Sub(lastFirst).Round(time.Millisecond), seconds[len(seconds)-1].Sub(lastFirst).Round(time.Millisecond))
	}
	t.Logf("gap between a token's first and second check: p50 %v p99 %v max %v; other answers %v",
		pctl(gaps, .5), pctl(gaps, .99), pctl(gaps, 1), a.log.non)
	if len(late) > 0 {
		t.Errorf("%d of %d tokens not checked again within the %v period (+2 s): %d of them not at all in %v",
			len(late), n, period, countAtLeast(late, 4*time.Second), period+4*time.Second)
	}
}

func countAtLeast(ds []time.Duration, d time.Duration) int {
	n := 0
	for _, x := range ds {
		if x >= d {
			n++
		}
	}
	return n
}

func pctl(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))].Round(time.Millisecond)
}

// The re-checks of thousands of sockets' tokens go to one host,
// api.<region>, a few at a time: they must reuse their connections. Each
// new one is a TCP and TLS handshake with Genesys (two more round trips
// before users/me is even sent, and the daemon's CPU), which also slows
// the pool that must keep every token checked within 5 minutes.
func TestPushGenesysAuth_RechecksReuseConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("hundreds of sockets")
	}
	const n = 300
	const period = 4 * time.Second
	a := startAuthStorm(t, push.Config{Revalidate: period}, 20*time.Millisecond)
	tokens, _ := a.connectAll(t, n)
	before := a.conns.Load()
	deadline := time.Now().Add(2 * period)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	a.log.mu.Lock()
	checks := 0
	for _, tok := range tokens {
		checks += max(0, len(a.log.at[tok])-1)
	}
	a.log.mu.Unlock()
	opened := a.conns.Load() - before
	t.Logf("%d re-checks opened %d connections", checks, opened)
	if checks < 50 {
		t.Fatalf("only %d re-checks of %d tokens in %v", checks, n, 2*period)
	}
	if opened > 32 {
		t.Errorf("%d re-checks opened %d new connections to Genesys, want them reused (at most one per worker of the pool)", checks, opened)
	}
}

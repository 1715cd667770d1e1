package notifications_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

var soak = flag.Bool("soak", false, "run the full-length (uncompressed) soak tests")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logBuf collects log lines for assertions on message text.
type logBuf struct {
	ch chan string
}

func (l *logBuf) Write(p []byte) (int, error) {
	select {
	case l.ch <- string(p):
	default:
	}
	return len(p), nil
}

func newLog(t testing.TB) (zerolog.Logger, *logBuf) {
	lb := &logBuf{ch: make(chan string, 100000)}
	w := zerolog.MultiLevelWriter(lb)
	if testing.Verbose() {
		w = zerolog.MultiLevelWriter(lb, zerolog.ConsoleWriter{Out: os.Stderr})
	}
	return zerolog.New(w).With().Timestamp().Logger(), lb
}

// countLines returns how many of lines contain one of subs.
func countLines(lines []string, subs ...string) int {
	n := 0
	for _, l := range lines {
		for _, s := range subs {
			if strings.Contains(l, s) {
				n++
				break
			}
		}
	}
	return n
}

func (l *logBuf) lines() []string {
	var out []string
	for {
		select {
		case s := <-l.ch:
			out = append(out, s)
		default:
			return out
		}
	}
}

type harness struct {
	t      testing.TB
	emu    *notificationstest.Emulator
	client *notifications.Client
	out    chan bridge.Snapshot
	logs   *logBuf
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func agents(n int) []notificationstest.AgentSpec {
	out := make([]notificationstest.AgentSpec, n)
	for i := range out {
		out[i] = notificationstest.AgentSpec{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), Name: fmt.Sprintf("Agent %d", i+1)}
	}
	return out
}

func ids(a []notificationstest.AgentSpec) []string {
	out := make([]string, len(a))
	for i := range a {
		out[i] = a[i].ID
	}
	return out
}

// compressed returns a client config with short durations for CI.
func compressed(url string) notifications.Config {
	return notifications.Config{
		APIURL: url, ClientID: "screenpop-client", ClientSecret: "screenpop-secret",
		HeartbeatTimeout: 600 * time.Millisecond, PingInterval: 150 * time.Millisecond, HandoverGrace: 200 * time.Millisecond,
		TokenRefreshMargin: 500 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
		HTTPTimeout: 3 * time.Second, PutDebounce: 20 * time.Millisecond, QueueRefresh: 200 * time.Millisecond,
		ReconcileRate: 200, ReconcileBurst: 50, APIRate: 10000, APIBurst: 1000,
	}
}

func start(t testing.TB, ecfg notificationstest.Config, ccfg func(*notifications.Config), outCap int, pre ...func(*notificationstest.Emulator)) *harness {
	t.Helper()
	emu := notificationstest.New(ecfg)
	for _, f := range pre {
		f(emu)
	}
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	cfg := compressed(url)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if ccfg != nil {
		ccfg(&cfg)
	}
	log, lb := newLog(t)
	out := make(chan bridge.Snapshot, outCap)
	c, err := notifications.New(cfg, log, out)
	if err != nil {
		emu.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, emu: emu, client: c, out: out, logs: lb, cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	// Drain so that blocked senders can see the cancellation.
	go func() {
		for range h.out {
		}
	}()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("Run did not return within 10s of cancel")
	}
	h.emu.Close()
	close(h.out)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) awaitReady(d time.Duration) {
	h.t.Helper()
	waitFor(h.t, d, "client ready", h.client.Ready)
}

// next returns the next snapshot or fails after d.
func (h *harness) next(d time.Duration) bridge.Snapshot {
	h.t.Helper()
	select {
	case s := <-h.out:
		return s
	case <-time.After(d):
		h.t.Fatalf("no snapshot within %v", d)
	}
	return bridge.Snapshot{}
}

func TestClient_Run(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.emu.AwaitSubscribed(ctx, 3); err != nil {
		t.Fatal(err)
	}

	t.Run("InboundCallReachesConsumer", func(t *testing.T) {
		call := h.emu.InboundCall(as[0].ID, "+13175550123", notificationstest.Options{QueueID: "Q1", DNIS: "+18005551000"})
		call.Alert()
		var s bridge.Snapshot
		for {
			s = h.next(3 * time.Second)
			if !s.Reconciled && gjson.GetBytes(s.Body, "id").Str == call.ID() {
				break
			}
		}
		if s.Agent != bridge.AgentID(as[0].ID) || s.Topic != "v2.users."+as[0].ID+".conversations" || s.ChannelID == "" {
			t.Fatalf("snapshot = %+v", s)
		}
		if !gjson.ValidBytes(s.Body) || !strings.HasPrefix(string(s.Body), "{") {
			t.Fatalf("body is not the eventBody object: %s", s.Body)
		}
		if got := gjson.GetBytes(s.Body, `participants.#(userId=="`+as[0].ID+`").calls.0.state`).Str; got != "alerting" {
			t.Fatalf("agent call state = %q, want alerting", got)
		}
		call.Connect().Disconnect()
		states := map[string]bool{}
		for len(states) < 2 {
			s := h.next(3 * time.Second)
			states[gjson.GetBytes(s.Body, `participants.#(userId=="`+as[0].ID+`").calls.0.state`).Str] = true
		}
		if !states["connected"] || !states["disconnected"] {
			t.Fatalf("states seen = %v", states)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, mf := range mfs {
			names[mf.GetName()] = true
		}
		for _, n := range []string{"channels_connected", "topics", "events_total", "reconnects_total", "gaps_total",
			"reconciled_conversations_total", "heartbeat_age_seconds", "snapshot_backpressure_total", "subscription_puts_total"} {
			if !names["screenpop_notifications_"+n] {
				t.Errorf("metric screenpop_notifications_%s missing", n)
			}
		}
	})

	t.Run("Status", func(t *testing.T) {
		st := h.client.Status().(notifications.Status)
		if !st.LoggedIn || st.Agents != 3 || len(st.Channels) != 1 || !st.Channels[0].Connected || st.Channels[0].Subscribed != 3 {
			t.Fatalf("status = %+v", st)
		}
	})
}

// probe runs notifications.Probe against emu with cfg and returns its
// steps, checking that none shows the secret or a bearer token.
func probe(t *testing.T, cfg notifications.Config) []notifications.ProbeStep {
	t.Helper()
	log, _ := newLog(t)
	var steps []notifications.ProbeStep
	notifications.Probe(context.Background(), cfg, log, func(s notifications.ProbeStep) { steps = append(steps, s) })
	for _, s := range steps {
		text := s.Name + " " + s.Detail + " " + s.Fix
		if s.Err != nil {
			text += " " + s.Err.Error()
		}
		if strings.Contains(text, cfg.ClientSecret) || strings.Contains(text, "Bearer") {
			t.Errorf("step %q shows a secret or token: %s", s.Name, text)
		}
		t.Logf("%+v", s)
	}
	return steps
}

// stepOf returns the step called name.
func stepOf(t *testing.T, steps []notifications.ProbeStep, name string) notifications.ProbeStep {
	t.Helper()
	for _, s := range steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q", name)
	return notifications.ProbeStep{}
}

func TestProbe(t *testing.T) {
	as := agents(2)
	const queue = "9b0c6f1e-0000-4000-8000-00000000c0de"
	emu := notificationstest.New(notificationstest.Config{Agents: as, Queues: map[string][]string{queue: {as[1].ID}}})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()

	t.Run("OK", func(t *testing.T) {
		cfg := compressed(url)
		cfg.Agents, cfg.Queues = ids(as[:1]), []string{queue}
		steps := probe(t, cfg)
		var names []string
		for _, s := range steps {
			names = append(names, s.Name)
			if s.Err != nil || s.Skipped {
				t.Errorf("step %q: err %v, skipped %v", s.Name, s.Err, s.Skipped)
			}
		}
		want := "genesys region,genesys login,genesys channel,genesys subscribe,genesys permissions,genesys queue " + queue + ",genesys reconciliation"
		if got := strings.Join(names, ","); got != want {
			t.Errorf("steps %s, want %s", got, want)
		}
		for name, want := range map[string]string{
			"genesys login":          `token for client screenpop-client ("`,
			"genesys subscribe":      "v2.users." + as[0].ID + ".presence subscribed on the check channel and removed again",
			"genesys permissions":    "v2.users.{id}.conversations requires conversation:communication:view (enforced)",
			"genesys queue " + queue: "1 members",
			"genesys reconciliation": "activity query answered for user " + as[0].ID + " (0 live conversations)",
		} {
			if d := stepOf(t, steps, name).Detail; !strings.Contains(d, want) {
				t.Errorf("%s: %q lacks %q", name, d, want)
			}
		}
		// The probe leaves its channel without topics and unconnected. The
		// emulator sees the socket's close on its own goroutine, which may
		// come after Probe has returned.
		waitFor(t, 5*time.Second, "the probe's socket closed at the emulator", func() bool {
			chs := emu.Channels()
			return len(chs) == 1 && !chs[0].Connected
		})
		chs := emu.Channels()
		if len(chs) != 1 || chs[0].Topics != 0 || chs[0].Connected {
			t.Errorf("channels after the probe: %+v, want one, empty, unconnected", chs)
		}
		if n := emu.CountRequests("DELETE", "/api/v2/notifications/channels/"); n != 1 {
			t.Errorf("%d DELETE subscriptions, want 1", n)
		}
	})

	t.Run("QueueMemberProbed", func(t *testing.T) {
		cfg := compressed(url)
		cfg.Queues = []string{queue}
		steps := probe(t, cfg)
		if d := stepOf(t, steps, "genesys subscribe").Detail; !strings.Contains(d, "v2.users."+as[1].ID+".presence") {
			t.Errorf("subscribe: %q, want the queue's member probed", d)
		}
	})

	t.Run("BadSecret", func(t *testing.T) {
		cfg := compressed(url)
		cfg.ClientSecret = "nope"
		cfg.Agents = ids(as[:1])
		steps := probe(t, cfg)
		login := stepOf(t, steps, "genesys login")
		var ae *notifications.APIError
		if !errors.As(login.Err, &ae) || ae.Status != 401 || ae.Code != "invalid_client" || !strings.Contains(login.Fix, "GENESYS_CLIENT_SECRET") {
			t.Errorf("login: %v (fix %q), want a 401 invalid_client naming GENESYS_CLIENT_SECRET", login.Err, login.Fix)
		}
		for _, n := range []string{"genesys channel", "genesys subscribe", "genesys permissions", "genesys reconciliation"} {
			if s := stepOf(t, steps, n); !s.Skipped || s.Detail != "needs genesys login" {
				t.Errorf("%s: %+v, want skipped", n, s)
			}
		}
	})

	t.Run("LoginHostDown", func(t *testing.T) {
		// A login host in an outage answers through its gateway: a 503
		// with an HTML page. The step names the status and says to wait,
		// not to check DNS and firewalls.
		emu.FailNext("POST", "/oauth/token", http.StatusServiceUnavailable, 0, 1)
		cfg := compressed(url)
		cfg.Agents = ids(as[:1])
		steps := probe(t, cfg)
		login := stepOf(t, steps, "genesys login")
		if status(login.Err) != http.StatusServiceUnavailable || !strings.Contains(login.Fix, "unavailable") {
			t.Errorf("login: %v (fix %q), want HTTP 503 and a fix saying Genesys is unavailable", login.Err, login.Fix)
		}
	})

	t.Run("TokenRefusedOnce", func(t *testing.T) {
		// A 401 from the API is reported as it is: nothing would refresh
		// the probe's token, so it neither waits nor logs in again.
		logins, mes := emu.TokensIssued(), emu.CountRequests("GET", "/api/v2/tokens/me")
		emu.FailNext("GET", "/api/v2/tokens/me", 401, 0, 1)
		cfg := compressed(url)
		cfg.Agents = ids(as[:1])
		steps := probe(t, cfg)
		if s := stepOf(t, steps, "genesys login"); status(s.Err) != 401 || !strings.Contains(s.Err.Error(), "tokens/me: HTTP 401") || !strings.Contains(s.Fix, "GENESYS_API_URL") {
			t.Errorf("login: %v (fix %q), want tokens/me: HTTP 401 naming GENESYS_API_URL", s.Err, s.Fix)
		}
		if n := emu.TokensIssued() - logins; n != 1 {
			t.Errorf("%d logins, want 1", n)
		}
		if n := emu.CountRequests("GET", "/api/v2/tokens/me") - mes; n != 1 {
			t.Errorf("%d tokens/me requests, want 1", n)
		}
	})

	t.Run("BadRegion", func(t *testing.T) {
		steps := probe(t, notifications.Config{Region: "nowhere.example", ClientID: "screenpop-client", ClientSecret: "screenpop-secret"})
		if s := stepOf(t, steps, "genesys region"); s.Err == nil || !strings.Contains(s.Err.Error(), "GENESYS_REGION") {
			t.Errorf("region: %+v", s)
		}
		if s := stepOf(t, steps, "genesys login"); !s.Skipped {
			t.Errorf("login: %+v, want skipped", s)
		}
	})
}

func status(err error) int {
	var ae *notifications.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestNew_Invalid(t *testing.T) {
	log, _ := newLog(t)
	if _, err := notifications.New(notifications.Config{Region: "nowhere.example", ClientID: "a", ClientSecret: "b"}, log, make(chan bridge.Snapshot)); err == nil || !strings.Contains(err.Error(), "GENESYS_REGION") {
		t.Errorf("bad region: %v", err)
	}
	if _, err := notifications.New(notifications.Config{Region: "mypurecloud.ie"}, log, make(chan bridge.Snapshot)); err == nil || !strings.Contains(err.Error(), "GENESYS_CLIENT_ID") {
		t.Errorf("no credentials: %v", err)
	}
}

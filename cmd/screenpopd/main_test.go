package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

func TestMain(m *testing.M) {
	if os.Getenv("SCREENPOP_TEST_MAIN") == "1" {
		// This test binary started as screenpopd itself: main() with the
		// demo command (or SCREENPOP_TEST_MAIN_CMD's), signals and all
		// (TestMain_SecondSignalForcesExit, TestMain_SIGHUP).
		cmd := "demo"
		if c := os.Getenv("SCREENPOP_TEST_MAIN_CMD"); c != "" {
			cmd = c
		}
		os.Args = []string{"screenpopd", cmd}
		main()
	}
	// The commands read their settings through the getenv each test gives;
	// the process environment's unknown variables (a developer's shell)
	// must not leak into their output either.
	environ = func() []string { return nil }
	// The tests that spend most of their time waiting (an outage of tens
	// of seconds, a log-rate window, a restart) call t.Parallel: this
	// package is CI's longest. Such a test must hold no process-wide
	// state: not environ, an rlimit, a signal, the goroutine count or the
	// heap (those tests stay sequential, and Go runs them before the
	// parallel ones).
	//
	// Four of them at a time unless -parallel says otherwise: Go's
	// default, GOMAXPROCS, is two on CI's machine, where their 650 s of
	// mostly waiting took 380 s and the package 760 s of its 15-minute
	// timeout. They run after the sequential tests, when the other
	// packages are done and the CPU is mostly idle.
	flag.Parse()
	parallelGiven := false
	flag.Visit(func(f *flag.Flag) { parallelGiven = parallelGiven || f.Name == "test.parallel" })
	if !parallelGiven {
		_ = flag.Set("test.parallel", strconv.Itoa(max(4, runtime.GOMAXPROCS(0))))
	}
	goleak.VerifyTestMain(m)
}

// env is a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// testEnv is an environment that listens on free loopback ports only.
func testEnv(t *testing.T) map[string]string {
	return map[string]string{
		"SCREENPOP_LISTEN":       "127.0.0.1:0",
		"SCREENPOP_ADMIN_LISTEN": "127.0.0.1:0",
		"SCREENPOP_NATS_LISTEN":  "off",
		"SCREENPOP_DATA_DIR":     t.TempDir(),
		"LOG_LEVEL":              "debug",
	}
}

// startDemoOnNATS starts the demo with its embedded NATS listening on
// loopback, as another service would reach it, and connects such a
// service's client to it (closed when the test ends).
func startDemoOnNATS(t *testing.T) (*Demo, *nats.Conn) {
	t.Helper()
	d, nc, _ := startDemoOnNATSLogs(t)
	return d, nc
}

// startDemoOnNATSLogs is startDemoOnNATS with the daemon's log.
func startDemoOnNATSLogs(t *testing.T) (*Demo, *nats.Conn, *syncbuf.Buffer) {
	t.Helper()
	vars := testEnv(t)
	vars["SCREENPOP_NATS_LISTEN"] = "127.0.0.1:0"
	d, logs := MustStartDemo(t, vars)
	url := d.Main.Bus.ClientURL()
	if url == "" {
		t.Fatal("no client URL for the embedded NATS listener")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return d, nc, logs
}

// MustStartDemo builds the daemon against both emulators, as `screenpopd
// demo` does but without its traffic, and runs it until the test ends.
func MustStartDemo(t *testing.T, vars map[string]string) (*Demo, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	return mustStartDemoWith(t, vars, zerolog.New(logs).Level(zerolog.DebugLevel)), logs
}

// mustStartDemoWith is MustStartDemo logging to log.
func mustStartDemoWith(t *testing.T, vars map[string]string, log zerolog.Logger) *Demo {
	t.Helper()
	d := runDemoWith(t, vars, log)
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return d.Main.Ready() })
	return d
}

// runDemoWith is mustStartDemoWith without the wait for readiness.
func runDemoWith(t *testing.T, vars map[string]string, log zerolog.Logger) *Demo {
	t.Helper()
	d, _ := runDemoStoppable(t, vars, log)
	return d
}

// runDemoStoppable is runDemoWith with its stop: stop ends the daemon's
// context and waits up to 10 s for Run to return (so does the test's end;
// once is enough), for a test that reads what the stop logs. edit, if
// any, changes the parsed config first (its test-only fields).
func runDemoStoppable(t *testing.T, vars map[string]string, log zerolog.Logger, edit ...func(*Config)) (d *Demo, stop func()) {
	t.Helper()
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edit {
		e(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err = StartDemo(ctx, cfg, log, false)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Main.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("the daemon did not stop within 10s of its context ending")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		d.Close()
	})
	return d, stop
}

func TestDaemon_EndToEnd(t *testing.T) {
	d, logs := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	contactID := d.Dataverse.AddContact(dataversetest.Contact{FirstName: "Pat", LastName: "O'Brien", Telephone1: "(317) 555-0123"})

	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	call := d.Genesys.InboundCall(agent, "+13175550123", notificationstest.Options{QueueID: "q-1", DNIS: "+18005551000"})
	call.Alert()

	p := readPop(t, ws)
	if p.Target.Action != "open" || p.Target.Entity != "contact" || p.Target.ID != contactID {
		t.Fatalf("pop target %+v, want open contact %s", p.Target, contactID)
	}
	if p.ConversationID != call.ID() || p.Media != "voice" || p.State != "alerting" || p.Seq == 0 {
		t.Fatalf("pop %+v", p)
	}
	if !strings.Contains(p.Target.URL, "pagetype=entityrecord") || !strings.Contains(p.Target.URL, contactID) {
		t.Fatalf("record url %q", p.Target.URL)
	}
	if err := ws.WriteJSON(map[string]any{"type": "ack", "seq": p.Seq}); err != nil {
		t.Fatal(err)
	}

	t.Run("ConnectedMakesNoSecondPop", func(t *testing.T) {
		call.Connect()
		// A second call proves the socket is live and the first made one pop
		// (the hang-up comes after: an ended leg refuses every event anyway).
		other := d.Genesys.InboundCall(agent, "+19995550100", notificationstest.Options{})
		other.Alert()
		p2 := readPop(t, ws)
		call.Disconnect()
		if p2.ConversationID != other.ID() {
			t.Fatalf("next pop is for %s, want the second call %s (a second pop of the first?)", p2.ConversationID, other.ID())
		}
		if p2.Target.Action != "create" || p2.Prefill["telephone1"] != "+19995550100" {
			t.Fatalf("unknown caller: target %+v prefill %v, want create with telephone1", p2.Target, p2.Prefill)
		}
	})

	// A call's hang-up reaches the resolver and ends its leg's marker: it
	// now lives the marker grace, not 24 h.
	t.Run("HangUpEndsTheMarker", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := d.Main.Bus.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
		if err != nil {
			t.Fatal(err)
		}
		c := d.Genesys.InboundCall(agent, "+19995550111", notificationstest.Options{})
		c.Alert()
		p := readPop(t, ws)
		if p.ConversationID != c.ID() {
			t.Fatalf("pop for %s, want the new call %s", p.ConversationID, c.ID())
		}
		key := strings.ReplaceAll(p.ID, ":", ".") // the bucket's key of a pop id
		marker := func() string {
			e, err := kv.Get(ctx, key)
			if err != nil {
				return err.Error()
			}
			return string(e.Value())
		}
		if m := marker(); !strings.HasPrefix(m, "evt:") {
			t.Fatalf("marker of a live leg %q, want the claim of the event that popped it", m)
		}
		c.Disconnect()
		waitFor(t, 10*time.Second, "the call's marker ended", func() bool { return marker() == "ended" })
	})

	t.Run("AdminEndpoints", func(t *testing.T) {
		base := "http://" + d.Main.AdminAddr()
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/status": 200, "/metrics": 200, "/debug/pprof/": 404} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
			}
			if path == "/metrics" && !bytes.Contains(body, []byte("screenpop_ready 1")) {
				t.Errorf("/metrics lacks screenpop_ready 1")
			}
			if path == "/status" {
				var st StatusReport
				if err := json.Unmarshal(body, &st); err != nil || !st.Ready || len(st.Components) < 6 {
					t.Errorf("/status = %s (%v)", body, err)
				}
			}
		}
	})

	// The events of an instance that dies come back after the resolver
	// consumer's ack wait; with the defaults that is well inside the max
	// event age, so they still pop (bridge's TestResolver_CrashAfterMarker).
	t.Run("ResolverAckWait", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := d.Main.Bus.JetStream().Consumer(ctx, d.Main.Bus.StreamName(), "screenpop-resolver")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := ci.Config.AckWait; got != bus.DefaultAckWait || got*2 > d.Main.Config.MaxEventAge {
			t.Fatalf("resolver consumer's ack wait %v, want %v, at most half the max event age %v", got, bus.DefaultAckWait, d.Main.Config.MaxEventAge)
		}
		if got := resolverAckWait(8 * time.Second); got != 13*time.Second {
			t.Fatalf("ack wait with an 8 s pop deadline %v, want 13s (the deadline and 5 s)", got)
		}
		// A pop's publish retries end well inside the ack wait, after the
		// lookup's deadline and with room for the unmark (2 s).
		for _, deadline := range []time.Duration{2 * time.Second, 8 * time.Second, 30 * time.Second} {
			pt, aw := resolverPublishTimeout(deadline), resolverAckWait(deadline)
			if pt < 2*time.Second || deadline+pt+2*time.Second >= aw {
				t.Fatalf("pop deadline %v: publish timeout %v, ack wait %v; want at least 2s, and the deadline, it and 2 s inside the ack wait", deadline, pt, aw)
			}
		}
		if got := resolverPublishTimeout(2 * time.Second); got != 5*time.Second {
			t.Fatalf("publish timeout with the default pop deadline %v, want 5s", got)
		}
	})

	t.Run("NoPIIInLogs", func(t *testing.T) {
		// The resolver writes a pop's line after publishing the pop, so
		// the last pop can reach the page before its line is written.
		waitFor(t, 10*time.Second, "3 pop log lines", func() bool { return strings.Count(logs.String(), `"message":"pop"`) >= 3 })
		out := logs.String()
		for _, pii := range []string{"3175550123", "555-0123", "O'Brien", "O''Brien", "Pat", "9995550100", "9995550111", d.Genesys.AgentToken(agent)} {
			if strings.Contains(out, pii) {
				t.Errorf("logs contain %q", pii)
			}
		}
		if n := strings.Count(out, `"message":"pop"`); n != 3 {
			t.Errorf("%d pop log lines, want one per pop (3)", n)
		}
	})
}

// With SCREENPOP_POP_ON=connected, a call the bridge saw alerting and
// that the agent answered while the Genesys socket was down pops once the
// socket is back: the reconciliation after the gap is the only way the
// daemon learns of the answer (Genesys replays nothing).
func TestDaemon_AnsweredDuringAGapPopsOnConnected(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_POP_ON"] = "connected"
	d, logs := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	call := d.Genesys.InboundCall(agent, "+13175550199", notificationstest.Options{})
	call.Alert()
	waitFor(t, 10*time.Second, "the alerting event handled (no pop before connected)", func() bool {
		return strings.Contains(logs.String(), `"reason":"before_pop_state"`)
	})
	duringAGap(t, d, logs, func() { call.Connect() })
	if p := readPop(t, ws); p.ConversationID != call.ID() {
		t.Fatalf("pop for %s, want %s", p.ConversationID, call.ID())
	}
}

// A conversation transferred back to an agent who had it before is a new
// leg and pops again (DESIGN.md, pop decision 6), also when it alerts and
// is answered while the agent's Genesys socket is down: the reconciliation
// after the gap fetches it, since the agent was not connected to it when
// last seen.
func TestDaemon_TransferredBackDuringAGapPops(t *testing.T) {
	d, logs := MustStartDemo(t, testEnv(t))
	a, b := demoAgents[0].ID, demoAgents[1].ID
	wsA := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(a))

	call := d.Genesys.InboundCall(a, "+13175550177", notificationstest.Options{})
	call.Alert()
	if p := readPop(t, wsA); p.ConversationID != call.ID() {
		t.Fatalf("first pop for %s, want %s", p.ConversationID, call.ID())
	}
	call.Connect()
	call.BlindTransfer(b)
	// B's pop comes after the frame that shows A transferred away (one
	// socket, in order): the daemon has seen A leave.
	waitFor(t, 10*time.Second, "B's pop", func() bool { return strings.Count(logs.String(), `"message":"pop"`) >= 2 })
	call.Connect()
	duringAGap(t, d, logs, func() {
		call.BlindTransfer(a)
		call.Connect()
	})
	if p := readPop(t, wsA); p.ConversationID != call.ID() {
		t.Fatalf("second pop for %s, want %s", p.ConversationID, call.ID())
	}
}

// duringAGap runs change while the Genesys sockets are silent, then drops
// them and waits for the reconciliation after the gap. On failure the
// test's log shows the reconciliation and pop lines.
func duringAGap(t *testing.T, d *Demo, logs *syncbuf.Buffer, change func()) {
	t.Helper()
	waitFor(t, 10*time.Second, "the start-up reconciliation", func() bool {
		return strings.Contains(logs.String(), "genesys reconciliation done")
	})
	before := strings.Count(logs.String(), "genesys reconciliation done")
	d.Genesys.SetBlackhole(true)
	change()
	d.Genesys.SetBlackhole(false)
	d.Genesys.DropConnections()
	waitFor(t, 20*time.Second, "the reconciliation after the gap", func() bool {
		return strings.Count(logs.String(), "genesys reconciliation done") > before
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "reconcil") || strings.Contains(l, `"message":"pop"`) {
					t.Log(l)
				}
			}
		}
	})
}

func TestDaemon_ShutdownClosesAgents(t *testing.T) {
	vars := testEnv(t)
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := StartDemo(ctx, cfg, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan error, 1)
	go func() { done <- d.Main.Run(ctx) }()
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return d.Main.Ready() })
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(demoAgents[1].ID))
	start := time.Now()
	cancel()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("agent socket ended with %v, want close 1001", err)
		}
		break
	}
	// A load balancer must stop sending agents here before their sockets
	// close (NATS is still connected then).
	if d.Main.Ready() {
		t.Fatal("still ready after the agents' sockets were closed for the stop")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("shutdown took %v", el)
	}
}

func TestRun_Subcommands(t *testing.T) {
	var out, errb bytes.Buffer
	t.Run("RunWithoutConfigNamesTheMissingVariables", func(t *testing.T) {
		out.Reset()
		errb.Reset()
		code := run(context.Background(), []string{"run"}, env(nil), &out, &errb)
		if code == 0 {
			t.Fatal("run with no configuration exited 0")
		}
		for _, v := range []string{"GENESYS_REGION", "GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET", "DATAVERSE_URL", "DATAVERSE_TENANT_ID", "DATAVERSE_CLIENT_ID", "DATAVERSE_CLIENT_SECRET", "GENESYS_AGENTS"} {
			if !strings.Contains(errb.String(), v) {
				t.Errorf("message lacks %s:\n%s", v, errb.String())
			}
		}
	})
	t.Run("RunWithoutConfigNamesAMisspelledVariable", func(t *testing.T) {
		out.Reset()
		errb.Reset()
		environ = func() []string { return []string{"GENESYS_CLIENTID=x"} }
		defer func() { environ = func() []string { return nil } }()
		if code := run(context.Background(), []string{"run"}, env(nil), &out, &errb); code != 2 {
			t.Fatalf("run exited %d, want 2", code)
		}
		if !strings.Contains(errb.String(), "GENESYS_CLIENTID is not a setting") || !strings.Contains(errb.String(), "did you mean GENESYS_CLIENT_ID?") {
			t.Errorf("no hint for the misspelled variable:\n%s", errb.String())
		}
	})
	t.Run("RunRefusesRegionAndDataverseURLBeforeStarting", func(t *testing.T) {
		out.Reset()
		errb.Reset()
		vars := testEnv(t)
		for k, v := range with(good(), "GENESYS_REGION", "login.mypurecloud.ie", "DATAVERSE_URL", "https://contoso.crm4.dynamics.com/main.aspx") {
			vars[k] = v
		}
		code := run(context.Background(), []string{"run"}, env(vars), &out, &errb)
		if code != 2 {
			t.Fatalf("run exited %d, want 2 (invalid configuration):\n%s", code, errb.String())
		}
		for _, w := range []string{"screenpopd run: invalid configuration", `GENESYS_REGION: "login.mypurecloud.ie" is not a Genesys Cloud region domain`, "DATAVERSE_URL:", "scheme and host only: https://contoso.crm4.dynamics.com"} {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("message lacks %q:\n%s", w, errb.String())
			}
		}
		// Nothing started: the data directory holds no PII key or store.
		if ents, err := os.ReadDir(vars["SCREENPOP_DATA_DIR"]); err != nil || len(ents) != 0 {
			t.Errorf("data dir after a refused start: %v %v, want empty", ents, err)
		}
	})
	t.Run("Version", func(t *testing.T) {
		out.Reset()
		if code := run(context.Background(), []string{"version"}, env(nil), &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "screenpopd ") {
			t.Fatalf("version: %d %q", code, out.String())
		}
	})
	t.Run("Token", func(t *testing.T) {
		out.Reset()
		errb.Reset()
		secret := strings.Repeat("s", 40)
		code := run(context.Background(), []string{"token", "--agent", "5e1f0a1c-0000-4000-8000-000000000001"}, env(map[string]string{"SCREENPOP_JWT_SECRET": secret}), &out, &errb)
		if code != 0 || strings.Count(strings.TrimSpace(out.String()), ".") != 2 {
			t.Fatalf("token: %d %q %q", code, out.String(), errb.String())
		}
		errb.Reset()
		if code := run(context.Background(), []string{"token", "--agent", "x"}, env(nil), &out, &errb); code == 0 || !strings.Contains(errb.String(), "SCREENPOP_JWT_SECRET") {
			t.Fatalf("token without secret: %d %q", code, errb.String())
		}
		// With SCREENPOP_JWT_AUDIENCE the token carries it, so that a
		// daemon that requires it accepts the token.
		out.Reset()
		vars := map[string]string{"SCREENPOP_JWT_SECRET": secret, "SCREENPOP_JWT_AUDIENCE": "screenpop-contoso"}
		if code := run(context.Background(), []string{"token", "--agent", "5e1f0a1c-0000-4000-8000-000000000001"}, env(vars), &out, &errb); code != 0 {
			t.Fatalf("token with audience: %d %q", code, errb.String())
		}
		for aud, ok := range map[string]bool{"screenpop-contoso": true, "wallboard-contoso": false} {
			a, err := push.NewJWTAuthenticator([]byte(secret), aud)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.Authenticate(context.Background(), strings.TrimSpace(out.String())); (err == nil) != ok {
				t.Errorf("the token minted with SCREENPOP_JWT_AUDIENCE, checked for aud %s: %v", aud, err)
			}
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		if code := run(context.Background(), []string{"nope"}, env(nil), &out, &errb); code != 2 {
			t.Fatalf("unknown command exited %d, want 2", code)
		}
	})
	// A flag that does not exist is a usage error, as an invalid value is
	// (setup.md: "2 for an invalid configuration, 1 for a failed probe"):
	// a timer alerting on check's exit code must not read it as an outage.
	t.Run("UnknownFlag", func(t *testing.T) {
		for _, sub := range []string{"check", "run", "demo"} {
			errb.Reset()
			if code := run(context.Background(), []string{sub, "--no-such-flag"}, env(nil), &out, &errb); code != 2 {
				t.Errorf("%s --no-such-flag exited %d, want 2", sub, code)
			}
			if !strings.Contains(errb.String(), "no-such-flag") {
				t.Errorf("%s --no-such-flag: stderr does not name the flag:\n%s", sub, errb.String())
			}
		}
	})
}

// agentPop is the part of the agent pop message the tests read.
type agentPop struct {
	Type           string            `json:"type"`
	Seq            uint64            `json:"seq"`
	ID             string            `json:"id"`
	ConversationID string            `json:"conversationId"`
	Media          string            `json:"media"`
	State          string            `json:"state"`
	Prefill        map[string]string `json:"prefill"`
	Target         struct {
		Action, Entity, ID, Name, URL, Query string
	} `json:"target"`
}

func dialAgent(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]any{"type": "hello", "token": token}); err != nil {
		t.Fatal(err)
	}
	var ready struct{ Type, AgentID, Epoch string }
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" {
		t.Fatalf("ready: %+v %v", ready, err)
	}
	return ws
}

// readPop reads frames until a pop, skipping heartbeats.
func readPop(t *testing.T, ws *websocket.Conn) agentPop {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var p agentPop
		if err := ws.ReadJSON(&p); err != nil {
			t.Fatalf("read pop: %v", err)
		}
		if p.Type == "pop" {
			return p
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An ended leg's marker outlives every event of the leg young enough to
// pop: bus's 15 minutes, or twice a longer SCREENPOP_MAX_EVENT_AGE.
func TestMarkerGrace(t *testing.T) {
	for maxAge, want := range map[time.Duration]time.Duration{30 * time.Second: 15 * time.Minute, 10 * time.Minute: 20 * time.Minute} {
		if got := markerGrace(maxAge); got != want {
			t.Errorf("markerGrace(%v) = %v, want %v", maxAge, got, want)
		}
	}
}

// TestDemo_DataDirFlag: `screenpopd demo --data-dir` keeps its store in
// that directory, with or without SCREENPOP_DATA_DIR (flags win, and
// either one means no temporary store).
func TestDemo_DataDirFlag(t *testing.T) {
	for _, withEnv := range []bool{false, true} {
		name := "FlagOnly"
		if withEnv {
			name = "FlagWinsOverEnv"
		}
		t.Run(name, func(t *testing.T) {
			vars := testEnv(t)
			envDir := vars["SCREENPOP_DATA_DIR"]
			if !withEnv {
				delete(vars, "SCREENPOP_DATA_DIR")
			}
			flagDir := filepath.Join(t.TempDir(), "demo-data")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncbuf.Buffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"demo", "--data-dir", flagDir}, env(vars), &out, &errb) }()
			exited := false
			waitFor(t, 20*time.Second, "the demo running", func() bool {
				select {
				case code := <-done:
					exited = true
					t.Fatalf("demo exited %d early:\n%s", code, errb.String())
				default:
				}
				return strings.Contains(out.String(), "screenpop demo is running")
			})
			for _, f := range []string{"pii-hash.key", "jetstream"} {
				if _, err := os.Stat(filepath.Join(flagDir, f)); err != nil {
					t.Errorf("the demo's %s is not in the --data-dir directory: %v", f, err)
				}
			}
			cancel()
			if !exited {
				select {
				case code := <-done:
					if code != 0 {
						t.Errorf("demo exited %d:\n%s", code, errb.String())
					}
				case <-time.After(15 * time.Second):
					t.Fatal("demo did not stop within 15s of its context ending")
				}
			}
			if ents, err := os.ReadDir(envDir); err != nil || len(ents) != 0 {
				t.Errorf("SCREENPOP_DATA_DIR %s used despite --data-dir: %v %v", envDir, ents, err)
			}
			// Not a temporary store: it outlives the demo.
			if _, err := os.Stat(filepath.Join(flagDir, "pii-hash.key")); err != nil {
				t.Errorf("the --data-dir store is gone after the demo: %v", err)
			}
		})
	}
}

// TestDemo_ATemporaryStoreAsksForNoBackup: `screenpop demo` without a data
// directory keeps its store and pii-hash.key in a temporary directory
// removed at exit. Its first line must not ask a first-time user to back
// that key up and share it between instances; with --data-dir, a
// directory that stays, it does.
func TestDemo_ATemporaryStoreAsksForNoBackup(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "Temporary", true: "DataDir"}[keep], func(t *testing.T) {
			vars := testEnv(t)
			delete(vars, "SCREENPOP_DATA_DIR")
			vars["LOG_FORMAT"] = "json"
			args := []string{"demo"}
			if keep {
				args = append(args, "--data-dir", filepath.Join(t.TempDir(), "demo-data"))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncbuf.Buffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, args, env(vars), &out, &errb) }()
			waitFor(t, 20*time.Second, "the demo running", func() bool {
				select {
				case code := <-done:
					done <- code
					t.Fatalf("demo exited %d early:\n%s", code, errb.String())
				default:
				}
				return strings.Contains(out.String(), "screenpop demo is running")
			})
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("demo did not stop within 15s of its context ending")
			}
			if told := strings.Contains(errb.String(), "back it up with SCREENPOP_DATA_DIR"); told != keep {
				t.Errorf("asked to back pii-hash.key up: %v, want %v:\n%s", told, keep, errb.String())
			}
		})
	}
}

// A second SIGINT (Ctrl-C pressed again) while a graceful stop is under way
// ends the process at once, as it does in most daemons; the first one asks
// for the graceful stop. Here the graceful stop is held up for 2 s by an
// admin request in flight (a CPU profile), so a process that ignores the
// second signal exits about 2 s after the first.
func TestMain_SecondSignalForcesExit(t *testing.T) {
	var stderr syncbuf.Buffer
	cmd, base, exited := startDemoProcess(t, []string{
		"SCREENPOP_LISTEN=127.0.0.1:0",
		"SCREENPOP_ADMIN_LISTEN=127.0.0.1:0",
		"SCREENPOP_NATS_LISTEN=off",
		"SCREENPOP_DATA_DIR=" + t.TempDir(),
		"SCREENPOP_PPROF=true",
		"LOG_LEVEL=warn",
		"LOG_FORMAT=json",
	}, &stderr)
	second := signalTwice(t, cmd, base, syscall.SIGINT)
	select {
	case err := <-exited:
		t.Logf("exited %v after the second SIGINT: %v", time.Since(second), err)
		// Killed by the signal's default action; a graceful stop (the
		// second signal swallowed) exits with a status instead.
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Fatalf("the process ended with %v, not by the second SIGINT: it was ignored and the graceful stop ran its course", err)
		}
		// The log says so, as its last line: a log that just ends looks
		// like a crash or a kill to on-call.
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, `"message":"screenpopd stopped at once by a second signal`) {
			t.Errorf("the log's last line is %q, want the line saying a second signal cut the stop short", last)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the process did not exit within 15s of two SIGINTs")
	}
}

// jetStreamAt connects to the NATS server at url (with opts) until the
// test ends, and returns its JetStream.
func jetStreamAt(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// timedPop is a pop an agent's page received, and when.
type timedPop struct {
	agentPop
	at time.Time
}

// agentPage is an agent's browser page as screenpop.js runs it: it
// reconnects after every close and resumes from its cursor.
type agentPage struct {
	base, token string

	mu      sync.Mutex
	lastSeq uint64
	epoch   string
	agent   string
	got     []timedPop
	arrived chan struct{}
}

func openAgentPage(t *testing.T, base, token string) *agentPage {
	t.Helper()
	p := &agentPage{base: base, token: token, arrived: make(chan struct{}, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func (p *agentPage) run(ctx context.Context) {
	for ctx.Err() == nil {
		p.session(ctx)
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session is one socket: hello with the cursor, then frames until it
// closes.
func (p *agentPage) session(ctx context.Context) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, strings.Replace(p.base, "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		return
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	p.mu.Lock()
	hello := map[string]any{"type": "hello", "token": p.token}
	if p.epoch != "" {
		hello["lastSeq"], hello["epoch"], hello["agentId"] = p.lastSeq, p.epoch, p.agent
	}
	p.mu.Unlock()
	if err := ws.WriteJSON(hello); err != nil {
		return
	}
	for {
		ws.SetReadDeadline(time.Now().Add(90 * time.Second))
		var f struct {
			agentPop
			AgentID string `json:"agentId"`
			Epoch   string `json:"epoch"`
		}
		if err := ws.ReadJSON(&f); err != nil {
			return
		}
		switch f.Type {
		case "ready":
			p.mu.Lock()
			if f.Epoch != p.epoch {
				p.lastSeq = 0
			}
			p.epoch, p.agent = f.Epoch, f.AgentID
			p.mu.Unlock()
		case "pop":
			p.mu.Lock()
			p.lastSeq = f.Seq
			p.got = append(p.got, timedPop{f.agentPop, time.Now()})
			p.mu.Unlock()
			select {
			case p.arrived <- struct{}{}:
			default:
			}
		}
	}
}

// pops returns how many pops of conv arrived, and when the first did.
func (p *agentPage) pops(conv string) (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, first := 0, time.Time{}
	for _, g := range p.got {
		if g.ConversationID == conv {
			if n == 0 {
				first = g.at
			}
			n++
		}
	}
	return n, first
}

// waitPop waits up to d for conv's pop and returns when it arrived (zero
// if it did not).
func (p *agentPage) waitPop(conv string, d time.Duration) time.Time {
	deadline := time.Now().Add(d)
	for {
		if n, at := p.pops(conv); n > 0 {
			return at
		}
		if time.Now().After(deadline) {
			return time.Time{}
		}
		select {
		case <-p.arrived:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var faultPhone atomic.Int32

func alertCall(d *Demo, agent string) *notificationstest.Conversation {
	n := faultPhone.Add(1)
	c := d.Genesys.InboundCall(agent, fmt.Sprintf("+1999555%04d", 1000+n), notificationstest.Options{})
	c.Alert()
	return c
}

// logLines returns the lines of logs that contain any of subs.
func logLines(logs *syncbuf.Buffer, subs ...string) string {
	var out []string
	for _, l := range strings.Split(logs.String(), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// externalNATS is a nats-server started from Go that can be stopped and
// started again on the same port, with or without its store.
type externalNATS struct {
	t    *testing.T
	port int
	dir  string
	ns   *server.Server
}

func startExternalNATS(t *testing.T) *externalNATS {
	// A fixed port outside the ephemeral range (freeLoopbackAddr): the
	// server may be started again on it.
	_, port, _ := net.SplitHostPort(freeLoopbackAddr(t))
	x := &externalNATS{t: t, dir: t.TempDir()}
	x.port, _ = strconv.Atoi(port)
	x.start()
	t.Cleanup(x.stop)
	return x
}

func (x *externalNATS) start() {
	o := &server.Options{Host: "127.0.0.1", Port: x.port, JetStream: true, StoreDir: x.dir, NoSigs: true, NoLog: true}
	ns, err := server.NewServer(o)
	if err != nil {
		x.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		x.t.Fatal("nats-server not ready")
	}
	x.ns = ns
}

func (x *externalNATS) stop() {
	if x.ns != nil {
		x.ns.Shutdown()
		x.ns.WaitForShutdown()
		x.ns = nil
	}
}

func (x *externalNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", x.port) }

// streamBack reports whether js has the SCREENPOP stream and the resolver's
// consumer again.
func streamBack(js jetstream.JetStream) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Consumer(ctx, "SCREENPOP", "screenpop-resolver")
		return err == nil
	}
}

// An external NATS that restarts without its JetStream store (a new
// volume, a wiped disk) comes back with neither the stream nor the marker
// bucket. The daemon reconnects at once and must make both again, or no
// call pops until it is restarted while /readyz says 200.
func TestDaemon_PopsAgainAfterNATSRestartsWithoutItsStore(t *testing.T) {
	x := startExternalNATS(t)
	vars := testEnv(t)
	vars["NATS_URL"] = x.url()
	d, logs := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	before := alertCall(d, agent)
	if page.waitPop(before.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the restart")
	}

	x.stop()
	x.dir = t.TempDir() // the store is lost
	x.start()
	back := time.Now()
	waitFor(t, 10*time.Second, "the daemon reconnected", d.Main.Bus.Connected)
	js := jetStreamAt(t, x.url())
	deadline := time.Now().Add(10 * time.Second)
	for !streamBack(js)() {
		if time.Now().After(deadline) {
			t.Fatalf("no stream and resolver consumer 10s after NATS came back without its store; logs:\n%s",
				logLines(logs, `"level":"warn"`, `"level":"error"`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := alertCall(d, agent)
	at := page.waitPop(after.ID(), 10*time.Second)
	if at.IsZero() {
		t.Fatalf("a call alerted once the stream was back did not pop within 10s; logs:\n%s", logLines(logs, `"level":"warn"`, `"level":"error"`))
	}
	if n, _ := page.pops(after.ID()); n != 1 {
		t.Fatalf("the call popped %d times, want once", n)
	}
	t.Logf("NATS back without its store: a new call popped %v after", at.Sub(back))
	if !strings.Contains(logs.String(), "stream recreated") {
		t.Error("no 'stream recreated' line for on-call")
	}
}

// The marker bucket deleted under a running daemon (by hand: docs/operations.md
// names its stream for a rollback; or lost on its own in a cluster) must
// be made again: without it no event can be marked, so none pops, every
// event is given up after its deliveries, until the daemon is restarted.
func TestDaemon_PopsAgainAfterTheMarkerBucketIsDeleted(t *testing.T) {
	d, logs := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	before := alertCall(d, agent)
	if page.waitPop(before.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the bucket was deleted")
	}
	if err := d.Main.Bus.JetStream().DeleteStream(context.Background(), "KV_"+bus.DefaultMarkerBucket); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	after := alertCall(d, agent)
	at := page.waitPop(after.ID(), 10*time.Second)
	if at.IsZero() {
		t.Fatalf("a call alerted after the marker bucket was deleted did not pop within 10s; logs:\n%s",
			logLines(logs, `"level":"warn"`, `"level":"error"`))
	}
	t.Logf("marker bucket deleted: the next call popped %v after", at.Sub(deleted))
	next := alertCall(d, agent)
	if page.waitPop(next.ID(), 10*time.Second).IsZero() {
		t.Fatal("the next call did not pop")
	}
	for _, c := range []*notificationstest.Conversation{after, next} {
		if n, _ := page.pops(c.ID()); n != 1 {
			t.Fatalf("call %s popped %d times, want once", c.ID(), n)
		}
	}
	if !strings.Contains(logs.String(), "pop marker bucket lost") {
		t.Error("no 'pop marker bucket lost' line for on-call")
	}
}

// The stream deleted again before push has followed the one the daemon made
// (two deletions in a row, or a store lost twice): no pop consumer exists
// to notice, so following pops has to make the stream itself, or nothing
// does and no call pops again.
func TestDaemon_PopsAgainAfterTheStreamIsDeletedTwice(t *testing.T) {
	d, logs := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	before := alertCall(d, agent)
	if page.waitPop(before.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the stream was deleted")
	}
	js := d.Main.Bus.JetStream()
	epoch := d.Main.Bus.Epoch()
	if err := js.DeleteStream(context.Background(), "SCREENPOP"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stream made again", func() bool { return d.Main.Bus.Epoch() != epoch })
	if err := js.DeleteStream(context.Background(), "SCREENPOP"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	waitFor(t, 10*time.Second, "the stream and the resolver's consumer made again", streamBack(js))
	after := alertCall(d, agent)
	at := page.waitPop(after.ID(), 10*time.Second)
	if at.IsZero() {
		t.Fatalf("a call alerted once the stream was back did not pop within 10s; logs:\n%s",
			logLines(logs, `"level":"warn"`, `"level":"error"`))
	}
	if n, _ := page.pops(after.ID()); n != 1 {
		t.Fatalf("the call popped %d times, want once", n)
	}
	t.Logf("stream deleted twice: a new call popped %v after the second deletion", at.Sub(deleted))
}

// NATS does not make the resolver's consumer when the daemon starts (here
// the account's permissions refuse it for a while; a NATS that blips just
// after the stream was made, or answers slowly, does the same): no event
// would be resolved. The daemon must not say ready meanwhile, though NATS
// is connected and every other part is up, or the load balancer sends
// agents to an instance that pops nothing; nor stop over a moment's
// outage. It keeps trying, says why, and pops once the consumer is made.
func TestDaemon_NotReadyUntilTheResolverConsumes(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	x := bustest.StartLimitedServer(t, "max_file: 64M, max_mem: 16M")
	x.SetPermissions(`publish: { deny: ["$JS.API.CONSUMER.CREATE.SCREENPOP.screenpop-resolver", "$JS.API.CONSUMER.CREATE.SCREENPOP.screenpop-resolver.>", "$JS.API.CONSUMER.DURABLE.CREATE.SCREENPOP.screenpop-resolver"] }`)
	vars := testEnv(t)
	vars["NATS_URL"] = x.URL()
	logs := &syncbuf.Buffer{}
	d := runDemoWith(t, vars, zerolog.New(logs).Level(zerolog.DebugLevel))
	waitFor(t, 20*time.Second, "every other part up", func() bool {
		m := d.Main
		return m.opened.Load() && m.Bus.Connected() && m.Push.Ready() && m.Genesys.Ready() && m.Dataverse.Ready()
	})
	// The first attempt waits 5 s for NATS's answer; the next ones follow.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if d.Main.Ready() {
			t.Fatal("/readyz 200 while the resolver's consumer could not be made: no call would pop on this instance")
		}
	}
	st, _ := json.Marshal(d.Main.Status(context.Background()).Components["resolver"])
	if !strings.Contains(string(st), `"consuming":false`) {
		t.Errorf("/status resolver = %s, want consuming false", st)
	}
	requireExplained(t, logs, time.Second, "the consumer not made", "component", "bus", "the resolver's consumer cannot be created yet, retrying: no pops until it is")

	x.SetPermissions("")
	waitFor(t, 20*time.Second, "ready once the consumer is made", d.Main.Ready)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	c := alertCall(d, agent)
	if page.waitPop(c.ID(), 10*time.Second).IsZero() {
		t.Fatalf("no pop once the resolver's consumer was made; logs:\n%s", logLines(logs, `"level":"warn"`, `"level":"error"`))
	}
}

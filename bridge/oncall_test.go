package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// logLines decodes a resolver's log.
func logLines(t *testing.T, logs *syncbuf.Buffer) []map[string]any {
	t.Helper()
	lines, err := logs.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestResolver_EveryOutcomeHasOneLine: the real resolver (embedded NATS,
// the Dataverse emulator, events through the resolver's consumer) decides
// each leg once, and the on-call engineer finds that decision in exactly
// one line (docs/operations.md 3.2): a pop line at info with the documented
// fields, or a "no pop" line with its reason (at info when the leg would
// otherwise have popped); no customer data in
// any line; and pops_total plus skipped_total count each event once.
func TestResolver_EveryOutcomeHasOneLine(t *testing.T) {
	defer goleak.VerifyNone(t)
	reg := prometheus.NewRegistry()
	var one, sharedA string
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: time.Second, Registerer: reg}, func(dv *dataversetest.Server) {
		one = dv.AddContact(dataversetest.Contact{FirstName: "Oona", LastName: "Onerecord", Telephone1: "+13175550101"})
		sharedA = dv.AddContact(dataversetest.Contact{FirstName: "Sam", LastName: "Sharedone", Telephone1: "+13175550102"})
		dv.AddContact(dataversetest.Contact{FirstName: "Sue", LastName: "Sharedtwo", MobilePhone: "+13175550102"})
	})
	defer s.stop()
	_ = sharedA

	type want struct {
		conv    string
		pop     bool
		action  string
		outcome string
		reason  string // for no pop
	}
	var wants []want
	run := func(w want, e *bridge.Event, setup func()) {
		t.Helper()
		if setup != nil {
			setup()
		}
		s.publish(t, e)
		if w.pop {
			if p := s.awaitPops(t, 1, 10*time.Second)[bridge.ConversationID(w.conv)]; p == nil {
				t.Fatalf("%s: no pop", w.conv)
			}
		}
		wants = append(wants, w)
	}
	run(want{conv: "open", pop: true, action: "open", outcome: "match"}, callEvent("open", "+13175550101"), nil)
	run(want{conv: "choose", pop: true, action: "choose", outcome: "multiple"}, callEvent("choose", "+13175550102"), nil)
	run(want{conv: "create", pop: true, action: "create", outcome: "no_match"}, callEvent("create", "+13175550103"), nil)
	noKey := callEvent("nokey", "")
	noKey.Customer = bridge.Customer{Name: "Nora Nokey"}
	run(want{conv: "nokey", pop: true, action: "create", outcome: "no_identifier"}, noKey, nil)
	ov := callEvent("override", "+13175550104")
	ov.Customer.Attributes = map[string]string{"screenpop.entity": "contact", "screenpop.id": one}
	run(want{conv: "override", pop: true, action: "open", outcome: "override"}, ov, nil)
	run(want{conv: "error", pop: true, action: "search", outcome: "lookup_error"}, callEvent("error", "+13175550105"),
		func() { s.dv.FailNext(1, http.StatusBadRequest) })
	run(want{conv: "deadline", pop: true, action: "search", outcome: "deadline"}, callEvent("deadline", "+13175550106"),
		func() { s.dv.FailNext(0, 0); s.dv.SetLatency(3 * time.Second) })
	s.dv.SetLatency(0)
	internal := callEvent("internal", "")
	internal.Internal = true
	run(want{conv: "internal", reason: "internal"}, internal, nil)
	stale := callEvent("stale", "+13175550107")
	stale.ReceivedAt = bridge.NewTime(time.Now().Add(-time.Minute))
	run(want{conv: "stale", reason: "stale"}, stale, nil)
	run(want{conv: "open", reason: "already_popped"}, answered(callEvent("open", "+13175550101")), nil)
	// Its leg ends while the lookup is still running.
	s.dv.SetLatency(700 * time.Millisecond)
	ending := callEvent("ending", "+13175550108")
	s.publish(t, ending)
	hangUp := callEvent("ending", "+13175550108")
	hangUp.State, hangUp.LegEnded = bridge.StateDisconnected, true
	run(want{conv: "ending", reason: "disconnected"}, hangUp, nil)
	wants = append(wants, want{conv: "ending", reason: "ended"})
	time.Sleep(1500 * time.Millisecond)
	s.dv.SetLatency(0)
	run(want{conv: "sentinel", pop: true, action: "open", outcome: "match"}, callEvent("sentinel", "+13175550101"), nil)
	s.awaitPopLine(t, "sentinel")

	lines := logLines(t, &s.logs)
	pops := map[string][]map[string]any{}
	noPops := map[string][]string{}
	for _, l := range lines {
		switch l["message"] {
		case "pop":
			if l["level"] != "info" || l["component"] != "resolver" {
				t.Errorf("pop line %v: want level info, component resolver", l)
			}
			pops[l["conversation_id"].(string)] = append(pops[l["conversation_id"].(string)], l)
		case "no pop":
			// A leg that would have popped is logged at info (operations.md
			// 3.2, 7.9); the routine reasons at debug.
			want := "debug"
			if r := l["reason"]; r == "stale" || r == "internal" || r == "ended" {
				want = "info"
			}
			if l["level"] != want {
				t.Errorf("no pop line %v: want level %s", l, want)
			}
			noPops[l["conversation_id"].(string)] = append(noPops[l["conversation_id"].(string)], l["reason"].(string))
		}
	}
	nPop, nSkip := 0, 0
	for _, w := range wants {
		if w.pop {
			nPop++
			ls := pops[w.conv]
			if len(ls) != 1 {
				t.Errorf("%s: %d pop lines, want 1", w.conv, len(ls))
				continue
			}
			l := ls[0]
			if l["action"] != w.action || l["outcome"] != w.outcome {
				t.Errorf("%s: action %v outcome %v, want %s %s", w.conv, l["action"], l["outcome"], w.action, w.outcome)
			}
			for _, f := range []string{"agent_id", "participant_id", "media", "state", "queue_ms", "lookup_ms", "mark_ms", "publish_ms", "total_ms"} {
				if _, ok := l[f]; !ok {
					t.Errorf("%s: pop line lacks %s: %v", w.conv, f, l)
				}
			}
			continue
		}
		nSkip++
		found := false
		for _, r := range noPops[w.conv] {
			found = found || r == w.reason
		}
		if !found {
			t.Errorf("%s: no pop line with reason %s (got %v)", w.conv, w.reason, noPops[w.conv])
		}
	}
	if got := counterSum(t, reg, "screenpop_bridge_resolver_pops_total"); got != float64(nPop) {
		t.Errorf("pops_total %v, want %d", got, nPop)
	}
	if got := counterSum(t, reg, "screenpop_bridge_resolver_skipped_total"); got != float64(nSkip) {
		t.Errorf("skipped_total %v, want %d", got, nSkip)
	}
	for _, pii := range []string{"555010", "Oona", "Onerecord", "Nora", "Nokey", "Sam", "Sue"} {
		if strings.Contains(s.logs.String(), pii) {
			t.Errorf("the log carries %q", pii)
		}
	}
	if t.Failed() {
		t.Log(s.logs.String())
	}
}

// breakPopStore makes the real JetStream refuse what a pop needs after its
// marker is written, as during an incident on the stream: the stream stops
// capturing pops (their publish finds no stream), and, with unmark, the
// marker bucket refuses the purge that removes a marker (no rollups). The
// marker itself is still written. The returned function undoes it.
func breakPopStore(t *testing.T, c *bus.Conn, unmark bool) (restore func()) {
	t.Helper()
	updateStream(t, c, c.StreamName(), func(cfg *jetstream.StreamConfig) { cfg.Subjects = []string{bridge.SubjectEvents} })
	if unmark {
		updateStream(t, c, "KV_"+bus.DefaultMarkerBucket, func(cfg *jetstream.StreamConfig) { cfg.AllowDirect = false })
	}
	return func() {
		updateStream(t, c, c.StreamName(), func(cfg *jetstream.StreamConfig) { cfg.Subjects = []string{bridge.SubjectAll} })
		updateStream(t, c, "KV_"+bus.DefaultMarkerBucket, func(cfg *jetstream.StreamConfig) { cfg.AllowDirect = true })
	}
}

// updateStream changes stream name's configuration with f.
func updateStream(t *testing.T, c *bus.Conn, name string, f func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := c.JetStream()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	f(&cfg)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update stream %s: %v", name, err)
	}
}

// instance is one screenpopd's resolver: its own NATS connection, registry
// and log, on a NATS and Dataverse shared with the other instances.
type instance struct {
	conn *bus.Conn
	r    *bridge.Resolver
	reg  *prometheus.Registry
	logs syncbuf.Buffer
}

func startInstance(t *testing.T, cfg bus.Config, dir bridge.Directory, rcfg bridge.ResolverConfig) *instance {
	t.Helper()
	in := &instance{reg: prometheus.NewRegistry()}
	var err error
	cfg.DataDir = t.TempDir()
	if in.conn, err = bus.Start(context.Background(), cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.conn.Close)
	rcfg.Registerer = in.reg
	if in.r, err = bridge.NewResolver(rcfg, dir, in.conn, in.conn, bridge.NewHasher([]byte("oncall-test-key-0123")), zerolog.New(&in.logs)); err != nil {
		t.Fatal(err)
	}
	return in
}

// emulatedDirectory is a dataverse.Client on a fresh Dataverse emulator
// that knows one contact with phone.
func emulatedDirectory(t *testing.T, phone string) *dataverse.Client {
	t.Helper()
	dv := dataversetest.New(dataversetest.Config{})
	dv.AddContact(dataversetest.Contact{FirstName: "Pat", LastName: "Pending", Telephone1: phone})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	ec := dv.Config()
	dir, err := dataverse.New(dataverse.Config{URL: dv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: dv.TokenURL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close(); dv.Close() })
	return dir
}

func (in *instance) count(t *testing.T, name string) float64 { return counterSum(t, in.reg, name) }

func (in *instance) lines(t *testing.T, message string) []map[string]any {
	var out []map[string]any
	for _, l := range logLines(t, &in.logs) {
		if l["message"] == message {
			out = append(out, l)
		}
	}
	return out
}

// TestResolver_PendingPopPoppedByAnotherInstanceLogsOnePop: two instances
// share the resolver's consumer (architecture.md, "Several instances"). On
// instance A a pop's publish and its marker's removal fail (JetStream
// trouble), so A keeps the pop in memory for its event's redelivery. The
// redelivery goes to instance B, which pops the leg (the marker holds the
// event's claim) and logs it. A then gets the leg's next event (its
// connected) and publishes the pop it kept: JetStream drops it as a
// duplicate, and A logged it as its own pop all the same: two pop lines,
// two counts in pops_total, for the one pop the agent got
// (docs/operations.md 3.2: "Exactly one info line per pop").
func TestResolver_PendingPopPoppedByAnotherInstanceLogsOnePop(t *testing.T) {
	const phone = "+13175550142"
	dir := emulatedDirectory(t, phone)
	rcfg := bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond}
	a := startInstance(t, bus.Config{Listen: "127.0.0.1:0"}, dir, rcfg)
	b := startInstance(t, bus.Config{URL: a.conn.ClientURL()}, dir, rcfg)
	ctx := context.Background()
	call := callEvent("two-instances", phone)

	keptInMemory(t, a, call)
	// The redelivery goes to B.
	if err := b.r.Handle(bridge.WithDelivery(ctx, 2), call); err != nil {
		t.Fatal(err)
	}
	// The call is answered; its connected event goes to A.
	if err := a.r.Handle(bridge.WithDelivery(ctx, 1), answered(call)); err != nil {
		t.Fatal(err)
	}

	stored := 0
	if err := a.conn.ReplayPops(ctx, "agent-1", 0, time.Time{}, func(bridge.StoredPop) error { stored++; return nil }); err != nil {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Fatalf("%d pops stored, want 1", stored)
	}
	lines := append(a.lines(t, "pop"), b.lines(t, "pop")...)
	popped := a.count(t, "screenpop_bridge_resolver_pops_total") + b.count(t, "screenpop_bridge_resolver_pops_total")
	if len(lines) != 1 || popped != 1 {
		t.Fatalf("%d pop lines (A %d, B %d) and pops_total %v over both instances for the one pop stored; want 1 and 1:\nA: %s\nB: %s",
			len(lines), len(a.lines(t, "pop")), len(b.lines(t, "pop")), popped, a.logs.String(), b.logs.String())
	}
}

// TestResolver_PendingPopPoppedElsewhereIsNotReportedLost: as
// TestResolver_PendingPopPoppedByAnotherInstanceLogsOnePop, but no later
// event of the leg reaches A. Ten minutes on, A gives the kept pop up with
// the error line "pops marked but never published were given up after 10
// minutes: those calls did not pop" (docs/operations.md 3.3), which sends
// the on-call engineer looking for a lost pop that the agent got.
func TestResolver_PendingPopPoppedElsewhereIsNotReportedLost(t *testing.T) {
	const phone = "+13175550143"
	dir := emulatedDirectory(t, phone)
	var ahead atomic.Int64 // A's clock runs this far ahead: the ten minutes pass at once
	rcfg := bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond}
	acfg := rcfg
	acfg.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	a := startInstance(t, bus.Config{Listen: "127.0.0.1:0"}, dir, acfg)
	b := startInstance(t, bus.Config{URL: a.conn.ClientURL()}, dir, rcfg)
	ctx := context.Background()
	call := callEvent("popped-on-b", phone)

	keptInMemory(t, a, call)
	if err := b.r.Handle(bridge.WithDelivery(ctx, 2), call); err != nil {
		t.Fatal(err)
	}
	if n := len(b.lines(t, "pop")); n != 1 {
		t.Fatalf("B logged %d pop lines, want 1", n)
	}
	// Eleven minutes later A pops another call, and sweeps what it kept.
	ahead.Store(int64(11 * time.Minute))
	later := callEvent("later", phone)
	later.Agent.UserID = "agent-2"
	later.ReceivedAt = bridge.NewTime(acfg.Now())
	if err := a.r.Handle(ctx, later); err != nil {
		t.Fatal(err)
	}
	if n := len(a.lines(t, "pop")); n != 1 {
		t.Fatalf("A logged %d pop lines, want 1 (the later call's)", n)
	}
	if l := a.lines(t, "pops marked but never published were given up after 10 minutes: those calls did not pop"); len(l) != 0 {
		t.Fatalf("A reports %v pops lost, but the call popped (on B): %v", l[0]["pops"], l[0])
	}
}

// TestResolver_PendingPopOfAnEndedLegCountedOnce: a pop whose publish and
// unmark failed waits in memory for its event's redelivery; the call ends
// first. Each of the two events is one decision, so it must count once in
// screenpop_bridge_resolver_skipped_total and have one "no pop" line: the
// hang-up "disconnected", the alerting event's redelivery "ended". The
// hang-up counted "ended" as well, so the one pop the call lost is counted
// twice as ended, and the counters add up to three events for two.
func TestResolver_PendingPopOfAnEndedLegCountedOnce(t *testing.T) {
	const phone = "+13175550144"
	dir := emulatedDirectory(t, phone)
	a := startInstance(t, bus.Config{Listen: "127.0.0.1:0"}, dir, bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	call := callEvent("ended-while-pending", phone)

	keptInMemory(t, a, call)
	hangUp := callEvent("ended-while-pending", phone)
	hangUp.State, hangUp.LegEnded = bridge.StateDisconnected, true
	if err := a.r.Handle(bridge.WithDelivery(ctx, 1), hangUp); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Handle(bridge.WithDelivery(ctx, 2), call); err != nil { // the alerting event's redelivery
		t.Fatal(err)
	}
	if n := len(a.lines(t, "pop")); n != 0 {
		t.Fatalf("%d pop lines, want none: the call ended before its pop was made", n)
	}
	var reasons []any
	for _, l := range a.lines(t, "no pop") {
		reasons = append(reasons, l["reason"])
	}
	skipped := a.count(t, "screenpop_bridge_resolver_skipped_total")
	if len(reasons) != 2 || skipped != 2 {
		t.Fatalf("no pop lines %v and skipped_total %v for two events; want [disconnected ended] and 2", reasons, skipped)
	}
}

// TestResolver_PendingPopOfALegEndedOnAnotherInstanceIsNotMade: as
// TestResolver_PendingPopOfAnEndedLegCountedOnce, but the hang-up goes to
// instance B, which ends the leg's marker; the alerting event's
// redelivery then comes back to A, which holds the pop in memory. The
// call is over: A must not publish it (the agent would get a pop for a
// call gone, maybe while on the next one), and says "no pop", ended.
func TestResolver_PendingPopOfALegEndedOnAnotherInstanceIsNotMade(t *testing.T) {
	const phone = "+13175550145"
	dir := emulatedDirectory(t, phone)
	rcfg := bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond}
	a := startInstance(t, bus.Config{Listen: "127.0.0.1:0"}, dir, rcfg)
	b := startInstance(t, bus.Config{URL: a.conn.ClientURL()}, dir, rcfg)
	ctx := context.Background()
	call := callEvent("ended-on-b", phone)

	keptInMemory(t, a, call)
	hangUp := callEvent("ended-on-b", phone)
	hangUp.State, hangUp.LegEnded = bridge.StateDisconnected, true
	if err := b.r.Handle(ctx, hangUp); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Handle(bridge.WithDelivery(ctx, 2), call); err != nil {
		t.Fatal(err)
	}

	assertNoPopStored(t, a, "the call ended (on B) before A's kept pop was published")
	if reasons := noPopReasons(t, a); len(reasons) != 1 || reasons[0] != "ended" {
		t.Fatalf("A's no pop lines %v, want one, ended", reasons)
	}
	if st := a.r.Status(); st.PendingPublishes != 0 {
		t.Fatalf("A still keeps %d pops", st.PendingPublishes)
	}
}

// TestResolver_PendingPopOfAStaleEventIsNotMade: a pop kept in memory
// (its publish and its marker's removal failed) comes back with its
// event's redelivery a minute later, NATS having been away that long. An
// event older than SCREENPOP_MAX_EVENT_AGE makes no pop (the caller is
// long answered or gone), and a kept one is no exception.
func TestResolver_PendingPopOfAStaleEventIsNotMade(t *testing.T) {
	const phone = "+13175550146"
	dir := emulatedDirectory(t, phone)
	var ahead atomic.Int64
	rcfg := bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond}
	rcfg.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	a := startInstance(t, bus.Config{Listen: "127.0.0.1:0"}, dir, rcfg)
	ctx := context.Background()
	call := callEvent("stale-while-pending", phone)

	keptInMemory(t, a, call)
	ahead.Store(int64(time.Minute)) // 30 s is the default SCREENPOP_MAX_EVENT_AGE
	if err := a.r.Handle(bridge.WithDelivery(ctx, 2), call); err != nil {
		t.Fatal(err)
	}

	assertNoPopStored(t, a, "its event was a minute old when it came back")
	if reasons := noPopReasons(t, a); len(reasons) != 1 || reasons[0] != "stale" {
		t.Fatalf("no pop lines %v, want one, stale", reasons)
	}
	if st := a.r.Status(); st.PendingPublishes != 0 {
		t.Fatalf("still keeps %d pops", st.PendingPublishes)
	}
}

// assertNoPopStored fails unless agent-1 has no pop stored and i logged
// no pop line.
func assertNoPopStored(t *testing.T, i *instance, why string) {
	t.Helper()
	stored := 0
	if err := i.conn.ReplayPops(context.Background(), "agent-1", 0, time.Time{}, func(bridge.StoredPop) error { stored++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n := len(i.lines(t, "pop")); stored != 0 || n != 0 {
		t.Fatalf("%d pops stored and %d pop lines, want none: %s\n%s", stored, n, why, i.logs.String())
	}
}

// noPopReasons is the reasons of i's "no pop" lines.
func noPopReasons(t *testing.T, i *instance) []any {
	t.Helper()
	var reasons []any
	for _, l := range i.lines(t, "no pop") {
		reasons = append(reasons, l["reason"])
	}
	return reasons
}

// keptInMemory has a's handler of call fail to publish its pop and to
// remove its marker (JetStream refusing both), so that a keeps the pop for
// the event's redelivery; it fails the test unless a does.
func keptInMemory(t *testing.T, a *instance, call *bridge.Event) {
	t.Helper()
	restore := breakPopStore(t, a.conn, true)
	if err := a.r.Handle(bridge.WithDelivery(context.Background(), 1), call); err == nil {
		t.Fatal("the handler succeeded with the pops not captured; want an error (redeliver)")
	}
	if st := a.r.Status(); st.PendingPublishes != 1 {
		t.Fatalf("pending publishes %d, want 1 (or the test proves nothing): %s", st.PendingPublishes, a.logs.String())
	}
	restore()
}

// TestResolver_RedeliveredAndGivenUpPops: through the resolver's consumer,
// a pop whose publish fails is redelivered and then logged once, with
// redelivered; one whose every delivery fails makes error lines and no pop
// or "no pop" line, and the bus counts it given up.
func TestResolver_RedeliveredAndGivenUpPops(t *testing.T) {
	defer goleak.VerifyNone(t)
	reg := prometheus.NewRegistry()
	s := startResolverStack(t, bridge.ResolverConfig{PublishTimeout: 200 * time.Millisecond, Registerer: reg}, func(dv *dataversetest.Server) {
		dv.AddContact(dataversetest.Contact{FirstName: "Rita", LastName: "Redelivered", Telephone1: "+13175550150"})
	}, func(o *stackOptions) { o.consume = bus.ConsumeConfig{MaxDeliver: 2} })
	defer s.stop()
	errorsAt := func() float64 { return counterSum(t, reg, "screenpop_bridge_resolver_errors_total") }

	restore := breakPopStore(t, s.conn, false)
	s.publish(t, callEvent("redelivered", "+13175550150"))
	waitUntil(t, 10*time.Second, func() bool { return errorsAt() >= 1 })
	restore()
	s.awaitPops(t, 1, 10*time.Second)

	restore = breakPopStore(t, s.conn, false)
	s.publish(t, callEvent("given-up", "+13175550150"))
	waitUntil(t, 10*time.Second, func() bool { return errorsAt() >= 3 })
	time.Sleep(time.Second) // no third delivery
	restore()
	s.publish(t, callEvent("sentinel", "+13175550150"))
	s.awaitPops(t, 1, 10*time.Second)
	s.awaitPopLine(t, "sentinel")

	var popLines, noPop, notPublished []map[string]any
	for _, l := range logLines(t, &s.logs) {
		switch l["message"] {
		case "pop":
			popLines = append(popLines, l)
		case "no pop":
			noPop = append(noPop, l)
		case "pop not published; event will be redelivered":
			notPublished = append(notPublished, l)
		}
	}
	if len(popLines) != 2 || popLines[0]["conversation_id"] != "redelivered" || popLines[0]["redelivered"] != true || popLines[1]["conversation_id"] != "sentinel" {
		t.Fatalf("pop lines %v; want the redelivered call's (redelivered) and the sentinel's", popLines)
	}
	if len(noPop) != 0 || len(notPublished) != 3 || errorsAt() != 3 {
		t.Fatalf("no pop lines %v, not published lines %d, errors_total %v; want none, 3 and 3", noPop, len(notPublished), errorsAt())
	}
	if got := counterSum(t, reg, "screenpop_bridge_resolver_pops_total"); got != 2 {
		t.Fatalf("pops_total %v, want 2", got)
	}
}

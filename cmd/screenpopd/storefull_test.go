package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// TestMetricsDoc_AlertsFireWhenTheStoreIsFull: the NATS account's
// JetStream store full (max_file reached by another stream of the
// account; the daemon's own stream keeps to its share)
// for longer than the max event age. Every event is refused, waits in the
// publisher and is stored once the limit is raised, too old to pop: no call
// that rang meanwhile pops. The daemon stays ready and connected, drops no
// event (the buffer holds 10,000) and gives none up, so the suggested
// alerts that read those stay silent: one must read what moved, or on-call
// is not paged while no call pops. docs/operations.md 7.4 must also not
// promise an `event dropped` error that does not come.
func TestMetricsDoc_AlertsFireWhenTheStoreIsFull(t *testing.T) {
	x := bustest.StartLimitedServer(t, "max_file: 2M, max_mem: 1M")
	vars := testEnv(t)
	vars["NATS_URL"] = x.URL()
	// Stands for the default 30 s, so that the episode can be short.
	const maxAge = 2 * time.Second
	vars["SCREENPOP_MAX_EVENT_AGE"] = maxAge.String()
	d, logs := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	before := alertCall(d, agent)
	if page.waitPop(before.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the store filled")
	}

	x.FillStore() // the daemon's own stream keeps to its share (TestConn_StreamKeepsToItsShareOfTheStore)
	during := alertCall(d, agent)
	rang := time.Now()
	waitFor(t, 20*time.Second, "the call's event refused, and older than the max event age", func() bool {
		v, _ := scrapeMetrics(t, d).sum("screenpop_bus_publish_errors_total", nil)
		return v > 0 && time.Since(rang) > maxAge+time.Second
	})
	s := scrapeMetrics(t, d)
	x.SetLimits("max_file: 8M, max_mem: 1M")
	after := alertCall(d, agent)
	// When after's conversation shares its publisher lane with during's (1
	// in 16), it used to wait out during's retry backoff (up to 5 s), came
	// to the resolver older than maxAge and made no pop (an info "no pop",
	// reason stale): TestEventPublisher_ACallAfterTheStoreIsBackDoesNotWaitOutItsLanesBackoff.
	if page.waitPop(after.ID(), 30*time.Second).IsZero() {
		t.Fatalf("no pop after the account's limit was raised; %s", whereIsThePop(t, d, x.URL(), logs, after.ID()))
	}
	waitFor(t, 15*time.Second, "the refused event stored and handled", func() bool {
		v, _ := scrapeMetrics(t, d).sum("screenpop_bridge_resolver_skipped_total", map[string]string{"reason": "stale"})
		return v > 0
	})
	if n, _ := page.pops(during.ID()); n != 0 {
		t.Fatalf("the call that rang while the store was full popped %d times; want none (its event came back too old)", n)
	}
	for name, want := range map[string]float64{"screenpop_ready": 1, "screenpop_bus_connected": 1, "screenpop_bridge_publisher_dropped_total": 0, "screenpop_bus_events_given_up_total": 0, "screenpop_bus_consumer_recreated_total": 0} {
		if v, _ := s.sum(name, nil); v != want {
			t.Fatalf("%s = %v while the store was full, want %v", name, v, want)
		}
	}
	moved := []string{"screenpop_bus_publish_errors_total", "screenpop_bridge_publisher_retries_total", "screenpop_bridge_publisher_in_flight"}
	var watching []string
	for alert, expr := range runbookAlerts(t) {
		for _, m := range moved {
			if strings.Contains(expr, m) {
				watching = append(watching, alert)
				break
			}
		}
	}
	if len(watching) == 0 {
		t.Errorf("the store was full for longer than the max event age: the call that rang then never popped, publish_errors_total rose; but none of the suggested alerts reads %s: on-call is not paged", strings.Join(moved, ", "))
	}

	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "- **Stream full or JetStream unavailable**")
	if i < 0 {
		t.Fatal("docs/operations.md 7.4 has no 'Stream full or JetStream unavailable' item")
	}
	item := doc[i:]
	item = item[:strings.Index(item, "\n- **")]
	if strings.Contains(item, "then\n  `event dropped`") || strings.Contains(item, "then `event dropped`") {
		if !strings.Contains(logs.String(), `"message":"event dropped"`) {
			t.Errorf("docs/operations.md 7.4 says a full store shows `publish failed, retrying` and then `event dropped` (error); the daemon logged no `event dropped`: it keeps the events (up to 10,000) and retries")
		}
	}
}

// whereIsThePop says how far conv's call got on its way to a pop: the
// daemon's /status, the stream's consumers, and the log lines of the call,
// of NATS and the consumers, and every warning and error. For a test that
// fails too rarely to be caught with a debugger.
func whereIsThePop(t *testing.T, d *Demo, natsURL string, logs *syncbuf.Buffer, conv string) string {
	t.Helper()
	var b strings.Builder
	st, _ := json.Marshal(d.Main.Status(context.Background()).Components)
	fmt.Fprintf(&b, "/status: %s\n", st)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js := jetStreamAt(t, natsURL)
	if s, err := js.Stream(ctx, "SCREENPOP"); err != nil {
		fmt.Fprintf(&b, "stream: %v\n", err)
	} else {
		fmt.Fprintf(&b, "stream: last seq %d, %d messages\n", s.CachedInfo().State.LastSeq, s.CachedInfo().State.Msgs)
		for ci := range s.ListConsumers(ctx).Info() {
			fmt.Fprintf(&b, "consumer %s: delivered %d, ack floor %d, pending %d, ack pending %d, waiting %d\n",
				ci.Name, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumWaiting)
		}
	}
	fmt.Fprintf(&b, "logs:\n%s", logLines(logs, conv, `"level":"warn"`, `"level":"error"`, `"component":"bus"`, `"component":"push"`))
	return b.String()
}

// TestDeploy_NATSClusterAccountHoldsADayOfTheStream: the stream keeps
// SCREENPOP_STREAM_MAX_AGE (24 h) of events and pops, within 80% of the
// account's store: an account too small for the day makes the stream drop
// its oldest messages early (shorter history for other services and
// replays). The example cluster's account must hold the day
// docs/performance.md sizes (for 10,000 agents) at the replicas
// docs/deploy/README.md sets: an account's limit counts every replica.
func TestDeploy_NATSClusterAccountHoldsADayOfTheStream(t *testing.T) {
	perf, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`some (\d+) GB under\s+` + "`SCREENPOP_DATA_DIR`").FindSubmatch(perf)
	if m == nil {
		t.Fatal("docs/performance.md Sizing no longer says how many GB the stream holds a day; update this test")
	}
	day, _ := strconv.ParseInt(string(m[1]), 10, 64)
	readme, err := os.ReadFile(filepath.Join(deployDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m = regexp.MustCompile("set `SCREENPOP_STREAM_REPLICAS=(\\d)`").FindSubmatch(readme)
	if m == nil {
		t.Fatal("docs/deploy/README.md no longer sets SCREENPOP_STREAM_REPLICAS; update this test")
	}
	replicas, _ := strconv.ParseInt(string(m[1]), 10, 64)

	path, ca := natsConfForTest(t)
	opts := &server.Options{}
	if err := opts.ProcessConfigFile(path); err != nil {
		t.Fatal(err)
	}
	ns := serveAsOneNode(t, opts)
	js := jetStreamAt(t, "tls://"+url.UserPassword("screenpop", "screenpop-pass").String()+"@"+ns.Addr().String(), nats.RootCAs(ca))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if need := day << 30 * replicas * 100 / 80; ai.Limits.MaxStore < need {
		t.Errorf("nats-cluster.conf gives the SCREENPOP account max_file %d GiB; a day of the stream at the load docs/performance.md sizes is %d GB, %d GB with its %d replicas, and the stream may fill 80%% of the account: it would drop messages before they are a day old",
			ai.Limits.MaxStore>>30, day, day*replicas, replicas)
	}
}

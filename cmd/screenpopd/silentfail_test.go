//go:build unix

package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/testenv"
)

// suggestedAlertRules writes docs/operations.md section 5's rules to
// rules.yml in a directory of the test's, for promtool (returned too).
func suggestedAlertRules(t *testing.T) (promtool, dir string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian package prometheus)")
	}
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\n## 5\\. Suggested alerts.*?```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/operations.md section 5 has no yaml block")
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	return promtool, dir
}

// alertsFiredOver runs the suggested alerts (docs/operations.md section 5)
// with Prometheus' own rule engine (promtool test rules) over a daemon's
// scrapes, one a minute: scrapes[i] is what Prometheus read at minute i
// (up 1 throughout). It returns the alerts firing at any evaluation of the
// last window minutes.
func alertsFiredOver(t *testing.T, scrapes []scrape, window int) []string {
	t.Helper()
	promtool, dir := suggestedAlertRules(t)
	// Every series of every scrape, by its text, with its value per minute
	// (_ where a scrape has no such sample).
	key := func(x metricSample) string {
		names := make([]string, 0, len(x.labels))
		for k := range x.labels {
			names = append(names, k)
		}
		sort.Strings(names)
		ls := []string{`job="screenpop"`, `instance="a"`}
		for _, k := range names {
			ls = append(ls, fmt.Sprintf("%s=%q", k, x.labels[k]))
		}
		return x.name + "{" + strings.Join(ls, ",") + "}"
	}
	values := map[string][]string{}
	for i, s := range scrapes {
		for _, x := range s.samples {
			if !strings.HasPrefix(x.name, "screenpop_") {
				continue
			}
			k := key(x)
			if values[k] == nil {
				values[k] = make([]string, len(scrapes))
				for j := range values[k] {
					values[k][j] = "_"
				}
			}
			v := fmt.Sprint(x.value)
			if math.IsNaN(x.value) {
				v = "_"
			}
			values[k][i] = v
		}
	}
	var in strings.Builder
	fmt.Fprintf(&in, "  - {series: 'up{job=\"screenpop\",instance=\"a\"}', values: '1x%d'}\n", len(scrapes)-1)
	for k, vs := range values {
		fmt.Fprintf(&in, "  - {series: '%s', values: '%s'}\n", strings.ReplaceAll(k, "'", "''"), strings.Join(vs, " "))
	}
	last := len(scrapes) - 1
	tests := fmt.Sprintf(`rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- name: scraped
  interval: 1m
  input_series:
%s  promql_expr_test:
  - {expr: 'max_over_time(ALERTS{alertstate="firing"}[%dm])', eval_time: %dm, exp_samples: []}
`, in.String(), window, last)
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "tests.yml")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		return nil
	}
	fired := map[string]bool{}
	for _, m := range regexp.MustCompile(`alertname="([A-Za-z]+)"`).FindAllStringSubmatch(out.String(), -1) {
		fired[m[1]] = true
	}
	if len(fired) == 0 {
		t.Fatalf("promtool test rules failed without naming an alert:\n%s", out.String())
	}
	var names []string
	for n := range fired {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// The push server's consumer of screenpop.pops.> is lost (here deleted;
// also a reconnect or a missed heartbeat) while another service holds all
// of the stream's consumers: it cannot be made again, and no pop reaches
// any agent of the instance until a consumer goes. The resolver keeps
// making pops, NATS stays connected, /readyz stays 200; the daemon logs an
// error and /status says push.following false. On-call watches /metrics
// and the suggested alerts: at least one of them must fire while no call
// pops for ten minutes, as it does when the events are given up
// (TestMetricsDoc_AlertsFireWhenPopsAreLost).
func TestSilentFail_PopFollowRefusedByTheConsumerLimitPagesOnCall(t *testing.T) {
	t.Parallel() // its own daemon and NATS; half a minute: see TestMain
	d, nc, _ := startDemoOnNATSLogs(t)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	// Healthy minutes: each call pops.
	scrapes := minutesOfCalls(t, d, page, agent, 5, true)
	if fired := alertsFiredOver(t, scrapes, 4); len(fired) > 0 {
		t.Fatalf("healthy, the suggested alerts fire: %v", fired)
	}

	// Another service holds all of the stream's consumers but the
	// daemon's follow, which is then deleted and cannot be made again.
	takeConsumerOf(t, nc, d.Main.Bus.StreamName(), func(ci *jetstream.ConsumerInfo) bool {
		return ci.Config.FilterSubject == bridge.SubjectPops
	})

	// Ten minutes (one scrape each) of calls that do not pop.
	const fault = 10
	scrapes = append(scrapes, minutesOfCalls(t, d, page, agent, fault, false)...)
	s := scrapes[len(scrapes)-1]
	if v, _ := s.sum("screenpop_bridge_resolver_pops_total", nil); v < 5+fault {
		t.Fatalf("resolver_pops_total = %v: the resolver did not make the pops", v)
	}
	if fired := alertsFiredOver(t, scrapes, fault-1); len(fired) == 0 {
		t.Errorf("for %d minutes no call popped (the push server's consumer of the pops refused by the stream's consumer limit; the resolver made every pop, screenpop_push_pops_sent_total flat), and none of the suggested alerts fired: on-call is not paged", fault)
	} else {
		t.Logf("fired: %v", fired)
	}
}

// The resolver's durable consumer of the events is lost while another
// service holds all of the stream's consumers: it cannot be made again,
// and no event of any instance becomes a pop. ScreenpopResolverConsumerLost
// fires when it is lost, for its increase window (10 minutes) only: an
// alert must still fire after that while no call pops, or the page
// resolves itself in the middle of the outage.
func TestSilentFail_ResolverConsumerRefusedStillPagesAfterTenMinutes(t *testing.T) {
	t.Parallel() // its own daemon and NATS; half a minute: see TestMain
	d, nc, _ := startDemoOnNATSLogs(t)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	scrapes := minutesOfCalls(t, d, page, agent, 5, true)
	takeConsumerOf(t, nc, d.Main.Bus.StreamName(), func(ci *jetstream.ConsumerInfo) bool {
		return ci.Name == bus.DefaultDurable
	})
	const fault = 15
	scrapes = append(scrapes, minutesOfCalls(t, d, page, agent, fault, false)...)
	if fired := alertsFiredOver(t, scrapes, 1); len(fired) == 0 {
		t.Errorf("after %d minutes of no pop (the resolver's consumer lost and refused by the stream's consumer limit), no suggested alert fires any more: the page resolved itself in the outage", fault)
	} else {
		t.Logf("firing at the end: %v", fired)
	}
}

// minutesOfCalls rings n calls for agent, one a "minute", each followed
// by a scrape of the daemon's metrics: each must pop on page (within 15 s)
// if pops, none may (within 2 s) otherwise.
func minutesOfCalls(t *testing.T, d *Demo, page *agentPage, agent string, n int, pops bool) []scrape {
	t.Helper()
	var scrapes []scrape
	for range n {
		c := alertCall(d, agent)
		switch {
		case pops && page.waitPop(c.ID(), 15*time.Second).IsZero():
			t.Fatal("no pop while healthy")
		case !pops && !page.waitPop(c.ID(), 2*time.Second).IsZero():
			t.Fatal("a call popped: the scenario did not happen")
		}
		scrapes = append(scrapes, scrapeMetrics(t, d))
	}
	return scrapes
}

// alertsFiredOver sees a rule that fires: scrapes saying not ready for
// five minutes page with ScreenpopNotReady (its for: 2m run out).
func TestSilentFail_AlertsFiredOverSeesAFiringRule(t *testing.T) {
	ready := func(v float64) scrape {
		return scrape{samples: []metricSample{{name: "screenpop_ready", labels: map[string]string{}, value: v}}}
	}
	scrapes := []scrape{ready(1), ready(1), ready(1), ready(0), ready(0), ready(0), ready(0), ready(0)}
	if fired := alertsFiredOver(t, scrapes[:3], 2); len(fired) != 0 {
		t.Errorf("ready: %v fired", fired)
	}
	if fired := alertsFiredOver(t, scrapes, 4); !strings.Contains(strings.Join(fired, ","), "ScreenpopNotReady") {
		t.Errorf("not ready for 5 minutes: fired %v, want ScreenpopNotReady", fired)
	}
}

// Two ways Genesys loses or delays pops with every socket up and the
// daemon ready: it keeps answering 429 (another integration on the same
// OAuth client: subscriptions and reconciliation wait), and reconciliation
// gives up on a conversation it cannot fetch (a call that rang during a
// gap does not pop; TestClient_AConversationThatCannotBeFetchedHoldsUpNoOther
// shows the counter rise). Each must page, and a rare 429 must not.
func TestSilentFail_GenesysThrottlingAndReconciliationGivenUpPage(t *testing.T) {
	throttled := map[string]string{"op": "subscribe", "code": "429"}
	firesOnly(t, []alertCase{
		{"429s for 20 minutes", counter("screenpop_notifications_api_requests_total", throttled, slices.Repeat([]float64{3}, 20)), "ScreenpopGenesysThrottled"},
		{"a few 429s once", counter("screenpop_notifications_api_requests_total", throttled, append([]float64{0, 4, 2}, slices.Repeat([]float64{0}, 17)...)), ""},
		{"200s", counter("screenpop_notifications_api_requests_total", map[string]string{"op": "subscribe", "code": "200"}, slices.Repeat([]float64{30}, 20)), ""},
		{"a conversation given up", counter("screenpop_notifications_reconciliation_dropped_total", map[string]string{}, append(slices.Repeat([]float64{0}, 5), 1, 0, 0)), "ScreenpopReconciliationGaveUp"},
		{"none given up", counter("screenpop_notifications_reconciliation_dropped_total", map[string]string{}, slices.Repeat([]float64{0}, 8)), ""},
	})
}

// Two ways agents miss pops with the daemon ready, Genesys heard and pops
// made: the push server cannot read pops from the stream (another service
// publishing on screenpop.pops.*, or instances of two versions side by
// side: push skips them, pops_invalid_total), and pages keep being refused
// with 1013 because the token check cannot reach Genesys (agents who open
// Dynamics get no pops; pages already open keep theirs). Each must page;
// pages refused during a blip of two minutes must not.
func TestSilentFail_UnreadablePopsAndPagesRefusedUnavailablePage(t *testing.T) {
	unavailable := map[string]string{"result": "unavailable"}
	firesOnly(t, []alertCase{
		{"a pop unreadable", counter("screenpop_push_pops_invalid_total", map[string]string{}, append(slices.Repeat([]float64{0}, 5), 1, 0, 0)), "ScreenpopPopsUnreadable"},
		{"pops read", counter("screenpop_push_pops_invalid_total", map[string]string{}, slices.Repeat([]float64{0}, 8)), ""},
		// A page retries every few seconds, at most 30 s apart.
		{"pages refused for 20 minutes", counter("screenpop_push_connects_total", unavailable, slices.Repeat([]float64{2}, 20)), "ScreenpopAgentPagesRefused"},
		{"pages refused for two minutes", counter("screenpop_push_connects_total", unavailable, append([]float64{0, 12, 12}, slices.Repeat([]float64{0}, 17)...)), ""},
		{"pages let in", counter("screenpop_push_connects_total", map[string]string{"result": "ok"}, slices.Repeat([]float64{50}, 20)), ""},
	})
}

// alertCase is a counter's scrapes and the alert they must fire ("": none).
type alertCase struct {
	name    string
	scrapes []scrape
	want    string
}

// firesOnly runs the suggested alerts over each case's scrapes: want must
// fire, and nothing may when want is "".
func firesOnly(t *testing.T, cases []alertCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fired := alertsFiredOver(t, tc.scrapes, len(tc.scrapes)-1)
			switch {
			case tc.want == "" && len(fired) > 0:
				t.Errorf("fired %v, want none", fired)
			case tc.want != "" && !slices.Contains(fired, tc.want):
				t.Errorf("fired %v, want %s", fired, tc.want)
			}
		})
	}
}

// counter is the scrapes of a ready daemon whose counter name (labels)
// grew by per[i] in minute i.
func counter(name string, labels map[string]string, per []float64) []scrape {
	var scrapes []scrape
	total := 0.0
	for _, v := range per {
		total += v
		scrapes = append(scrapes, scrape{samples: []metricSample{
			{name: "screenpop_ready", labels: map[string]string{}, value: 1},
			{name: name, labels: labels, value: total}}})
	}
	return scrapes
}

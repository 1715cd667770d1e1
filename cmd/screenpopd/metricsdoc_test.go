package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// metricSample is one sample line of /metrics.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is a daemon's /metrics, read over HTTP as Prometheus reads it:
// the type of each family and its samples.
type scrape struct {
	types   map[string]string // family → counter, gauge, histogram, ...
	samples []metricSample
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func scrapeMetrics(t *testing.T, d *Demo) scrape {
	t.Helper()
	return scrapeAdmin(t, d.Main.AdminAddr())
}

// scrapeAdmin reads /metrics of the admin listener at addr.
func scrapeAdmin(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := scrape{types: map[string]string{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.types[f[2]] = f[3]
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		ls := map[string]string{}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			ls[l[1]] = l[2]
		}
		s.samples = append(s.samples, metricSample{name: m[1], labels: ls, value: v})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// family returns the family a sample name belongs to (a histogram's
// _bucket, _sum and _count belong to the histogram).
func (s scrape) family(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suf); ok && s.types[f] == "histogram" {
			return f
		}
	}
	return name
}

// sum adds the samples of name whose labels include match.
func (s scrape) sum(name string, match map[string]string) (float64, bool) {
	var v float64
	found := false
next:
	for _, x := range s.samples {
		if x.name != name {
			continue
		}
		for k, want := range match {
			if x.labels[k] != want {
				continue next
			}
		}
		v += x.value
		found = true
	}
	return v, found
}

// labelValues returns, per family, its label names and the values seen.
func (s scrape) labelValues() map[string]map[string]map[string]bool {
	out := map[string]map[string]map[string]bool{}
	for _, x := range s.samples {
		f := s.family(x.name)
		if out[f] == nil {
			out[f] = map[string]map[string]bool{}
		}
		for k, v := range x.labels {
			if k == "le" || k == "quantile" {
				continue
			}
			if out[f][k] == nil {
				out[f][k] = map[string]bool{}
			}
			out[f][k][v] = true
		}
	}
	return out
}

// daemonSource is the daemon's Go source (tests and emulators left out):
// where metric names, label names and label values are written.
func daemonSource(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, path := range daemonGoFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(src)
	}
	return b.String()
}

// daemonGoFiles are the paths of the daemon's Go files: the module's
// non-test files, without the load tool, the emulators and internal test
// helpers.
func daemonGoFiles(t *testing.T) []string {
	t.Helper()
	skip := regexp.MustCompile(`(^|/)(cmd/screenpop-bench|notificationstest|dataversetest|bustest|internal)(/|$)`)
	var paths []string
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip.MatchString(filepath.ToSlash(path)) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// runbookMetrics returns the metric names docs/operations.md section 4
// documents, with the short names of its tables completed by their
// section's prefix, and the {…} written after each (without the braces).
func runbookMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start, end := strings.Index(doc, "\n## 4. Metrics"), strings.Index(doc, "\n## 5.")
	if start < 0 || end < start {
		t.Fatal("docs/operations.md has no section 4. Metrics before 5")
	}
	prefixRE := regexp.MustCompile("^### .*\\(`(screenpop_[a-z]+_)…`\\)")
	nameRE := regexp.MustCompile("`([a-z_]+)(\\{[^}]*\\})?`")
	out := map[string][]string{}
	prefix := ""
	for _, line := range strings.Split(doc[start:end], "\n") {
		if strings.HasPrefix(line, "### ") {
			prefix = ""
			if m := prefixRE.FindStringSubmatch(line); m != nil {
				prefix = m[1]
			}
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range nameRE.FindAllStringSubmatch(cells[1], -1) {
			name := m[1]
			if !strings.HasPrefix(name, "screenpop_") {
				name = prefix + name
			}
			out[name] = append(out[name], strings.Trim(m[2], "{}"))
		}
	}
	return out
}

// runbookAlerts returns the expressions of docs/operations.md section 5, by
// alert name.
func runbookAlerts(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n## 5. Suggested alerts")
	if start < 0 {
		t.Fatal("docs/operations.md has no section 5. Suggested alerts")
	}
	doc = doc[start:]
	doc = doc[:strings.Index(doc, "\n## 6.")]
	out := map[string]string{}
	alertRE := regexp.MustCompile(`(?m)^  - alert: (\S+)\n    expr: (?:\|\n((?:      .*\n)+)|(.*)\n)`)
	for _, m := range alertRE.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = strings.TrimSpace(m[2] + m[3])
	}
	if len(out) == 0 {
		t.Fatal("no alert rules found in docs/operations.md section 5")
	}
	return out
}

// driveSomeTraffic makes pops, a Genesys socket drop, a Dataverse failure,
// a browser's bad frame and a malformed Genesys frame, so that the
// daemon's labelled families have samples.
func driveSomeTraffic(t *testing.T, d *Demo) {
	t.Helper()
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	c := alertCall(d, agent)
	if page.waitPop(c.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop")
	}
	c.Connect()
	c.Disconnect()
	d.Genesys.DropConnections()
	waitFor(t, 10*time.Second, "the Genesys socket back", func() bool { return d.Genesys.SubscribedConnected() > 0 })
	d.Dataverse.FailNext(10, 503)
	c = alertCall(d, agent)
	if page.waitPop(c.ID(), 15*time.Second).IsZero() {
		t.Fatal("no search pop while Dataverse fails")
	}
	d.Genesys.Publish("v2.users."+agent+".conversations", []byte(`{"id":`))
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(demoAgents[1].ID))
	ws.WriteMessage(1, []byte(`{"type":"bogus"}`))
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
}

// TestMetricsDoc_InStepWithTheDaemon keeps the docs and the daemon's real
// /metrics in step: every family the daemon exports is in the runbook
// (docs/operations.md section 4), where on-call looks; every metric, label
// and label value the docs name exists with that spelling; and every
// suggested alert (section 5) reads metrics that exist, with rate() and
// increase() over counters and histogram_quantile over a histogram's
// buckets.
func TestMetricsDoc_InStepWithTheDaemon(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	driveSomeTraffic(t, d)
	s := scrapeMetrics(t, d)
	src := daemonSource(t)
	documented := runbookMetrics(t)
	labels := s.labelValues()
	matcherRE := regexp.MustCompile(`([a-z_]+)\s*(=~|!=|=)\s*"([^"]*)"`)

	// Exported → documented in the runbook.
	for f := range s.types {
		if _, ok := documented[f]; strings.HasPrefix(f, "screenpop_") && !ok {
			t.Errorf("/metrics exports %s, which docs/operations.md section 4 does not list", f)
		}
	}
	// exists reports whether the daemon has a family of that name: on
	// /metrics now, or written in its source (families with labels show
	// only once they have a sample).
	exists := func(name string) bool {
		if _, ok := s.types[name]; ok {
			return true
		}
		if strings.Contains(src, `"`+name+`"`) {
			return true
		}
		short, ok := strings.CutPrefix(name, "screenpop_notifications_")
		return ok && strings.Contains(src, `Name: "`+short+`"`)
	}
	for name, sels := range documented {
		if !exists(name) {
			t.Errorf("docs/operations.md section 4 lists %s, which the daemon does not export", name)
			continue
		}
		for _, sel := range sels {
			if sel != "" {
				checkSelector(t, "docs/operations.md section 4", name, sel, labels, src, matcherRE)
			}
		}
	}

	// Every metric with labels named anywhere in the docs: the name, the
	// label names and the values.
	selRE := regexp.MustCompile("`(screenpop_[a-z_]+)(\\{[^}]*\\})?`")
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range selRE.FindAllStringSubmatch(string(b), -1) {
			name, sel := m[1], strings.Trim(m[2], "{}")
			if strings.HasSuffix(name, "_") {
				continue // a prefix: screenpop_bus_…
			}
			if !exists(name) {
				t.Errorf("%s names %s, which the daemon does not export", file, name)
				continue
			}
			if sel == "" {
				continue
			}
			checkSelector(t, file, name, sel, labels, src, matcherRE)
		}
	}

	// The suggested alerts.
	selInExprRE := regexp.MustCompile(`(screenpop_[a-z_]+)(\{[^}]*\})?`)
	for alert, expr := range runbookAlerts(t) {
		for _, m := range selInExprRE.FindAllStringSubmatch(expr, -1) {
			name, sel := m[1], strings.Trim(m[2], "{}")
			fam := s.family(name)
			typ, ok := s.types[fam]
			if !ok {
				typ, ok = onlyWithASetting[fam]
			}
			if !ok {
				t.Errorf("alert %s reads %s, which is not on /metrics: %s", alert, name, expr)
				continue
			}
			if sel != "" {
				checkSelector(t, "alert "+alert, fam, sel, labels, src, matcherRE)
			}
			if fam != name && !strings.HasSuffix(name, "_bucket") {
				continue
			}
			at := strings.Index(expr, m[0])
			before := expr[:at]
			fn := regexp.MustCompile(`(rate|increase)\($`).FindStringSubmatch(before)
			switch {
			case fn != nil && typ != "counter" && fam == name:
				t.Errorf("alert %s takes %s() of %s, a %s: %s", alert, fn[1], name, typ, expr)
			case strings.HasSuffix(name, "_bucket") && (typ != "histogram" || !strings.Contains(expr, "by (le)")):
				t.Errorf("alert %s: histogram_quantile needs the buckets of a histogram summed by le: %s", alert, expr)
			}
		}
	}
}

// onlyWithASetting are the families the demo daemon (plaintext on
// loopback) does not export, with their types; each has a test of its own
// that a daemon with the setting exports it.
var onlyWithASetting = map[string]string{
	// TestMetricsDoc_CertificateExpiry
	"screenpop_push_tls_certificate_expiry_timestamp_seconds": "gauge",
	// TestMetricsDoc_DataverseCertificateExpiry
	"screenpop_dataverse_client_certificate_expiry_timestamp_seconds": "gauge",
}

// TestMetricsDoc_CertificateExpiry: with TLS on the agent listener, the
// ScreenpopCertificateExpiring alert reads when the served certificate
// expires.
func TestMetricsDoc_CertificateExpiry(t *testing.T) {
	notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	vars := testEnv(t)
	vars["SCREENPOP_TLS_CERT"], vars["SCREENPOP_TLS_KEY"] = writeCert(t, time.Now().Add(-time.Hour), notAfter)
	d, _ := MustStartDemo(t, vars)
	s := scrapeMetrics(t, d)
	const name = "screenpop_push_tls_certificate_expiry_timestamp_seconds"
	if typ := s.types[name]; typ != onlyWithASetting[name] {
		t.Fatalf("%s is a %q on /metrics, want %q", name, typ, onlyWithASetting[name])
	}
	if v, _ := s.sum(name, nil); v != float64(notAfter.Unix()) {
		t.Fatalf("%s = %v, want the certificate's expiry %d", name, v, notAfter.Unix())
	}
}

// TestMetricsDoc_DataverseCertificateExpiry: with a Dataverse client
// certificate, the ScreenpopDataverseCertificateExpiring alert reads when
// the certificate in use expires.
func TestMetricsDoc_DataverseCertificateExpiry(t *testing.T) {
	notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	cert := mustCert(t, dataversetest.CertificateOptions{NotAfter: notAfter})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := cert.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	s := scrapeAdmin(t, startCertDaemon(t, cert, file).m.AdminAddr())
	const name = "screenpop_dataverse_client_certificate_expiry_timestamp_seconds"
	if typ := s.types[name]; typ != onlyWithASetting[name] {
		t.Fatalf("%s is a %q on /metrics, want %q", name, typ, onlyWithASetting[name])
	}
	if v, _ := s.sum(name, nil); v != float64(cert.Cert.NotAfter.Unix()) {
		t.Fatalf("%s = %v, want the certificate's expiry %d", name, v, cert.Cert.NotAfter.Unix())
	}
}

// checkSelector checks the label names and values of one {…} the docs
// write after name.
func checkSelector(t *testing.T, where, name, sel string, labels map[string]map[string]map[string]bool, src string, matcherRE *regexp.Regexp) {
	t.Helper()
	seen := labels[name]
	hasLabel := func(l string) bool {
		if seen != nil {
			return seen[l] != nil
		}
		// A family without samples yet: its label names are in the source.
		return strings.Contains(src, `"`+l+`"`)
	}
	matchers := matcherRE.FindAllStringSubmatch(sel, -1)
	if len(matchers) == 0 {
		for _, l := range strings.Split(sel, ",") {
			l = strings.TrimSpace(l)
			if i := strings.IndexAny(l, "=|"); i >= 0 {
				l = l[:i]
			}
			if !hasLabel(l) {
				t.Errorf("%s: %s has no label %q", where, name, l)
			}
		}
		return
	}
	for _, m := range matchers {
		l, op, v := m[1], m[2], m[3]
		if !hasLabel(l) {
			t.Errorf("%s: %s has no label %q", where, name, l)
			continue
		}
		vals := []string{v}
		if op == "=~" {
			vals = strings.Split(v, "|")
		}
		for _, v := range vals {
			if _, err := strconv.Atoi(v); err == nil && l == "code" {
				continue // an HTTP status or close code, written as a number
			}
			if !seen[l][v] && !strings.Contains(src, `"`+v+`"`) {
				t.Errorf("%s: %s{%s=%q}: the daemon never gives %s that value", where, name, l, v, l)
			}
		}
	}
}

// TestMetricsDoc_AlertsFireWhenPopsAreLost: with NATS connected but the
// daemon's pops refused (here a NATS user that may not publish on
// screenpop.pops.>, as a mistaken permission in an external cluster does),
// every call's event is given up after its deliveries and no agent gets a
// pop. Of the suggested alerts, the readiness, NATS, dropped-events,
// search-share and latency rules cannot fire: what they read is healthy or
// has no sample. The runbook's own signal for a lost pop,
// events_given_up_total ("any rise"), must be alerted on.
func TestMetricsDoc_AlertsFireWhenPopsAreLost(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	ns := startNATSWith(t, &server.Options{JetStream: true,
		Users: []*server.User{{Username: "screenpop", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"screenpop.pops.>"}}}}}})
	vars := testEnv(t)
	vars["NATS_URL"] = natsUserURL(ns)
	d, _ := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	d.Genesys.InboundCall(agent, "+13175550177", notificationstest.Options{}).Alert()
	waitFor(t, 90*time.Second, "the call's event given up", func() bool {
		v, _ := scrapeMetrics(t, d).sum("screenpop_bus_events_given_up_total", nil)
		return v > 0
	})
	s := scrapeMetrics(t, d)
	for name, want := range map[string]float64{"screenpop_ready": 1, "screenpop_bus_connected": 1, "screenpop_bridge_publisher_dropped_total": 0, "screenpop_bridge_resolver_pops_total": 0} {
		if v, _ := s.sum(name, nil); v != want {
			t.Fatalf("%s = %v during the fault, want %v", name, v, want)
		}
	}
	var watching []string
	for alert, expr := range runbookAlerts(t) {
		if strings.Contains(expr, "screenpop_bus_events_given_up_total") {
			watching = append(watching, alert)
		}
	}
	if len(watching) == 0 {
		alerts := runbookAlerts(t)
		names := make([]string, 0, len(alerts))
		for a := range alerts {
			names = append(names, a)
		}
		sort.Strings(names)
		t.Errorf("no call pops (screenpop_bus_events_given_up_total rose, NATS connected, ready 1, no event dropped, no pop made), and none of the suggested alerts (%s) reads a metric that moved: on-call is not paged", strings.Join(names, ", "))
	}
}

// TestMetricsDoc_RevokedReadPrivilegeShowsAs403: operations.md 7.2 tells
// on-call that a Dataverse role that lost a table's read privilege shows as
// screenpop_dataverse_requests_total{code="403"}. The lookups go in one
// $batch, which Dataverse answers 200 with the refused query's 403 inside.
func TestMetricsDoc_RevokedReadPrivilegeShowsAs403(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	d.Dataverse.DenyRead("contacts", true)
	c := alertCall(d, agent)
	if page.waitPop(c.ID(), 15*time.Second).IsZero() {
		t.Fatal("no pop")
	}
	s := scrapeMetrics(t, d)
	if v, _ := s.sum("screenpop_dataverse_lookups_total", map[string]string{"result": "error"}); v == 0 {
		t.Fatal("the lookup did not fail: the fault was not applied")
	}
	if v, _ := s.sum("screenpop_dataverse_requests_total", map[string]string{"code": "403"}); v == 0 {
		var got []string
		for _, x := range s.samples {
			if x.name == "screenpop_dataverse_requests_total" {
				got = append(got, fmt.Sprintf("%v %v", x.labels, x.value))
			}
		}
		t.Errorf("a missing read privilege shows no screenpop_dataverse_requests_total{code=\"403\"} (operations.md 7.2); /metrics has %s", strings.Join(got, "; "))
	}
}

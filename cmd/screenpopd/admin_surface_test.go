package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// authRecorder remembers every credential the daemon presents to the
// emulators: bearer tokens, and the secret of a Basic header.
type authRecorder struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (a *authRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("Authorization"); v != "" {
			a.mu.Lock()
			if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
				a.seen[tok] = true
			} else if b, ok := strings.CutPrefix(v, "Basic "); ok {
				a.seen[b] = true
				if dec, err := base64.StdEncoding.DecodeString(b); err == nil {
					if _, secret, ok := strings.Cut(string(dec), ":"); ok {
						a.seen[secret] = true
					}
				}
			}
			a.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (a *authRecorder) values() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.seen))
	for v := range a.seen {
		out = append(out, v)
	}
	return out
}

// adminRig is `screenpopd run` (pprof on) against both emulators, served
// behind a recorder of the credentials the daemon sends them.
type adminRig struct {
	g     *notificationstest.Emulator
	dv    *dataversetest.Server
	m     *Main
	auth  *authRecorder
	admin string
	stop  func() error // cancels Run and returns its result
}

const (
	rigGenesysSecret   = "gen-SECRET-4f1c9a7e2b"
	rigDataverseSecret = "dv-SECRET-8d2e6b1f0a"
)

func startAdminRig(t *testing.T, extra map[string]string) *adminRig {
	t.Helper()
	r := openAdminRig(t, extra, nil)
	waitFor(t, 20*time.Second, "daemon ready", r.m.Ready)
	return r
}

// openAdminRig is startAdminRig without waiting for readiness; before runs
// after the emulators start and before the daemon opens.
func openAdminRig(t *testing.T, extra map[string]string, before func(*adminRig)) *adminRig {
	t.Helper()
	r := &adminRig{auth: &authRecorder{seen: map[string]bool{}}}
	r.g = notificationstest.New(notificationstest.Config{ClientSecret: rigGenesysSecret, Agents: demoAgents})
	gs := httptest.NewServer(r.auth.wrap(r.g.Handler()))
	r.dv = dataversetest.New(dataversetest.Config{ClientSecret: rigDataverseSecret})
	ds := httptest.NewServer(r.auth.wrap(r.dv))
	r.dv.SetURL(ds.URL)
	if before != nil {
		before(r)
	}

	vars := testEnv(t)
	gc, dc := r.g.Config(), r.dv.Config()
	var agents []string
	for _, a := range demoAgents {
		agents = append(agents, a.ID)
	}
	for k, v := range map[string]string{
		"GENESYS_API_URL": gs.URL, "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret,
		"GENESYS_AGENTS": strings.Join(agents, ","),
		"DATAVERSE_URL":  r.dv.URL(), "DATAVERSE_TOKEN_URL": r.dv.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
		"SCREENPOP_PPROF": "true", "LOG_LEVEL": "info",
	} {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.m = NewMain(cfg, zerolog.Nop())
	if err := r.m.Open(ctx); err != nil {
		r.m.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.m.Run(ctx) }()
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				runErr = fmt.Errorf("the daemon did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		r.g.Close()
		r.dv.Close()
		gs.CloseClientConnections()
		gs.Close()
		ds.Close()
		http.DefaultClient.CloseIdleConnections()
	})
	r.admin = "http://" + r.m.AdminAddr()
	return r
}

// adminGet fetches an admin path; a gzip body (pprof's protobuf profiles) is
// returned unzipped.
func adminGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if u, err := io.ReadAll(zr); err == nil {
				b = u
			}
		}
	}
	return resp.StatusCode, b
}

// Every admin response, pprof's included, after calls of every media have
// popped (known, unknown and failed lookups, attributes, a malformed
// frame): no customer data, no secret, no token, no full channel id.
func TestAdmin_NoCustomerDataOrCredentialsAfterRealCalls(t *testing.T) {
	r := startAdminRig(t, nil)
	const (
		phone     = "+13175557788"
		phoneCore = "3175557788"
		chatPhone = "+13175550188"
		smsPhone  = "+13175550199"
		cbPhone   = "+13175550177"
		unknown   = "+13175550166"
		email     = "zeb.quixotte@example.org"
		chatEmail = "ophelia.brandywine@example.org"
		attrVal   = "ATTRVAL-Kumquat-7731"
	)
	r.dv.AddContact(dataversetest.Contact{FirstName: "Zebulon", LastName: "Quixotte", Telephone1: "(317) 555-7788", EMailAddress1: email})
	r.dv.AddContact(dataversetest.Contact{FirstName: "Ophelia", LastName: "Brandywine", EMailAddress1: chatEmail})

	agent := demoAgents[0].ID
	agentToken := r.g.AgentToken(agent)
	page := openAgentPage(t, r.m.AgentURL(), agentToken)
	waitFor(t, 10*time.Second, "agent connected", func() bool { return strings.Contains(string(mustStatus(t, r.admin)), `"connections": 1`) })

	attrs := map[string]string{"crm.note": attrVal, "screenpop.entity": "contact", "screenpop.id": "not-a-guid Zebulon"}
	convs := []*notificationstest.Conversation{
		r.g.InboundCall(agent, phone, notificationstest.Options{Name: "Zebulon Quixotte", Attributes: attrs, DNIS: "+18005551000"}),
		r.g.InboundCall(agent, unknown, notificationstest.Options{Name: "Unknown Marmaduke"}),
		r.g.Email(agent, email, notificationstest.Options{Name: "Zebulon Quixotte", Subject: "Subject Wolfsbane"}),
		r.g.Chat(agent, notificationstest.Options{Name: "Ophelia Brandywine", Attributes: map[string]string{"context.email": chatEmail, "context.phoneNumber": chatPhone, "context.firstName": "Ophelia"}}),
		r.g.Message(agent, smsPhone, notificationstest.Options{MessageType: "sms", Name: "Sms Persimmon"}),
		r.g.Callback(agent, cbPhone, notificationstest.Options{Name: "Callback Huckleberry"}),
	}
	for _, c := range convs {
		c.Alert()
		if page.waitPop(c.ID(), 10*time.Second).IsZero() {
			t.Fatalf("no pop for %s", c.ID())
		}
	}
	// A failing Dataverse: a search pop carrying the number as its query.
	r.dv.FailNext(20, 503)
	failing := r.g.InboundCall(agent, "+13175550155", notificationstest.Options{Name: "Search Gooseberry"})
	failing.Alert()
	if page.waitPop(failing.ID(), 15*time.Second).IsZero() {
		t.Fatal("no search pop")
	}
	// A malformed frame full of customer data.
	r.g.Publish("v2.users."+agent+".conversations", []byte(`{"id":"x","participants":[{"name":"Zebulon Quixotte","address":"tel:`+phone+`"`))
	for _, c := range append(convs, failing) {
		c.Connect()
		c.Disconnect()
	}
	time.Sleep(500 * time.Millisecond)

	needles := map[string]string{
		"phone": phoneCore, "chat phone": "3175550188", "sms phone": "3175550199", "callback phone": "3175550177",
		"unknown phone": "3175550166", "search phone": "3175550155",
		"email": email, "email local part": "zeb.quixotte", "chat email": chatEmail,
		"name": "Zebulon", "last name": "Quixotte", "chat name": "Brandywine", "other names": "Marmaduke",
		"sms name": "Persimmon", "callback name": "Huckleberry", "search name": "Gooseberry",
		"attribute value": attrVal, "subject": "Wolfsbane",
		"genesys secret": rigGenesysSecret, "dataverse secret": rigDataverseSecret, "agent token": agentToken,
	}
	t.Logf("%d credentials recorded, %d channels", len(r.auth.values()), len(r.g.Channels()))
	for i, v := range r.auth.values() {
		needles[fmt.Sprintf("credential sent to an emulator #%d", i)] = v
	}
	for _, ch := range r.g.Channels() {
		needles["full channel id "+ch.ID] = ch.ID
	}
	paths := []string{
		"/healthz", "/readyz", "/status", "/metrics", "/", "/debug/vars", "/debug/pprof/cmdline",
		"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/goroutine?debug=2", "/debug/pprof/goroutine",
		"/debug/pprof/heap?debug=1", "/debug/pprof/allocs?debug=1", "/debug/pprof/threadcreate?debug=1",
		"/debug/pprof/block?debug=1", "/debug/pprof/mutex?debug=1", "/debug/pprof/symbol",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1",
	}
	for _, p := range paths {
		code, body := adminGet(t, r.admin+p)
		for what, n := range needles {
			if n != "" && bytes.Contains(body, []byte(n)) {
				t.Errorf("GET %s (%d) holds the %s %q", p, code, what, n)
			}
		}
	}
}

func mustStatus(t *testing.T, admin string) []byte {
	_, b := adminGet(t, admin+"/status")
	return b
}

// seriesByFamily counts /metrics series by family (go_ and process_
// left out) and lists their label values.
func seriesByFamily(t *testing.T, admin string) (map[string]int, []string) {
	t.Helper()
	_, body := adminGet(t, admin+"/metrics")
	out := map[string]int{}
	var labelValues []string
	for _, line := range strings.Split(string(body), "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(m[1], "go_") || strings.HasPrefix(m[1], "process_") {
			continue
		}
		out[m[1]]++
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			labelValues = append(labelValues, l[1]+"="+l[2])
		}
	}
	return out, labelValues
}

// A few hundred distinct calls (distinct numbers, emails, conversations,
// all four agents) add no series: every label set is bounded.
func TestAdmin_MetricSeriesBoundedOverManyCalls(t *testing.T) {
	r := startAdminRig(t, nil)
	for i := range 40 {
		r.dv.AddContact(dataversetest.Contact{FirstName: "Known", LastName: fmt.Sprintf("Caller%d", i), Telephone1: fmt.Sprintf("+1212555%04d", i)})
	}
	pages := map[string]*agentPage{}
	for _, a := range demoAgents {
		pages[a.ID] = openAgentPage(t, r.m.AgentURL(), r.g.AgentToken(a.ID))
	}
	call := func(i int) *notificationstest.Conversation {
		a := demoAgents[i%len(demoAgents)].ID
		switch i % 6 {
		case 0:
			return r.g.InboundCall(a, fmt.Sprintf("+1212555%04d", i%40), notificationstest.Options{})
		case 1:
			return r.g.InboundCall(a, fmt.Sprintf("+1415555%04d", i), notificationstest.Options{Name: fmt.Sprintf("N%d", i)})
		case 2:
			return r.g.Email(a, fmt.Sprintf("p%d@example.org", i), notificationstest.Options{})
		case 3:
			return r.g.Chat(a, notificationstest.Options{Attributes: map[string]string{"context.email": fmt.Sprintf("c%d@example.org", i)}})
		case 4:
			return r.g.Message(a, fmt.Sprintf("+1303555%04d", i), notificationstest.Options{MessageType: "sms"})
		default:
			return r.g.Callback(a, fmt.Sprintf("+1512555%04d", i), notificationstest.Options{})
		}
	}
	drive := func(from, to int) {
		for i := from; i < to; i++ {
			c := call(i)
			c.Alert()
			if pages[demoAgents[i%len(demoAgents)].ID].waitPop(c.ID(), 10*time.Second).IsZero() {
				t.Fatalf("call %d: no pop", i)
			}
			c.Connect()
			c.Disconnect()
		}
		time.Sleep(time.Second)
	}
	drive(0, 36)
	before, _ := seriesByFamily(t, r.admin)
	drive(36, 336)
	after, labels := seriesByFamily(t, r.admin)
	var grew []string
	total := 0
	for f, n := range after {
		total += n
		if n > before[f] {
			grew = append(grew, fmt.Sprintf("%s %d -> %d", f, before[f], n))
		}
	}
	sort.Strings(grew)
	t.Logf("%d screenpop series after 336 calls", total)
	if len(grew) > 0 {
		t.Errorf("300 more calls of the same kinds added series:\n  %s", strings.Join(grew, "\n  "))
	}
	for _, lv := range labels {
		for _, a := range demoAgents {
			if strings.Contains(lv, a.ID) {
				t.Errorf("label %s names an agent", lv)
			}
		}
		if strings.Contains(lv, "@") || strings.Contains(lv, "555") {
			t.Errorf("label %s holds customer data", lv)
		}
	}
}

// /readyz, /healthz and screenpop_ready in each state operations.md
// describes: starting (Genesys login and the Dataverse token failing),
// ready, Genesys down, Dataverse down, NATS down and back, stopping.
func TestAdmin_ReadinessInEachState(t *testing.T) {
	x := startExternalNATS(t)
	r := openAdminRig(t, map[string]string{"NATS_URL": x.url()}, func(r *adminRig) {
		r.g.SetLoginDown(true)
		r.dv.ExpireSecret(true)
	})
	expect := func(state string, code int, body string) {
		t.Helper()
		got, b := adminGet(t, r.admin+"/readyz")
		if got != code || string(b) != body {
			t.Errorf("%s: /readyz %d %q, want %d %q", state, got, b, code, body)
		}
		if got, b := adminGet(t, r.admin+"/healthz"); got != 200 || string(b) != "ok\n" {
			t.Errorf("%s: /healthz %d %q, want 200 ok", state, got, b)
		}
		want := "screenpop_ready 0"
		if code == 200 {
			want = "screenpop_ready 1"
		}
		if _, m := adminGet(t, r.admin+"/metrics"); !bytes.Contains(m, []byte(want+"\n")) {
			t.Errorf("%s: /metrics lacks %s", state, want)
		}
	}
	const notReady, ready = "not ready: see /status\n", "ready\n"
	time.Sleep(1500 * time.Millisecond)
	expect("starting, Genesys login and Dataverse token failing", 503, notReady)
	r.g.SetLoginDown(false)
	waitFor(t, 15*time.Second, "genesys ready", r.m.Genesys.Ready)
	expect("starting, Dataverse token failing", 503, notReady)
	r.dv.ExpireSecret(false)
	waitFor(t, 15*time.Second, "ready", r.m.Ready)
	expect("ready", 200, ready)

	r.g.SetLoginDown(true)
	r.g.FailNext("", "/api/v2", 503, 0, 1<<20)
	r.g.FailNext("", "/channels", 503, 0, 1<<20)
	r.g.DropConnections()
	waitFor(t, 10*time.Second, "genesys not ready", func() bool { return !r.m.Genesys.Ready() })
	expect("Genesys down (after start-up)", 200, ready)

	r.dv.ExpireSecret(true)
	r.dv.ExpireTokens()
	r.dv.FailNext(1<<20, 503)
	expect("Dataverse down (after start-up)", 200, ready)

	// The agent port's /healthz is the load balancer's: 503 while NATS is
	// down, when every page's hello is refused (1013, the agent's newest
	// pop unreadable), so that new pages go to the other instance.
	agentHealth := func() int {
		t.Helper()
		code, _ := adminGet(t, r.m.AgentURL()+"/healthz")
		return code
	}
	if code := agentHealth(); code != 200 {
		t.Errorf("ready: agent /healthz %d, want 200", code)
	}
	x.stop()
	waitFor(t, 10*time.Second, "NATS disconnected", func() bool { return !r.m.Bus.Connected() })
	expect("NATS down", 503, notReady)
	if code := agentHealth(); code != 503 {
		t.Errorf("NATS down: agent /healthz %d, want 503: the load balancer keeps sending pages whose hellos are refused", code)
	}
	x.start()
	waitFor(t, 15*time.Second, "NATS back", r.m.Bus.Connected)
	expect("NATS back", 200, ready)
	waitFor(t, 15*time.Second, "agent /healthz 200 again", func() bool { return agentHealth() == 200 })

}

// Stopping: from the first stage on, /readyz answers 503 while the stop
// runs (held here by a lookup in flight, which the resolver finishes).
func TestAdmin_ReadinessWhileStopping(t *testing.T) {
	r := startAdminRig(t, nil)
	agent := demoAgents[0].ID
	r.dv.SetLatency(2 * time.Second)
	r.g.InboundCall(agent, "+13175550142", notificationstest.Options{}).Alert()
	waitFor(t, 10*time.Second, "the call's lookup in flight", func() bool {
		return bytes.Contains(mustStatus(t, r.admin), []byte(`"lookups_in_flight": 1`))
	})
	stopped := make(chan error, 1)
	agentURL := r.m.AgentURL()
	go func() { stopped <- r.stop() }()
	// The agent port's /healthz too (the load balancer's probe): a page
	// sent here now is closed (1001) a few seconds later, once the earlier
	// stages have drained and push stops.
	codes, agentCodes := map[int]int{}, map[int]int{}
	for {
		resp, err := http.Get(r.admin + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp, err := http.Get(agentURL + "/healthz"); err == nil {
			resp.Body.Close()
			agentCodes[resp.StatusCode]++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	t.Logf("/readyz answers during the stop: %v; the agent port's /healthz: %v", codes, agentCodes)
	if codes[200] > 1 || codes[503] == 0 {
		t.Errorf("stopping: /readyz answers %v, want 503s", codes)
	}
	if agentCodes[200] > 1 || agentCodes[503] == 0 {
		t.Errorf("stopping: the agent port's /healthz answers %v, want 503s: the load balancer sends new pages to an instance about to close them", agentCodes)
	}
}

// A restart of a busy site opens a large embedded store (or waits for an
// external NATS): the stream keeps
// a day of events and pops, a few KB each (architecture.md, section 4),
// and opening it takes about a second per 300 MB here. All that time the
// admin listener was bound but not served: /healthz and /readyz hung
// instead of answering "ok" and 503 (operations.md section 1), so the
// documented liveness probe (docs/deploy: liveness GET /healthz) timed out
// and an orchestrator restarted the daemon, which opened the store again.
func TestAdmin_AnswersWhileTheStoreOpens(t *testing.T) {
	// Open held up in bus.Start, deterministically: a NATS that takes the
	// connection and never says a word keeps it waiting for the client's
	// connect timeout (2 s), as a large store keeps the embedded server.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := notificationstest.New(notificationstest.Config{Agents: demoAgents[:1]})
	if _, err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	dv := dataversetest.New(dataversetest.Config{})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	gc, dc := g.Config(), dv.Config()
	vars := testEnv(t)
	for k, v := range map[string]string{
		"SCREENPOP_DATA_DIR": dir, "SCREENPOP_ADMIN_LISTEN": addr, "NATS_URL": "nats://" + mute.Addr().String(),
		"GENESYS_API_URL": g.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret, "GENESYS_AGENTS": demoAgents[0].ID,
		"DATAVERSE_URL": dv.URL(), "DATAVERSE_TOKEN_URL": dv.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
	} {
		vars[k] = v
	}
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, zerolog.Nop())
	opened := make(chan error, 1)
	var openDone atomic.Bool
	start := time.Now()
	go func() { // as `screenpopd run` does, before Run
		err := m.Open(context.Background())
		openDone.Store(true)
		opened <- err
	}()
	defer func() {
		if err := <-opened; err == nil {
			t.Error("Open succeeded against a NATS that never answers")
		}
		t.Logf("Open took %v", time.Since(start).Round(time.Millisecond))
		m.Close()
	}()
	waitFor(t, 10*time.Second, "the admin listener bound", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	defer hc.CloseIdleConnections()
	probe := func(path string) string {
		if openDone.Load() {
			t.Fatalf("Open ended within %v, before the probe of %s", time.Since(start), path)
		}
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if got := probe("/healthz"); got != "200 ok\n" {
		t.Errorf("/healthz while the store opens: %s, want 200 ok", got)
	}
	if got := probe("/readyz"); got != "503 not ready: see /status\n" {
		t.Errorf("/readyz while the store opens: %s, want 503", got)
	}
	if got := probe("/status"); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"ready": false`) {
		t.Errorf("/status while the store opens: %s, want 200 and not ready", got)
	}
	if got := probe("/metrics"); !strings.Contains(got, "screenpop_ready 0\n") {
		t.Errorf("/metrics while the store opens: %.200s, want screenpop_ready 0", got)
	}
}

// A start that fails after the admin listener is served (NATS refuses)
// leaves nothing serving: run returns and the port is free again.
func TestAdmin_FailedStartStopsTheAdminListener(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	admin, nats := free(), free()
	vars := testEnv(t)
	for k, v := range good() {
		vars[k] = v
	}
	vars["SCREENPOP_ADMIN_LISTEN"], vars["NATS_URL"] = admin, "nats://"+nats
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"run"}, env(vars), io.Discard, &stderr); code == 0 {
		t.Fatal("run exit 0 without NATS")
	}
	if !strings.Contains(stderr.String(), "connect to nats") {
		t.Errorf("stderr %q, want the NATS error", stderr.String())
	}
	if c, err := net.Dial("tcp", admin); err == nil {
		c.Close()
		t.Errorf("the admin listener %s still accepts after a failed start", admin)
	}
}

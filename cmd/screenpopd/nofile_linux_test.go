package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/internal/testenv"
)

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// setNoFile sets process pid's soft and hard RLIMIT_NOFILE with
// util-linux's prlimit.
func setNoFile(t *testing.T, pid, soft, hard int) {
	t.Helper()
	out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), fmt.Sprintf("--nofile=%d:%d", soft, hard)).CombinedOutput()
	if err != nil {
		t.Fatalf("prlimit: %v: %s", err, out)
	}
}

// tab opens one more agent socket (an agent's extra browser tab) and
// sends its hello; it reports whether the server answered ready within
// d.
func tab(base, token string, d time.Duration) (*websocket.Conn, bool) {
	dl := websocket.Dialer{HandshakeTimeout: d}
	ws, _, err := dl.Dial(strings.Replace(base, "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		return nil, false
	}
	ws.SetWriteDeadline(time.Now().Add(d))
	if err := ws.WriteJSON(map[string]any{"type": "hello", "token": token}); err != nil {
		ws.Close()
		return nil, false
	}
	ws.SetReadDeadline(time.Now().Add(d))
	var f struct{ Type string }
	if err := ws.ReadJSON(&f); err != nil || f.Type != "ready" {
		ws.Close()
		return nil, false
	}
	ws.SetReadDeadline(time.Time{})
	return ws, true
}

// startFDDaemon runs screenpopd as a process of its own (its descriptor
// limit is set with prlimit) on the demo emulators, with the first demo
// agent's page open and popped once; base is its agent listener's URL.
func startFDDaemon(t *testing.T) (d *Demo, p *mainProcess, base string, page *agentPage) {
	t.Helper()
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Missing(t, "util-linux's prlimit (apt-get install -y util-linux)")
	}
	d, _, _ = demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["LOG_LEVEL"] = "info"
	base = "http://" + vars["SCREENPOP_LISTEN"]
	p = startMain(t, "run", vars)
	a0 := demoAgents[0].ID
	page = openAgentPage(t, base, d.Genesys.AgentToken(a0))
	if page.waitPop(alertCall(d, a0).ID(), 10*time.Second).IsZero() {
		t.Fatal("no first pop")
	}
	return d, p, base, page
}

// The daemon runs out of file descriptors (more agent tabs than its
// LimitNOFILE or container ulimit allows): the agents already connected
// keep getting their pops, on-call is told once, in the JSON log, what
// ran out and what to raise, instead of a plain-text "Accept error" line
// from net/http every second; and once tabs close, new pages connect
// again by themselves.
func TestDaemon_OutOfFileDescriptors(t *testing.T) {
	d, p, base, page := startFDDaemon(t)
	pid := p.cmd.Process.Pid
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID

	limit := openFDs(t, pid) + 30
	setNoFile(t, pid, limit, limit)
	t.Logf("descriptors limited to %d", limit)
	var tabs []*websocket.Conn
	defer func() {
		for _, ws := range tabs {
			ws.Close()
		}
	}()
	refused := 0
	for i := 0; i < 60 && refused < 3; i++ {
		// Tabs of the other agents, fewer than each agent's socket cap.
		ws, ok := tab(base, d.Genesys.AgentToken(demoAgents[1+i%3].ID), time.Second)
		if !ok {
			refused++
			continue
		}
		tabs = append(tabs, ws)
	}
	if refused == 0 {
		t.Fatalf("%d tabs opened under a limit of %d descriptors: none refused", len(tabs), limit)
	}
	t.Logf("%d tabs open, then refused; the daemon holds %d descriptors", len(tabs), openFDs(t, pid))

	// Agents already connected keep getting pops.
	c := alertCall(d, a0)
	if page.waitPop(c.ID(), 10*time.Second).IsZero() {
		t.Errorf("the connected page got no pop while descriptors ran out")
	}
	// Lookups that need new Dataverse connections (several at once) still
	// get them: the pops are not the search fallback of a failed lookup.
	d.Dataverse.SetLatency(300 * time.Millisecond)
	var burst []string
	for range 4 {
		burst = append(burst, alertCall(d, a0).ID())
	}
	for _, id := range burst {
		if page.waitPop(id, 10*time.Second).IsZero() {
			t.Errorf("no pop for %s while descriptors ran out", id)
		} else if a := popAction(page, id); a == "search" {
			t.Errorf("pop %s is the search fallback: its lookup failed for want of a descriptor", id)
		}
	}
	d.Dataverse.SetLatency(0)
	// On-call: the admin listener still answers, and says so in a metric.
	hc := &http.Client{Timeout: 2 * time.Second}
	if resp, err := hc.Get(p.admin + "/readyz"); err != nil {
		t.Errorf("/readyz while out of descriptors: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz while out of descriptors: %s", resp.Status)
		}
	}
	if resp, err := hc.Get(p.admin + "/metrics"); err != nil {
		t.Errorf("/metrics while out of descriptors: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^screenpop_listener_fd_(refused|exhausted)_total\{listener="agent"\} [1-9]`).Match(b) {
			t.Errorf("no metric counts the refused or failed accepts:\n%s", grepLines(string(b), "screenpop_listener_fd"))
		}
	}
	time.Sleep(3 * time.Second)
	logs := p.logs.String()
	var plain, exhausted []string
	for _, l := range strings.Split(logs, "\n") {
		if l == "" {
			continue
		}
		if !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
		if strings.Contains(l, "too many open files") {
			exhausted = append(exhausted, l)
		}
	}
	t.Logf("%d lines not JSON, %d naming too many open files; first ones:\n%s", len(plain), len(exhausted), strings.Join(first(plain, 5), "\n"))
	if len(plain) > 0 {
		t.Errorf("the log has %d lines that are not JSON (net/http's ErrorLog to the standard logger), e.g. %q", len(plain), plain[0])
	}
	if !strings.Contains(logs, "LimitNOFILE") {
		t.Errorf("no log line names LimitNOFILE: on-call is not told what to raise")
	}

	// Recovery: the tabs close, a new page connects and gets its pops.
	for _, ws := range tabs {
		ws.Close()
	}
	tabs = nil
	page2 := openAgentPage(t, base, d.Genesys.AgentToken(a1))
	c2 := alertCall(d, a1)
	if page2.waitPop(c2.ID(), 15*time.Second).IsZero() {
		t.Errorf("after the tabs closed, a new page got no pop")
	}
	resp, err := hc.Get(p.admin + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz after recovery: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if t.Failed() {
		t.Logf("log:\n%s", logLines(p.logs, `"level":"warn"`, `"level":"error"`, "too many", `"message":"pop"`))
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The limit is lowered below what the daemon holds (or something else
// takes the last descriptors): every accept fails. On-call gets a JSON
// line naming the limit and what to raise, not net/http's plain-text
// "Accept error" each second; the page already open keeps its pops; and
// once the limit is raised (prlimit on the running process), a new page
// connects without a restart.
func TestDaemon_AcceptOutOfFileDescriptors(t *testing.T) {
	d, p, base, page := startFDDaemon(t)
	pid := p.cmd.Process.Pid
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID
	setNoFile(t, pid, openFDs(t, pid)-10, 4096) // below what it holds: no new descriptor at all
	if _, ok := tab(base, d.Genesys.AgentToken(a1), 2*time.Second); ok {
		t.Fatal("a tab connected with no descriptor left")
	}
	c := alertCall(d, a0)
	if page.waitPop(c.ID(), 10*time.Second).IsZero() {
		t.Errorf("the connected page got no pop while descriptors ran out")
	}
	time.Sleep(2 * time.Second)
	logs := p.logs.String()
	var plain []string
	for _, l := range strings.Split(logs, "\n") {
		if l != "" && !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	if len(plain) > 0 {
		t.Errorf("%d log lines are not JSON (net/http's ErrorLog), e.g. %q", len(plain), plain[0])
	}
	told := false
	for _, l := range strings.Split(logs, "\n") {
		told = told || strings.HasPrefix(l, "{") && strings.Contains(l, "too many open files") && strings.Contains(l, "LimitNOFILE")
	}
	if !told {
		t.Errorf("no JSON log line says the accepts fail for too many open files and names LimitNOFILE")
	}

	setNoFile(t, pid, 4096, 4096)
	page2 := openAgentPage(t, base, d.Genesys.AgentToken(a1))
	c2 := alertCall(d, a1)
	if page2.waitPop(c2.ID(), 15*time.Second).IsZero() {
		t.Errorf("after the limit was raised, a new page got no pop")
	}
	if t.Failed() {
		t.Logf("log:\n%s", logLines(p.logs, `"level":"warn"`, `"level":"error"`, "too many", `"message":"pop"`))
	}
}

// An admin starts the daemon under an open-file limit (a container's
// ulimit, a unit without LimitNOFILE=) too low for the agents it watches:
// the start-up says so, with the limit and what to raise, before the
// agents' pages are refused.
func TestDaemon_WarnsOfANoFileLimitBelowTheAgents(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Missing(t, "util-linux's prlimit (apt-get install -y util-linux)")
	}
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	var b strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&b, "00000000-0000-4000-8000-%012d\n", i)
	}
	path := t.TempDir() + "/agents.txt"
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	delete(vars, "GENESYS_AGENTS")
	vars["GENESYS_AGENTS_FILE"] = path
	cmd := exec.Command("prlimit", "--nofile=256:256", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCREENPOP_TEST_MAIN=1", "SCREENPOP_TEST_MAIN_CMD=run")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "screenpopd started") {
				once.Do(func() { close(started) })
			}
		}
	}()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	warned := false
	for _, l := range strings.Split(out, "\n") {
		warned = warned || strings.Contains(l, `"level":"warn"`) && strings.Contains(l, "256") && strings.Contains(l, "LimitNOFILE")
	}
	if !warned {
		t.Errorf("no start-up warning that 256 descriptors cannot hold 300 agents' sockets, naming LimitNOFILE:\n%s", grepLines(out, `"level":"warn"`))
	}
}

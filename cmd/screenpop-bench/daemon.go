package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is the screenpopd child process.
type daemon struct {
	cmd     *exec.Cmd
	pid     int
	verbose io.Writer

	started chan startedLine // the "screenpopd started" line
	exited  chan struct{}
	waitErr error

	// launched is when the daemon was started, the origin (within a few
	// ms: the runtime's own start comes after the exec) of its gctrace
	// lines' times.
	launched time.Time

	mu       sync.Mutex
	pops     map[string]popLine // by conversation id
	popDups  int                // pop lines seen twice for one conversation
	gcs      []gcCycle          // from GODEBUG=gctrace lines, in order
	warnings int
	errors   int
	firstBad []string // the first warning/error messages
}

// gcCycle is one of the daemon's GC cycles.
type gcCycle struct {
	Start time.Time
	Clock time.Duration // sweep termination, concurrent mark and mark termination
}

// startedLine holds the fields of "screenpopd started".
type startedLine struct {
	AgentListen string `json:"agent_listen"`
	AdminListen string `json:"admin_listen"`
	NatsURL     string `json:"nats_url"`
}

// popLine is the daemon's one line per pop.
type popLine struct {
	ConversationID string `json:"conversation_id"`
	AgentID        string `json:"agent_id"`
	Action         string `json:"action"`
	Outcome        string `json:"outcome"`
	QueueMS        int64  `json:"queue_ms"`
	LookupMS       int64  `json:"lookup_ms"`
	MarkMS         int64  `json:"mark_ms"`
	PublishMS      int64  `json:"publish_ms"`
	TotalMS        int64  `json:"total_ms"`
}

type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Error   string `json:"error"`
	startedLine
	popLine
}

// buildDaemon builds ./cmd/screenpopd into dir (the module root is found
// from the working directory upwards).
func buildDaemon(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "screenpopd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/screenpopd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/screenpopd: %w\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("go.mod not found above the working directory; pass -daemon")
		}
		dir = up
	}
}

// startDaemon runs `bin run` with env, on cpus if any are given, and parses
// its JSON log from stderr.
func startDaemon(bin string, env []string, cpus []int, verbose, logCopy io.Writer) (*daemon, error) {
	d := &daemon{
		started: make(chan startedLine, 1), exited: make(chan struct{}),
		pops: map[string]popLine{}, verbose: verbose,
	}
	d.cmd = exec.Command(bin, "run")
	d.cmd.Env = env
	d.cmd.Stdout = io.Discard
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	start := d.cmd.Start
	if len(cpus) > 0 {
		start = func() error { return startOn(d.cmd, cpus) }
	}
	d.launched = time.Now()
	if err := start(); err != nil {
		return nil, fmt.Errorf("start screenpopd: %w", err)
	}
	d.pid = d.cmd.Process.Pid
	var r io.Reader = stderr
	if logCopy != nil {
		r = io.TeeReader(stderr, logCopy)
	}
	go d.readLog(r)
	return d, nil
}

// parseLogLine decodes one of the daemon's JSON log lines. The runtime
// writes a GODEBUG=gctrace line in pieces, so a log line (one write each)
// can land inside one: the JSON starts at the first brace.
func parseLogLine(b []byte) (logLine, bool) {
	var l logLine
	i := bytes.IndexByte(b, '{')
	if i < 0 || json.Unmarshal(b[i:], &l) != nil {
		return l, false
	}
	return l, true
}

// parseGCLine reads a GODEBUG=gctrace=1 line: "gc 24 @14.637s 2%:
// 0.084+53+0.005 ms clock, …": when the cycle began, after the runtime's
// start, and how long it lasted on the wall clock.
func parseGCLine(s string) (at, clock time.Duration, ok bool) {
	f := strings.Fields(s)
	if len(f) < 7 || f[0] != "gc" || !strings.HasPrefix(f[2], "@") || !strings.HasSuffix(f[2], "s") || f[5] != "ms" || f[6] != "clock," {
		return 0, 0, false
	}
	sec, err := strconv.ParseFloat(f[2][1:len(f[2])-1], 64)
	if err != nil {
		return 0, 0, false
	}
	var ms float64
	for _, part := range strings.Split(f[4], "+") {
		v, err := strconv.ParseFloat(part, 64)
		if err != nil {
			return 0, 0, false
		}
		ms += v
	}
	return time.Duration(sec * float64(time.Second)), time.Duration(ms * float64(time.Millisecond)), true
}

// cycles returns the GC cycles seen so far.
func (d *daemon) cycles() []gcCycle {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.gcs)
}

func (d *daemon) readLog(r io.Reader) {
	defer func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	d.scanLog(r)
	_, _ = io.Copy(io.Discard, r)
}

// scanLog handles the daemon's stderr: its JSON log lines, and the
// runtime's gctrace lines, which come in pieces, so that a log line (one
// write) can land inside one: the piece before it is kept for the rest.
func (d *daemon) scanLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sentStarted := false
	var partial []byte // the start of a gctrace line a log line interrupted
	for sc.Scan() {
		b := sc.Bytes()
		l, ok := parseLogLine(b)
		if !ok {
			line := string(append(partial, b...))
			partial = partial[:0]
			if at, clock, ok := parseGCLine(line); ok {
				d.mu.Lock()
				d.gcs = append(d.gcs, gcCycle{Start: d.launched.Add(at), Clock: clock})
				d.mu.Unlock()
			}
			continue
		}
		if i := bytes.IndexByte(b, '{'); i > 0 {
			partial = append(partial, b[:i]...)
		}
		switch {
		case l.Message == "pop":
			d.mu.Lock()
			if _, ok := d.pops[l.popLine.ConversationID]; ok {
				d.popDups++
			}
			d.pops[l.popLine.ConversationID] = l.popLine
			d.mu.Unlock()
		case l.Message == "screenpopd started" && !sentStarted:
			sentStarted = true
			d.started <- l.startedLine
		}
		if l.Level == "warn" || l.Level == "error" || l.Level == "fatal" {
			d.mu.Lock()
			if l.Level == "warn" {
				d.warnings++
			} else {
				d.errors++
			}
			if len(d.firstBad) < 10 {
				d.firstBad = append(d.firstBad, l.Level+": "+l.Message+errSuffix(l.Error))
			}
			d.mu.Unlock()
			if d.verbose != nil {
				fmt.Fprintf(d.verbose, "screenpopd %s: %s%s\n", l.Level, l.Message, errSuffix(l.Error))
			}
		}
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

// awaitStarted waits for the "screenpopd started" line.
func (d *daemon) awaitStarted(ctx context.Context) (startedLine, error) {
	select {
	case s := <-d.started:
		return s, nil
	case <-d.exited:
		return startedLine{}, fmt.Errorf("screenpopd exited before starting: %v; %s", d.waitErr, strings.Join(d.bad(), "; "))
	case <-ctx.Done():
		return startedLine{}, ctx.Err()
	}
}

func (d *daemon) bad() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.firstBad...)
}

func (d *daemon) pop(conv string) (popLine, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pops[conv]
	return p, ok
}

// stop sends SIGTERM and waits (SIGKILL after 15 s).
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return d.waitErr
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("screenpopd did not stop within 15s of SIGTERM; killed")
	}
}

// procStat is what /proc says about a process.
type procStat struct {
	RSSKB      int64   // VmRSS
	CPUSeconds float64 // utime+stime
	Threads    int
}

func readProc(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			st.RSSKB, _ = strconv.ParseInt(f[1], 10, 64)
		case "Threads:":
			st.Threads, _ = strconv.Atoi(f[1])
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command may contain spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return st, errors.New("short /proc/pid/stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	st.CPUSeconds = (ut + stt) / clockTicks
	return st, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// admin talks to the daemon's admin listener.
type admin struct {
	base string
	hc   *http.Client
}

func (a admin) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// awaitReady polls /readyz.
func (a admin) awaitReady(ctx context.Context) error {
	for {
		if code, _, err := a.get(ctx, "/readyz"); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("screenpopd not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gc forces a garbage collection in the daemon (pprof's heap profile with
// gc=1), so RSS readings are not inflated by garbage the last cycle left,
// and returns that profile (nil if it could not be read): the heap as of
// that collection (runtime.GC publishes its frees before returning).
func (a admin) gc(ctx context.Context) []byte {
	code, b, err := a.get(ctx, "/debug/pprof/heap?gc=1")
	if err != nil || code != http.StatusOK {
		return nil
	}
	return b
}

// metrics reads /metrics and sums the samples of each metric name with the
// given label filter ("" for all), e.g. sum("go_goroutines", "").
type metricsText string

func (a admin) metrics(ctx context.Context) metricsText {
	_, b, _ := a.get(ctx, "/metrics")
	return metricsText(b)
}

func (m metricsText) sum(name, labelContains string) float64 {
	var total float64
	for _, line := range strings.Split(string(m), "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if labelContains != "" && !strings.Contains(rest, labelContains) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

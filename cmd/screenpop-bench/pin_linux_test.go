package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
)

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{[]int{0}, "0"},
		{[]int{1, 2, 3}, "1-3"},
		{[]int{0, 2, 3, 5}, "0,2-3,5"},
	} {
		if got := cpuList(tc.cpus); got != tc.want {
			t.Errorf("cpuList(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}

// cpusAllowed returns the Cpus_allowed_list of a /proc status file's
// contents.
func cpusAllowed(status []byte) (string, bool) {
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// allowedCPUs reads a process's (its main thread's) Cpus_allowed_list.
func allowedCPUs(t *testing.T, statusPath string) string {
	t.Helper()
	b, err := os.ReadFile(statusPath)
	if err != nil {
		t.Fatal(err)
	}
	cpus, ok := cpusAllowed(b)
	if !ok {
		t.Fatalf("%s has no Cpus_allowed_list", statusPath)
	}
	return cpus
}

// threadCPUs maps each live thread of this process to its
// Cpus_allowed_list; threads that exit while it looks are left out.
func threadCPUs(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // exited
		}
		if cpus, ok := cpusAllowed(b); ok {
			m[task.Name()] = cpus
		}
	}
	return m
}

// needTwoCPUs stops a test that cannot tell the child's CPUs from the
// parent's on one CPU: skipped on a developer's machine, failed in CI.
func needTwoCPUs(t *testing.T) {
	t.Helper()
	if runtime.NumCPU() >= 2 {
		return
	}
	testenv.Missing(t, fmt.Sprintf("%d CPU: pinning needs 2 to be tested (TestPlanSplit covers 1)", runtime.NumCPU()))
}

func allowedSet(t *testing.T) []int {
	t.Helper()
	cpus, err := usableCPUs()
	if err != nil {
		t.Fatal(err)
	}
	return cpus
}

// -pin gives the daemon the lowest CPU this process may use and the tool
// the others; on a machine with one CPU it says why it cannot split it.
func TestPlanSplit(t *testing.T) {
	allowed := allowedSet(t)
	split, err := planSplit()
	if len(allowed) < 2 {
		if err == nil || !strings.Contains(err.Error(), "at least 2 CPUs") || !strings.Contains(err.Error(), "run without -pin") {
			t.Fatalf("planSplit on CPUs %v = %v, %v; want an error asking for 2 CPUs", allowed, split, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if cpuList(split.Daemon) != cpuList(allowed[:1]) || cpuList(split.Tool) != cpuList(allowed[1:]) {
		t.Fatalf("split %+v of CPUs %v: want the daemon on %d and the tool on the rest", split, allowed, allowed[0])
	}
}

// lastCPU is the highest-numbered CPU this process may use (on a machine
// with two, not the first, where -pin puts the daemon).
func lastCPU(t *testing.T) []int {
	t.Helper()
	all := allowedSet(t)
	return all[len(all)-1:]
}

// The daemon starts on its CPU, and no thread of the tool keeps that
// affinity after the fork.
func TestStartOn_PinsTheChild(t *testing.T) {
	needTwoCPUs(t)
	cpus := lastCPU(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleep, "30")
	if err := startOn(cmd, cpus); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got, want := allowedCPUs(t, "/proc/"+strconv.Itoa(cmd.Process.Pid)+"/status"), cpuList(cpus); got != want {
		t.Errorf("the child runs on CPU %s, want %s", got, want)
	}
	mine := allowedCPUs(t, "/proc/self/status")
	deadline := time.Now().Add(2 * time.Second)
	for {
		var odd []string
		for tid, cpus := range threadCPUs(t) {
			if cpus != mine {
				odd = append(odd, tid+":"+cpus)
			}
		}
		if len(odd) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads of the tool kept another affinity than the process's %s after the fork: %v", mine, odd)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pinSelf restricts every thread, and the threads started after it, to
// the tool's CPUs. It runs in a child process: it cannot be undone.
func TestPinSelf(t *testing.T) {
	if os.Getenv("SCREENPOP_BENCH_PIN_CHILD") == "1" {
		cpus := lastCPU(t)
		if err := pinSelf(cpus); err != nil {
			t.Fatal(err)
		}
		// New threads: goroutines locked to threads while others run.
		done := make(chan struct{})
		for range 4 {
			go func() {
				runtime.LockOSThread()
				<-done
			}()
		}
		time.Sleep(50 * time.Millisecond)
		want := cpuList(cpus)
		for tid, cpus := range threadCPUs(t) {
			if cpus != want {
				t.Errorf("thread %s runs on CPU %s, want %s", tid, cpus, want)
			}
		}
		close(done)
		if got := runtime.GOMAXPROCS(0); got != len(cpus) {
			t.Errorf("GOMAXPROCS %d, want %d", got, len(cpus))
		}
		return
	}
	needTwoCPUs(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPinSelf$", "-test.v")
	cmd.Env = append(os.Environ(), "SCREENPOP_BENCH_PIN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPinSelf") {
		t.Fatalf("pinned child: %v\n%s", err, out)
	}
}

package main

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second signal's exit waits for the log's reader at most forcedLogFlush,
// then removes the demo's temporary store and dies by the signal, even
// when that reader takes nothing at all (a journald hung on a slow disk, a
// stopped pipe): the wait for the stalled reader must not hold the forced
// exit until the graceful stop has run its course, nor keep the store.
func TestMain_ForcedExitWithAStalledLogReader(t *testing.T) {
	tmp := t.TempDir()
	// stderr is a pipe already full, that nobody reads.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fillPipe(t, w)
	cmd, base, exited := startDemoProcess(t, []string{
		"TMPDIR=" + tmp,
		"SCREENPOP_DATA_DIR=",
		"SCREENPOP_LISTEN=127.0.0.1:0",
		"SCREENPOP_ADMIN_LISTEN=127.0.0.1:0",
		"SCREENPOP_NATS_LISTEN=off",
		"SCREENPOP_PPROF=true",
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
	}, w)
	if stores, _ := filepath.Glob(filepath.Join(tmp, "screenpop-demo-*")); len(stores) != 1 {
		t.Fatalf("the running demo's stores under TMPDIR: %v, want one", stores)
	}
	second := signalTwice(t, cmd, base, syscall.SIGINT)
	select {
	case err := <-exited:
		took := time.Since(second)
		t.Logf("exited %v after the second SIGINT: %v", took, err)
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Fatalf("the process ended with %v %v after the second SIGINT, not by it: the forced exit waited on the stalled log", err, took)
		}
		if took < forcedLogFlush/2 {
			t.Fatalf("the forced exit took %v: the log's reader was not stalled, so this test shows nothing", took)
		}
		// forcedLogFlush, and some slack for a loaded machine.
		if took > forcedLogFlush+time.Second {
			t.Errorf("the forced exit took %v with a stalled log reader, want about %v", took, forcedLogFlush)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the process did not exit within 15s of two SIGINTs")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "screenpop-demo-*")); len(left) > 0 {
		t.Errorf("the demo's temporary store is left behind after a forced exit with a stalled log: %v", left)
	}
}

// startDemoProcess runs this test binary as `screenpopd demo` (main, with
// its signals) with env added to the test's, its stderr going to stderr
// (a file given there is the child's once it started: closed here), and
// returns once it is ready: the process, its admin URL (read from the
// "Admin:" line on stdout) and a channel with cmd.Wait's result. It is
// killed at the test's end if still running.
func startDemoProcess(t *testing.T, env []string, stderr io.Writer) (*exec.Cmd, string, <-chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "SCREENPOP_TEST_MAIN=1"), env...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if f, ok := stderr.(*os.File); ok {
		f.Close()
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	admin := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "Admin:") {
				admin <- strings.TrimSuffix(strings.Fields(l)[1], "/status")
			}
		}
		exited <- cmd.Wait()
		close(waited)
	}()
	var base string
	select {
	case base = <-admin:
	case err := <-exited:
		t.Fatalf("the demo exited at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not start")
	}
	base = "http://" + strings.TrimPrefix(base, "http://")
	waitFor(t, 30*time.Second, "the demo ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return cmd, base, exited
}

// signalTwice asks the process of cmd (its admin listener at admin) for a
// graceful stop with sig, holds that stop up (an admin request in flight:
// a CPU profile, which the admin listener's shutdown waits 2 s for, so the
// second signal finds it under way however fast the machine), waits until
// the first is taken (/readyz 503 or closed), and sends sig again: a
// second request, not an echo of the first. It returns when it sent it.
func signalTwice(t *testing.T, cmd *exec.Cmd, admin string, sig syscall.Signal) time.Time {
	t.Helper()
	profiled := make(chan struct{})
	t.Cleanup(func() { <-profiled; http.DefaultClient.CloseIdleConnections() })
	go func() {
		defer close(profiled)
		if resp, err := http.Get(admin + "/debug/pprof/profile?seconds=30"); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the profile request reaches the server
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first "+sig.String()+" taken (/readyz 503 or closed)", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	time.Sleep(2 * signalEcho)
	second := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return second
}

// fillPipe writes to w until the pipe holds all it can, so that the next
// write blocks.
func fillPipe(t *testing.T, w *os.File) {
	t.Helper()
	raw, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = 'x'
	}
	err = raw.Control(func(fd uintptr) {
		if werr = syscall.SetNonblock(int(fd), true); werr != nil {
			return
		}
		for {
			if _, err := syscall.Write(int(fd), junk[:1]); err != nil {
				if !errors.Is(err, syscall.EAGAIN) {
					werr = err
				}
				break
			}
		}
		werr = errors.Join(werr, syscall.SetNonblock(int(fd), false))
	})
	if err != nil || werr != nil {
		t.Fatal(err, werr)
	}
}

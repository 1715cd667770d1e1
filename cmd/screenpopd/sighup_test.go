package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// SIGHUP is the usual "reload" of a daemon, and what a closed terminal
// sends. `run` reads its configuration at start only (the agents file it
// follows by itself), and a process that leaves SIGHUP to its default action dies at
// once: no graceful stop, nothing logged, and systemd's Restart=on-failure
// (the shipped unit) counts SIGHUP as a clean exit and does not restart it,
// so every agent would lose pops until someone noticed. So `run` ignores
// it, and a SIGINT sent right after it still finds the daemon there and
// stops it gracefully. The demo runs in a terminal: closing the terminal
// stops it gracefully, as Ctrl-C does.
func TestMain_SIGHUP(t *testing.T) {
	t.Run("RunIgnoresIt", func(t *testing.T) {
		vars := newCheckRig(t).vars
		vars["SCREENPOP_NATS_LISTEN"] = "off"
		vars["SCREENPOP_DATA_DIR"] = t.TempDir()
		vars["LOG_LEVEL"] = "info"
		p := startMain(t, "run", vars)
		p.signal(t, syscall.SIGHUP, syscall.SIGINT) // pending together, SIGHUP (1) is delivered first
		p.awaitCleanExit(t, "SIGHUP ended it instead of being ignored")
	})
	t.Run("DemoStopsOnIt", func(t *testing.T) {
		p := startMain(t, "demo", map[string]string{
			"SCREENPOP_LISTEN": "127.0.0.1:0", "SCREENPOP_ADMIN_LISTEN": "127.0.0.1:0",
			"SCREENPOP_NATS_LISTEN": "off", "SCREENPOP_DATA_DIR": t.TempDir(), "LOG_LEVEL": "info",
		})
		p.signal(t, syscall.SIGHUP)
		p.awaitCleanExit(t, "SIGHUP ended it without the graceful stop")
	})
}

// mainProcess is this test binary run as screenpopd (see TestMain), a
// process of its own, so that a test can signal or kill it as a
// supervisor or a crash does.
type mainProcess struct {
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer // its stderr: the log
	exited chan struct{}   // closed once it has exited, with err
	err    error
	admin  string // the admin listener's base URL
}

// startMain runs `screenpopd <command>` with vars added to this process's
// environment and waits until its admin listener answers /readyz with
// 200. It is killed, if still running, when the test ends.
func startMain(t *testing.T, command string, vars map[string]string) *mainProcess {
	t.Helper()
	p := spawnMain(t, command, vars)
	waitFor(t, 30*time.Second, "screenpopd ready", func() bool {
		resp, err := http.Get(p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	http.DefaultClient.CloseIdleConnections()
	return p
}

// execMain runs `screenpopd command` with vars in a process of its own
// (this test binary), its log lines gathered in p.logs, killed at the
// test's end if still running.
func execMain(t *testing.T, command string, vars map[string]string) *mainProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCREENPOP_TEST_MAIN=1", "SCREENPOP_TEST_MAIN_CMD="+command)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &mainProcess{cmd: cmd, logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.logs.Write(append(sc.Bytes(), '\n'))
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// spawnMain is startMain without the wait for readiness: it returns once
// the admin listener is up (a daemon that cannot reach its dependencies
// is never ready).
func spawnMain(t *testing.T, command string, vars map[string]string) *mainProcess {
	t.Helper()
	p := execMain(t, command, vars)
	addr := regexp.MustCompile(`"admin_listen":"([^"]+)"`)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(p.logs.String()); m != nil {
			p.admin = "http://" + m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("screenpopd %s exited at start (%v):\n%s", command, p.err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("screenpopd %s did not start", command)
		}
	}
}

// kill ends the process with SIGKILL, as a crash or the OOM killer does,
// and waits for it.
func (p *mainProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *mainProcess) signal(t *testing.T, sigs ...syscall.Signal) {
	t.Helper()
	for _, s := range sigs {
		if err := p.cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
}

// awaitCleanExit waits for the process to end by its graceful stop (exit
// 0), not by a signal's default action.
func (p *mainProcess) awaitCleanExit(t *testing.T, killed string) {
	t.Helper()
	select {
	case <-p.exited:
		err := p.err
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("killed by %v (%v): %s", ws.Signal(), err, killed)
		}
		if err != nil {
			t.Fatalf("the graceful stop failed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit within 20s")
	}
}

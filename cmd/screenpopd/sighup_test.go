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

// mainProcess is this test binary run as screenpopd (see TestMain).
type mainProcess struct {
	cmd    *exec.Cmd
	exited chan error
	admin  string // the admin listener's base URL
}

// startMain runs `screenpopd <command>` with vars as its environment and
// waits until its admin listener answers /readyz with 200.
func startMain(t *testing.T, command string, vars map[string]string) *mainProcess {
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
	p := &mainProcess{cmd: cmd, exited: make(chan error, 1)}
	waited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	admin := make(chan string, 1)
	addr := regexp.MustCompile(`"admin_listen":"([^"]+)"`)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addr.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case admin <- "http://" + m[1]:
				default:
				}
			}
		}
		p.exited <- cmd.Wait()
		close(waited)
	}()
	var base string
	select {
	case base = <-admin:
	case err := <-p.exited:
		t.Fatalf("screenpopd %s exited at start: %v", command, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("screenpopd %s did not start", command)
	}
	waitFor(t, 30*time.Second, "screenpopd ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	http.DefaultClient.CloseIdleConnections()
	p.admin = base
	return p
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
	case err := <-p.exited:
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

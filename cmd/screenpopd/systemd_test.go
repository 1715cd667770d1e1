//go:build linux

package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a datagram socket as systemd makes NOTIFY_SOCKET, until
// the test ends: its path and the listening end.
func notifySocket(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return sock, ln
}

// Under the shipped unit (Type=notify, WatchdogSec=) systemd learns from
// the daemon that it is up, that it is alive, and that it is stopping, on
// the datagram socket it names in NOTIFY_SOCKET (here a real one, as
// systemd makes it). `run` says READY=1 once it serves, WATCHDOG=1 three
// times per WATCHDOG_USEC for as long as it runs (so systemd, which
// restarts it when a WatchdogSec passes without one, leaves it alone), and
// STOPPING=1 when SIGTERM begins its graceful stop.
func TestMain_SystemdNotify(t *testing.T) {
	sock, ln := notifySocket(t)
	type note struct{ state string }
	notes := make(chan note, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			notes <- note{string(buf[:n])}
		}
	}()

	const watchdog = 900 * time.Millisecond
	vars := newCheckRig(t).vars
	vars["SCREENPOP_NATS_LISTEN"] = "off"
	vars["SCREENPOP_DATA_DIR"] = t.TempDir()
	vars["LOG_LEVEL"] = "info"
	vars["NOTIFY_SOCKET"] = sock
	vars["WATCHDOG_USEC"] = "900000"
	p := startMain(t, "run", vars)

	next := func(within time.Duration) (note, bool) {
		select {
		case n := <-notes:
			return n, true
		case <-time.After(within):
			return note{}, false
		}
	}
	// READY=1 came by the time /readyz answered 200 (startMain waits for
	// that); watchdog pings may come before it and are ignored by systemd.
	ready := false
	for !ready {
		n, ok := next(time.Second)
		if !ok {
			t.Fatalf("no READY=1 by the time the daemon was ready; its log:\n%s", p.logs.String())
		}
		ready = n.state == "READY=1"
		if !ready && n.state != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q before READY=1", n.state)
		}
	}
	// For a few watchdog periods: never a WatchdogSec without a ping.
	for end := time.Now().Add(4 * watchdog); time.Now().Before(end); {
		n, ok := next(watchdog)
		if !ok {
			t.Fatalf("no WATCHDOG=1 for %v (WatchdogSec): systemd would have killed the daemon; its log:\n%s", watchdog, p.logs.String())
		}
		if n.state != "WATCHDOG=1" {
			t.Fatalf("notification %q while running, want WATCHDOG=1", n.state)
		}
	}

	// The same check answers an orchestrator's liveness probe.
	resp, err := http.Get(p.admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", resp.StatusCode, body)
	}

	p.signal(t, syscall.SIGTERM)
	for {
		n, ok := next(10 * time.Second)
		if !ok {
			t.Fatal("no STOPPING=1 within 10 s of SIGTERM")
		}
		if n.state == "STOPPING=1" {
			break
		}
		if n.state != "WATCHDOG=1" {
			t.Fatalf("notification %q after SIGTERM, want STOPPING=1", n.state)
		}
	}
	p.awaitCleanExit(t, "SIGTERM ended it without the graceful stop")
	if strings.Contains(p.logs.String(), "systemd notification failed") {
		t.Errorf("a notification failed:\n%s", p.logs.String())
	}
}

// A NOTIFY_SOCKET that leads nowhere (a unit made for another program, a
// socket gone) does not stop the daemon: it serves, and says once per
// state what failed, not every 20 s.
func TestMain_SystemdNotifyUnreachable(t *testing.T) {
	vars := newCheckRig(t).vars
	vars["SCREENPOP_NATS_LISTEN"] = "off"
	vars["SCREENPOP_DATA_DIR"] = t.TempDir()
	vars["LOG_LEVEL"] = "info"
	vars["NOTIFY_SOCKET"] = filepath.Join(t.TempDir(), "gone")
	vars["WATCHDOG_USEC"] = "300000"
	p := startMain(t, "run", vars)
	time.Sleep(time.Second) // about ten watchdog pings
	p.signal(t, syscall.SIGTERM)
	p.awaitCleanExit(t, "SIGTERM ended it without the graceful stop")
	lines := map[string]int{}
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, "systemd notification failed") {
			for _, s := range []string{"READY=1", "WATCHDOG=1", "STOPPING=1"} {
				if strings.Contains(l, `"state":"`+s+`"`) {
					lines[s]++
				}
			}
		}
	}
	for _, s := range []string{"READY=1", "WATCHDOG=1", "STOPPING=1"} {
		if lines[s] != 1 {
			t.Errorf("%d lines for a failed %s, want 1; the log:\n%s", lines[s], s, p.logs.String())
		}
	}
}

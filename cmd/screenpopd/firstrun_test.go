package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A demo stopped by two signals in a row leaves no temporary store behind.
// `timeout 60 make demo` and `kill -TERM -<pgid>` deliver two SIGTERMs to
// the demo: one from the process group, one that timeout (to its child)
// or make (to its recipe) forwards. The second ends the process at once
// (TestMain_SecondSignalForcesExit), and with it went the removal of the
// demo's store: every such stop left a /tmp/screenpop-demo-* directory,
// though docs/configuration.md says it is removed at exit.
func TestMain_DemoForcedExitRemovesItsStore(t *testing.T) {
	tmp := t.TempDir()
	p := startMain(t, "demo", map[string]string{
		"TMPDIR": tmp, "SCREENPOP_DATA_DIR": "",
		"SCREENPOP_LISTEN": "127.0.0.1:0", "SCREENPOP_ADMIN_LISTEN": "127.0.0.1:0",
		"SCREENPOP_NATS_LISTEN": "off", "SCREENPOP_PPROF": "true", "LOG_LEVEL": "info",
	})
	stores, _ := filepath.Glob(filepath.Join(tmp, "screenpop-demo-*"))
	if len(stores) != 1 {
		t.Fatalf("the running demo's stores under TMPDIR: %v, want one", stores)
	}
	signalTwice(t, p.cmd, p.admin, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the demo did not exit within 15s of two SIGTERMs")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "screenpop-demo-*")); len(left) > 0 {
		t.Errorf("the demo's temporary store is left behind after a forced exit: %v", left)
	}
}

// The same SIGTERM delivered twice at once (`timeout 60 make demo`: the
// process group's, and the one timeout or make forwards) is one request:
// the demo stops gracefully, its store removed. The second delivery used
// to count as an impatient second signal and cut the stop short.
func TestMain_DemoSignalEchoStopsGracefully(t *testing.T) {
	tmp := t.TempDir()
	p := startMain(t, "demo", map[string]string{
		"TMPDIR": tmp, "SCREENPOP_DATA_DIR": "",
		"SCREENPOP_LISTEN": "127.0.0.1:0", "SCREENPOP_ADMIN_LISTEN": "127.0.0.1:0",
		"SCREENPOP_NATS_LISTEN": "off", "LOG_LEVEL": "info",
	})
	// Apart enough for the process to have taken the first (the kernel
	// merges a signal sent while the same one is pending).
	p.signal(t, syscall.SIGTERM)
	time.Sleep(10 * time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	p.awaitCleanExit(t, "the echoed SIGTERM was taken for a second request")
	if left, _ := filepath.Glob(filepath.Join(tmp, "screenpop-demo-*")); len(left) > 0 {
		t.Errorf("the demo's temporary store is left behind: %v", left)
	}
}

// A second `make demo` while the first still runs: its agent port is
// taken. The message must say what to do, as the admin and NATS listeners'
// do ("choose a free address or off", "set SCREENPOP_NATS_LISTEN to a free
// address or off"); it only said "address already in use", twice over.
func TestDemo_AgentPortInUseSaysWhatToDo(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	vars := testEnv(t)
	vars["SCREENPOP_LISTEN"] = held.Addr().String()
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d, err := StartDemo(context.Background(), cfg, zerolog.Nop(), true)
	if err == nil {
		d.Main.Close()
		d.Close()
		t.Fatal("the demo started on a port in use")
	}
	msg := err.Error()
	t.Logf("screenpopd demo: %s", msg)
	for _, want := range []string{"address already in use", "set SCREENPOP_LISTEN to a free address", "another screenpopd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q", want)
		}
	}
	if n := strings.Count(msg, "SCREENPOP_LISTEN"); n > 2 {
		t.Errorf("SCREENPOP_LISTEN named %d times", n)
	}
}

// A disk that fills while the first start writes the PII hash key (a full
// /var, a tiny volume): the write fails, and the daemon must not leave an
// empty key behind, or after the admin frees space every restart fails
// with "pii hash key … is shorter than 16 bytes; delete it" (systemd
// restarting it in vain) until someone deletes the file by hand. The full
// disk is RLIMIT_FSIZE 0: the file is created, the write refused (EFBIG;
// Go ignores SIGXFSZ), as ENOSPC does on a full disk.
func TestLoadHasher_WriteFailureLeavesNoKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pii-hash.key")
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	full := old
	full.Cur = 0
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &full); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	_, _, err := loadHasher(path)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatalf("restore RLIMIT_FSIZE: %v", rerr)
	}
	if err == nil || !strings.Contains(err.Error(), "SCREENPOP_DATA_DIR must be writable") {
		t.Fatalf("first start on a full disk: %v, want the write refused", err)
	}
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("a failed write left %s behind (%v)", path, serr)
	}
	// The space freed: the next start makes the key.
	if _, _, err := loadHasher(path); err != nil {
		t.Fatalf("start after the disk was freed: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 32 {
		t.Fatalf("key: %d bytes, %v", len(b), err)
	}
}

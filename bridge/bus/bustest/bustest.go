// Package bustest runs real nats-servers as external servers for tests:
// one older than 2.11, for what bus does without per-key TTLs, and one
// whose account has JetStream limits (LimitedServer). The embedded
// server is the module's own nats-server (2.15), so the fallback can only be
// tested against another binary: `make test` builds v2.10.27 into bin/ and
// names it in SCREENPOP_TEST_OLD_NATS_SERVER.
//
// It imports testing and is for tests only. Concurrency: MustStartOldServer
// may be called from parallel tests; each gets its own server.
package bustest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/screenpop/screenpop/internal/testenv"
)

// OldServerEnv names the variable holding the path of a nats-server binary
// older than 2.11.
const OldServerEnv = "SCREENPOP_TEST_OLD_NATS_SERVER"

// MustStartOldServer starts the binary OldServerEnv names on a free loopback
// port with JetStream and a store in a temporary directory, and returns its
// client URL once a client can connect. The server is interrupted, and
// waited for, when the test ends.
//
// Without the variable the test is skipped, and fails when CI=true: a test
// that needs a server must not silently skip in CI (testenv.Missing). A
// binary of 2.11 or later fails the test, since it would not test
// the fallback.
func MustStartOldServer(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(OldServerEnv)
	if bin == "" {
		testenv.Missing(tb, OldServerEnv+" unset: no nats-server older than 2.11 to test against (make test builds v2.10.27 into bin/ and sets it)")
	}
	dir := tb.TempDir()
	logPath := filepath.Join(dir, "nats-server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	// -p -1 picks a free port, which the server writes to its ports file:
	// no race with another process for a port chosen here.
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", filepath.Join(dir, "store"), "--ports_file_dir", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	// The server is started and waited for on one locked thread: on Linux
	// it is killed when the thread that started it ends (the death signal
	// follows the thread, not the process), so the thread must outlive it,
	// and it ends with the test binary, even one killed by its -timeout.
	started, exited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends after the server
		defer close(exited)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		<-exited
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			tb.Errorf("%s still running 10s after an interrupt: killed", bin)
		}
	})
	output := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if url := clientURL(dir); url != "" {
			nc, err := nats.Connect(url)
			if err != nil {
				tb.Fatalf("connect to %s at %s: %v\n%s", bin, url, err, output())
			}
			v := nc.ConnectedServerVersion()
			nc.Close()
			var major, minor int
			if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major > 2 || major == 2 && minor >= 11 {
				tb.Fatalf("%s=%s is nats-server %s, want one older than 2.11", OldServerEnv, bin, v)
			}
			return url
		}
		select {
		case <-exited:
			tb.Fatalf("%s exited before it was ready (%v):\n%s", bin, cmd.ProcessState, output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready within 10s:\n%s", bin, output())
		}
	}
}

// clientURL reads the server's ports file in dir: its client URL, or ""
// while it is not (completely) written.
func clientURL(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.ports"))
	if len(files) != 1 {
		return ""
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return ""
	}
	var ports struct {
		Nats []string `json:"nats"`
	}
	if json.Unmarshal(b, &ports) != nil || len(ports.Nats) == 0 {
		return ""
	}
	return ports.Nats[0]
}

package bus

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// The store watcher's stop waits for the disk probe in flight while the
// disk answers, so that nothing of the closed connection is left running
// (a probe goroutine outliving Close: a leak the tests' goleak caught in
// CI), and goes on without it after probeStopWait when the disk does not
// answer, so that a stop during a stall stays bounded. The disk is a real
// file system whose writes wait until it is resumed (bustest.StallDisk).
func TestStoreWatch_StopWaitsForTheProbeInFlight(t *testing.T) {
	disk := bustest.MountStallDisk(t)
	probeInFlight := func(t *testing.T, name string) *storeWatch {
		t.Helper()
		cfg := Config{DataDir: filepath.Join(disk.Dir, name)}
		if err := os.MkdirAll(storeDir(cfg), 0o700); err != nil {
			t.Fatal(err)
		}
		w := newStoreWatch(cfg, zerolog.Nop(), newMetrics(prometheus.NewRegistry()))
		before := disk.BlockedOps()["Create"]
		disk.Stall()
		w.start(func() error { return nil })
		deadline := time.Now().Add(10 * time.Second)
		for disk.BlockedOps()["Create"] == before {
			if time.Now().After(deadline) {
				t.Fatal("no probe waiting on the disk within 10 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return w
	}

	t.Run("the disk answers", func(t *testing.T) {
		w := probeInFlight(t, "answers")
		time.AfterFunc(200*time.Millisecond, disk.Resume)
		// A wait well above the probe's few milliseconds once the disk
		// answers: with probeStopWait the probe, scheduled late on a
		// loaded CI machine (-race, four test binaries on two cores),
		// was still in flight when the second ran out.
		w.stop(10 * time.Second)
		if w.probeSince.Load() != 0 {
			t.Fatal("stop returned with the probe still in flight on a disk that answered 200 ms into it")
		}
	})
	t.Run("the disk does not answer", func(t *testing.T) {
		w := probeInFlight(t, "stalled")
		defer disk.Resume()
		start := time.Now()
		w.stop(probeStopWait)
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("stop took %v on a stalled disk, want about a second", took)
		} else {
			t.Logf("stop took %v on a stalled disk", took.Round(10*time.Millisecond))
		}
	})
}

// After a write error the watcher waits for the disk to take writes again
// (a write with fsync) before it starts the server again; on a disk that
// has stopped answering that write waits with it. The stop goes on without
// the watcher's loop after its bound, and says so (false): Close then
// keeps the store as left open.
func TestStoreWatch_StopDuringTheWaitForAWritableDisk(t *testing.T) {
	disk := bustest.MountStallDisk(t)
	cfg := Config{DataDir: disk.Dir}
	if err := os.MkdirAll(storeDir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	w := newStoreWatch(cfg, zerolog.Nop(), newMetrics(prometheus.NewRegistry()))
	restarts := make(chan struct{}, 1)
	w.serverError("Critical write error: no space left on device")
	disk.Stall()
	defer disk.Resume()
	w.start(func() error { restarts <- struct{}{}; return nil })
	// The loop's probe of whether the store may be started again waits
	// on the disk (about a second after the start; in the kernel, behind
	// the stall probe's create in the same directory).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(allStacks(), "(*storeWatch).writable") || disk.Blocked() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watcher's loop was not waiting on the disk 10 s after the write error")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan bool, 1)
	start := time.Now()
	go func() { stopped <- w.stop(probeStopWait) }()
	select {
	case ended := <-stopped:
		if ended {
			t.Errorf("stop reported the watcher ended, with its loop still waiting on the disk")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("stop took %v, want about %v", took, probeStopWait)
		}
	case <-time.After(5 * time.Second):
		disk.Resume()
		<-stopped
		t.Fatalf("stop had not returned 5 s into a stall, with a bound of %v: it waited for the restart loop's write", probeStopWait)
	}
	disk.Resume()
	select {
	case <-w.done: // the loop sees the stop once its write returns
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher's loop did not end within 10 s of the disk answering")
	}
	select {
	case <-restarts:
		t.Error("the server was started again after the stop")
	default:
	}
}

// A restart of the built-in server that is still under way when the
// connection closes (the old server's shutdown waiting on the disk, a
// large store being read back) starts no server that runs on after Close.
func TestEmbedded_RestartAfterCloseLeavesNoServer(t *testing.T) {
	c, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	addr := c.ListenAddr()
	c.Close()
	err = c.ns.restart() // as the watcher's loop does, late
	if ln, lerr := net.Listen("tcp", addr); lerr != nil {
		c.ns.shutdown()
		t.Fatalf("a restart that ended after Close left a server on %s (%v; restart: %v)", addr, lerr, err)
	} else {
		ln.Close()
	}
	if !errors.Is(err, errClosed) {
		t.Errorf("restart after Close: %v, want errClosed", err)
	}
}

func allStacks() string {
	b := make([]byte, 1<<20)
	return string(b[:runtime.Stack(b, true)])
}

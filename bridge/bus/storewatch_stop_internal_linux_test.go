package bus

import (
	"os"
	"path/filepath"
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

package main

import (
	"os"
	"time"

	"github.com/rs/zerolog"
)

// startDiskWait is how long a write to SCREENPOP_DATA_DIR may wait at start
// before the daemon says that its disk does not answer: the time the
// built-in store's watch gives its probe once the daemon runs.
const startDiskWait = 10 * time.Second

// onDataDir runs step, a start-up step that reads or writes
// SCREENPOP_DATA_DIR (what says which). A disk that does not answer (a
// stalled volume, an NFS server gone) holds such a step in the kernel with
// no error to return, and the daemon would wait without a word. While step
// runs, a small write with fsync probes dir, as the store's watch does
// later; once a probe has waited wait, one error line names the disk and
// the step, and another says when step returned. A step that is only slow
// (a large store opening) on a disk that answers its probes is not told.
// Before dir exists (a first start making it) the step's own wait counts.
func onDataDir(log zerolog.Logger, dir, what string, wait time.Duration, step func() error) error {
	done := make(chan struct{})
	told := make(chan bool, 1)
	start := time.Now()
	go func() { told <- watchStart(log, dir, what, wait, start, done) }()
	err := step()
	close(done)
	if <-told {
		log.Info().Str("component", "main").Str("data_dir", dir).Str("step", what).Int64("stalled_s", int64(time.Since(start).Seconds())).
			Msg("the disk under SCREENPOP_DATA_DIR answers: screenpopd goes on starting")
	}
	return err
}

// watchStart probes dir until done is closed, and says whether it told
// that the disk does not answer.
func watchStart(log zerolog.Logger, dir, what string, wait time.Duration, start time.Time, done <-chan struct{}) bool {
	tick := time.NewTicker(wait / 10)
	defer tick.Stop()
	var since time.Time        // the start of the probe in flight
	var probed <-chan struct{} // closed when it returns
	var missing bool           // set before probed is closed: dir did not exist
	for {
		select {
		case <-done:
			return false
		case <-tick.C:
		}
		waited := time.Duration(0)
		if probed == nil {
			c := make(chan struct{})
			since, probed = time.Now(), c
			go func() { defer close(c); missing = !probeDir(dir) }()
		}
		select {
		case <-probed:
			probed = nil
			if missing {
				waited = time.Since(start) // a first start: the step's own wait
			}
		default:
			waited = time.Since(since)
		}
		if waited >= wait {
			log.Error().Str("component", "main").Str("data_dir", dir).Str("step", what).Int64("waited_s", int64(waited.Seconds())).
				Msg("the disk under SCREENPOP_DATA_DIR does not answer at start (a stalled volume, an NFS server gone): screenpopd waits for it, not ready, and goes on starting once it answers")
			<-done
			return true
		}
	}
}

// probeDir writes and syncs a small file in dir, and says whether dir
// exists; it may block for as long as the disk does not answer. An error
// is an answer.
func probeDir(dir string) (exists bool) {
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".start-probe-*")
	if err != nil {
		return true
	}
	_, _ = f.Write([]byte{0})
	_ = f.Sync()
	_ = f.Close()
	_ = os.Remove(f.Name())
	return true
}

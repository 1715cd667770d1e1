package main

import (
	"time"

	"github.com/rs/zerolog"
)

// startDiskWait is how long a start-up step on SCREENPOP_DATA_DIR may wait
// before the daemon says that its disk does not answer: the time the
// built-in store's watch gives a write once the daemon runs.
const startDiskWait = 10 * time.Second

// onDataDir runs step, a start-up step that reads or writes
// SCREENPOP_DATA_DIR (what says which). A disk that does not answer (a
// stalled volume, an NFS server gone) holds such a step in the kernel with
// no error to return, so the daemon would start neither listening for
// agents nor logging anything: once the step has waited wait, one error
// line names the disk and the step, and another says when the disk
// answered and the start goes on.
func onDataDir(log zerolog.Logger, dir, what string, wait time.Duration, step func() error) error {
	done := make(chan struct{})
	told := make(chan bool, 1) // whether the error line was written
	go func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-done:
			told <- false
		case <-t.C:
			log.Error().Str("component", "main").Str("data_dir", dir).Str("step", what).Int64("waited_s", int64(wait.Seconds())).
				Msg("the disk under SCREENPOP_DATA_DIR does not answer at start (a stalled volume, an NFS server gone): screenpopd waits for it, not ready, and goes on starting once it answers")
			told <- true
		}
	}()
	start := time.Now()
	err := step()
	close(done)
	if <-told {
		log.Info().Str("component", "main").Str("data_dir", dir).Str("step", what).Int64("stalled_s", int64(time.Since(start).Seconds())).
			Msg("the disk under SCREENPOP_DATA_DIR answers: screenpopd goes on starting")
	}
	return err
}

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// A start-up step that is only slow (a large built-in store opening for
// longer than the wait) on a disk that answers the probes: no error line,
// which would page on-call for a disk that works. A step that waits before
// its data directory even exists (a first start making it) is told: the
// only write then is the step's own.
func TestOnDataDir_ASlowStepOnADiskThatAnswersIsNotTold(t *testing.T) {
	const wait = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		dir  string
		told bool
	}{
		{"the directory exists", t.TempDir(), false},
		{"the directory is still to be made", filepath.Join(t.TempDir(), "data"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			log := zerolog.New(&logs)
			err := onDataDir(log, tc.dir, "the built-in NATS store", wait, func() error {
				time.Sleep(4 * wait)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			told := strings.Contains(logs.String(), "does not answer at start")
			answered := strings.Contains(logs.String(), "answers: screenpopd goes on starting")
			if told != tc.told || answered != tc.told {
				t.Errorf("a step of %v with a wait of %v: told the disk does not answer %v, that it answered %v; want %v (log: %s)",
					4*wait, wait, told, answered, tc.told, bytes.TrimSpace([]byte(logs.String())))
			}
		})
	}
}

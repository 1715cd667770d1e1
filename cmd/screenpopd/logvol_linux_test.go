package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// The store-full storms need a small disk of their own (bustest.SmallDisk:
// a loop-mounted file system, Linux only).

// The built-in NATS store's disk full while calls ring.
func TestLogVol_StoreFull(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	disk := bustest.SmallDisk(t, "48m")
	e := startStorm(t, 40, map[string]string{"SCREENPOP_DATA_DIR": filepath.Join(disk, "data")})
	var filler string
	counts, calls, nums := e.stormWindow(t, 50, 8*time.Second, func() { filler = bustest.FillDisk(t, disk) }, func() { os.Remove(filler) })
	logStormReport(t, fmt.Sprintf("store full, %d calls", calls), counts)
	checkStorm(t, e.logs, counts, 20, 60, nums)
	checkLogVol(t, counts, 20)
}

// The built-in NATS store's disk full while calls ring and Dataverse is
// slow (500 ms a lookup, as on a busy day): the lookups in flight when the
// store fails each find the pop marker unwritable. One cause: its first
// line and a count, not a warning per event in the resolver's hands (up to
// its 64 workers). TestLogVol_StoreFull shows the same on a loaded
// machine, where handlers are slow and more of them are in flight.
func TestLogVol_StoreFullSlowDataverse(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	disk := bustest.SmallDisk(t, "48m")
	e := startStorm(t, 40, map[string]string{"SCREENPOP_DATA_DIR": filepath.Join(disk, "data")})
	e.dv.SetLatency(500 * time.Millisecond)
	var filler string
	counts, calls, nums := e.stormWindow(t, 50, 8*time.Second, func() { filler = bustest.FillDisk(t, disk) }, func() { os.Remove(filler) })
	logStormReport(t, fmt.Sprintf("store full, Dataverse slow, %d calls", calls), counts)
	checkStorm(t, e.logs, counts, 20, 60, nums)
	checkLogVol(t, counts, 20)
}

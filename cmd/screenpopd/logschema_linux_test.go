package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// stderr is a file (`screenpopd run 2>>/var/log/screenpopd.log`, a
// container runtime's log file) on a disk that fills up and is freed
// again. The lines that did not fit are lost, but every line in the file
// stays one JSON object: a line cut where the disk filled must not be
// glued to the first line written once there is room, which turns both
// into one line no log store can parse (Elasticsearch, Loki's json stage
// and Splunk drop or mangle it) and hides the first line after the
// outage. A line says how many went missing, where they did.
func TestLogSchema_StderrOnAFullDiskKeepsLinesWhole(t *testing.T) {
	disk := bustest.SmallDisk(t, "1m")
	path := filepath.Join(disk, "screenpopd.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log, lw := newDaemonLogger("info", "json", f)

	vars := testEnv(t)
	vars["LOG_LEVEL"] = "info"
	d, stop := runDemoStoppable(t, vars, log)
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return d.Main.Ready() })

	agent := demoAgents[0].ID
	logged := func() string { b, _ := os.ReadFile(path); return string(b) }
	pops := func() int { return strings.Count(logged(), `"message":"pop"`) }
	alertCall(d, agent)
	waitFor(t, 10*time.Second, "a pop line", func() bool { return pops() >= 1 })

	filler := bustest.FillDisk(t, disk)
	for i := 0; i < 20 && lw.Dropped() == 0; i++ {
		alertCall(d, agent)
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "log lines refused by the full disk", func() bool { return lw.Dropped() > 0 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	before := pops()
	after := alertCall(d, agent)
	waitFor(t, 10*time.Second, "the pop line of the call after the disk was freed", func() bool {
		return strings.Contains(logged(), after.ID())
	})
	stop()
	lw.Close(logFlush)

	out := logged()
	t.Logf("%d lines dropped on the full disk; %d pop lines before the call after it", lw.Dropped(), before)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if _, _, err := decodeLogLine(l); err != nil {
			t.Errorf("not one JSON object (%v): %q", err, l)
		}
	}
	if !strings.Contains(out, `"message":"log lines dropped: `) {
		t.Errorf("no line tells where the lines the full disk refused went missing")
	}
	if !strings.Contains(out, `"message":"screenpopd stopped"`) {
		t.Errorf("no stop line")
	}
}

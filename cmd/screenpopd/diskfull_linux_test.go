package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// TestDaemon_PopsAgainOnceTheDataDirHasRoom: the embedded NATS store's
// disk (SCREENPOP_DATA_DIR) filled by other files, then freed. Calls that
// ring meanwhile cannot pop (nowhere to store them); once there is room,
// the next call pops on the agent's open page, without a restart: the
// resolver's consumer and push's follow of the pops survive the store's
// restart. On-call is told once, by a line that names SCREENPOP_DATA_DIR.
func TestDaemon_PopsAgainOnceTheDataDirHasRoom(t *testing.T) {
	disk := bustest.SmallDisk(t, "48m")
	vars := testEnv(t)
	vars["SCREENPOP_DATA_DIR"] = filepath.Join(disk, "data")
	d, logs := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	before := alertCall(d, agent)
	if page.waitPop(before.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the disk filled")
	}

	filler := bustest.FillDisk(t, disk)
	during := alertCall(d, agent)
	waitFor(t, 10*time.Second, "the call's event refused", func() bool {
		v, _ := scrapeMetrics(t, d).sum("screenpop_bus_publish_errors_total", nil)
		return v > 0
	})
	if v, _ := scrapeMetrics(t, d).sum("screenpop_bus_store_write_failed", nil); v != 1 {
		t.Errorf("screenpop_bus_store_write_failed = %v while the disk is full, want 1", v)
	}
	var watching []string
	for alert, expr := range runbookAlerts(t) {
		if strings.Contains(expr, "screenpop_bus_store_write_failed") {
			watching = append(watching, alert)
		}
	}
	if len(watching) == 0 {
		t.Error("none of the suggested alerts reads screenpop_bus_store_write_failed: on-call is not paged for a full disk")
	}
	time.Sleep(2 * time.Second) // the disk stays full a while
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := alertCall(d, agent)
	freed := time.Now()
	at := page.waitPop(after.ID(), 20*time.Second)
	if at.IsZero() {
		t.Fatalf("the disk under SCREENPOP_DATA_DIR has room again, but a call that rang then did not pop within 20 s (until screenpopd is restarted); warnings and errors:\n%s",
			logLines(logs, `"level":"warn"`, `"level":"error"`, `"component":"bus"`, `JetStream`, `"component":"push"`))
	}
	t.Logf("the call that rang as the disk was freed popped %v later", at.Sub(freed))
	if n, _ := page.pops(during.ID()); n > 1 {
		t.Fatalf("the call of the full disk popped %d times", n)
	}
	var told int
	for _, l := range strings.Split(logLines(logs, `"level":"error"`), "\n") {
		if strings.Contains(l, "SCREENPOP_DATA_DIR") {
			told++
		}
	}
	if told != 1 {
		t.Errorf("on-call was told %d times (want once, naming SCREENPOP_DATA_DIR) that the store could not write; warnings and errors:\n%s", told, logLines(logs, `"level":"warn"`, `"level":"error"`))
	}
}

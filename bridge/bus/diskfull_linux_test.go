package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// storeEpisode runs the embedded server on a small disk, breaks the
// store's filesystem with fail, checks that nothing is stored and that
// on-call is told once, then repairs it and checks that events and pop
// markers are stored again, without a restart.
func storeEpisode(t *testing.T, fail func(disk string), repair func(disk string)) {
	disk := bustest.SmallDisk(t, "32m")
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: filepath.Join(disk, "data"), Registerer: reg}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	store := func() error {
		n++
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m := bridge.Message{Subject: "screenpop.events.voice.alerting.agent-1", ID: fmt.Sprintf("evt:c%d:p:voice:alerting", n), Data: bytes.Repeat([]byte("x"), 2000)}
		if err := c.Publish(ctx, m); err != nil {
			return err
		}
		if _, err := c.MarkPop(ctx, fmt.Sprintf("pop:c%d:p", n), m.ID); err != nil {
			return err
		}
		return nil
	}
	if err := store(); err != nil {
		t.Fatal(err)
	}
	fail(disk)
	refused := false
	for range 5 {
		if store() != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("the store took every write on a broken filesystem")
	}
	for range 3 { // events keep coming while it lasts
		_ = store()
	}
	if b, _ := json.Marshal(c.Status(context.Background())); !bytes.Contains(b, []byte(`"storeError"`)) {
		t.Errorf("/status of nats while the store cannot write: %s; want storeError", b)
	}
	failedGauge := metricValue(t, reg, "screenpop_bus_store_write_failed")

	repair(disk)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := store()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Log(logs.String())
			t.Fatalf("the store's filesystem takes writes again, but 15 s later events and pop markers are still refused (%v): nothing pops until screenpopd is restarted", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if failedGauge != 1 {
		t.Errorf("screenpop_bus_store_write_failed = %v while the store could not write, want 1", failedGauge)
	}
	if v := metricValue(t, reg, "screenpop_bus_store_write_failed"); v != 0 {
		t.Errorf("screenpop_bus_store_write_failed = %v once it writes again, want 0", v)
	}
	var loud, told int
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
			loud++
			if strings.Contains(line, `"component":"bus"`) && strings.Contains(line, "SCREENPOP_DATA_DIR") {
				told++
			}
		}
	}
	if told != 1 || loud > 3 {
		t.Errorf("on-call was told %d times that the store cannot write (want 1, naming SCREENPOP_DATA_DIR), among %d warnings and errors (want at most 3, not one per refused write):\n%s", told, loud, logs.String())
	}
}

// TestConn_EmbeddedStoreWritesAgainOnceTheDiskHasRoom: other files fill
// the disk under SCREENPOP_DATA_DIR (the store's limit, 75% of the free
// space at start, is not reached). nats-server keeps the write error on
// each stream for good, so once the disk is freed the daemon must start
// the store again itself, or no call pops until someone restarts it.
func TestConn_EmbeddedStoreWritesAgainOnceTheDiskHasRoom(t *testing.T) {
	var filler string
	storeEpisode(t, func(disk string) { filler = bustest.FillDisk(t, disk) }, func(string) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	})
}

// metricValue is a gauge's value in reg, NaN when it has none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	return math.NaN()
}

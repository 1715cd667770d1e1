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
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
// markers are stored again, without a restart, and that a local service
// subscribed through the server's address gets them again.
func storeEpisode(t *testing.T, fail func(disk string), repair func(disk string)) {
	disk := bustest.SmallDisk(t, "32m")
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(disk, "data"), Registerer: reg}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := nats.Connect(c.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	heard, err := other.SubscribeSync("screenpop.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
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
	// The other service, reconnected to the same address, hears the
	// events stored from now on.
	deadline = time.Now().Add(10 * time.Second)
	for {
		for {
			if _, err := heard.NextMsg(0); err != nil {
				break // drained
			}
		}
		if err := store(); err != nil {
			t.Fatal(err)
		}
		if _, err := heard.NextMsg(time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a service subscribed at %s hears no event stored after the store writes again", c.ClientURL())
		}
	}
	if failedGauge != 1 {
		t.Errorf("screenpop_bus_store_write_failed = %v while the store could not write, want 1", failedGauge)
	}
	if v := metricValue(t, reg, "screenpop_bus_store_write_failed"); v != 0 {
		t.Errorf("screenpop_bus_store_write_failed = %v once it writes again, want 0", v)
	}
	if v := gather(t, reg, "screenpop_bus_store_restarts_total"); v < 1 {
		t.Errorf("screenpop_bus_store_restarts_total = %v once the server was started again, want at least 1", v)
	}
	var loud, told int
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
			loud++
			if strings.Contains(line, `"component":"bus"`) && strings.Contains(line, "SCREENPOP_DATA_DIR") {
				told++
				// docs/operations.md, 7.4: "(error, once)".
				if !strings.Contains(line, `"level":"error"`) {
					t.Errorf("the store's write failure is told below error: %s", line)
				}
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

// TestStart_EmbeddedStoreKeepsItsHistoryAcrossARestart: the embedded
// store's limit is taken from the disk at each start, and the stream is
// limited to its share of it. Counted from the free space alone, the
// store's own files would make it smaller at every restart, and the
// stream would drop its oldest messages as the daemon started: history
// other services read, gone for a restart. nats-server adds back what
// its store holds (finalizeDynamicMaxStore, 2.15); this pins it for an
// upgrade.
func TestStart_EmbeddedStoreKeepsItsHistoryAcrossARestart(t *testing.T) {
	disk := bustest.SmallDisk(t, "32m")
	cfg := bus.Config{Listen: "off", DataDir: filepath.Join(disk, "data")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	state := func(c *bus.Conn) (msgs uint64, first uint64, maxBytes int64) {
		t.Helper()
		st, err := c.JetStream().Stream(ctx, c.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		i := st.CachedInfo()
		return i.State.Msgs, i.State.FirstSeq, i.Config.MaxBytes
	}

	c, err := bus.Start(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	_, _, limit := state(c)
	// Half the stream's share: well within it.
	data := bytes.Repeat([]byte("x"), 2000)
	for i := 0; int64(i)*2100 < limit/2; i++ {
		m := bridge.Message{Subject: "screenpop.events.voice.alerting.agent-1", ID: fmt.Sprintf("evt:c%d:p:voice:alerting", i), Data: data}
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	msgs, first, _ := state(c)
	c.Close()

	c, err = bus.Start(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs2, first2, limit2 := state(c)
	if msgs2 != msgs || first2 != first {
		t.Errorf("after a restart the stream holds %d messages from sequence %d, want the %d from %d it held (its byte limit went from %d to %d)",
			msgs2, first2, msgs, first, limit, limit2)
	}
	if limit2 < limit*9/10 {
		t.Errorf("the stream's byte limit went from %d to %d over a restart: its own store counted as taken", limit, limit2)
	}
}

// TestConn_EmbeddedStoreRestartsUnderTraffic: the store's JetStream is
// restarted while the daemon keeps using NATS, as it does all the time:
// /status and the marker gauge are read, agents' pages reconnect and
// replay their pops. The restart must not race that traffic (run with
// -race: nats-server's EnableJetStream sets up its API queue while the
// first start's API subscription, never removed, still dispatches to it).
func TestConn_EmbeddedStoreRestartsUnderTraffic(t *testing.T) {
	disk := bustest.SmallDisk(t, "32m")
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: filepath.Join(disk, "data"), Registerer: prometheus.NewRegistry()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	store := func() error {
		n++
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Publish(ctx, bridge.Message{Subject: "screenpop.pops.agent-1", ID: fmt.Sprintf("pop:c%d:p", n), Data: bytes.Repeat([]byte("x"), 2000)})
	}
	if err := store(); err != nil {
		t.Fatal(err)
	}
	// Agents' pages reconnect and replay their pops, and on-call's
	// dashboards read /status, all the while.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				_ = c.ReplayPops(rctx, "agent-1", 0, time.Time{}, func(bridge.StoredPop) error { return nil })
				_ = c.Status(rctx)
				cancel()
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	for episode := 1; episode <= 3; episode++ { // a disk that fills again and again
		filler := bustest.FillDisk(t, disk)
		for range 5 {
			if store() != nil {
				break
			}
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second) // the watcher backs off to 4 s by the third
		for store() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("episode %d: the store's filesystem takes writes again, but 10 s later pops are still refused", episode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

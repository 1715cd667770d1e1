package bus_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

func streamCfg(t *testing.T, c *bus.Conn) jetstream.StreamConfig {
	t.Helper()
	st, err := c.JetStream().Stream(context.Background(), c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().Config
}

// A restart on the same data dir with SCREENPOP_STREAM_MAX_AGE lowered,
// then raised: the stream takes each value.
func TestConn_RestartAppliesStreamMaxAge(t *testing.T) {
	dir := t.TempDir()
	for _, age := range []time.Duration{24 * time.Hour, time.Hour, 48 * time.Hour} {
		c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dir, StreamMaxAge: age}, zerolog.Nop())
		if err != nil {
			t.Fatalf("start with max age %s: %v", age, err)
		}
		got := streamCfg(t, c).MaxAge
		c.Close()
		if got != age {
			t.Fatalf("stream max age %s after a restart with %s", got, age)
		}
	}
}

// The store's limits shrank since the stream reserved its share (NATS then
// refuses to reserve the share): a restart with SCREENPOP_STREAM_MAX_AGE
// lowered (a data-protection request) must still apply the new age.
func TestConn_RestartAppliesStreamMaxAgeUnderShrunkStore(t *testing.T) {
	x := bustest.StartLimitedServer(t, "max_file: 10M, max_mem: 1M")
	c, err := bus.Start(context.Background(), bus.Config{URL: x.URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	x.SetLimits("max_file: 5M, max_mem: 1M")
	c, err = bus.Start(context.Background(), bus.Config{URL: x.URL(), StreamMaxAge: time.Hour}, zerolog.Nop())
	if err != nil {
		t.Fatalf("restart under smaller limits: %v", err)
	}
	defer c.Close()
	if got := streamCfg(t, c); got.MaxAge != time.Hour {
		t.Fatalf("stream max age %s (max_bytes %d) after a restart with SCREENPOP_STREAM_MAX_AGE=1h", got.MaxAge, got.MaxBytes)
	}
}

// The same with another stream of the account reserving part of the
// store (another service's): NATS refused the stream's share, the stream
// was kept as it was, and with it its old max age, customer data kept 24 h
// against the configured 1 h, with only a warning about the byte limit.
// The settings are now applied with the room NATS can still grant; where
// it grants none, on-call is told at error what the stream keeps.
func TestConn_RestartAppliesStreamMaxAgeBesideAnotherStream(t *testing.T) {
	for _, tc := range []struct {
		name, limits string
		applied      bool
	}{
		// 10 MB: the stream's 8 MB and AUDIT's 2 MB. Shrunk to 8 MB, the
		// share (6.4 MB) and AUDIT's 2 MB do not fit; 6 MB do.
		{"Room", "max_file: 8M, max_mem: 1M", true},
		// Shrunk to 2 MB, AUDIT's alone: no room at all.
		{"NoRoom", "max_file: 2M, max_mem: 1M", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := bustest.StartLimitedServer(t, "max_file: 10M, max_mem: 1M")
			c, err := bus.Start(context.Background(), bus.Config{URL: x.URL(), StreamMaxAge: 24 * time.Hour}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := c.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.>"}, MaxBytes: 2_000_000}); err != nil {
				t.Fatal(err)
			}
			c.Close()
			x.SetLimits(tc.limits)
			var logs syncbuf.Buffer
			c, err = bus.Start(ctx, bus.Config{URL: x.URL(), StreamMaxAge: time.Hour}, zerolog.New(&logs))
			if err != nil {
				t.Fatalf("restart under smaller limits beside AUDIT: %v", err)
			}
			defer c.Close()
			got := streamCfg(t, c)
			if tc.applied {
				if got.MaxAge != time.Hour || got.MaxBytes <= 0 || got.MaxBytes > 6_000_000 {
					t.Errorf("stream max age %s, max_bytes %d after a restart with SCREENPOP_STREAM_MAX_AGE=1h: want 1h within the 6 MB left", got.MaxAge, got.MaxBytes)
				}
				return
			}
			if got.MaxAge != 24*time.Hour {
				t.Fatalf("stream max age %s: NATS was to refuse every update", got.MaxAge)
			}
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "NATS refuses every update of the stream") {
					line = l
				}
			}
			if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, `"stream_max_age":86400000`) || !strings.Contains(line, `"configured_max_age":3600000`) {
				t.Errorf("the stream keeps 24 h against the configured 1 h; the log's line: %q\n%s", line, logs.String())
			}
		})
	}
}

// SCREENPOP_STREAM renamed on the same data dir: the built-in server
// still holds the stream under its old name, over the same subjects, so
// NATS refuses the new one. The refusal must say so and name the fix
// (the old name, or the old stream's removal), not send the admin to look
// for another deployment on a server only this daemon uses.
func TestConn_RestartWithStreamRenamed(t *testing.T) {
	dir := t.TempDir()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dir, Stream: "POPS"}, zerolog.Nop())
	if err == nil {
		c.Close()
		t.Fatal("a second stream over screenpop.> was made beside the first")
	}
	for _, want := range []string{"SCREENPOP_STREAM", "stream SCREENPOP ", "back to SCREENPOP", filepath.Join(dir, "jetstream", "jetstream", "$G", "streams", "SCREENPOP")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "deployment's?") || strings.Contains(err.Error(), "NATS account") {
		t.Errorf("refusal blames another deployment on the built-in server: %v", err)
	}
}

// consumeFor runs the resolver's consumer with ackWait until it consumes,
// then stops it, and returns the consumer's config and replicas as NATS
// has them.
func consumeFor(t *testing.T, c *bus.Conn, ackWait time.Duration) (jetstream.ConsumerConfig, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	consuming := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{AckWait: ackWait, Consuming: func(ok bool) {
			if ok {
				select {
				case consuming <- struct{}{}:
				default:
				}
			}
		}}, func(context.Context, []byte) error { return nil })
	}()
	select {
	case <-consuming:
	case err := <-done:
		t.Fatalf("ConsumeEvents: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not consuming within 30s")
	}
	var info *jetstream.ConsumerInfo
	err := retry(15*time.Second, func(ctx context.Context) error {
		cons, err := c.JetStream().Consumer(ctx, c.StreamName(), bus.DefaultDurable)
		if err != nil {
			return err
		}
		info = cons.CachedInfo()
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ConsumeEvents: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	if info.Cluster != nil {
		n = 1 + len(info.Cluster.Replicas)
	}
	return info.Config, n
}

// A restart with SCREENPOP_POP_DEADLINE (so the ack wait) changed: the
// resolver's durable consumer takes the new ack wait.
func TestConn_RestartAppliesAckWait(t *testing.T) {
	dir := t.TempDir()
	for _, aw := range []time.Duration{10 * time.Second, 25 * time.Second, 10 * time.Second} {
		c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dir}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := consumeFor(t, c, aw)
		c.Close()
		if cfg.AckWait != aw {
			t.Fatalf("consumer ack wait %s after a restart with %s", cfg.AckWait, aw)
		}
	}
}

// SCREENPOP_STREAM_REPLICAS changed on a cluster, 1 -> 3 -> 1, calls in
// progress: the stream, the marker bucket and the resolver's consumer take
// the new count, and a leg's marker is kept.
func TestConn_RestartAppliesStreamReplicas(t *testing.T) {
	cl := startCluster(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	const popID = "pop:conv-r:P1"
	for i, r := range []int{1, 3, 1} {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := bus.Start(sctx, bus.Config{URL: cl.urls(), StreamReplicas: r}, log)
		scancel()
		if err != nil {
			t.Fatalf("start with replicas %d: %v", r, err)
		}
		for _, name := range []string{c.StreamName(), "KV_" + bus.DefaultMarkerBucket} {
			var got int
			if err := retry(15*time.Second, func(ctx context.Context) (err error) {
				got, _, err = streamCluster(ctx, c.JetStream(), name)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if got != r {
				t.Errorf("%s has %d replicas after a start with %d", name, got, r)
			}
		}
		consumeFor(t, c, 0)
		n := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			_ = retry(5*time.Second, func(ctx context.Context) error {
				cons, err := c.JetStream().Consumer(ctx, c.StreamName(), bus.DefaultDurable)
				if err != nil {
					return err
				}
				info := cons.CachedInfo()
				n = 1
				if info.Cluster != nil {
					n = 1 + len(info.Cluster.Replicas)
				}
				return nil
			})
			if n == r {
				break
			}
		}
		if n != r {
			t.Errorf("resolver consumer has %d replicas 10s after a start with %d", n, r)
		}
		if i == 0 {
			if err := retry(15*time.Second, func(ctx context.Context) (err error) { _, err = c.MarkPop(ctx, popID, "claim"); return err }); err != nil {
				t.Fatal(err)
			}
		}
		if err := retry(15*time.Second, func(ctx context.Context) error {
			kv, err := c.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, "pop.conv-r.P1")
			return err
		}); err != nil {
			t.Errorf("start %d (replicas %d): the leg's marker: %v", i, r, err)
		}
		c.Close()
	}
}

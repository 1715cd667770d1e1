package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// An operator edits the running resolver's durable consumer with the nats
// CLI (`nats consumer edit SCREENPOP screenpop-resolver --filter …`, or its
// ack wait or max deliver): the resolver puts it back within its owner
// check, says so in one line, and the events the edit kept from it still
// pop. Before, the edit held until the next restart: with the filter
// narrowed to chats, no call popped while /status said "consuming" and no
// line was logged; with max deliver lowered to 1, an event whose pop failed
// once (a NATS blip) was never redelivered, and no "given up" line said so.
func TestConn_ConsumeEventsPutsBackAConsumerEditedByHand(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*jetstream.ConsumerConfig)
	}{
		{"filter narrowed", func(cfg *jetstream.ConsumerConfig) {
			cfg.FilterSubject, cfg.FilterSubjects = "", []string{"screenpop.events.chat.>"}
		}},
		{"max deliver lowered", func(cfg *jetstream.ConsumerConfig) { cfg.MaxDeliver = 1 }},
		{"ack wait raised", func(cfg *jetstream.ConsumerConfig) { cfg.AckWait = time.Hour }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir(), Owner: "https://contoso.crm.dynamics.com"}, zerolog.New(&logs))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			seen := make(chan string, 16)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Since: time.Minute, OwnerCheck: 50 * time.Millisecond}, func(_ context.Context, data []byte) error {
					e, err := bridge.DecodeEvent(data)
					if err != nil {
						return err
					}
					seen <- string(e.ConversationID)
					return nil
				})
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}()
			waitFor(t, 5*time.Second, pulling(c, bus.DefaultDurable))
			want := func(conv string) {
				t.Helper()
				select {
				case got := <-seen:
					if got != conv {
						t.Fatalf("consumed %s, want %s", got, conv)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s not consumed within 5s: the consumer edited by hand was left as it was", conv)
				}
			}
			publishEvent(t, c, "conv-before")
			want("conv-before")

			cons, err := c.JetStream().Consumer(ctx, c.StreamName(), bus.DefaultDurable)
			if err != nil {
				t.Fatal(err)
			}
			cfg := cons.CachedInfo().Config
			tc.edit(&cfg)
			if _, err := c.JetStream().UpdateConsumer(ctx, c.StreamName(), cfg); err != nil {
				t.Fatal(err)
			}
			publishEvent(t, c, "conv-after")
			waitFor(t, 5*time.Second, func() bool {
				cons, err := c.JetStream().Consumer(ctx, c.StreamName(), bus.DefaultDurable)
				if err != nil {
					return false
				}
				got := cons.CachedInfo().Config
				return len(got.FilterSubjects) == 1 && got.FilterSubjects[0] == bridge.SubjectEvents && got.MaxDeliver == 5 && got.AckWait == bus.DefaultAckWait
			})
			want("conv-after")
			// The line follows the put-back: with max deliver lowered the
			// event pops either way, so the config can read as put back a
			// moment before the line is written.
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), "the resolver's consumer was changed by hand") {
				if time.Now().After(deadline) {
					t.Fatalf("no line says the consumer was edited:\n%s", logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// olderResolverConsumer opens the embedded store of dataDir and makes the
// resolver's consumer as a screenpopd from before Since (53bbed0 and
// earlier) does at start, returning what NATS answers: that version's
// start fails on an error here.
func olderResolverConsumer(t *testing.T, dataDir string) error {
	t.Helper()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dataDir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.JetStream().CreateOrUpdateConsumer(context.Background(), c.StreamName(), jetstream.ConsumerConfig{
		Durable:        "screenpop-resolver",
		Description:    "screenpop resolver: conversation events to pops",
		FilterSubjects: bridge.ResolverSubjects,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        bus.DefaultAckWait,
		MaxDeliver:     5,
		MaxAckPending:  64 * 4,
	})
	return err
}

// Rolling back past the version that makes the resolver's consumer start
// back: JetStream does not let the older screenpopd turn the durable this
// one made (at its first start, or after the durable was lost) back to
// new messages, and the older one fails its start. docs/operations.md 7.7
// says what to remove first, and with it removed the older one starts.
func TestConn_RollbackPastTheResolversStartBack(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "### 7.7 ")
	section, _, _ = strings.Cut(section, "\n### ")
	dir := regexp.MustCompile("`SCREENPOP_DATA_DIR/(jetstream/[^`]*/obs/screenpop-resolver)`").FindStringSubmatch(section)

	dataDir := t.TempDir()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: dataDir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = c.ConsumeEvents(ctx, bus.ConsumeConfig{Subjects: bridge.ResolverSubjects, Since: 30 * time.Second}, func(context.Context, []byte) error { return nil })
	cancel()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}

	var apiErr *jetstream.APIError
	err = olderResolverConsumer(t, dataDir)
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeConsumerCreate || !strings.Contains(apiErr.Description, "deliver policy") {
		t.Fatalf("older daemon's consumer on the durable this one made: %v; want it refused (10012), which fails its start", err)
	}
	if dir == nil {
		t.Fatalf("the older daemon fails its start (%v), and operations.md 7.7 names no consumer directory to remove before rolling back", err)
	}
	if err := os.RemoveAll(filepath.Join(dataDir, filepath.FromSlash(dir[1]))); err != nil {
		t.Fatal(err)
	}
	if err := olderResolverConsumer(t, dataDir); err != nil {
		t.Fatalf("older daemon's consumer after the runbook's steps: %v", err)
	}
}

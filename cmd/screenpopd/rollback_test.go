package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// olderMarkerBucket opens the embedded store of dataDir as a screenpopd
// from before per-key TTLs does at start, and returns what NATS answers to
// its marker bucket request (the bucket as that version made it).
func olderMarkerBucket(t *testing.T, dataDir string) error {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(dataDir, "jetstream"), DontListen: true, NoSigs: true, NoSystemAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket:      bus.DefaultMarkerBucket,
		Description: "screenpop pop markers: one key per agent leg that has popped",
		TTL:         24 * time.Hour,
		History:     1,
		Replicas:    1,
		Storage:     jetstream.FileStorage,
	})
	return err
}

// Rolling back past the version that turned the marker bucket's per-key
// TTLs on, as docs/operations.md 7.7 says: the newer daemon stopped first,
// then the bucket's directory removed, and the older one starts. Removed
// while the newer one still runs, the bucket is back, TTLs on, at its next
// pop, and the older one is refused.
func TestDaemon_RollbackPastMarkerTTLs(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "### 7.7 ")
	dir := regexp.MustCompile("`SCREENPOP_DATA_DIR/(jetstream/[^`]*/KV_screenpop-pops)`").FindStringSubmatch(section)
	if dir == nil {
		t.Fatal("operations.md 7.7 names no directory of the marker bucket")
	}

	d, cfg, logs := demoEmulators(t, testEnv(t))
	agent := demoAgents[0].ID

	m, stop := runDaemon(t, cfg, logs)
	ws, _ := resumeAgent(t, m.AgentURL(), d.Genesys.AgentToken(agent), 0, "", "")
	if err := m.Bus.JetStream().DeleteKeyValue(context.Background(), bus.DefaultMarkerBucket); err != nil {
		t.Fatal(err)
	}
	d.Genesys.InboundCall(agent, "+13175550101", notificationstest.Options{}).Alert()
	readPop(t, ws)
	stop()
	var apiErr *jetstream.APIError
	if err := olderMarkerBucket(t, cfg.DataDir); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10052 {
		t.Fatalf("older daemon's bucket after a removal while the newer one ran: %v; want it refused (10052), the case the runbook's order avoids", err)
	}

	// The runbook: the newer daemon is stopped; remove the directory.
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, filepath.FromSlash(dir[1]))); err != nil {
		t.Fatal(err)
	}
	if err := olderMarkerBucket(t, cfg.DataDir); err != nil {
		t.Fatalf("older daemon's bucket after the runbook's steps: %v", err)
	}
}

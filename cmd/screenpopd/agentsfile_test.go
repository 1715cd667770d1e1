package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// writeAgentsFile replaces path with ids as an admin's script would: a new
// file renamed over the old one.
func writeAgentsFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("# agents watched by screenpopd\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The admin adds a new hire to GENESYS_AGENTS_FILE (docs/configuration.md):
// the running daemon applies it, and the new agent's next call pops, with
// no restart (a restart reconnects every agent's page and channel). A file
// edited into something that is not a list of user ids (a typo, a wrong
// paste) is refused with a warning and changes nothing: the agents watched
// stay watched, and pop.
func TestDaemon_AgentsFileEditedWithoutARestart(t *testing.T) {
	cfg, g, _, ids := emulatedConfig(t, 2, 700, notificationstest.Config{}, nil)
	file := filepath.Join(t.TempDir(), "agents.txt")
	writeAgentsFile(t, file, ids[0])
	cfg.GenesysAgents, cfg.GenesysAgentsFile, cfg.agentsFilePoll = nil, file, 50*time.Millisecond
	logs := &syncbuf.Buffer{}
	m, _ := runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	r := connectAgents(t, m, g, ids)
	topic := func(id string) string { return "v2.users." + id + ".conversations" }
	waitFor(t, 10*time.Second, "the listed agent's topic delivered", func() bool { return g.IsDelivered(topic(ids[0])) })
	if g.IsDelivered(topic(ids[1])) {
		t.Fatal("an agent not in the file is watched")
	}

	writeAgentsFile(t, file, ids[0], ids[1])
	waitFor(t, 10*time.Second, "the added agent's topic delivered", func() bool { return g.IsDelivered(topic(ids[1])) })
	r.await(t, g.InboundCall(ids[1], "+13175557001", notificationstest.Options{}).Alert().ID())
	if !strings.Contains(logs.String(), `"added":1,"removed":0,"message":"GENESYS_AGENTS_FILE applied`) {
		t.Errorf("no info line for the file applied:\n%s", logs.String())
	}

	writeAgentsFile(t, file, ids[0], "Jane Doe")
	waitFor(t, 10*time.Second, "the refusal's warning", func() bool {
		return strings.Contains(logs.String(), `line 3: \"Jane Doe\" is not a Genesys user id`)
	})
	if n := strings.Count(logs.String(), "GENESYS_AGENTS_FILE changed but cannot be applied"); n != 1 {
		t.Errorf("%d warnings for one broken file, want 1", n)
	}
	r.await(t, g.InboundCall(ids[1], "+13175557002", notificationstest.Options{}).Alert().ID())
}

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

// agentsFileDaemon runs a daemon watching agents from an agents file,
// looked at every 50 ms, with n emulated agents (ids from first): the
// file lists what mod returns (mod may also set queues), the first agent
// without mod. It returns the agents' ids, the file and the daemon's log.
func agentsFileDaemon(t *testing.T, n, first int, mod func(cfg *Config, g *notificationstest.Emulator, ids []string) []string) (*Main, *notificationstest.Emulator, []string, string, *syncbuf.Buffer) {
	t.Helper()
	cfg, g, _, ids := emulatedConfig(t, n, first, notificationstest.Config{}, nil)
	cfg.GenesysAgents = nil
	listed := ids[:1]
	if mod != nil {
		listed = mod(cfg, g, ids)
	}
	file := filepath.Join(t.TempDir(), "agents.txt")
	writeAgentsFile(t, file, listed...)
	cfg.GenesysAgentsFile, cfg.agentsFilePoll = file, 50*time.Millisecond
	logs := &syncbuf.Buffer{}
	m, _ := runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	return m, g, ids, file, logs
}

// agentTopic is the conversation topic of a Genesys user.
func agentTopic(id string) string { return "v2.users." + id + ".conversations" }

// refusedLine is the watcher's warning for an edit it does not apply.
const refusedLine = "GENESYS_AGENTS_FILE changed but cannot be applied"

// The admin adds a new hire to GENESYS_AGENTS_FILE (docs/configuration.md):
// the running daemon applies it, and the new agent's next call pops, with
// no restart (a restart reconnects every agent's page and channel). A file
// edited into something that is not a list of user ids (a typo, a wrong
// paste) is refused with a warning and changes nothing: the agents watched
// stay watched, and pop.
func TestDaemon_AgentsFileEditedWithoutARestart(t *testing.T) {
	m, g, ids, file, logs := agentsFileDaemon(t, 2, 700, nil)
	r := connectAgents(t, m, g, ids)
	topic := agentTopic
	waitFor(t, 10*time.Second, "the listed agent's topic delivered", func() bool { return g.IsDelivered(topic(ids[0])) })
	if g.IsDelivered(topic(ids[1])) {
		t.Fatal("an agent not in the file is watched")
	}

	writeAgentsFile(t, file, ids[0], ids[1])
	waitFor(t, 10*time.Second, "the added agent's topic delivered", func() bool { return g.IsDelivered(topic(ids[1])) })
	r.await(t, g.InboundCall(ids[1], "+13175557001", notificationstest.Options{}).Alert().ID())
	// The line follows SetAgents, which only hands the list to the agent
	// loop: the new agent can be watched, and pop, before it is written.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"added":1,"removed":0,"message":"GENESYS_AGENTS_FILE applied`) {
		if time.Now().After(deadline) {
			t.Errorf("no info line for the file applied:\n%s", logs.String())
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	writeAgentsFile(t, file, ids[0], "Jane Doe")
	waitFor(t, 10*time.Second, "the refusal's warning", func() bool {
		return strings.Contains(logs.String(), `line 3: \"Jane Doe\" is not a Genesys user id`)
	})
	if n := strings.Count(logs.String(), refusedLine); n != 1 {
		t.Errorf("%d warnings for one broken file, want 1", n)
	}
	r.await(t, g.InboundCall(ids[1], "+13175557002", notificationstest.Options{}).Alert().ID())
}

// The file is one source of agents among three: the admin who watches a
// queue (GENESYS_QUEUES) and lists a few more agents in the file removes
// the last of them. The daemon starts with such a file (comments only),
// so the edit must be applied too: the agent removed goes, the queue's
// members stay. Refusing it ("names no agent (to stop watching everyone,
// stop screenpopd)", which is not what it would do) kept the removed
// agent watched, with pops, until a restart. A file of not one byte is
// still refused: that is a file being written.
func TestDaemon_AgentsFileEmptiedNextToAQueue(t *testing.T) {
	const queue = "9a0e0000-0000-4000-8000-0000000000a1"
	_, g, ids, file, logs := agentsFileDaemon(t, 2, 720, func(cfg *Config, g *notificationstest.Emulator, ids []string) []string {
		g.SetQueueMembers(queue, ids[:1])
		cfg.GenesysQueues = []string{queue}
		return ids[1:]
	})
	topic := agentTopic
	waitFor(t, 10*time.Second, "the queue member's and the listed agent's topics delivered", func() bool {
		return g.IsDelivered(topic(ids[0])) && g.IsDelivered(topic(ids[1]))
	})

	// Not one byte is a file still being written (`cmd > file`): refused.
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the empty file refused", func() bool {
		return strings.Contains(logs.String(), refusedLine)
	})
	if !g.IsDelivered(topic(ids[1])) {
		t.Fatal("an empty file unwatched the agent")
	}

	writeAgentsFile(t, file) // the last agent of the file removed: a comment line is left
	waitFor(t, 10*time.Second, "the agent removed from the file unwatched", func() bool { return !g.IsDelivered(topic(ids[1])) })
	if !g.IsDelivered(topic(ids[0])) {
		t.Error("the queue member is no longer watched")
	}
	if n := strings.Count(logs.String(), refusedLine); n != 1 {
		t.Errorf("%d refusals, want 1 (the empty file's):\n%s", n, logs.String())
	}
}

// The admin fixes a refused edit by putting the file back as it was: the
// log must say that the file is in effect again, or the last word on it
// stays "cannot be applied ... until it is fixed".
func TestDaemon_AgentsFileFixedBackIsLogged(t *testing.T) {
	_, g, ids, file, logs := agentsFileDaemon(t, 1, 740, nil)
	waitFor(t, 10*time.Second, "the listed agent's topic delivered", func() bool { return g.IsDelivered(agentTopic(ids[0])) })

	writeAgentsFile(t, file, ids[0], "Jane Doe")
	waitFor(t, 10*time.Second, "the refusal's warning", func() bool {
		return strings.Contains(logs.String(), refusedLine)
	})
	writeAgentsFile(t, file, ids[0]) // fixed: as it was
	waitFor(t, 10*time.Second, "a line saying the fixed file is applied", func() bool {
		i := strings.LastIndex(logs.String(), refusedLine)
		return strings.Contains(logs.String()[i:], "GENESYS_AGENTS_FILE applied")
	})
}

// The same when the original file itself is put back (a broken copy moved
// over it and the original moved back, a release symlink rolled back):
// the file is the one applied, stamp and all, and the log says it is in
// effect again.
func TestDaemon_AgentsFileOriginalMovedBackIsLogged(t *testing.T) {
	_, g, ids, file, logs := agentsFileDaemon(t, 1, 760, nil)
	waitFor(t, 10*time.Second, "the listed agent's topic delivered", func() bool { return g.IsDelivered(agentTopic(ids[0])) })
	time.Sleep(500 * time.Millisecond) // the watcher has looked at the file applied
	if err := os.Rename(file, file+".orig"); err != nil {
		t.Fatal(err)
	}
	writeAgentsFile(t, file, ids[0], "Jane Doe")
	waitFor(t, 10*time.Second, "the refusal's warning", func() bool { return strings.Contains(logs.String(), refusedLine) })
	if err := os.Rename(file+".orig", file); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a line saying the original file is applied again", func() bool {
		i := strings.LastIndex(logs.String(), refusedLine)
		return strings.Contains(logs.String()[i:], "GENESYS_AGENTS_FILE applied")
	})
}

// The refusal's warning counts the agents that stay watched as the applied
// line and /status do: each once, also one listed in GENESYS_AGENTS and in
// the file.
func TestDaemon_AgentsFileRefusalCountsEachAgentOnce(t *testing.T) {
	_, g, ids, file, logs := agentsFileDaemon(t, 3, 960, func(cfg *Config, g *notificationstest.Emulator, ids []string) []string {
		cfg.GenesysAgents = ids[:1]
		return ids[:2] // the file: the first agent again, and the second
	})
	waitFor(t, 10*time.Second, "both agents watched", func() bool { return g.IsDelivered(agentTopic(ids[1])) })
	time.Sleep(300 * time.Millisecond)
	writeAgentsFile(t, file, ids[0], ids[1], ids[2])
	waitFor(t, 10*time.Second, "the edit applied", func() bool {
		return g.IsDelivered(agentTopic(ids[2])) && strings.Contains(logs.String(), "GENESYS_AGENTS_FILE applied")
	})
	writeAgentsFile(t, file, ids[0], "Jane Doe")
	waitFor(t, 10*time.Second, "the refusal's warning", func() bool { return strings.Contains(logs.String(), refusedLine) })
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, refusedLine) && !strings.Contains(l, `"agents":3`) {
			t.Errorf("the refusal counts the agents watched otherwise than the 3 watched: %s", l)
		}
	}
}

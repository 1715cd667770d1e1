package main

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A script regenerates GENESYS_AGENTS_FILE in place (`gen-agents >
// agents.txt`, nano's save, `cp new agents.txt`): the file is truncated,
// then written line by line, here with the same agents. The watcher reads
// a file once its stamp stayed the same for one look; a rewrite that
// starts between that look and the read was read empty or cut short and
// applied: the agents past the cut were unsubscribed (their calls in that
// window did not pop) and subscribed again at the next look, two rounds
// of subscription requests against the Genesys API budget; or it was
// refused with a warning about a file that was never wrong. What the
// watcher reads must be what it looked at, or wait for the next look.
func TestDaemon_AgentsFileRewrittenDuringTheRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		half  bool // the rewrite has written the first half of the lines
		first int  // the first agent's number
	}{{"CutShort", true, 780}, {"Emptied", false, 820}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20
			cfg, g, _, ids := emulatedConfig(t, n, tc.first, notificationstest.Config{}, nil)
			cfg.GenesysAgents = nil
			file := t.TempDir() + "/agents.txt"
			writeAgentsFile(t, file, ids...)
			content := "# agents watched by screenpopd\n" + strings.Join(ids, "\n") + "\n"
			var armed atomic.Bool
			rest := make(chan string, 1)
			cfg.GenesysAgentsFile, cfg.agentsFilePoll = file, 50*time.Millisecond
			cfg.agentsFileRead = func() {
				if !armed.CompareAndSwap(true, false) {
					return
				}
				// The script starts its rewrite just after the look.
				f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				cut := 0
				if tc.half {
					cut = strings.Index(content, ids[n/2])
				}
				if _, err := f.WriteString(content[:cut]); err != nil {
					t.Error(err)
				}
				rest <- content[cut:]
			}
			logs := &syncbuf.Buffer{}
			runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
			waitFor(t, 10*time.Second, "every listed agent's topic delivered", func() bool {
				for _, id := range ids {
					if !g.IsDelivered(agentTopic(id)) {
						return false
					}
				}
				return true
			})
			subs := g.CountRequests("", "/api/v2/notifications/channels/")

			// The same agents, written anew in one go: the next settled
			// look reads it, and the script's next rewrite starts then.
			armed.Store(true)
			writeAgentsFile(t, file, ids...)
			var tail string
			select {
			case tail = <-rest:
			case <-time.After(10 * time.Second):
				t.Fatal("the watcher did not read the rewritten file")
			}
			// The script writes the rest soon after, well within a look.
			time.Sleep(20 * time.Millisecond)
			if f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0); err != nil {
				t.Fatal(err)
			} else {
				f.WriteString(tail)
				f.Close()
			}
			time.Sleep(300 * time.Millisecond) // the whole file read and applied

			for _, id := range ids {
				if !g.IsDelivered(agentTopic(id)) {
					t.Errorf("agent %s no longer watched", id)
				}
			}
			if got := g.CountRequests("", "/api/v2/notifications/channels/") - subs; got != 0 {
				t.Errorf("%d channel requests for the same agents rewritten, want 0", got)
			}
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "GENESYS_AGENTS_FILE") {
					t.Errorf("logged for the same agents rewritten: %s", l)
				}
			}
		})
	}
}

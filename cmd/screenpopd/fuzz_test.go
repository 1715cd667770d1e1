package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
)

// FuzzAgentsAndQueues sets GENESYS_AGENTS, GENESYS_QUEUES and the agents
// file to arbitrary content. What ParseConfig accepts must start: the
// notifications client (which `run` makes from the same config) takes the
// agents and queues, each an id as Genesys writes it in topics and
// conversation bodies (a lower-case UUID), or the config check passes and
// the daemon then refuses to start, or watches an id no frame names.
func FuzzAgentsAndQueues(f *testing.F) {
	f.Add(a1, "", []byte(b1+"\n"))
	f.Add(a1+","+a2, "5e1f0a1c-0000-4000-8000-00000000000f", []byte("# none\n"))
	f.Add("", "", []byte("\ufeff"+b1+"\r\n# x\n\n  "+b2+"  \n"))
	f.Add(" 5E1F0A1C-0000-4000-8000-0000000000A1 ", "", []byte("5E1F0A1C-0000-4000-8000-0000000000B1\n"))
	f.Add("{"+a1+"}", "", []byte(b1+"\n"))
	f.Add(a1, "{5e1f0a1c-0000-4000-8000-00000000000f}", []byte(b1+"\n"))
	f.Add(a1, "", []byte("{"+b1+"}\n"))
	f.Add(a1, "", []byte("jane@example.com\n"))
	canonical := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	f.Fuzz(func(t *testing.T, agents, queues string, agentsFile []byte) {
		path := filepath.Join(t.TempDir(), "agents")
		if err := os.WriteFile(path, agentsFile, 0o600); err != nil {
			t.Fatal(err)
		}
		m := good()
		m["GENESYS_AGENTS"], m["GENESYS_QUEUES"], m["GENESYS_AGENTS_FILE"] = agents, queues, path
		c, _, err := ParseConfig("run", nil, env(m), Requirements{Genesys: true, Dataverse: true}, io.Discard)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is no ConfigError with problems", err)
			}
			return
		}
		ids, err := c.Agents()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range append(append([]string(nil), ids...), c.GenesysQueues...) {
			if !canonical.MatchString(id) {
				t.Errorf("id %q accepted as written: Genesys writes %q", id, "lower-case UUID")
			}
		}
		if _, err := notifications.New(notifications.Config{Region: c.GenesysRegion, APIURL: c.GenesysAPIURL, ClientID: c.GenesysClientID,
			ClientSecret: c.GenesysClientSecret, Agents: ids, AgentsChange: true, Queues: c.GenesysQueues, Registerer: prometheus.NewRegistry()},
			zerolog.Nop(), make(chan bridge.Snapshot)); err != nil {
			t.Fatalf("the config passed, the daemon would not start: %v", err)
		}
	})
}

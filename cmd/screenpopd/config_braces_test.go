package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// TestParseConfig_BracedIDs: a user or queue id written in braces
// ({5e1f…}, as Windows tools and Dynamics copy a GUID) is a UUID to the
// config check (dataverse.IsGUID), so ParseConfig and `screenpopd check`
// accept it, but the notifications client refuses it and `run` does not
// start ("GENESYS_AGENTS: ... is not a Genesys user id", also for an id of
// GENESYS_AGENTS_FILE; a file edited so is refused at its reload). The id
// is the UUID inside: taken so, as DATAVERSE_APP_ID is, the daemon starts
// and watches the agent Genesys names in its topics.
func TestParseConfig_BracedIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agents")
	if err := os.WriteFile(path, []byte("{"+b1+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := with(good(), "GENESYS_AGENTS", "{"+a1+"}", "GENESYS_QUEUES", "{5E1F0A1C-0000-4000-8000-00000000000F}", "GENESYS_AGENTS_FILE", path)
	c, _, err := ParseConfig("run", nil, env(m), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err) // refusing it by name would do too; accepting it as written does not
	}
	ids, err := c.Agents()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a1, b1}; !slices.Equal(ids, want) {
		t.Errorf("agents %q, want %q", ids, want)
	}
	if want := []string{"5e1f0a1c-0000-4000-8000-00000000000f"}; !slices.Equal(c.GenesysQueues, want) {
		t.Errorf("queues %q, want %q", c.GenesysQueues, want)
	}
	if _, err := notifications.New(notifications.Config{Region: c.GenesysRegion, ClientID: c.GenesysClientID, ClientSecret: c.GenesysClientSecret,
		Agents: ids, AgentsChange: true, Queues: c.GenesysQueues, Registerer: prometheus.NewRegistry()}, zerolog.Nop(), make(chan bridge.Snapshot)); err != nil {
		t.Fatalf("the config passed, the daemon would not start: %v", err)
	}

	// screenpopd token --agent {id}: a token for "{id}" connects and never
	// pops (its pops go to screenpop.pops.<id>).
	secret := strings.Repeat("k", 48)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "--agent", "{" + strings.ToUpper(a1) + "}", "--jwt-secret", secret}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("token --agent in braces: exit %d: %s", code, errb.String())
	}
	a, err := push.NewJWTAuthenticator([]byte(secret), "")
	if err != nil {
		t.Fatal(err)
	}
	if agent, _, err := a.Authenticate(context.Background(), strings.TrimSpace(out.String())); err != nil || string(agent) != a1 {
		t.Errorf("token for agent %q (%v), want %s", agent, err, a1)
	}
}

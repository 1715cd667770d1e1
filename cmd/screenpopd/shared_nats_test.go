package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// otherDeployment is a second deployment's counterparts: its own Genesys
// org (other agents) and its own Dynamics org, as staging next to
// production or a second business unit would have.
type otherDeployment struct {
	genesys   *notificationstest.Emulator
	dataverse *dataversetest.Server
	agents    []notificationstest.AgentSpec
}

func startOtherDeployment(t *testing.T) *otherDeployment {
	t.Helper()
	o := &otherDeployment{agents: []notificationstest.AgentSpec{
		{ID: "7a2b0c3d-0000-4000-8000-0000000000b1", Name: "Erin Agent", Email: "erin@example.invalid"},
		{ID: "7a2b0c3d-0000-4000-8000-0000000000b2", Name: "Frank Agent", Email: "frank@example.invalid"},
	}}
	o.genesys = notificationstest.New(notificationstest.Config{OrgID: "org-b", Agents: o.agents})
	if _, err := o.genesys.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.genesys.Close)
	o.dataverse = dataversetest.New(dataversetest.Config{})
	if err := o.dataverse.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.dataverse.Close() })
	return o
}

// config is base (deployment A's configuration) pointed at o's
// counterparts, with its own data directory.
func (o *otherDeployment) config(t *testing.T, base *Config) Config {
	c := *base
	gc, dc := o.genesys.Config(), o.dataverse.Config()
	c.GenesysAPIURL, c.GenesysClientID, c.GenesysClientSecret = o.genesys.URL(), gc.ClientID, gc.ClientSecret
	c.GenesysAgents = nil
	for _, a := range o.agents {
		c.GenesysAgents = append(c.GenesysAgents, a.ID)
	}
	c.DataverseURL, c.DataverseTokenURL = o.dataverse.URL(), o.dataverse.TokenURL()
	c.DataverseTenantID, c.DataverseClientID, c.DataverseClientSecret = dc.TenantID, dc.ClientID, dc.ClientSecret
	c.DataDir = t.TempDir()
	return c
}

// Two deployments (two Genesys orgs, each with its own Dynamics org)
// pointed at one NATS account with the default names share the subjects,
// the stream, the resolver's consumer and the marker bucket: the second
// must be refused at start, naming the first, while the first's agents go
// on getting pops from their own Dataverse. Every caller below is a
// contact in the caller's deployment only. Before the fix the second
// started, the two resolvers took each other's events, and about half the
// pops of each deployment's agents were made from the other Dataverse
// (a create form, or a record of the other org, with its URL).
func TestDaemon_TwoDeploymentsOnOneNATS(t *testing.T) {
	ns := startNATS(t, true)
	vars := testEnv(t)
	vars["NATS_URL"] = ns.ClientURL()
	dA, cfgA, logs := demoEmulators(t, vars)
	b := startOtherDeployment(t)
	cfgB := b.config(t, cfgA)
	agentA, agentB := demoAgents[0].ID, b.agents[0].ID
	n := 0
	call := func(t *testing.T, ws *websocket.Conn, emu *notificationstest.Emulator, dv *dataversetest.Server, agent, wantURL string) string {
		t.Helper()
		n++
		phone := fmt.Sprintf("+1317555%04d", 7000+n)
		id := dv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: fmt.Sprint("N", n), Telephone1: phone})
		emu.InboundCall(agent, phone, notificationstest.Options{}).Alert()
		if p := readPop(t, ws); p.Target.Action != "open" || p.Target.ID != id || !strings.HasPrefix(p.Target.URL, wantURL) {
			return fmt.Sprintf("%s %s %s (want open %s on %s)", p.Target.Action, p.Target.ID, p.Target.URL, id, wantURL)
		}
		return ""
	}

	mA, stopA := runDaemon(t, cfgA, logs)
	wsA := dialAgent(t, mA.AgentURL(), dA.Genesys.AgentToken(agentA))

	mB := NewMain(&cfgB, zerolog.New(logs))
	err := mB.Open(context.Background())
	if err == nil {
		// What the agents of each get when both run.
		mB.Close()
		mB, _ = runDaemon(t, &cfgB, logs)
		wsB := dialAgent(t, mB.AgentURL(), b.genesys.AgentToken(agentB))
		var wrong []string
		for range 8 {
			if w := call(t, wsA, dA.Genesys, dA.Dataverse, agentA, cfgA.DataverseURL); w != "" {
				wrong = append(wrong, "agent of A: "+w)
			}
		}
		for range 8 {
			if w := call(t, wsB, b.genesys, b.dataverse, agentB, cfgB.DataverseURL); w != "" {
				wrong = append(wrong, "agent of B: "+w)
			}
		}
		t.Fatalf("deployment B started on deployment A's NATS account; %d of 16 pops were made from the other deployment's Dataverse:\n%s", len(wrong), strings.Join(wrong, "\n"))
	}
	mB.Close()
	if !errors.Is(err, bus.ErrOtherDeployment) || !strings.Contains(err.Error(), strings.ToLower(cfgA.DataverseURL)) || !strings.Contains(err.Error(), "own NATS account") {
		t.Fatalf("B's start: %v; want ErrOtherDeployment naming A's Dataverse and the fix", err)
	}
	t.Logf("B refused: %v", err)
	// screenpopd check with B's settings says so too.
	varsB := testEnv(t)
	gc, dc := b.genesys.Config(), b.dataverse.Config()
	for k, v := range map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"GENESYS_API_URL": b.genesys.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret,
		"GENESYS_AGENTS": agentB, "DATAVERSE_URL": b.dataverse.URL(), "DATAVERSE_TOKEN_URL": b.dataverse.TokenURL(),
		"DATAVERSE_TENANT_ID": dc.TenantID, "DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
	} {
		varsB[k] = v
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check"}, env(varsB), &out, &errb); code != 1 {
		t.Errorf("check of B: exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	wantLine(t, out.String(), "FAIL nats stream SCREENPOP:", "another screenpop deployment", strings.ToLower(cfgA.DataverseURL), "own NATS account")
	// Nor does another stream name separate them: both streams would
	// capture screenpop.>, which NATS refuses.
	renamed := cfgB
	renamed.Stream = "SCREENPOP_B"
	mB = NewMain(&renamed, zerolog.New(logs))
	err = mB.Open(context.Background())
	mB.Close()
	if err == nil || !strings.Contains(err.Error(), "overlap") || !strings.Contains(err.Error(), "own NATS account") {
		t.Fatalf("B with SCREENPOP_STREAM=SCREENPOP_B: %v, want NATS's refusal of overlapping subjects", err)
	}
	t.Logf("B with another stream name refused: %v", err)
	for range 3 {
		if w := call(t, wsA, dA.Genesys, dA.Dataverse, agentA, cfgA.DataverseURL); w != "" {
			t.Fatalf("agent of A, with B refused: %s", w)
		}
	}

	// With every daemon of A stopped (say its DATAVERSE_URL changed, or
	// the account is handed to B), B takes the account over, and A is
	// refused in turn.
	stopA()
	mB, _ = runDaemon(t, &cfgB, logs)
	wsB := dialAgent(t, mB.AgentURL(), b.genesys.AgentToken(agentB))
	for range 3 {
		if w := call(t, wsB, b.genesys, b.dataverse, agentB, cfgB.DataverseURL); w != "" {
			t.Fatalf("agent of B, after A stopped: %s", w)
		}
	}
	if !strings.Contains(logs.String(), "taking it over") {
		t.Error("no warning that B took over A's consumer")
	}
	mA2 := NewMain(cfgA, zerolog.New(logs))
	err = mA2.Open(context.Background())
	mA2.Close()
	if !errors.Is(err, bus.ErrOtherDeployment) {
		t.Fatalf("A's start while B runs: %v; want ErrOtherDeployment", err)
	}
}

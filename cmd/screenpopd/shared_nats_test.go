package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
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

// The instances of one deployment are configured one by one (an env file
// each, a Helm value, a systemd unit), and DATAVERSE_URL may be written in
// any form that reaches the same Dataverse environment: every form below
// is accepted by run and talks to contoso's Dataverse. They are one
// deployment, so the owner recorded on the resolver's consumer must be the
// same, or the second instance of an HA pair is refused at start as
// "another screenpop deployment" (and a start at the same moment stops the
// first within 15 s).
func TestDeploymentOwner_SameDataverseInAnyForm(t *testing.T) {
	owner := func(t *testing.T, raw string) string {
		t.Helper()
		if p := dataverseURLProblem(strings.TrimSpace(raw)); p != "" {
			t.Fatalf("%q: %s", raw, p)
		}
		cfg, _, err := ParseConfig("run", nil, env(map[string]string{"DATAVERSE_URL": raw}), Requirements{}, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		return deploymentOwner(cfg)
	}
	base := owner(t, "https://contoso.crm.dynamics.com")
	for _, form := range []string{
		"https://contoso.crm.dynamics.com/",
		"HTTPS://Contoso.CRM.Dynamics.com",
		"https://contoso.crm.dynamics.com:443",
		"https://contoso.crm.dynamics.com:443/",
		"https://contoso.crm.dynamics.com.",
		"https://Contoso.crm.dynamics.com.:443/",
	} {
		if got := owner(t, form); got != base {
			t.Errorf("DATAVERSE_URL=%s: owner %q, and %q for https://contoso.crm.dynamics.com: one deployment taken for two", form, got, base)
		}
	}
	for _, other := range []string{"https://contoso-test.crm.dynamics.com", "https://contoso.crm4.dynamics.com", "https://contoso.crm.dynamics.com:8443"} {
		if got := owner(t, other); got == base {
			t.Errorf("DATAVERSE_URL=%s: owner %q, the same as contoso's production", other, got)
		}
	}
}

// The second instance of an HA pair whose DATAVERSE_URL carries the
// default port starts beside the first, whose does not, on a real NATS
// server: the owners deploymentOwner gives them are what bus compares.
func TestDeploymentOwner_PairInTwoFormsSharesTheResolver(t *testing.T) {
	ns := startNATS(t, true)
	owner := func(raw string) string {
		cfg, _, err := ParseConfig("run", nil, env(map[string]string{"DATAVERSE_URL": raw}), Requirements{}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return deploymentOwner(cfg)
	}
	a, err := bus.Start(context.Background(), bus.Config{URL: ns.ClientURL(), Owner: owner("https://contoso.crm.dynamics.com")}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{Subjects: bridge.ResolverSubjects}, func(context.Context, []byte) error { return nil })
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "the first instance pulling", func() bool {
		cons, err := a.JetStream().Consumer(context.Background(), a.StreamName(), bus.DefaultDurable)
		return err == nil && cons.CachedInfo().NumWaiting > 0
	})
	for _, form := range []string{"https://contoso.crm.dynamics.com:443", "https://contoso.crm.dynamics.com."} {
		b, err := bus.Start(context.Background(), bus.Config{URL: ns.ClientURL(), Owner: owner(form)}, zerolog.Nop())
		if err != nil {
			t.Errorf("second instance with DATAVERSE_URL=%s, beside one with https://contoso.crm.dynamics.com: %v", form, err)
			continue
		}
		b.Close()
	}
}

// screenpopd check run on the host of a running daemon, with its settings
// and an external NATS (the resolver's consumer owned, and pulled from, by
// that daemon): every line passes; it is the same deployment.
func TestCheck_BesideTheRunningDaemonOfTheSameDeployment(t *testing.T) {
	ns := startNATS(t, true)
	vars := testEnv(t)
	vars["NATS_URL"] = ns.ClientURL()
	d, cfg, logs := demoEmulators(t, vars)
	m, _ := runDaemon(t, cfg, logs)
	waitFor(t, 10*time.Second, "the daemon pulling", func() bool {
		cons, err := m.Bus.JetStream().Consumer(context.Background(), m.Bus.StreamName(), bus.DefaultDurable)
		return err == nil && cons.CachedInfo().NumWaiting > 0
	})
	gc, dc := d.Genesys.Config(), d.Dataverse.Config()
	for k, v := range map[string]string{
		"GENESYS_API_URL": d.Genesys.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret,
		"GENESYS_AGENTS": demoAgents[0].ID, "DATAVERSE_URL": strings.ToUpper(d.Dataverse.URL()) + "/", "DATAVERSE_TOKEN_URL": d.Dataverse.TokenURL(),
		"DATAVERSE_TENANT_ID": dc.TenantID, "DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
	} {
		vars[k] = v
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check"}, env(vars), &out, &errb)
	wantLine(t, out.String(), "ok   nats stream SCREENPOP:")
	if code != 0 {
		t.Errorf("check exit %d beside the running daemon:\n%s%s", code, out.String(), errb.String())
	}
}

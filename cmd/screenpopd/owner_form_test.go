package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

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

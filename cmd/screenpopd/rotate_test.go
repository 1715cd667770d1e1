package main

import (
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/push"
)

// A new SCREENPOP_JWT_SECRET rolled over an HA pair one instance at a time
// (docs/agents.md, "Rotating the jwt secret"): each instance is started again
// with the new secret and the old one in SCREENPOP_JWT_SECRET_PREVIOUS. The
// pages hold tokens of the old secret throughout; they follow the load
// balancer from instance to instance and keep getting every pop, and a token
// of the new secret is taken by both restarted instances. Without the
// previous secret, the page lands on the restarted instance, is refused with
// 4401 at every hello, and the calls that ring meanwhile do not pop.
func TestDaemon_HAPairJWTSecretRotation(t *testing.T) {
	const oldSecret = "old-jwt-secret-0123456789abcdef-0123456789"
	const newSecret = "new-jwt-secret-0123456789abcdef-0123456789"
	r := newPairRig(t)
	agent := demoAgents[0].ID
	for _, c := range []*Config{&r.cfgA, &r.cfgB} {
		c.Auth, c.JWTSecret = "jwt", oldSecret
		c.Listen = freeLoopbackAddr(t)
	}
	_, stopA := r.start(t, &r.cfgA)
	_, stopB := r.start(t, &r.cfgB)
	oldTok, err := push.MintToken([]byte(oldSecret), bridge.AgentID(agent), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	page := openAgentPage(t, startLB(t, r.cfgA.Listen, r.cfgB.Listen), oldTok)
	mustPop := func(when string) {
		t.Helper()
		c := alertCall(r.d, agent)
		if page.waitPop(c.ID(), 15*time.Second).IsZero() {
			t.Fatalf("%s: the page holding a token of the old secret got no pop for %s", when, c.ID())
		}
	}
	mustPop("before the rotation")

	rotated := func(c Config) *Config {
		c.JWTSecret, c.JWTSecretPrevious = newSecret, oldSecret
		return &c
	}
	stopA()
	mustPop("A stopped") // the page is on B
	mA, _ := r.start(t, rotated(r.cfgA))
	stopB()
	mustPop("B stopped, A on the new secret") // the page is on A
	mB, _ := r.start(t, rotated(r.cfgB))
	mustPop("both on the new secret")

	// The login now signs with the new secret: both instances take it.
	newTok, err := push.MintToken([]byte(newSecret), bridge.AgentID(agent), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Main{mA, mB} {
		dialAgent(t, m.AgentURL(), newTok).Close()
	}
}

// The Entra ID client secret expires while the daemon runs (docs/operations.md
// 7.1): once the token in hand is gone, each call still pops, as search, and
// the log says why (the expired secret and the setting to fix).
func TestDaemon_DataverseSecretExpiredPopsSearch(t *testing.T) {
	d, logs := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	d.Dataverse.ExpireSecret(true)
	d.Dataverse.ExpireTokens()
	c := alertCall(d, agent)
	p := readPop(t, ws)
	if p.ConversationID != c.ID() || p.Target.Action != "search" {
		t.Fatalf("pop %s %q, want search for %s", p.ConversationID, p.Target.Action, c.ID())
	}
	waitFor(t, 5*time.Second, "the reason in the log", func() bool {
		return strings.Contains(logs.String(), "AADSTS7000222") && strings.Contains(logs.String(), "DATAVERSE_CLIENT_SECRET")
	})
	t.Logf("%s", logLines(logs, `"message":"pop"`, "AADSTS"))
}

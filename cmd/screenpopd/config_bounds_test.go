package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications"
)

// Durations are positive Go durations, up to 10 years (87600h)
// (configuration.md). A zero is no duration: a pop deadline, a cache
// lifetime or a replay window of 0s is refused at start naming its
// variable, as "2" is. 87600h itself is accepted, an hour more refused.
func TestParseConfig_DurationsArePositiveUpToTenYears(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	for _, s := range settings {
		if _, err := time.ParseDuration(s.def); err != nil {
			continue // not a duration
		}
		t.Run(s.env, func(t *testing.T) {
			_, _, err := ParseConfig("run", nil, env(with(good(), s.env, "0s")), runReq, io.Discard)
			if err == nil || !strings.Contains(err.Error(), s.env+": \"0s\" is not a positive Go duration") {
				t.Errorf("%s=0s: got %v, want it refused naming %s", s.env, err, s.env)
			}
		})
	}
	if _, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_CACHE_TTL", "87600h")), runReq, io.Discard); err != nil {
		t.Errorf("SCREENPOP_CACHE_TTL=87600h (10 years, the documented bound) refused: %v", err)
	}
	_, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_CACHE_TTL", "87601h")), runReq, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SCREENPOP_CACHE_TTL") {
		t.Errorf("SCREENPOP_CACHE_TTL=87601h: got %v, want it refused naming the variable", err)
	}
}

// The documented least values are accepted and one step less refused,
// naming the variable: GENESYS_QUEUE_REFRESH at least 30s,
// SCREENPOP_STREAM_MAX_AGE at least 2m (its duplicate window),
// SCREENPOP_JWT_SECRET (and _PREVIOUS) at least 32 bytes, and
// SCREENPOP_FRESH_WINDOW not longer than SCREENPOP_REPLAY_WINDOW (equal is
// fine). SCREENPOP_STREAM_REPLICAS is 1, 3 or 5 on a cluster: 6 is refused.
func TestParseConfig_DocumentedLeastValues(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	secret := strings.Repeat("k", 32)
	cluster := "nats://nats1.example.com:4222"
	for _, tc := range []struct {
		name     string
		accepted map[string]string
		refused  map[string]string
		variable string
	}{
		{"QueueRefresh", with(good(), "GENESYS_QUEUE_REFRESH", "30s"), with(good(), "GENESYS_QUEUE_REFRESH", "29s"), "GENESYS_QUEUE_REFRESH"},
		{"StreamMaxAge", with(good(), "SCREENPOP_STREAM_MAX_AGE", "2m"), with(good(), "SCREENPOP_STREAM_MAX_AGE", "119s"), "SCREENPOP_STREAM_MAX_AGE"},
		{"JWTSecret", with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", secret),
			with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", secret[:31]), "SCREENPOP_JWT_SECRET"},
		{"JWTSecretPrevious", with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", secret, "SCREENPOP_JWT_SECRET_PREVIOUS", strings.Repeat("p", 32)),
			with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", secret, "SCREENPOP_JWT_SECRET_PREVIOUS", strings.Repeat("p", 31)), "SCREENPOP_JWT_SECRET_PREVIOUS"},
		{"FreshWindowEqualsReplayWindow", with(good(), "SCREENPOP_FRESH_WINDOW", "2m", "SCREENPOP_REPLAY_WINDOW", "2m"),
			with(good(), "SCREENPOP_FRESH_WINDOW", "121s", "SCREENPOP_REPLAY_WINDOW", "2m"), "SCREENPOP_FRESH_WINDOW"},
		{"StreamReplicas", with(good(), "SCREENPOP_STREAM_REPLICAS", "5", "NATS_URL", cluster),
			with(good(), "SCREENPOP_STREAM_REPLICAS", "6", "NATS_URL", cluster), "SCREENPOP_STREAM_REPLICAS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseConfig("run", nil, env(tc.accepted), runReq, io.Discard); err != nil {
				t.Errorf("the documented least value refused: %v", err)
			}
			_, _, err := ParseConfig("run", nil, env(tc.refused), runReq, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.variable+":") {
				t.Errorf("one step past the bound: got %v, want it refused naming %s", err, tc.variable)
			}
		})
	}
}

// Settings that go together: NATS_TLS_CERT and NATS_TLS_KEY both or
// neither; a non-loopback SCREENPOP_LISTEN without TLS only with
// SCREENPOP_ALLOW_PLAINTEXT; a listen address is host:port, a port
// included; GENESYS_QUEUES alone names whom to watch (configuration.md).
func TestParseConfig_SettingsThatGoTogether(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	cluster := "nats://nats1.example.com:4222"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // nil: accepted
	}{
		{"NATSClientCertWithoutKey", with(good(), "NATS_URL", cluster, "NATS_TLS_CERT", "/etc/screenpop/nats.crt"), []string{"NATS_TLS_CERT, NATS_TLS_KEY: set both or neither"}},
		{"NATSClientKeyWithoutCert", with(good(), "NATS_URL", cluster, "NATS_TLS_KEY", "/etc/screenpop/nats.key"), []string{"NATS_TLS_CERT, NATS_TLS_KEY: set both or neither"}},
		{"NATSClientCertAndKey", with(good(), "NATS_URL", cluster, "NATS_TLS_CERT", "/etc/screenpop/nats.crt", "NATS_TLS_KEY", "/etc/screenpop/nats.key"), nil},
		{"PlaintextBehindAProxy", with(good(), "SCREENPOP_LISTEN", "0.0.0.0:8443", "SCREENPOP_ALLOW_PLAINTEXT", "true"), nil},
		{"PlaintextNotAllowed", with(good(), "SCREENPOP_LISTEN", "0.0.0.0:8443"), []string{"SCREENPOP_LISTEN: 0.0.0.0:8443 is not loopback and has no TLS", "SCREENPOP_ALLOW_PLAINTEXT"}},
		{"ListenWithoutPort", with(good(), "SCREENPOP_LISTEN", "127.0.0.1:"), []string{"SCREENPOP_LISTEN:", "host:port"}},
		{"AdminListenWithoutPort", with(good(), "SCREENPOP_ADMIN_LISTEN", "127.0.0.1:"), []string{"SCREENPOP_ADMIN_LISTEN:", "host:port"}},
		{"QueuesAlone", with(good(), "GENESYS_AGENTS", "", "GENESYS_QUEUES", checkQueue), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig("run", nil, env(tc.env), runReq, io.Discard)
			if tc.want == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// A NATS_ variable that is no setting is named with the nearest one, as a
// SCREENPOP_, GENESYS_ or DATAVERSE_ one is (configuration.md): NATS_CRED
// set, the credentials are silently not used.
func TestUnknownVariables_NATSPrefix(t *testing.T) {
	got := UnknownVariables([]string{"NATS_CRED=/etc/screenpop/nats.creds"})
	if len(got) != 1 || !strings.Contains(got[0], "NATS_CRED is not a setting") || !strings.Contains(got[0], "did you mean NATS_CREDS?") {
		t.Errorf("got %q, want NATS_CRED named with NATS_CREDS", got)
	}
}

// An inline comment after a tab is kept in the value by systemd as one
// after a space is (configuration.md, "The env file"), and refused alike.
func TestParseConfig_InlineCommentAfterATab(t *testing.T) {
	_, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_JWT_AUDIENCE", "screenpop\t# our login's aud")), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SCREENPOP_JWT_AUDIENCE: the value ends in an inline comment") {
		t.Errorf("got %v, want SCREENPOP_JWT_AUDIENCE refused for its inline comment", err)
	}
}

// A warn line is not a failure (operations.md, section 2): a Dataverse
// certificate that expires within 14 days is warned of with a fix line,
// and check still exits 0 with "all checks passed".
func TestCheck_WarnIsNotAFailure(t *testing.T) {
	r := newCheckRig(t)
	cert := mustCert(t, dataversetest.CertificateOptions{NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)})
	d := dataversetest.New(dataversetest.Config{ClientCertificates: []*x509.Certificate{cert.Cert}})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := cert.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	dc := d.Config()
	delete(r.vars, "DATAVERSE_CLIENT_SECRET")
	for k, v := range map[string]string{
		"DATAVERSE_URL": d.URL(), "DATAVERSE_TOKEN_URL": d.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_CERTIFICATE": file,
	} {
		r.vars[k] = v
	}
	code, out := r.check(t)
	if code != 0 {
		t.Errorf("exit %d, want 0: a warning does not fail the check", code)
	}
	_, fix := line(t, out, "warn dataverse certificate:")
	wantLine(t, out, "warn dataverse certificate:", cert.Thumbprint(), "expires on", "(10 days)")
	if fix == "" {
		t.Errorf("the warn line has no fix line:\n%s", out)
	}
	wantLine(t, out, "ok   dataverse token:")
	if !strings.Contains(out, "\nall checks passed\n") {
		t.Errorf("no \"all checks passed\":\n%s", out)
	}
}

// One instance watches at most 10,000 agents: check warns of more
// (operations.md, "warn genesys agents"), not of exactly that many, and
// the warning is not a failure.
func TestCheck_WarnsOfMoreAgentsThanOneInstanceWatches(t *testing.T) {
	most := (notifications.Config{}).AgentCapacity()
	for _, n := range []int{most, most + 1} {
		r := newCheckRig(t)
		ids := []string{r.agent}
		for i := 1; i < n; i++ {
			ids = append(ids, fmt.Sprintf("5e1f0a1c-0000-4000-8000-%012x", 0x100000+i))
		}
		r.vars["GENESYS_AGENTS"] = strings.Join(ids, ",")
		code, out := r.check(t)
		if code != 0 {
			t.Errorf("%d agents: exit %d, want 0: a warning does not fail the check", n, code)
		}
		wantLine(t, out, "ok   config:", fmt.Sprintf("(%d agents,", n))
		warned := strings.Contains(out, "\nwarn genesys agents:")
		if want := n > most; warned != want {
			t.Errorf("%d agents (at most %d watched): warn genesys agents printed %v, want %v", n, most, warned, want)
		}
		if n > most {
			wantLine(t, out, "warn genesys agents:", fmt.Sprintf("%d agents to watch", n), "1 would get no pops", "fix: split the agents over instances")
		}
	}
}

// An agents file that names no one (a comment line only) is refused only
// when it is the only source of agents: next to GENESYS_QUEUES (or
// GENESYS_AGENTS) it is a valid start (configuration.md).
func TestParseConfig_AgentsFileNamingNoOneNextToQueues(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	file := filepath.Join(t.TempDir(), "agents.txt")
	if err := os.WriteFile(file, []byte("# none for now\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", "", "GENESYS_AGENTS_FILE", file, "GENESYS_QUEUES", checkQueue)), runReq, io.Discard); err != nil {
		t.Errorf("an agents file naming no one next to GENESYS_QUEUES refused: %v", err)
	}
	if _, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS_FILE", file)), runReq, io.Discard); err != nil {
		t.Errorf("an agents file naming no one next to GENESYS_AGENTS refused: %v", err)
	}
	_, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", "", "GENESYS_AGENTS_FILE", file)), runReq, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GENESYS_AGENTS_FILE:") || !strings.Contains(err.Error(), "names no agent") {
		t.Errorf("an agents file naming no one, alone: got %v, want it refused naming GENESYS_AGENTS_FILE", err)
	}
}

// SCREENPOP_CREATE_ENTITY is contact, account, lead or an entity of
// SCREENPOP_ENTITIES (configuration.md, "Lookups"): another is refused at
// start, naming the variable, rather than offering a create form of a
// table the daemon knows nothing of on every unknown caller's pop.
func TestParseConfig_CreateEntityMustBeKnown(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	_, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_CREATE_ENTITY", "incident")), runReq, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `SCREENPOP_CREATE_ENTITY: entity "incident" is not known`) || !strings.Contains(err.Error(), "SCREENPOP_ENTITIES") {
		t.Errorf("got %v, want SCREENPOP_CREATE_ENTITY=incident refused with SCREENPOP_ENTITIES as the fix", err)
	}
	for _, v := range map[string]map[string]string{
		"lead":     with(good(), "SCREENPOP_CREATE_ENTITY", "lead"),
		"incident": with(good(), "SCREENPOP_CREATE_ENTITY", "incident", "SCREENPOP_ENTITIES", "incident=incidents/incidentid/title"),
	} {
		if _, _, err := ParseConfig("run", nil, env(v), runReq, io.Discard); err != nil {
			t.Errorf("SCREENPOP_CREATE_ENTITY=%s refused: %v", v["SCREENPOP_CREATE_ENTITY"], err)
		}
	}
}

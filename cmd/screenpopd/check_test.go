package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/certtest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// checkRig is both emulators and an environment pointing `screenpopd
// check` at them.
// Genesys queue ids are UUIDs; the configuration refuses anything else.
const (
	checkQueue   = "9b0c6f1e-0000-4000-8000-00000000c0de"
	unknownQueue = "9b0c6f1e-0000-4000-8000-0000000000ff"
)

type checkRig struct {
	genesys   *notificationstest.Emulator
	dataverse *dataversetest.Server
	agent     string
	vars      map[string]string
}

func newCheckRig(t *testing.T) *checkRig {
	t.Helper()
	agent := checkAgent
	g := notificationstest.New(notificationstest.Config{Agents: demoAgents[:2], Queues: map[string][]string{checkQueue: {demoAgents[1].ID}}})
	if _, err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	d := dataversetest.New(dataversetest.Config{})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	gc, dc := g.Config(), d.Config()
	vars := testEnv(t)
	for k, v := range map[string]string{
		"GENESYS_API_URL": g.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret,
		"GENESYS_AGENTS": agent, "GENESYS_QUEUES": checkQueue,
		"DATAVERSE_URL": d.URL(), "DATAVERSE_TOKEN_URL": d.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
	} {
		vars[k] = v
	}
	return &checkRig{genesys: g, dataverse: d, agent: agent, vars: vars}
}

// check runs `screenpopd check` and returns its exit code and stdout.
func (r *checkRig) check(t *testing.T) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check"}, env(r.vars), &out, &errb)
	t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
	for _, secret := range []string{r.vars["GENESYS_CLIENT_SECRET"], r.vars["DATAVERSE_CLIENT_SECRET"]} {
		if secret != "" && strings.Contains(out.String()+errb.String(), secret) {
			t.Errorf("check output contains a client secret")
		}
	}
	return code, out.String()
}

// line returns the output line that starts with prefix (status and name)
// and the fix line after it, failing the test if there is none.
func line(t *testing.T, out, prefix string) (string, string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			fix := ""
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "     fix: ") {
				fix = lines[i+1]
			}
			return l, fix
		}
	}
	t.Fatalf("no line starting %q in:\n%s", prefix, out)
	return "", ""
}

func wantLine(t *testing.T, out, prefix string, contains ...string) string {
	t.Helper()
	l, fix := line(t, out, prefix)
	for _, c := range contains {
		if !strings.Contains(l+"\n"+fix, c) {
			t.Errorf("line %q (fix %q) lacks %q", l, fix, c)
		}
	}
	if strings.HasPrefix(prefix, "FAIL") && fix == "" {
		t.Errorf("FAIL line %q has no fix line", l)
	}
	return l
}

func TestCheck_WarnsOfAMisspelledVariable(t *testing.T) {
	environ = func() []string { return []string{"SCREENPOP_ALLOWED_ORIGIN=https://contoso.crm4.dynamics.com"} }
	defer func() { environ = func() []string { return nil } }()
	r := newCheckRig(t)
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0: a warning does not fail the check", code)
	}
	wantLine(t, out, "warn config:", "SCREENPOP_ALLOWED_ORIGIN is not a setting", "did you mean SCREENPOP_ALLOWED_ORIGINS?")
}

// An even replica count is valid to NATS but stops storing at as many
// lost nodes as one replica fewer: told, not refused (a cluster running
// one keeps starting).
func TestCheck_WarnsOfAnEvenReplicaCount(t *testing.T) {
	for _, n := range []string{"2", "4"} {
		t.Run("R"+n, func(t *testing.T) {
			r := newCheckRig(t)
			r.vars["NATS_URL"] = "nats://" + closedPort(t)
			r.vars["SCREENPOP_STREAM_REPLICAS"] = n
			_, out := r.check(t)
			wantLine(t, out, "warn config:", "SCREENPOP_STREAM_REPLICAS: "+n+" is an even count", "majority")
		})
	}
	r := newCheckRig(t)
	r.vars["NATS_URL"] = "nats://" + closedPort(t)
	r.vars["SCREENPOP_STREAM_REPLICAS"] = "3"
	if _, out := r.check(t); strings.Contains(out, "SCREENPOP_STREAM_REPLICAS") {
		t.Errorf("three replicas told:\n%s", out)
	}
}

// A misspelled variable is often why a required one is missing: the hint
// comes with the configuration's failure too.
func TestCheck_WarnsOfAMisspelledVariableWhenTheConfigFails(t *testing.T) {
	environ = func() []string { return []string{"DATAVERSE_URI=https://contoso.crm4.dynamics.com"} }
	defer func() { environ = func() []string { return nil } }()
	r := newCheckRig(t)
	r.vars["DATAVERSE_URL"] = ""
	code, out := r.check(t)
	if code != 2 {
		t.Fatalf("exit %d, want 2 (configuration)", code)
	}
	wantLine(t, out, "FAIL config: DATAVERSE_URL: required")
	wantLine(t, out, "warn config:", "DATAVERSE_URI is not a setting", "did you mean DATAVERSE_URL?")
}

func TestCheck_AllOK(t *testing.T) {
	r := newCheckRig(t)
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "ok   ") && l != "all checks passed" {
			t.Errorf("not ok: %q", l)
		}
	}
	wantLine(t, out, "ok   config:", "1 agents, 1 queues")
	wantLine(t, out, "ok   listen agent:", "127.0.0.1:0 is free")
	wantLine(t, out, "ok   tls agent listener:", "loopback")
	wantLine(t, out, "ok   data dir:", "writable")
	wantLine(t, out, "ok   nats embedded:", "scratch store")
	wantLine(t, out, "ok   nats jetstream:")
	wantLine(t, out, "ok   nats stream SCREENPOP:", "captures screenpop.>")
	wantLine(t, out, "ok   nats publish:", "screenpop.check.", "deleted again")
	wantLine(t, out, "ok   genesys region:", r.genesys.URL())
	wantLine(t, out, "ok   genesys login:", "screenpop-client", "Emulated Org")
	wantLine(t, out, "ok   genesys channel:", "websocket opened")
	wantLine(t, out, "ok   genesys subscribe:", "v2.users."+r.agent+".presence", "removed again")
	wantLine(t, out, "ok   genesys permissions:", "v2.users.{id}.conversations requires conversation:communication:view")
	wantLine(t, out, "ok   genesys queue "+checkQueue+":", "1 members")
	wantLine(t, out, "ok   genesys reconciliation:", r.agent)
	wantLine(t, out, "ok   dataverse token:", "application user 00000000-0000-0000-0000-0000000000c2")
	wantLine(t, out, "ok   dataverse contact:", "contactid, fullname, telephone1, mobilephone, telephone2, emailaddress1, emailaddress2 from contacts")
	wantLine(t, out, "ok   dataverse account:", "from accounts")
	wantLine(t, out, "ok   dataverse lead:", "from leads")

	// The check left the Genesys channel without topics and connected
	// no socket: nothing a running daemon could lose. The emulator sees the
	// check's socket close on its own goroutine, maybe after check returned.
	waitFor(t, 5*time.Second, "the check's socket closed at the emulator", func() bool {
		chs := r.genesys.Channels()
		return len(chs) == 1 && !chs[0].Connected
	})
	chs := r.genesys.Channels()
	if len(chs) != 1 || chs[0].Topics != 0 || chs[0].Connected {
		t.Errorf("channels after check: %+v, want one, empty, unconnected", chs)
	}
	if n := r.genesys.CountRequests("DELETE", "/api/v2/notifications/channels/"); n != 1 {
		t.Errorf("%d DELETE subscriptions, want 1", n)
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCheck_Failures(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, r *checkRig)
		prefix string   // the failing line
		want   []string // in the line or its fix
		skips  []string // lines that must be skipped
	}{
		{"GenesysBadSecret", func(t *testing.T, r *checkRig) { r.vars["GENESYS_CLIENT_SECRET"] = "wrong-secret" },
			"FAIL genesys login:", []string{"HTTP 401 invalid_client", "GENESYS_CLIENT_SECRET"}, []string{"skip genesys channel:", "skip genesys subscribe:", "skip genesys reconciliation:"}},
		{"GenesysUnreachable", func(t *testing.T, r *checkRig) { r.vars["GENESYS_API_URL"] = "http://" + closedPort(t) },
			"FAIL genesys login:", []string{"cannot reach", "connection refused", "GENESYS_REGION"}, []string{"skip genesys channel:"}},
		{"GenesysTopicRejected", func(t *testing.T, r *checkRig) { r.genesys.RejectTopicsFor(r.agent, "") },
			"FAIL genesys subscribe:", []string{"genesys rejected v2.users." + checkAgent + ".presence: notification.unauthorized.topic", "division of user " + checkAgent}, nil},
		{"GenesysTopicsAPIDenied", func(t *testing.T, r *checkRig) {
			r.genesys.FailNext("GET", "/api/v2/notifications/availabletopics", 403, 0, 1)
		}, "FAIL genesys permissions:", []string{"available topics: HTTP 403"}, nil},
		{"GenesysChannelDenied", func(t *testing.T, r *checkRig) {
			r.genesys.FailNext("POST", "/api/v2/notifications/channels", 403, 0, 1)
		}, "FAIL genesys channel:", []string{"create channel: HTTP 403"}, []string{"skip genesys subscribe:"}},
		{"GenesysQueueDenied", func(t *testing.T, r *checkRig) {
			r.genesys.FailNext("GET", "/api/v2/routing/queues/", 403, 0, 1)
		}, "FAIL genesys queue " + checkQueue + ":", []string{"HTTP 403", "routing:queue:view"}, nil},
		{"GenesysQueueUnknown", func(t *testing.T, r *checkRig) { r.vars["GENESYS_QUEUES"] = unknownQueue },
			"FAIL genesys queue " + unknownQueue + ":", []string{"HTTP 404", "GENESYS_QUEUES holds queue ids"}, nil},
		{"GenesysActivityDenied", func(t *testing.T, r *checkRig) {
			r.genesys.FailNext("POST", "/api/v2/analytics/", 403, 0, 1)
		}, "FAIL genesys reconciliation:", []string{"activity query: HTTP 403", "analytics:queueObservation:view"}, nil},
		{"DataverseBadSecret", func(t *testing.T, r *checkRig) { r.vars["DATAVERSE_CLIENT_SECRET"] = "wrong-secret" },
			"FAIL dataverse token:", []string{"DATAVERSE_CLIENT_SECRET", "docs/setup.md"}, []string{"skip dataverse contact:", "skip dataverse account:", "skip dataverse lead:"}},
		{"DataverseTokenUnavailable", func(t *testing.T, r *checkRig) { r.dataverse.FailTokenNext(100, 503) },
			"FAIL dataverse token:", []string{"Entra ID cannot issue a token now", "HTTP 503", "run check again later"}, []string{"skip dataverse contact:"}},
		// The OAuth error temporarily_unavailable is an outage whatever the
		// status it comes with: the fix line must not send the admin to
		// the app registration the hint above it says is fine.
		{"DataverseTokenUnavailable400", func(t *testing.T, r *checkRig) { r.dataverse.FailTokenNext(100, 400) },
			"FAIL dataverse token:", []string{"Entra ID cannot issue a token now", "run check again later"}, []string{"skip dataverse contact:"}},
		{"DataverseNoAppUser", func(t *testing.T, r *checkRig) { r.dataverse.DisableAppUser(true) },
			"FAIL dataverse token:", []string{"no enabled application user"}, []string{"skip dataverse contact:"}},
		{"DataverseMissingColumn", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_LOOKUP_PHONE"] = "contact:telephone1,mobilefone;account:telephone1"
		}, "FAIL dataverse contact:", []string{"column mobilefone does not exist on contact", "SCREENPOP_LOOKUP_PHONE"}, nil},
		{"DataverseDeniedRead", func(t *testing.T, r *checkRig) { r.dataverse.DenyRead("accounts", true) },
			"FAIL dataverse account:", []string{"missing a read privilege on account", "security role"}, nil},
		{"DataverseUnknownEntitySet", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_ENTITIES"] = "new_caller=new_callerz/new_callerid/new_name"
			r.vars["SCREENPOP_LOOKUP_EMAIL"] = "new_caller:new_email"
		}, "FAIL dataverse new_caller:", []string{"HTTP 404", "entity set"}, nil},
		{"NATSUnreachable", func(t *testing.T, r *checkRig) { r.vars["NATS_URL"] = "nats://" + closedPort(t) },
			"FAIL nats connect:", []string{"no servers available", ": connection refused)", "NATS_URL"}, []string{"skip nats jetstream:", "skip nats stream SCREENPOP:", "skip nats publish:"}},
		{"TLSMissingFile", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_TLS_CERT"] = filepath.Join(t.TempDir(), "nope.pem")
			r.vars["SCREENPOP_TLS_KEY"] = filepath.Join(t.TempDir(), "nope.key")
		}, "FAIL tls agent listener:", []string{"no such file", "SCREENPOP_TLS_CERT"}, nil},
		{"TLSKeyMismatch", func(t *testing.T, r *checkRig) {
			cert, _ := writeCert(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
			_, otherKey := writeCert(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
			r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = cert, otherKey
		}, "FAIL tls agent listener:", []string{"private key does not match public key"}, nil},
		{"TLSExpired", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = writeCert(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		}, "FAIL tls agent listener:", []string{"certificate for screenpop.example.com, 127.0.0.1 expired on", "renew"}, nil},
		{"TLSNoSAN", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = writeCertFor(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), nil, nil)
		}, "FAIL tls agent listener:", []string{`certificate "screenpop.example.com" has no subject alternative names`, "SAN"}, nil},
		{"NATSAuthRejected", func(t *testing.T, r *checkRig) {
			ns := startNATSWith(t, &server.Options{Username: "screenpop", Password: "right-pass", JetStream: true})
			r.vars["NATS_URL"] = "nats://screenpop:wrong-pass@" + ns.Addr().String()
		}, "FAIL nats connect:", []string{"Authorization Violation", "TCP reachable", "nats://***@"}, []string{"skip nats jetstream:"}},
		{"ListenerInUse", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_LISTEN"] = heldPort(t)
		}, "FAIL listen agent:", []string{"address already in use", "SCREENPOP_LISTEN"}, nil},
		{"ListenerInUseAdminOff", func(t *testing.T, r *checkRig) {
			r.vars["SCREENPOP_LISTEN"] = heldPort(t)
			r.vars["SCREENPOP_ADMIN_LISTEN"] = "off"
		}, "FAIL listen agent:", []string{"address already in use", "with SCREENPOP_ADMIN_LISTEN off, check cannot ask"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newCheckRig(t)
			tc.setup(t, r)
			code, out := r.check(t)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			wantLine(t, out, tc.prefix, tc.want...)
			for _, s := range tc.skips {
				line(t, out, s)
			}
			if strings.Contains(out, "wrong-pass") {
				t.Errorf("check printed a NATS password")
			}
			if fails := strings.Count(out, "\nFAIL "); fails != 1 {
				t.Errorf("%d FAIL lines, want exactly the injected one", fails)
			}
			if !strings.Contains(out, "ok   config:") {
				t.Errorf("no config line")
			}
			for _, ch := range r.genesys.Channels() {
				if ch.Topics != 0 {
					t.Errorf("check left %d topics on channel %s", ch.Topics, ch.ID)
				}
			}
		})
	}
}

// checkAgent is the rig's probe agent (GENESYS_AGENTS).
var checkAgent = demoAgents[0].ID

func TestCheck_InvalidConfig(t *testing.T) {
	r := newCheckRig(t)
	r.vars["DATAVERSE_URL"] = ""
	r.vars["SCREENPOP_POP_DEADLINE"] = "2"
	code, out := r.check(t)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	wantLine(t, out, "FAIL config: DATAVERSE_URL: required", "fix: set the environment URL")
	wantLine(t, out, "FAIL config: SCREENPOP_POP_DEADLINE:", "not a positive Go duration", "docs/configuration.md")
	if strings.Contains(out, "genesys") {
		t.Errorf("probed despite an invalid configuration:\n%s", out)
	}
}

// A wrong GENESYS_REGION or a DATAVERSE_URL with a path (a pasted browser
// address) is a configuration error, exit 2, before anything is probed:
// the clients would refuse them only after NATS had started.
func TestCheck_InvalidRegionAndDataverseURL(t *testing.T) {
	r := newCheckRig(t)
	r.vars["GENESYS_API_URL"] = ""
	r.vars["GENESYS_REGION"] = "mypurecloud.example"
	r.vars["DATAVERSE_URL"] = r.dataverse.URL() + "/main.aspx"
	code, out := r.check(t)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	wantLine(t, out, "FAIL config: GENESYS_REGION:", `"mypurecloud.example" is not a Genesys Cloud region domain`, "mypurecloud.ie", "fix: set the domain of the address the org logs in at")
	wantLine(t, out, "FAIL config: DATAVERSE_URL:", "/main.aspx", "without a path", "fix: set it to the environment's root URL, scheme and host only: "+r.dataverse.URL())
	if strings.Contains(out, "genesys login") || strings.Contains(out, "nats") || strings.Contains(out, "dataverse token") {
		t.Errorf("probed despite an invalid configuration:\n%s", out)
	}
	if n := len(r.genesys.Channels()); n != 0 {
		t.Errorf("%d Genesys channels created despite an invalid configuration", n)
	}
}

// TestCheck_DataDir: run creates SCREENPOP_DATA_DIR and reads or writes
// pii-hash.key there whatever NATS it uses, so check looks at both with
// external NATS as well as embedded.
func TestCheck_DataDir(t *testing.T) {
	ns := startNATS(t, true)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns SCREENPOP_DATA_DIR
		code  int
		line  string
		want  []string
	}{
		{"KeyPresent", func(t *testing.T, dir string) string {
			if err := os.WriteFile(filepath.Join(dir, "pii-hash.key"), bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, 0, "ok   data dir:", []string{"is writable", "pii-hash.key is readable (32 bytes)"}},
		{"KeyTooShort", func(t *testing.T, dir string) string {
			if err := os.WriteFile(filepath.Join(dir, "pii-hash.key"), []byte("short"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, 1, "FAIL data dir:", []string{"shorter than 16 bytes", "delete it to have a new one made"}},
		{"KeyUnreadable", func(t *testing.T, dir string) string {
			// A directory in its place cannot be read, even by root.
			if err := os.Mkdir(filepath.Join(dir, "pii-hash.key"), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, 1, "FAIL data dir:", []string{"read pii hash key", "is a directory", "readable file of the service user"}},
		{"NotADirectory", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(f, "data")
		}, 1, "FAIL data dir:", []string{"not a directory", "SCREENPOP_DATA_DIR must be a directory", "PII hash key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newCheckRig(t)
			r.vars["NATS_URL"] = ns.ClientURL()
			r.vars["SCREENPOP_DATA_DIR"] = tc.setup(t, t.TempDir())
			code, out := r.check(t)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			wantLine(t, out, tc.line, tc.want...)
			if fails := strings.Count(out, "FAIL "); fails != tc.code {
				t.Errorf("%d FAIL lines, want %d", fails, tc.code)
			}
		})
	}
	t.Run("KeyUsableByRun", func(t *testing.T) {
		// What check accepts, the daemon's loadHasher accepts, and the
		// reverse for the short key.
		dir := t.TempDir()
		path := filepath.Join(dir, "pii-hash.key")
		if _, made, err := loadHasher(path); err != nil || !made {
			t.Fatalf("first start: made %v, %v", made, err)
		}
		if b, err := os.ReadFile(path); err != nil || len(b) != 32 {
			t.Fatalf("key made at first start: %d bytes, %v", len(b), err)
		}
		// A later start uses it: no new key, which would change every
		// caller_hash (the start logs one made).
		if _, made, err := loadHasher(path); err != nil || made {
			t.Fatalf("second start: made %v, %v", made, err)
		}
		os.WriteFile(path, []byte("short"), 0o600)
		if _, _, err := loadHasher(path); err == nil || !strings.Contains(err.Error(), "shorter than 16 bytes") {
			t.Fatalf("short key: %v", err)
		}
	})
}

// startNATS starts a standalone nats-server on a free loopback port, as
// an external cluster would be.
func startNATS(t *testing.T, jetStream bool) *server.Server {
	t.Helper()
	return startNATSWith(t, &server.Options{JetStream: jetStream})
}

// startNATSWith serves o on a free port of 127.0.0.1 (or of o.Host, a
// loopback address), with its store in a temporary directory unless o
// names one, until the test ends.
func startNATSWith(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	o.Port, o.NoSigs, o.NoLog = server.RANDOM_PORT, true, true
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// natsUserURL is ns's client URL with the test user screenpop:pw.
func natsUserURL(ns *server.Server) string {
	return fmt.Sprintf("nats://screenpop:pw@127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
}

func TestCheck_ExternalNATS(t *testing.T) {
	ns := startNATS(t, true)
	r := newCheckRig(t)
	r.vars["NATS_URL"] = ns.ClientURL()

	// First run: no stream yet; the check creates it as the daemon would.
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	wantLine(t, out, "ok   nats connect:", ns.ClientURL())
	wantLine(t, out, "ok   nats stream SCREENPOP:", "created")
	if strings.Contains(out, "listen nats") {
		t.Errorf("external NATS: the embedded server's settings were checked:\n%s", out)
	}
	// run makes the data dir and its PII hash key with external NATS too.
	wantLine(t, out, "ok   data dir:", r.vars["SCREENPOP_DATA_DIR"]+" is writable", "pii-hash.key is made at first start")

	// Second run: the stream is there; a subscriber of screenpop.> sees
	// the one check message, and the stream keeps nothing of it.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("screenpop.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.Publish(ctx, "screenpop.events.voice.alerting.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	code, out = r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	wantLine(t, out, "ok   nats stream SCREENPOP:", "present", "1 messages")
	wantLine(t, out, "ok   nats publish:", "deleted again")
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || !strings.HasPrefix(m.Subject, "screenpop.check.") || m.Header.Get("Nats-Msg-Id") == "" {
		t.Fatalf("subscriber got %v %v, want one screenpop.check.* with a Nats-Msg-Id", m, err)
	}
	st, err := js.Stream(ctx, "SCREENPOP")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after the check, want the 1 event", info.State.Msgs)
	}

	t.Run("StreamCapturesOtherSubjects", func(t *testing.T) {
		r.vars["SCREENPOP_STREAM"] = "OTHER"
		defer func() { r.vars["SCREENPOP_STREAM"] = "" }()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
			t.Fatal(err)
		}
		code, out := r.check(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLine(t, out, "FAIL nats stream OTHER:", "captures other.>, not screenpop.>", "SCREENPOP_STREAM")
		line(t, out, "skip nats publish:")
	})

	// Streams that run's update at start would be refused for.
	t.Run("ReplicasWithoutACluster", func(t *testing.T) {
		r.vars["SCREENPOP_STREAM_REPLICAS"] = "3"
		defer func() { r.vars["SCREENPOP_STREAM_REPLICAS"] = "" }()
		code, out := r.check(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLine(t, out, "FAIL nats stream SCREENPOP:", "not in a cluster", "SCREENPOP_STREAM_REPLICAS=1")
	})
	t.Run("StreamInMemory", func(t *testing.T) {
		// Last: it replaces the SCREENPOP stream with one in memory.
		if err := js.DeleteStream(ctx, "SCREENPOP"); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SCREENPOP", Subjects: []string{"screenpop.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		code, out := r.check(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLine(t, out, "FAIL nats stream SCREENPOP:", "memory storage", "nats stream rm SCREENPOP")
	})
}

func TestCheck_NATSWithoutJetStream(t *testing.T) {
	ns := startNATS(t, false)
	r := newCheckRig(t)
	r.vars["NATS_URL"] = ns.ClientURL()
	code, out := r.check(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "ok   nats connect:")
	wantLine(t, out, "FAIL nats jetstream:", "jetstream")
	line(t, out, "skip nats stream SCREENPOP:")
}

func TestCheck_TLSValid(t *testing.T) {
	r := newCheckRig(t)
	r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = writeCert(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	wantLine(t, out, "ok   tls agent listener:", "certificate for screenpop.example.com, 127.0.0.1, valid until", "(89 days)")
}

// writeCert writes a self-signed certificate for screenpop.example.com
// and 127.0.0.1 and its key, returning both paths.
func writeCert(t *testing.T, notBefore, notAfter time.Time) (string, string) {
	t.Helper()
	return writeCertFor(t, notBefore, notAfter, []string{"screenpop.example.com"}, []net.IP{net.ParseIP("127.0.0.1")})
}

func writeCertFor(t *testing.T, notBefore, notAfter time.Time, dnsNames []string, ips []net.IP) (string, string) {
	t.Helper()
	if dnsNames == nil && ips == nil {
		dnsNames = []string{} // not certtest's loopback default: a certificate naming no one
	}
	cert, key, err := certtest.Write(t.TempDir(), certtest.Options{CommonName: "screenpop.example.com", DNSNames: dnsNames, IPs: ips, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestCheck_NextToRunningDaemon runs check with the daemon's own
// configuration while the daemon runs, against a Genesys emulator where a
// topic subscribed on a second channel of the same client is taken from
// the first (the unverified reading of another_channel_subscribed): the
// daemon keeps its topics and still pops, its listeners are recognised as
// its own, and its NATS store is not touched.
func TestCheck_NextToRunningDaemon(t *testing.T) {
	g := notificationstest.New(notificationstest.Config{Agents: demoAgents[:1], ExclusiveTopics: true})
	if _, err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	d := dataversetest.New(dataversetest.Config{})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	contactID := d.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Check", Telephone1: "+1 317 555 0177"})
	gc, dc := g.Config(), d.Config()
	vars := testEnv(t)
	for k, v := range map[string]string{
		"GENESYS_API_URL": g.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret, "GENESYS_AGENTS": checkAgent,
		"DATAVERSE_URL": d.URL(), "DATAVERSE_TOKEN_URL": d.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
	} {
		vars[k] = v
	}
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMain(cfg, zerolog.Nop())
	if err := m.Open(ctx); err != nil {
		cancel()
		m.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, 20*time.Second, "daemon ready", m.Ready)
	storeBefore := m.Bus.Status(ctx)
	var daemonChannel string
	for _, ch := range g.Channels() {
		if ch.Connected {
			daemonChannel = ch.ID
		}
	}
	channelsBefore := g.CountRequests("POST", "/api/v2/notifications/channels")

	// check with the daemon's configuration, its listen addresses included.
	vars["SCREENPOP_LISTEN"] = m.agentLn.Addr().String()
	vars["SCREENPOP_ADMIN_LISTEN"] = m.AdminAddr()
	r := &checkRig{genesys: g, dataverse: d, agent: checkAgent, vars: vars}
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("check next to a running daemon exited %d", code)
	}
	wantLine(t, out, "ok   listen agent:", "in use by the running screenpopd (its /status lists it)")
	wantLine(t, out, "ok   listen admin:", "in use by the running screenpopd (its /status lists it)")
	wantLine(t, out, "ok   genesys subscribe:", "removed again")

	// The daemon's channel still holds its topic and still delivers.
	if n := g.SubscribedConnected(); n != 1 {
		t.Errorf("%d topics subscribed on connected channels after the check, want the daemon's 1", n)
	}
	if after := m.Bus.Status(ctx); after.Messages != storeBefore.Messages || after.LastSeq != storeBefore.LastSeq {
		t.Errorf("the daemon's stream changed during the check: %+v -> %+v", storeBefore, after)
	}
	ws := dialAgent(t, m.AgentURL(), g.AgentToken(checkAgent))
	call := g.InboundCall(checkAgent, "+13175550177", notificationstest.Options{})
	call.Alert()
	p := readPop(t, ws)
	if p.ConversationID != call.ID() || p.Target.Action != "open" || p.Target.ID != contactID {
		t.Fatalf("pop after the check: %+v, want open contact %s for %s", p, contactID, call.ID())
	}
	// No handover happened: the check made the only new channel, and the
	// daemon's channel is still the connected one.
	if n := g.CountRequests("POST", "/api/v2/notifications/channels") - channelsBefore; n != 1 {
		t.Errorf("%d channels created during the check and the call, want 1 (the check's): the daemon lost its topic and handed over", n)
	}
	for _, ch := range g.Channels() {
		if ch.Connected && ch.ID != daemonChannel {
			t.Errorf("connected channel %s, want the daemon's original %s", ch.ID, daemonChannel)
		}
	}

	// An agent port another program holds is no screenpopd's, though one
	// answers on the admin address: run would fail to bind it.
	other := heldPort(t)
	otherVars := maps.Clone(vars)
	otherVars["SCREENPOP_LISTEN"] = other
	code, out = (&checkRig{genesys: g, dataverse: d, agent: checkAgent, vars: otherVars}).check(t)
	if code == 0 {
		t.Errorf("check with its agent port held by another program exited 0")
	}
	wantLine(t, out, "FAIL listen agent:", other+" is in use by another program: the screenpopd running here listens for agent on "+m.agentLn.Addr().String())
	wantLine(t, out, "ok   listen admin:", "in use by the running screenpopd")

	// All addresses asked for on the daemon's port, which it holds on
	// loopback only: whether another program holds it elsewhere cannot be
	// told while the daemon runs, and the line says so (a warning).
	_, port, _ := net.SplitHostPort(m.agentLn.Addr().String())
	wildVars := maps.Clone(vars)
	wildVars["SCREENPOP_LISTEN"] = ":" + port
	wildVars["SCREENPOP_ALLOW_PLAINTEXT"] = "true" // all addresses need TLS, or a proxy in front
	code, out = (&checkRig{genesys: g, dataverse: d, agent: checkAgent, vars: wildVars}).check(t)
	if code != 0 {
		t.Errorf("check asking for all addresses on the daemon's port exited %d, want 0 (a warning)", code)
	}
	wantLine(t, out, "warn listen agent:", "listens for agent on "+m.agentLn.Addr().String()+" only", "ss -ltnp")
}

func TestMarkerTTLText(t *testing.T) {
	if got := markerTTLText(1, 15*time.Minute); got != "" {
		t.Errorf("API level 1 (NATS 2.11): %q, want nothing", got)
	}
	if got := markerTTLText(0, 15*time.Minute); !strings.Contains(got, "older than 2.11") || !strings.Contains(got, "instead of 15 minutes") || !strings.Contains(got, "upgrade NATS") {
		t.Errorf("API level 0: %q, want the warning, the grace it loses and its fix", got)
	}
	// A longer SCREENPOP_MAX_EVENT_AGE makes a longer grace, and the line says so.
	if got := markerTTLText(0, markerGrace(time.Hour)); !strings.Contains(got, "instead of 120 minutes") {
		t.Errorf("API level 0, 1 h max event age: %q, want the 120-minute grace", got)
	}
}

// Against NATS older than 2.11 the nats jetstream line names the server's
// age and its cost; the other NATS checks pass, since the daemon runs there
// (with markers that live 24 h).
func TestCheck_NATSBefore2_11(t *testing.T) {
	url := bustest.MustStartOldServer(t)
	r := newCheckRig(t)
	r.vars["NATS_URL"] = url
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	wantLine(t, out, "ok   nats connect:", "version 2.10.")
	wantLine(t, out, "ok   nats jetstream:", "older than 2.11", "upgrade NATS")
	wantLine(t, out, "ok   nats stream SCREENPOP:", "created")
	wantLine(t, out, "ok   nats publish:", "deleted again")
}

// A listener of the running daemon covers an address when it has that
// port and the same address, or all addresses: then nothing else can hold
// it.
func TestCovers(t *testing.T) {
	for _, c := range []struct {
		held, addr string
		want       bool
	}{
		{"127.0.0.1:8443", "127.0.0.1:8443", true},
		{"0.0.0.0:8443", "127.0.0.1:8443", true},
		{"[::]:8443", "127.0.0.1:8443", true},
		{":8443", "127.0.0.1:8443", true},
		{"[::1]:9090", "[::1]:9090", true},
		// All addresses asked for, one held: another program may hold
		// the port on another (a warning, not an ok).
		{"127.0.0.1:8443", "0.0.0.0:8443", false},
		{"127.0.0.1:8443", ":8443", false},
		{"127.0.0.1:8443", "127.0.0.1:8444", false},
		{"127.0.0.1:8443", "127.0.0.2:8443", false},
		{"", "127.0.0.1:8443", false},
	} {
		if got := covers(c.held, c.addr); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.held, c.addr, got, c.want)
		}
	}
}

// heldPort is a loopback address another program (this test) listens on
// until the test ends.
func heldPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

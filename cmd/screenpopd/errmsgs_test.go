package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheck_GenesysOutageIsNotBlamedOnTheConfiguration: when Genesys Cloud
// answers 503 (an outage, status.mypurecloud.com), the login line already
// says "unavailable; try again later". The later steps must too: a fix
// that has the admin change the OAuth client's role, GENESYS_AGENTS or
// GENESYS_QUEUES for a 503 sends them to change a configuration that is
// right.
func TestCheck_GenesysOutageIsNotBlamedOnTheConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, prefix string
	}{
		{"Channel", "POST", "/api/v2/notifications/channels", "FAIL genesys channel:"},
		{"Subscribe", "PUT", "/api/v2/notifications/channels/", "FAIL genesys subscribe:"},
		{"Permissions", "GET", "/api/v2/notifications/availabletopics", "FAIL genesys permissions:"},
		{"Queue", "GET", "/api/v2/routing/queues/", "FAIL genesys queue " + checkQueue + ":"},
		{"Reconciliation", "POST", "/api/v2/analytics/", "FAIL genesys reconciliation:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCheckRig(t)
			r.genesys.FailNext(tc.method, tc.path, 503, 0, 100)
			_, out := r.check(t)
			l, fix := line(t, out, tc.prefix)
			if !strings.Contains(l, "HTTP 503") {
				t.Errorf("line %q does not show the 503", l)
			}
			if !strings.Contains(fix, "try again later") {
				t.Errorf("a Genesys 503 gets the fix %q, which does not say Genesys is unavailable and to try again later", fix)
			}
			for _, wrong := range []string{"role", "GENESYS_QUEUES", "GENESYS_AGENTS", "scope"} {
				if strings.Contains(fix, wrong) {
					t.Errorf("a Genesys 503 is blamed on the configuration (%s): %q", wrong, fix)
				}
			}
		})
	}
}

// TestCheck_DataverseOutageIsNotBlamedOnTheNetwork: Dataverse (or the
// gateway in front of it) answering 5xx was reached: the fix must not send
// the admin to DATAVERSE_URL and the host's network, and the line must not
// repeat the operation ("whoami after 2 attempts: whoami: ...").
func TestCheck_DataverseOutageIsNotBlamedOnTheNetwork(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  func(r *checkRig)
		prefix string
		op     string
	}{
		{"WhoAmI503", func(r *checkRig) { r.dataverse.FailNext(100, 503) }, "FAIL dataverse token:", "whoami"},
		{"Gateway502", func(r *checkRig) { r.dataverse.FailNextHTML(100, 502) }, "FAIL dataverse token:", "whoami"},
		{"Entity500", func(r *checkRig) { r.dataverse.FailNextIn("contacts", 100, 500) }, "FAIL dataverse contact:", "check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCheckRig(t)
			tc.fault(r)
			_, out := r.check(t)
			l, fix := line(t, out, tc.prefix)
			if strings.Contains(fix, "reaches it") || strings.Contains(fix, "check DATAVERSE_URL") {
				t.Errorf("Dataverse answered %q, but the fix blames the URL or the network: %q", l, fix)
			}
			if !strings.Contains(fix, "again later") {
				t.Errorf("fix %q does not say Dataverse is unavailable and to run check again later", fix)
			}
			if n := strings.Count(l, tc.op+" "); n+strings.Count(l, tc.op+":") > 1 {
				t.Errorf("the line repeats %q: %q", tc.op, l)
			}
		})
	}
}

// TestRun_EmbeddedStoreThatIsNotADirectory: the built-in NATS keeps its
// store in SCREENPOP_DATA_DIR/jetstream. When that cannot be used (here a
// file of that name: a restore or copy gone wrong), run must say which
// path is wrong, not "set SCREENPOP_NATS_LISTEN to a free address" (the
// listener is fine) and "check that SCREENPOP_DATA_DIR is writable" (it
// is). And check, which is there to catch what run would fail on, must not
// say "all checks passed".
func TestRun_EmbeddedStoreThatIsNotADirectory(t *testing.T) {
	r := newCheckRig(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "jetstream")
	if err := os.WriteFile(store, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.vars["SCREENPOP_DATA_DIR"] = dir

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"run"}, env(r.vars), &out, &errb)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	last := lines[len(lines)-1]
	t.Logf("run exit %d: %s", code, last)
	if code != 1 {
		t.Errorf("run exit %d, want 1", code)
	}
	if !strings.Contains(last, store) {
		t.Errorf("run's last line does not name the store directory %s: %q", store, last)
	}
	if strings.Contains(last, "SCREENPOP_NATS_LISTEN") {
		t.Errorf("run's last line blames the NATS listener for the store: %q", last)
	}

	ccode, cout := r.check(t)
	if ccode == 0 {
		t.Errorf("check passed where run fails on the store directory")
	}
	wantLine(t, cout, "FAIL data dir:", store)
}

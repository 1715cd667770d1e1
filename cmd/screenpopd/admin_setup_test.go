package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/screenpop/screenpop/push"
)

// What an admin setting screenpop up from the docs sees when a setting is
// wrong: one problem per mistake, each with what to do, no secret echoed.

// A value that is set but malformed is reported as malformed, with the
// fix, and not also as "required" (it is set: the admin would look for a
// missing line that is there).
func TestParseConfig_SetButMalformedIsNotRequired(t *testing.T) {
	cases := []struct {
		env, value string
		want       string // in the problem about it
		never      string // a secret that must not be echoed
	}{
		{"DATAVERSE_URL", "contoso.crm4.dynamics.com", "https://contoso.crm4.dynamics.com", ""},
		{"DATAVERSE_URL", "https://app:DV-PASS@contoso.crm4.dynamics.com", "must not carry credentials", "DV-PASS"},
		{"DATAVERSE_URL", "app:DV-PASS@contoso.crm4.dynamics.com", "https://", "DV-PASS"},
		{"GENESYS_API_URL", "api.mypurecloud.ie", "https://api.mypurecloud.ie", ""},
		{"DATAVERSE_TOKEN_URL", "login.example.invalid/token", "https://login.example.invalid/token", ""},
	}
	for _, tc := range cases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			vars := good()
			vars[tc.env] = tc.value
			if tc.env == "GENESYS_API_URL" {
				delete(vars, "GENESYS_REGION")
			}
			if tc.env == "DATAVERSE_TOKEN_URL" {
				delete(vars, "DATAVERSE_TENANT_ID")
			}
			_, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err %v, want a ConfigError", err)
			}
			found := false
			for _, p := range ce.Problems {
				if strings.Contains(p, ": required") {
					t.Errorf("problem %q: a variable that is set is reported as missing", p)
				}
				if strings.HasPrefix(p, tc.env+":") && strings.Contains(p, tc.want) {
					found = true
				}
				if tc.never != "" && strings.Contains(p, tc.never) {
					t.Errorf("problem %q echoes a secret", p)
				}
			}
			if !found {
				t.Errorf("no %s problem with %q in:\n  %s", tc.env, tc.want, strings.Join(ce.Problems, "\n  "))
			}
		})
	}
}

// A NATS password with a character that is special in a URL (base64 has
// '/') makes NATS_URL unparseable: the problem says to percent-encode it,
// never quotes the password, and the encoded URL then works.
func TestCheck_NATSPasswordNeedsPercentEncoding(t *testing.T) {
	const pass = "ab/cd+ef=="
	vars := with(good(), "NATS_URL", "tls://screenpop:"+pass+"@nats1.example.internal:4222")
	_, _, err := ParseConfig("check", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "percent-encode") || !strings.Contains(err.Error(), "%2F") {
		t.Errorf("err %v, want one telling to percent-encode the password (/ as %%2F)", err)
	}
	if err != nil && strings.Contains(err.Error(), "ab/cd") {
		t.Errorf("err %v echoes the password", err)
	}

	// The fix works: nats.go decodes the encoded password.
	ns := startNATSWith(t, &server.Options{JetStream: true, Username: "screenpop", Password: pass})
	r := newCheckRig(t)
	port := ns.Addr().(*net.TCPAddr).Port
	r.vars["NATS_URL"] = fmt.Sprintf("nats://screenpop:ab%%2Fcd+ef==@127.0.0.1:%d", port)
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0 with the percent-encoded password", code)
	}
	wantLine(t, out, "ok   nats connect:")
}

// The unit and the image run screenpopd without CAP_NET_BIND_SERVICE, so a
// port below net.ipv4.ip_unprivileged_port_start cannot be bound by the
// service; `check`, run as root as the docs say (the env file is root's),
// can bind it and said ok. docs/setup.md promises a FAIL.
func TestCheck_PrivilegedPortAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: an unprivileged check fails the bind itself")
	}
	start := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		start, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if start <= 1 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %d: every port is unprivileged here", start)
	}
	port := 0
	for p := min(start, 1024) - 1; p > 0; p-- {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			ln.Close()
			port = p
			break
		}
	}
	if port == 0 {
		t.Skip("no free privileged port on 127.0.0.1")
	}
	r := newCheckRig(t)
	r.vars["SCREENPOP_LISTEN"] = "127.0.0.1:" + strconv.Itoa(port)
	code, out := r.check(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "FAIL listen agent:", strconv.Itoa(port), "below", "CAP_NET_BIND_SERVICE", "8443")
}

// The env file names the TLS files in systemd's credentials directory,
// which exists only while the service runs. `screenpopd check` (README,
// configuration.md) or `screenpopd run` by hand then fail to open them:
// the fix must say so, and what to run instead.
func TestCheck_TLSInCredentialsDirectory(t *testing.T) {
	const dir = "/run/credentials/screenpopd.service/"
	if _, err := os.Stat(dir); err == nil {
		t.Skip(dir + " exists here")
	}
	r := newCheckRig(t)
	r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = dir+"tls.crt", dir+"tls.key"
	code, out := r.check(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "FAIL tls agent listener:", "only while the service runs", "SCREENPOP_TLS_CERT=/etc/screenpop/tls.crt SCREENPOP_TLS_KEY=/etc/screenpop/tls.key screenpopd check")

	vars := testEnv(t)
	for k, v := range good() {
		vars[k] = v
	}
	vars["SCREENPOP_TLS_CERT"], vars["SCREENPOP_TLS_KEY"] = dir+"tls.crt", dir+"tls.key"
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"run"}, env(vars), io.Discard, &stderr); code == 0 {
		t.Fatalf("run exit 0 without its certificate")
	}
	if !strings.Contains(stderr.String(), "only while the service runs") {
		t.Errorf("run says %q: nothing on why the file is missing or what to do", stderr.String())
	}
}

// `check` prints each configuration problem as a FAIL config line with its
// fix; it printed the whole list a second time on stderr.
func TestCheck_ConfigProblemsOnce(t *testing.T) {
	vars := with(testEnv(t), "DATAVERSE_URL", "", "SCREENPOP_POP_DEADLINE", "2")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check"}, env(vars), &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, p := range []string{"DATAVERSE_URL: required", `SCREENPOP_POP_DEADLINE: "2"`} {
		if n := strings.Count(out.String()+errb.String(), p); n != 1 {
			t.Errorf("%q printed %d times, want once:\n%s%s", p, n, out.String(), errb.String())
		}
	}
	if !strings.Contains(errb.String(), "invalid configuration") {
		t.Errorf("stderr %q: want the one-line summary", errb.String())
	}
}

// `screenpopd token --agent` with a login name said "--agent: required"
// (it was given), and a word without a dot minted a token for an agent
// that can never get a pop.
func TestTokenCommand_AgentMustBeAUserID(t *testing.T) {
	secret := strings.Repeat("k", 48)
	for _, agent := range []string{"jane.doe", "janedoe"} {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"token", "--agent", agent, "--jwt-secret", secret}, env(nil), &out, &errb)
		if code != 2 {
			t.Errorf("token --agent %s: exit %d, want 2 (stdout %q)", agent, code, out.String())
		}
		if !strings.Contains(errb.String(), strconv.Quote(agent)+" is not a Genesys user id") {
			t.Errorf("token --agent %s: %q, want it named as not a user id", agent, errb.String())
		}
	}
}

// A jwt secret from a file (a Kubernetes secret made --from-file of
// `echo … >`) ends in a newline. The daemon checks tokens with it trimmed;
// `screenpopd token` with the same environment, or the same --jwt-secret,
// signed with the newline, and every token it made was refused (4401).
// Both read it the same way now, and the admin is told the whitespace is
// dropped (a login of their own may sign with it).
func TestTokenCommand_SignsWithTheSecretAsTheDaemonReadsIt(t *testing.T) {
	for _, secret := range []string{strings.Repeat("k", 48) + "\n", " " + strings.Repeat("k", 48)} {
		e := with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", secret)
		c, _, err := ParseConfig("run", nil, env(e), Requirements{Genesys: true, Dataverse: true}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if a := strings.Join(c.Advice(), "\n"); !strings.Contains(a, "SCREENPOP_JWT_SECRET: the whitespace at its ends") {
			t.Errorf("secret %q: no advice that its whitespace is dropped: %q", secret, a)
		}
		auth, err := push.NewJWTAuthenticator([]byte(c.JWTSecret), c.JWTAudience, []byte(c.JWTSecretPrevious))
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"token", "--agent", a1}, {"token", "--agent", a1, "--jwt-secret", secret}} {
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, env(e), &out, &errb); code != 0 {
				t.Fatalf("%v: exit %d %s", args[:3], code, errb.String())
			}
			if _, _, err := auth.Authenticate(context.Background(), strings.TrimSpace(out.String())); err != nil {
				t.Errorf("secret %q: a token from `screenpopd %s` (secret from %s) is refused by the daemon: %v", secret, strings.Join(args[:3], " "), map[bool]string{true: "--jwt-secret", false: "the environment"}[len(args) > 3], err)
			}
		}
	}
	e := with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", strings.Repeat("k", 48))
	c, _, err := ParseConfig("run", nil, env(e), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Advice(); len(a) != 0 {
		t.Errorf("a secret without whitespace: advice %q", a)
	}
}

// GENESYS_AGENTS_FILE exported from a spreadsheet on Windows starts with a
// UTF-8 byte-order mark and has CRLF line ends.
func TestParseConfig_AgentsFileWithBOM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agents.txt")
	if err := os.WriteFile(path, []byte("\ufeff"+a1+"\r\n"+a2+"\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := good()
	delete(vars, "GENESYS_AGENTS")
	vars["GENESYS_AGENTS_FILE"] = path
	c, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if agents, err := c.Agents(); err != nil || strings.Join(agents, ",") != a1+","+a2 {
		t.Errorf("agents %q %v, want %s,%s", agents, err, a1, a2)
	}
}

// Genesys writes user ids in lower case, in conversation bodies and in the
// agents' own tokens; an id an admin pastes in capitals (from a report or
// a spreadsheet) is the same user, and must watch, and mint a token for,
// the id Genesys uses, or the agent's pops reach no one.
func TestParseConfig_UserIDsInCapitals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agents.txt")
	if err := os.WriteFile(path, []byte(strings.ToUpper(a2)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := good()
	vars["GENESYS_AGENTS"] = strings.ToUpper(a1)
	vars["GENESYS_AGENTS_FILE"] = path
	vars["GENESYS_QUEUES"] = strings.ToUpper(a2)
	c, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if agents, err := c.Agents(); err != nil || strings.Join(agents, ",") != a1+","+a2 {
		t.Errorf("agents %q %v, want %s,%s", agents, err, a1, a2)
	}
	if q := strings.Join(c.GenesysQueues, ","); q != a2 {
		t.Errorf("queues %q, want %s", q, a2)
	}

	secret := strings.Repeat("k", 48)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "--agent", strings.ToUpper(a1), "--jwt-secret", secret}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("token --agent in capitals: exit %d: %s", code, errb.String())
	}
	a, err := push.NewJWTAuthenticator([]byte(secret), "")
	if err != nil {
		t.Fatal(err)
	}
	agent, _, err := a.Authenticate(context.Background(), strings.TrimSpace(out.String()))
	if err != nil || string(agent) != a1 {
		t.Fatalf("token for agent %q (%v), want %s", agent, err, a1)
	}
}

// An entry that is no user id is quoted as the admin wrote it, not lower
// case: they search their file or variable for it.
func TestParseConfig_NotAUserIDQuotedAsWritten(t *testing.T) {
	vars := good()
	vars["GENESYS_AGENTS"] = a1 + ",Jane Doe"
	_, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"Jane Doe" is not a Genesys user id`) {
		t.Fatalf("%v, want \"Jane Doe\" named as written", err)
	}
}

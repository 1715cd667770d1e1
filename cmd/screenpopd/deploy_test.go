package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/push"
)

// The deployment examples of docs/deploy are checked here: the NATS
// configuration with nats-server's own parser (and then served, to prove
// its permissions let screenpopd and a consumer do their work), the
// systemd unit with systemd-analyze verify.

const deployDir = "../../docs/deploy"

// natsConfForTest copies nats-cluster.conf with its TLS and store paths
// moved into a temporary directory holding a generated certificate, and
// sets the variables it reads from the environment.
func natsConfForTest(t *testing.T) (path, caFile string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "nats-cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := writeCert(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	conf := string(b)
	for from, to := range map[string]string{
		"/etc/nats/tls/server.crt": cert, "/etc/nats/tls/server.key": key, "/etc/nats/tls/ca.crt": cert,
		"/var/lib/nats/jetstream": filepath.Join(dir, "jetstream"),
	} {
		if !strings.Contains(conf, from) {
			t.Fatalf("nats-cluster.conf no longer mentions %s; update this test", from)
		}
		conf = strings.ReplaceAll(conf, from, to)
	}
	path = filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATS_SERVER_NAME", "n1")
	t.Setenv("SCREENPOP_NATS_PASSWORD", "screenpop-pass")
	t.Setenv("CONSUMER_NATS_PASSWORD", "consumer-pass")
	t.Setenv("SYS_NATS_PASSWORD", "sys-pass")
	return path, cert
}

func TestDeploy_NATSClusterConfig(t *testing.T) {
	path, ca := natsConfForTest(t)
	opts := &server.Options{}
	// The method, unlike server.ProcessConfigFile, also returns warnings
	// (unknown or misplaced keys) as an error: any is a failure.
	if err := opts.ProcessConfigFile(path); err != nil {
		t.Fatalf("nats-server rejects docs/deploy/nats-cluster.conf: %v", err)
	}
	if opts.ServerName != "n1" || !opts.JetStream || opts.StoreDir == "" || opts.JetStreamMaxStore != 48<<30 || opts.JetStreamMaxMemory != 512<<20 {
		t.Errorf("server/jetstream: name %q js %v store %q max store %d max mem %d", opts.ServerName, opts.JetStream, opts.StoreDir, opts.JetStreamMaxStore, opts.JetStreamMaxMemory)
	}
	if opts.Cluster.Name != "screenpop" || opts.Cluster.Port != 6222 || len(opts.Routes) != 3 || opts.Cluster.TLSConfig == nil {
		t.Errorf("cluster: name %q port %d routes %d tls %v", opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes), opts.Cluster.TLSConfig != nil)
	}
	// A node that dies without closing its routes is dropped within
	// seconds, not 60-90 s (bridge/bus TestConn_ThreeNodeClusterLosesANode).
	if opts.Cluster.PingInterval == 0 || opts.Cluster.PingInterval > 2*time.Second || opts.Cluster.MaxPingsOut == 0 || opts.Cluster.MaxPingsOut > 2 {
		t.Errorf("cluster: route ping interval %v, max pings out %d; want at most 2s and 2", opts.Cluster.PingInterval, opts.Cluster.MaxPingsOut)
	}
	if opts.TLSConfig == nil || opts.Port != 4222 || opts.HTTPHost != "127.0.0.1" || opts.HTTPPort != 8222 || opts.MaxPayload != 1<<20 {
		t.Errorf("client listener: tls %v port %d http %s:%d max payload %d", opts.TLSConfig != nil, opts.Port, opts.HTTPHost, opts.HTTPPort, opts.MaxPayload)
	}
	if opts.SystemAccount != "SYS" || len(opts.Users) != 3 {
		t.Errorf("system account %q, %d users, want SYS and 3", opts.SystemAccount, len(opts.Users))
	}

	ns := serveAsOneNode(t, opts)
	addr := ns.Addr().String()
	userURL := func(user, pass string) string {
		return "tls://" + url.UserPassword(user, pass).String() + "@" + addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("ScreenpopdUser", func(t *testing.T) {
		// Everything the daemon does on NATS, as the screenpop user.
		c, err := bus.Start(ctx, bus.Config{URL: userURL("screenpop", "screenpop-pass"), TLSCA: ca, Listen: "off"}, zerolog.Nop())
		if err != nil {
			t.Fatalf("bus.Start as user screenpop: %v", err)
		}
		defer c.Close()
		got := make(chan []byte, 1)
		cctx, ccancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- c.ConsumeEvents(cctx, bus.ConsumeConfig{}, func(_ context.Context, data []byte) error {
				select {
				case got <- data:
				default:
				}
				return nil
			})
		}()
		defer func() { ccancel(); <-done }()
		agent := bridge.AgentID("5e1f0a1c-0000-4000-8000-000000000001")
		// The consumer is created inside ConsumeEvents: publish until it
		// sees one (a new durable starts at new messages).
		deadline := time.Now().Add(10 * time.Second)
	wait:
		for {
			if err := c.Publish(ctx, bridge.Message{Subject: "screenpop.events.voice.alerting." + string(agent), ID: "evt:" + time.Now().String(), Data: []byte(`{}`)}); err != nil {
				t.Fatalf("publish event: %v", err)
			}
			select {
			case <-got:
				break wait
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("the resolver's durable consumer got no event")
			}
		}
		if ok, err := c.MarkPop(ctx, "pop:c1:p1", "evt:c1:p1:voice:alerting"); err != nil || !ok {
			t.Fatalf("MarkPop: %v %v", ok, err)
		}
		if err := c.Publish(ctx, bridge.Message{Subject: bridge.PopSubject(agent), ID: "pop:c1:p1", Data: []byte(`{}`)}); err != nil {
			t.Fatalf("publish pop: %v", err)
		}
		seq, err := c.LatestPop(ctx, agent)
		if err != nil || seq == 0 {
			t.Fatalf("LatestPop: %d %v", seq, err)
		}
		n := 0
		if err := c.ReplayPops(ctx, agent, 0, time.Now().Add(-time.Minute), func(bridge.StoredPop) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("ReplayPops: %d pops, %v", n, err)
		}
	})

	t.Run("ConsumerUser", func(t *testing.T) {
		js := jetStreamAt(t, userURL("consumer", "consumer-pass"), nats.RootCAs(ca))
		cons, err := js.CreateOrUpdateConsumer(ctx, "SCREENPOP", jetstream.ConsumerConfig{Durable: "wallboard", FilterSubject: "screenpop.events.>", DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("consumer user cannot create a durable consumer: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var msgs int
		for m := range batch.Messages() {
			msgs++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if msgs != 1 {
			t.Fatalf("fetched %d events, want 1 (%v)", msgs, batch.Error())
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		if _, err := js.Publish(pctx, "screenpop.events.voice.alerting.x", []byte(`{}`)); err == nil {
			t.Fatal("the read-only consumer user could publish an event")
		}
	})

	t.Run("ScreenpopdCheck", func(t *testing.T) {
		r := newCheckRig(t)
		r.vars["NATS_URL"] = userURL("screenpop", "screenpop-pass")
		r.vars["NATS_TLS_CA"] = ca
		code, out := r.check(t)
		if code != 0 {
			t.Fatalf("check against the example cluster config exited %d", code)
		}
		wantLine(t, out, "ok   nats connect:", "tls://")
		wantLine(t, out, "ok   nats jetstream:", "of 42.0 GiB")
		wantLine(t, out, "ok   nats publish:", "deleted again")
		if strings.Contains(out, "screenpop-pass") {
			t.Error("check printed the NATS password")
		}
	})
}

// TestDeploy_SystemdUnit runs systemd-analyze verify on the unit. It
// exits 0 on unknown keys, so any output is a failure. The ExecStart
// binary is pointed at a stand-in, since verify requires it to exist.
func TestDeploy_SystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// .ci/run installs it (Debian package systemd).
		testenv.Missing(t, "systemd-analyze not installed (Debian package systemd): docs/deploy/screenpopd.service is NOT verified")
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "screenpopd.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "screenpopd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/screenpopd", bin)
	if unit == string(b) {
		t.Fatal("screenpopd.service no longer runs /usr/local/bin/screenpopd; update this test")
	}
	path := filepath.Join(dir, "screenpopd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(sa, "verify", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
	// The hardening options are what make the unit worth copying.
	for _, opt := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes"} {
		if !strings.Contains(string(b), opt) {
			t.Errorf("unit lacks %q", strings.TrimSpace(opt))
		}
	}
}

// TestDeploy_EnvExample parses screenpop.env.example alone, as the
// documented `(set -a; . screenpop.env; set +a; screenpopd check)` sees it:
// every variable is known and the whole is a valid configuration for run
// and check. The unit sets LOG_FORMAT, and the file's SCREENPOP_DATA_DIR and
// SCREENPOP_TLS_* (for older env files) to the same values, which must be
// where the unit puts the state directory and the credentials; and the docs give the one command
// that runs check with them (the credentials directory exists only while
// the service runs, so check is given the originals).
func TestDeploy_EnvExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "screenpop.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.env] = true
	}
	vars := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !known[k] {
			t.Errorf("line %d: %q is not a known VARIABLE=value", i+1, l)
			continue
		}
		vars[k] = v
	}
	for _, cmd := range []string{"run", "check"} {
		if _, _, err := ParseConfig(cmd, nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard); err != nil {
			t.Fatalf("screenpop.env.example alone is not a valid %s configuration: %v", cmd, err)
		}
	}

	ub, err := os.ReadFile(filepath.Join(deployDir, "screenpopd.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{}
	for _, l := range strings.Split(string(ub), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(l, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	// The unit sets the data dir and TLS itself too, for env files made
	// from an earlier example (the env file wins): the same values, or the
	// service and check would disagree.
	const credDir = "/run/credentials/screenpopd.service/"
	for _, kv := range strings.Fields(strings.Join(unit["Environment"], " ")) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "LOG_FORMAT":
		case "SCREENPOP_DATA_DIR", "SCREENPOP_TLS_CERT", "SCREENPOP_TLS_KEY":
			if v = strings.Replace(v, "%d/", credDir, 1); vars[k] != v {
				t.Errorf("unit Environment= %s=%s, env file %q: want the same", k, v, vars[k])
			}
		default:
			t.Errorf("unit Environment= sets %s: every setting belongs in the env file, where check sees it", k)
		}
	}
	if sd := unit["StateDirectory"]; len(sd) != 1 || vars["SCREENPOP_DATA_DIR"] != "/var/lib/"+sd[0] {
		t.Errorf("env SCREENPOP_DATA_DIR=%q, unit StateDirectory=%v: want /var/lib/<StateDirectory>", vars["SCREENPOP_DATA_DIR"], sd)
	}
	creds := map[string]string{} // credential name -> source file
	for _, c := range unit["LoadCredential"] {
		name, src, _ := strings.Cut(c, ":")
		creds[name] = src
	}
	check := ""
	for _, v := range []string{"SCREENPOP_TLS_CERT", "SCREENPOP_TLS_KEY"} {
		name, ok := strings.CutPrefix(vars[v], credDir)
		if !ok || creds[name] == "" {
			t.Errorf("env %s=%q is not %s<a LoadCredential= of the unit> (%v)", v, vars[v], credDir, creds)
			continue
		}
		check += v + "=" + creds[name] + " "
	}
	check += "screenpopd check"

	// The documented command: the env file, with the originals of the
	// credentials for check.
	// In a subshell: the production settings must not stay exported in
	// the admin's shell, where a later demo would take them.
	want := "(set -a; . /etc/screenpop/screenpop.env; set +a\n " + check + ")\n"
	for _, doc := range []string{filepath.Join(deployDir, "README.md"), "../../docs/setup.md", "../../docs/operations.md"} {
		d, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(d), want) {
			t.Errorf("%s does not give the check command\n%s", doc, want)
		}
	}
	checkVars := maps.Clone(vars)
	for _, kv := range strings.Fields(check) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			checkVars[k] = v
		}
	}
	if _, _, err := ParseConfig("check", nil, env(checkVars), Requirements{Genesys: true, Dataverse: true}, io.Discard); err != nil {
		t.Fatalf("the documented check command's configuration is invalid: %v", err)
	}
}

// TestDeploy_ServiceReadsItsFiles: the unit runs as a DynamicUser, which
// is neither root nor in root's group, so a file the daemon opens itself
// (not handed over by LoadCredential=) must sit in a directory others may
// enter. `screenpopd check` runs as root, as the docs show, and cannot see
// the difference: each file the env example names, in use or commented out
// as a ready example, is checked against the directories the deploy README
// installs.
func TestDeploy_ServiceReadsItsFiles(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(deployDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	unit, readme, example := read("screenpopd.service"), read("README.md"), read("screenpop.env.example")
	if !strings.Contains(unit, "\nDynamicUser=yes\n") {
		t.Fatal("the unit no longer uses DynamicUser=yes; update this test")
	}
	creds := map[string]bool{}
	for _, l := range strings.Split(unit, "\n") {
		if c, ok := strings.CutPrefix(l, "LoadCredential="); ok {
			name, _, _ := strings.Cut(c, ":")
			creds[name] = true
		}
	}
	// install -d -m MODE DIR lines of the README: directories and modes.
	dirs := map[string]uint64{}
	for _, l := range strings.Split(readme, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "install" && f[1] == "-d" && f[2] == "-m" {
			mode, err := strconv.ParseUint(f[3], 8, 32)
			if err != nil {
				t.Fatalf("README: %q: %v", l, err)
			}
			dirs[f[4]] = mode
		}
	}
	if len(dirs) == 0 {
		t.Fatal("README installs no directory; update this test")
	}
	const credDir = "/run/credentials/screenpopd.service/"
	files := []string{"GENESYS_AGENTS_FILE", "NATS_CREDS", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY", "SCREENPOP_TLS_CERT", "SCREENPOP_TLS_KEY"}
	seen := 0
	for _, l := range strings.Split(example, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "#"), "=")
		if !ok || !slices.Contains(files, k) || v == "" {
			continue
		}
		seen++
		if name, ok := strings.CutPrefix(v, credDir); ok {
			if !creds[name] {
				t.Errorf("%s=%s: the unit has no LoadCredential=%s:…", k, v, name)
			}
			continue
		}
		for dir, mode := range dirs {
			if strings.HasPrefix(v, dir+"/") && mode&0o001 == 0 {
				t.Errorf("%s=%s: the service (DynamicUser) cannot open it: the README installs %s with mode %04o, and root's `screenpopd check` passes all the same", k, v, dir, mode)
			}
		}
	}
	if seen < 3 {
		t.Fatalf("found %d file settings in screenpop.env.example; update this test", seen)
	}
}

// TestDeploy_ContainerEnv: the image's ENV, overridden by an env file made
// from screenpop.env.example with the lines the README says to delete,
// must make a configuration the README's docker run can use: state in the
// /data volume, TLS from the /tls mount, and both listeners on all of the
// container's interfaces, since `-p 8443:8443 -p 127.0.0.1:9090:9090` and
// an orchestrator's /healthz and /readyz probes reach the container from
// outside.
func TestDeploy_ContainerEnv(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(deployDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	vars := map[string]string{}
	// The image's ENV: one instruction continued with backslashes.
	cf := read("Containerfile")
	i := strings.Index(cf, "\nENV ")
	if i < 0 {
		t.Fatal("Containerfile has no ENV; update this test")
	}
	block := cf[i+len("\nENV "):]
	for {
		line, rest, _ := strings.Cut(block, "\n")
		for _, kv := range strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), "\\")) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = v
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), "\\") {
			break
		}
		block = rest
	}
	// The README's bullet on --env-file names the lines to delete.
	readme := read("README.md")
	j := strings.Index(readme, "`--env-file` wins over the image's `ENV`")
	if j < 0 {
		t.Fatal("README no longer says which env-file lines to delete for the container; update this test")
	}
	para, _, _ := strings.Cut(readme[j:], "\n- ")
	drop := map[string]bool{}
	for _, m := range regexp.MustCompile("`(SCREENPOP_[A-Z_]+)(\\*?)`").FindAllStringSubmatch(para, -1) {
		if m[2] == "" {
			drop[m[1]] = true
			continue
		}
		for _, s := range settings {
			if strings.HasPrefix(s.env, m[1]) {
				drop[s.env] = true
			}
		}
	}
	for _, l := range strings.Split(read("screenpop.env.example"), "\n") {
		l = strings.TrimSpace(l)
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") && !drop[k] {
			vars[k] = v
		}
	}
	// The TLS files exist only in a real container; check their paths.
	c, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatalf("the container's configuration is invalid: %v", err)
	}
	if c.DataDir != "/data" || !strings.HasPrefix(c.TLSCert, "/tls/") || !strings.HasPrefix(c.TLSKey, "/tls/") {
		t.Errorf("data dir %q, TLS %q %q: want the image's /data volume and /tls mount", c.DataDir, c.TLSCert, c.TLSKey)
	}
	for _, l := range []struct{ env, addr string }{{"SCREENPOP_LISTEN", c.Listen}, {"SCREENPOP_ADMIN_LISTEN", c.AdminListen}} {
		if push.IsLoopback(l.addr) {
			t.Errorf("%s=%s in the container: loopback inside it, so the published port and the /healthz and /readyz probes cannot reach it", l.env, l.addr)
		}
	}
}

// serveAsOneNode serves the example config's options as one standalone
// node on a free loopback port (the routes and fixed ports are for a real
// cluster).
func serveAsOneNode(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.HTTPPort, opts.HTTPHost = 0, ""
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server from the example config is not ready")
	}
	return ns
}

// The unit hides other processes (ProtectProc=invisible) but not /proc/sys
// (no ProcSubset=pid): Go reads the listen backlog from
// /proc/sys/net/core/somaxconn (4096 on current kernels) and, without it,
// every listener queues 128 connections waiting to be accepted, too few
// when every tab reconnects after a restart; process_start_time_seconds
// needs /proc/stat too. (A review measured it: ss -ltn showed 128 under
// subset=pid, 4096 without.)
func TestDeploy_UnitKeepsProcSysReadable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "screenpopd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") && k == "ProcSubset" && v != "all" {
			t.Errorf("screenpopd.service sets %s: it hides /proc/sys, and every listener's backlog falls to 128", l)
		}
	}
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// checkTimeout bounds one remote request of a check.
const checkTimeout = 15 * time.Second

// checkLine is one line of `screenpopd check`.
type checkLine struct {
	status string // "ok", "FAIL", "warn" (works, but needs the admin soon; not a failure) or "skip" (not run: an earlier check it needs failed)
	name   string
	detail string
	fix    string
}

// report collects the lines of one group of checks.
type report struct{ lines []checkLine }

func (r *report) ok(name, format string, a ...any) {
	r.lines = append(r.lines, checkLine{status: "ok", name: name, detail: fmt.Sprintf(format, a...)})
}

func (r *report) fail(name string, err error, fix string) {
	r.lines = append(r.lines, checkLine{status: "FAIL", name: name, detail: err.Error(), fix: fix})
}

func (r *report) warn(name, detail, fix string) {
	r.lines = append(r.lines, checkLine{status: "warn", name: name, detail: detail, fix: fix})
}

func (r *report) skip(name, why string) {
	r.lines = append(r.lines, checkLine{status: "skip", name: name, detail: why})
}

// RunChecks probes each dependency for real and prints one line per check:
// "ok", "FAIL" with the error and a fix hint, or "skip" when a check it
// needs failed. The groups (listeners and TLS, NATS, Genesys, Dataverse)
// run at the same time; the lines come out in a fixed order. It returns
// how many checks failed. Nothing it does disturbs a running daemon: see
// docs/operations.md, "screenpopd check".
func RunChecks(ctx context.Context, cfg *Config, log zerolog.Logger, w io.Writer) int {
	// hc asks the daemon next to this check, on an address of this host:
	// never through HTTP_PROXY (a zero Transport has no Proxy).
	hc := &http.Client{Timeout: checkTimeout, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	groups := []func(context.Context, *report){
		func(ctx context.Context, r *report) { checkListeners(ctx, cfg, hc, r); checkTLS(cfg, time.Now(), r) },
		func(ctx context.Context, r *report) { checkNATS(ctx, cfg, log, r) },
		func(ctx context.Context, r *report) { checkGenesys(ctx, cfg, log, r) },
		func(ctx context.Context, r *report) { checkDataverse(ctx, cfg, log, r) },
	}
	reports := make([]report, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() { defer wg.Done(); g(ctx, &reports[i]) }()
	}
	wg.Wait()
	failed := 0
	for _, r := range reports {
		for _, l := range r.lines {
			fmt.Fprintf(w, "%-4s %s: %s\n", l.status, l.name, l.detail)
			if l.status == "FAIL" {
				failed++
			}
			if (l.status == "FAIL" || l.status == "warn") && l.fix != "" {
				fmt.Fprintf(w, "     fix: %s\n", l.fix)
			}
		}
	}
	return failed
}

// ---- listeners and TLS ----

// checkListeners binds each configured listen address for a moment. An
// address in use is fine when the screenpopd answering on the admin address
// (the daemon this check is run next to) says it listens there itself.
func checkListeners(ctx context.Context, cfg *Config, hc *http.Client, r *report) {
	type listener struct{ key, env, addr, example string }
	ls := []listener{{"agent", "SCREENPOP_LISTEN", cfg.Listen, "0.0.0.0:8443"}}
	if cfg.AdminListen != "off" {
		ls = append(ls, listener{"admin", "SCREENPOP_ADMIN_LISTEN", cfg.AdminListen, "127.0.0.1:9090"})
	}
	if cfg.NatsURL == "" && cfg.NatsListen != "off" {
		ls = append(ls, listener{"nats", "SCREENPOP_NATS_LISTEN", cfg.NatsListen, "127.0.0.1:4222"})
	}
	var daemon *runningDaemon
	running := func() *runningDaemon {
		if daemon == nil {
			daemon = &runningDaemon{}
			if cfg.AdminListen != "off" {
				daemon = askRunningDaemon(ctx, hc, cfg.AdminListen)
			}
		}
		return daemon
	}
	for _, l := range ls {
		name := "listen " + l.key
		fix := "set " + l.env + " to a free address this host owns (host:port); a port below 1024 needs CAP_NET_BIND_SERVICE"
		ln, err := net.Listen("tcp", l.addr)
		if err == nil {
			ln.Close()
			// Root binds any port; the service of docs/deploy (a
			// dynamic user, no capabilities) and the image's user do
			// not, so run would fail where check, run as root as the
			// docs say, succeeded.
			if port := portOf(l.addr); os.Geteuid() == 0 && port > 0 && port < unprivilegedPortStart() {
				r.fail(name, fmt.Errorf("%s: port %d is below %d (net.ipv4.ip_unprivileged_port_start): check, as root, can bind it, but the service cannot (it has no CAP_NET_BIND_SERVICE: permission denied)",
					l.addr, port, unprivilegedPortStart()),
					"set "+l.env+" to a port of 1024 or above, e.g. "+l.example+"; if browsers must use 443, forward it there (a reverse proxy or a firewall redirect)")
				continue
			}
			r.ok(name, "%s is free", l.addr)
			continue
		}
		if !isAddrInUse(err) {
			r.fail(name, fmt.Errorf("%s: %w", l.addr, unwrapSyscall(err)), fix)
			continue
		}
		d := running()
		switch {
		case !d.answers && cfg.AdminListen == "off":
			r.fail(name, fmt.Errorf("%s: %w", l.addr, unwrapSyscall(err)),
				fix+"; with SCREENPOP_ADMIN_LISTEN off, check cannot ask a screenpopd running here whether it is the one holding it (ss -ltnp names the program)")
		case !d.answers:
			r.fail(name, fmt.Errorf("%s: %w", l.addr, unwrapSyscall(err)),
				fix+"; if a screenpopd holds it, its admin listener does not answer on "+cfg.AdminListen+" (ss -ltnp names the program)")
		case d.listeners == nil:
			// A screenpopd from before /status named its listeners.
			r.ok(name, "%s is in use, and a screenpopd (an older version, which does not say on which addresses it listens) answers on %s", l.addr, cfg.AdminListen)
		case covers(d.listeners[l.key], l.addr):
			r.ok(name, "%s is in use by the running screenpopd (its /status lists it)", l.addr)
		case covers(l.addr, d.listeners[l.key]):
			// All addresses asked for, one held by the daemon: another
			// program may hold the port on another address, which only
			// the daemon's stop would show.
			r.warn(name, fmt.Sprintf("%s is in use: the running screenpopd listens for %s on %s only, and whether another program holds the port on another address cannot be told while it runs", l.addr, l.key, d.listeners[l.key]),
				"ss -ltnp names every program on the port; if only screenpopd is listed, run binds "+l.addr+" once the running one stops")
		default:
			held := "none"
			if a := d.listeners[l.key]; a != "" {
				held = a
			}
			r.fail(name, fmt.Errorf("%s is in use by another program: the screenpopd running here listens for %s on %s", l.addr, l.key, held),
				"stop the program that holds "+l.addr+" (ss -ltnp names it), or set "+l.env+" to a free address")
		}
	}
}

// runningDaemon is what the screenpopd answering on the admin address says
// of itself.
type runningDaemon struct {
	answers   bool              // its /status answered
	listeners map[string]string // StatusReport.Listeners; nil from a version without them
}

// askRunningDaemon reads /status on the admin address: answers is false
// when nothing there answers as a screenpopd.
func askRunningDaemon(ctx context.Context, hc *http.Client, addr string) *runningDaemon {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &runningDaemon{}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	// /status asks NATS for the stream's state, bounded at a few seconds.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/status", nil)
	if err != nil {
		return &runningDaemon{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &runningDaemon{}
	}
	defer resp.Body.Close()
	var st struct {
		Version    string            `json:"version"`
		Components map[string]any    `json:"components"`
		Listeners  map[string]string `json:"listeners"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st) != nil ||
		st.Version == "" || st.Components == nil {
		return &runningDaemon{}
	}
	return &runningDaemon{answers: true, listeners: st.Listeners}
}

// covers reports whether a listener on held takes every address addr
// names: the same port, and the same address or held all addresses. Then
// the listener, and nothing else, keeps addr from being bound.
func covers(held, addr string) bool {
	h, err1 := net.ResolveTCPAddr("tcp", held)
	a, err2 := net.ResolveTCPAddr("tcp", addr)
	if err1 != nil || err2 != nil || h.Port != a.Port {
		return false
	}
	return h.IP == nil || h.IP.IsUnspecified() || h.IP.Equal(a.IP)
}

// portOf is the port of host:port, 0 if there is none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// unprivilegedPortStart is the lowest port a process without
// CAP_NET_BIND_SERVICE may bind: Linux's
// net.ipv4.ip_unprivileged_port_start (1024 unless changed; 0 in most
// containers), or 1024 where it cannot be read.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

// unwrapSyscall shortens "listen tcp 1.2.3.4:80: bind: permission denied"
// to what matters.
func unwrapSyscall(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// checkTLS loads the agent listener's certificate and key and reads the
// certificate's names and validity.
func checkTLS(cfg *Config, now time.Time, r *report) {
	const name = "tls agent listener"
	if cfg.TLSCert == "" {
		switch {
		case push.IsLoopback(cfg.Listen):
			r.ok(name, "no certificate; %s is loopback, so plaintext is allowed (browsers on other hosts cannot reach it)", cfg.Listen)
		case cfg.AllowPlaintext:
			r.ok(name, "no certificate; plaintext on %s allowed by SCREENPOP_ALLOW_PLAINTEXT: a TLS-terminating proxy must be in front", cfg.Listen)
		default:
			// ParseConfig refuses this combination; kept for completeness.
			r.fail(name, fmt.Errorf("%s is not loopback and has no TLS", cfg.Listen), "set SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY, or SCREENPOP_ALLOW_PLAINTEXT=true behind a TLS proxy")
		}
		return
	}
	fix := "SCREENPOP_TLS_CERT must name a readable PEM certificate chain (leaf first) and SCREENPOP_TLS_KEY its PEM private key, both readable by the service user"
	tc, err := push.LoadTLS(cfg.TLSCert, cfg.TLSKey, zerolog.Nop())
	if err != nil {
		if hint := credentialsHint(cfg, err); hint != "" {
			fix = hint
		}
		r.fail(name, err, fix)
		return
	}
	leaf, err := push.Leaf(tc)
	if err != nil {
		r.fail(name, fmt.Errorf("parse certificate: %w", err), fix)
		return
	}
	names := leaf.DNSNames
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		r.fail(name, fmt.Errorf("certificate %q has no subject alternative names (browsers ignore the common name)", leaf.Subject.CommonName),
			"issue a certificate whose SAN holds the host name agents' browsers use")
		return
	}
	switch {
	case now.After(leaf.NotAfter):
		r.fail(name, fmt.Errorf("certificate for %s expired on %s", strings.Join(names, ", "), leaf.NotAfter.UTC().Format(time.DateOnly)),
			"renew the certificate, replace SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY and restart screenpopd")
	case now.Before(leaf.NotBefore):
		r.fail(name, fmt.Errorf("certificate for %s is not valid before %s", strings.Join(names, ", "), leaf.NotBefore.UTC().Format(time.RFC3339)),
			"check the host's clock, or wait until the certificate is valid")
	default:
		days := int(leaf.NotAfter.Sub(now).Hours() / 24)
		r.ok(name, "certificate for %s, valid until %s (%d days)", strings.Join(names, ", "), leaf.NotAfter.UTC().Format(time.DateOnly), days)
	}
}

// ---- NATS ----

// checkNATS connects, looks at JetStream and the stream, and proves the
// stream stores what is published: one message on screenpop.check.<random>
// with a Nats-Msg-Id, deleted again at once. With the embedded server
// (NATS_URL empty) everything happens on a scratch server in a temporary
// directory, so a running daemon's store is not touched. The data
// directory is checked with either (checkDataDir).
func checkNATS(ctx context.Context, cfg *Config, log zerolog.Logger, r *report) {
	bcfg := bus.Config{URL: cfg.NatsURL, Creds: cfg.NatsCreds, TLSCA: cfg.NatsTLSCA, TLSCrt: cfg.NatsTLSCert, TLSKey: cfg.NatsTLSKey,
		Listen: "off", DataDir: cfg.DataDir, Stream: cfg.Stream, StreamMaxAge: cfg.StreamMaxAge, StreamReplicas: cfg.StreamReplicas, Name: "screenpopd-check",
		// run waits a minute for a cluster that cannot place the replicas
		// yet (it started with the daemon); check asks of one that runs.
		PlacementWait: 10 * time.Second}
	var (
		nc *nats.Conn
		js jetstream.JetStream
	)
	// run makes SCREENPOP_DATA_DIR and its pii-hash.key with either NATS.
	checkDataDirWithin(ctx, cfg, startDiskWait, r)
	if cfg.NatsURL == "" {
		tmp, err := os.MkdirTemp("", "screenpop-check-")
		if err != nil {
			r.fail("nats embedded", err, "the temporary directory must be writable (TMPDIR)")
			return
		}
		defer os.RemoveAll(tmp)
		bcfg.DataDir = tmp
		c, err := bus.Start(ctx, bcfg, log)
		if err != nil {
			r.fail("nats embedded", err, "see the error; the embedded server needs a writable SCREENPOP_DATA_DIR and free memory")
			return
		}
		defer c.Close()
		r.ok("nats embedded", "server and JetStream started (in a scratch store; the daemon's store is %s)", filepath.Join(cfg.DataDir, "jetstream"))
		js = c.JetStream()
	} else {
		opts := []nats.Option{nats.Name("screenpopd-check"), nats.Timeout(5 * time.Second), nats.MaxReconnects(0)}
		// As run reads them: a hung mount is a FAIL line, not a hang.
		opts = append(opts, bus.FileOptions(cfg.NatsCreds, cfg.NatsTLSCA, cfg.NatsTLSCert, cfg.NatsTLSKey)...)
		var err error
		nc, err = nats.Connect(cfg.NatsURL, opts...)
		if err != nil {
			r.fail("nats connect", fmt.Errorf("%s: %w%s", bus.RedactURL(cfg.NatsURL), err, dialDiagnosis(ctx, cfg.NatsURL)),
				"check NATS_URL (nats://host:4222, comma-separated for a cluster), that the servers run and this host reaches them; NATS_CREDS and NATS_TLS_* for an authenticated or TLS server")
			for _, n := range []string{"nats jetstream", "nats stream " + cfg.Stream, "nats publish"} {
				r.skip(n, "needs nats connect")
			}
			return
		}
		defer nc.Close()
		r.ok("nats connect", "connected to %s (server %s, version %s)", bus.RedactURL(nc.ConnectedUrlRedacted()), nc.ConnectedServerName(), nc.ConnectedServerVersion())
		if js, err = jetstream.New(nc); err != nil {
			r.fail("nats jetstream", err, "")
			return
		}
	}

	actx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	ai, err := js.AccountInfo(actx)
	if err != nil {
		r.fail("nats jetstream", err, "enable JetStream on the servers (jetstream {} in the server config) and for this account (jetstream: enabled in the account or the operator JWT); see docs/deploy/nats-cluster.conf")
		r.skip("nats stream "+cfg.Stream, "needs nats jetstream")
		r.skip("nats publish", "needs nats jetstream")
		return
	}
	r.ok("nats jetstream", "account has JetStream (%d streams, %s stored%s)%s", ai.Streams, bytesText(ai.Store), limitText(ai.Limits.MaxStore), markerTTLText(ai.API.Level, markerGrace(cfg.MaxEventAge)))

	sname := "nats stream " + cfg.Stream
	st, err := js.Stream(actx, cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && cfg.NatsURL != "":
		// No daemon uses it yet: create it exactly as the daemon would at
		// start, which also proves the account may.
		c, err := bus.Start(ctx, bcfg, log)
		if err != nil {
			r.fail(sname, fmt.Errorf("not found, and creating it failed: %w", err),
				"give the NATS user permission to create streams and key-value buckets ($JS.API.>), or create the stream as docs/architecture.md shows")
			r.skip("nats publish", "needs the stream")
			return
		}
		c.Close()
		if st, err = js.Stream(actx, cfg.Stream); err != nil {
			r.fail(sname, err, "")
			r.skip("nats publish", "needs the stream")
			return
		}
		r.ok(sname, "created (it did not exist; screenpopd run creates it the same way), captures %s", bridge.SubjectAll)
	case err != nil:
		r.fail(sname, err, "check SCREENPOP_STREAM and the NATS user's permissions on $JS.API.STREAM.INFO."+cfg.Stream)
		r.skip("nats publish", "needs the stream")
		return
	default:
		info := st.CachedInfo()
		if !containsString(info.Config.Subjects, bridge.SubjectAll) {
			r.fail(sname, fmt.Errorf("captures %s, not %s", strings.Join(info.Config.Subjects, ", "), bridge.SubjectAll),
				"another stream of this name exists: choose another SCREENPOP_STREAM, or let this stream capture screenpop.>")
			r.skip("nats publish", "needs the stream")
			return
		}
		// What run's update at start would be refused for.
		if info.Config.Storage != jetstream.FileStorage {
			r.fail(sname, fmt.Errorf("has %s storage; screenpopd keeps it on file, and NATS cannot change a stream's storage", strings.ToLower(info.Config.Storage.String())),
				"delete the stream (nats stream rm "+cfg.Stream+") so that screenpopd creates it, or choose another SCREENPOP_STREAM")
			r.skip("nats publish", "needs a stream screenpopd can use")
			return
		}
		if cfg.StreamReplicas > 1 && js.Conn().ConnectedClusterName() == "" {
			r.fail(sname, fmt.Errorf("SCREENPOP_STREAM_REPLICAS=%d, but the NATS server is not in a cluster", cfg.StreamReplicas),
				"set SCREENPOP_STREAM_REPLICAS=1 for a single server, or point NATS_URL at a JetStream cluster")
			r.skip("nats publish", "needs a stream screenpopd can use")
			return
		}
		var drift []string
		if info.Config.MaxAge != cfg.StreamMaxAge {
			drift = append(drift, fmt.Sprintf("max age %s (configured %s)", info.Config.MaxAge, cfg.StreamMaxAge))
		}
		if info.Config.Replicas != cfg.StreamReplicas {
			drift = append(drift, fmt.Sprintf("replicas %d (configured %d)", info.Config.Replicas, cfg.StreamReplicas))
		}
		// What run's start would be refused for: another deployment's
		// daemons resolve from this account's stream.
		if cons, err := js.Consumer(actx, cfg.Stream, bus.DefaultDurable); err == nil {
			if err := bus.ConsumerOwnerConflict(actx, cons, deploymentOwner(cfg)); err != nil {
				r.fail(sname, err, "point NATS_URL or NATS_CREDS at a NATS account of this deployment's own (docs/deploy/README.md, account SCREENPOP)")
				r.skip("nats publish", "needs a stream screenpopd can use")
				return
			}
		}
		d := ""
		if len(drift) > 0 {
			d = "; differs from the configuration: " + strings.Join(drift, ", ") + " (screenpopd run updates it at start, or logs at error that NATS refuses to)"
		}
		r.ok(sname, "present, captures %s, %d messages, replicas %d, max age %s%s", bridge.SubjectAll, info.State.Msgs, info.Config.Replicas, info.Config.MaxAge, d)
	}

	// The stream captures screenpop.>: a check message is stored like an
	// event. The daemon's consumers filter screenpop.events.> and
	// screenpop.pops.*, so they never see it; a plain subscriber of
	// screenpop.> does, once: it is a CloudEvent like everything there
	// (docs/events.md), of a type consumers ignore.
	id := randomHex(8)
	subject := "screenpop.check." + id
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, "check:"+id)
	msg.Data = []byte(`{"specversion":"1.0","id":"check:` + id + `","source":"/screenpop/check","type":"screenpop.check.v1",` +
		`"datacontenttype":"application/json","data":{"note":"a probe of screenpopd check; ignore"}}`)
	ack, err := js.PublishMsg(actx, msg, jetstream.WithExpectStream(cfg.Stream))
	if err != nil {
		r.fail("nats publish", fmt.Errorf("%s: %w", subject, err),
			"the stream must accept writes: check the account's JetStream storage limit (max_file_store), the stream's health (nats stream info "+cfg.Stream+") and the user's publish permission on screenpop.>")
		return
	}
	if err := st.DeleteMsg(actx, ack.Sequence); err != nil {
		r.ok("nats publish", "stream %s stored %s (seq %d); it could not be deleted (%v) and ages out with the stream", ack.Stream, subject, ack.Sequence, err)
		return
	}
	r.ok("nats publish", "stream %s stored %s (seq %d) and it was deleted again", ack.Stream, subject, ack.Sequence)
}

// checkDataDirWithin is checkDataDir, told after wait (the daemon's own
// start-up wait) that the directory's disk does not answer: a stalled
// volume holds its calls in the kernel, with no error to return, and the
// check would wait as long. The call left behind returns when the disk
// answers; its lines are dropped.
func checkDataDirWithin(ctx context.Context, cfg *Config, wait time.Duration, r *report) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	sub, err := unlessDone(ctx, func() (report, error) {
		var sub report
		checkDataDir(cfg, &sub)
		return sub, nil
	})
	if err == nil {
		r.lines = append(r.lines, sub.lines...)
		return
	}
	r.fail("data dir", fmt.Errorf("the disk under %s does not answer: a write to it has waited %v (a stalled volume, an NFS server gone)", cfg.DataDir, wait.Round(time.Second)),
		"look at the volume (docs/operations.md section 7.4); screenpopd waits for it at start, and stores nothing while it does not answer")
}

// checkDataDir checks SCREENPOP_DATA_DIR as run uses it, with embedded
// or external NATS: it must be writable (run creates it and, on first
// start, pii-hash.key in it), and an existing pii-hash.key must be readable
// and long enough (readPIIKey, as run reads it).
func checkDataDir(cfg *Config, r *report) {
	const name = "data dir"
	use := "the PII hash key"
	if cfg.NatsURL == "" {
		use = "the JetStream store and the PII hash key"
	}
	if err := dirWritable(cfg.DataDir); err != nil {
		r.fail(name, err, "SCREENPOP_DATA_DIR must be a directory the service user can create and write (it holds "+use+")")
		return
	}
	if cfg.NatsURL == "" {
		// check's own server runs on a scratch store: the daemon's
		// store directory is looked at here.
		store := filepath.Join(cfg.DataDir, "jetstream")
		if fi, err := os.Stat(store); err == nil && !fi.IsDir() {
			r.fail(name, fmt.Errorf("%s, where the built-in NATS keeps its store, is not a directory", store),
				"move "+store+" away (screenpopd run makes the directory), or set SCREENPOP_DATA_DIR to another directory")
			return
		} else if err == nil {
			if err := dirWritable(store); err != nil {
				r.fail(name, err, "the built-in NATS store "+store+" must be writable by the service user (chown -R it to that user)")
				return
			}
		}
	}
	path := filepath.Join(cfg.DataDir, "pii-hash.key")
	key, err := readPIIKey(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.ok(name, "%s is writable (holds %s; pii-hash.key is made at first start)", cfg.DataDir, use)
	case err != nil:
		r.fail(name, err, "make "+path+" a readable file of the service user, or delete it to have a new one made at start (caller hashes in logs then change)")
	default:
		r.ok(name, "%s is writable (holds %s); pii-hash.key is readable (%d bytes)", cfg.DataDir, use, len(key))
	}
}

// dialDiagnosis says why each NATS URL's host:port cannot be reached (nats.go
// reports only "no servers available").
func dialDiagnosis(ctx context.Context, urls string) string {
	var out []string
	for _, u := range splitList(urls) {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			continue
		}
		host := pu.Host
		if pu.Port() == "" {
			host = net.JoinHostPort(pu.Hostname(), "4222")
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			out = append(out, host+": "+unwrapSyscall(err).Error())
			continue
		}
		c.Close()
		out = append(out, host+": TCP reachable (so TLS, credentials or the protocol failed)")
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

func dirWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".screenpop-check-")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatUint(n, 10) + " B"
}

func limitText(max int64) string {
	if max <= 0 {
		return ""
	}
	return " of " + bytesText(uint64(max))
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- Genesys Cloud ----

// checkGenesys runs notifications.Probe (login, channel and socket, a
// presence subscription removed again, the conversation topic's
// permissions, queues, the reconciliation query) and prints its steps.
func checkGenesys(ctx context.Context, cfg *Config, log zerolog.Logger, r *report) {
	agents, err := cfg.Agents()
	if err != nil {
		agents = nil // reported by the config line
	}
	notifications.Probe(ctx, notifications.Config{
		Region: cfg.GenesysRegion, APIURL: cfg.GenesysAPIURL, ClientID: cfg.GenesysClientID, ClientSecret: cfg.GenesysClientSecret,
		Agents: agents, Queues: cfg.GenesysQueues, HTTPTimeout: checkTimeout,
	}, log, func(s notifications.ProbeStep) {
		switch {
		case s.Skipped:
			r.skip(s.Name, s.Detail)
		case s.Err != nil:
			r.fail(s.Name, s.Err, s.Fix)
		default:
			r.ok(s.Name, "%s", s.Detail)
		}
	})
}

// ---- Dataverse ----

// checkDataverse reads the client certificate, if one is configured, gets
// a token (signed with it, as the daemon does), calls WhoAmI and reads one
// row of each configured entity with the configured columns.
func checkDataverse(ctx context.Context, cfg *Config, log zerolog.Logger, r *report) {
	if cfg.DataverseClientCertificate != "" {
		checkDataverseCertificate(cfg.DataverseClientCertificate, time.Now(), r)
	}
	d, err := dataverse.New(dataverse.Config{URL: cfg.DataverseURL, TenantID: cfg.DataverseTenantID, ClientID: cfg.DataverseClientID,
		ClientSecret: cfg.DataverseClientSecret, ClientCertificate: cfg.DataverseClientCertificate,
		TokenURL: cfg.DataverseTokenURL, AppID: cfg.DataverseAppID,
		Phone: cfg.LookupPhone, Email: cfg.LookupEmail, Entities: cfg.Entities, PhoneRegion: cfg.PhoneRegion,
		MaxAttempts: 2, FlightTimeout: checkTimeout}, log)
	if err != nil {
		r.fail("dataverse config", err, "see docs/setup.md, Dataverse")
		return
	}
	defer d.Close()
	targets := d.CheckTargets()
	user, err := d.CheckAuth(ctx)
	if err != nil {
		r.fail("dataverse token", err, dataverseFix(err))
		for _, t := range targets {
			r.skip("dataverse "+t.Entity, "needs dataverse token")
		}
		return
	}
	r.ok("dataverse token", "token for %s; WhoAmI: application user %s", cfg.DataverseURL, user)
	for _, t := range targets {
		if err := d.CheckEntity(ctx, t); err != nil {
			r.fail("dataverse "+t.Entity, err, dataverseFix(err))
			continue
		}
		r.ok("dataverse "+t.Entity, "read %s from %s", strings.Join(t.Columns, ", "), t.EntitySet)
	}
}

// checkDataverseCertificate reads DATAVERSE_CLIENT_CERTIFICATE as the
// daemon does and shows what the portal shows of it (its thumbprint), and
// warns of an expiry within dataverse.CertificateExpiryWarning (or past)
// and of a file other users may read.
func checkDataverseCertificate(path string, now time.Time, r *report) {
	const name = "dataverse certificate"
	cert, err := dataverse.ReadClientCertificate(path)
	if err != nil {
		// ParseConfig refused this already; a file changed since.
		fix := "see docs/setup.md, 3.1"
		if detail, f, ok := strings.Cut(err.Error(), "; "); ok {
			err, fix = errors.New(detail), f
		}
		r.fail(name, err, fix)
		return
	}
	until := cert.Cert.NotAfter
	desc := fmt.Sprintf("%s, subject %s, thumbprint %s (SHA-1, as the app registration's Certificates & secrets lists it)", path, cert.Cert.Subject, cert.Thumbprint())
	renew := "make a new certificate (docs/setup.md, 3.1), upload it to the app registration's Certificates & secrets next to this one, then replace " + path + " (a daemon reading that file uses it from its next token, within 75 minutes, and logs dataverse client certificate reloaded; one given a copy by systemd's LoadCredential= only after systemctl restart screenpopd; delete the old certificate from the app registration only then: docs/operations.md, 7.1)"
	switch left := until.Sub(now); {
	case left <= 0:
		r.warn(name, fmt.Sprintf("%s expired on %s: Entra ID refuses it", desc, until.UTC().Format(time.DateOnly)), renew)
	case left <= dataverse.CertificateExpiryWarning:
		r.warn(name, fmt.Sprintf("%s expires on %s (%d days)", desc, until.UTC().Format(time.DateOnly), int(left.Hours()/24)), renew)
	default:
		r.ok(name, "%s, valid until %s (%d days)", desc, until.UTC().Format(time.DateOnly), int(left.Hours()/24))
	}
	if readableByOthers(path) {
		r.warn(name, path+" is readable by other users, and its private key signs in as the app registration",
			"chmod 600 "+path+" and chown it to the service user, or hand it to the service with systemd's LoadCredential= (docs/deploy/README.md)")
	}
}

func dataverseFix(err error) string {
	var (
		ce *dataverse.ColumnError
		ae *dataverse.AuthError
		pe *dataverse.APIError
		te *dataverse.ThrottledError
	)
	switch {
	case errors.As(err, &ce) && ce.NotText:
		return "give text columns (Single line of text, e.g. telephone1, mobilephone, emailaddress1) in SCREENPOP_LOOKUP_PHONE / SCREENPOP_LOOKUP_EMAIL, or remove these (Power Apps > Tables > " + ce.Entity + " > Columns shows each column's data type)"
	case errors.As(err, &ce):
		return "correct the column's logical name in SCREENPOP_LOOKUP_PHONE / SCREENPOP_LOOKUP_EMAIL (or SCREENPOP_ENTITIES), or remove it (Power Apps > Tables > " + ce.Entity + " > Columns shows the logical names)"
	case errors.As(err, &ae) && (ae.Status == http.StatusTooManyRequests || ae.Status >= 500 || strings.HasPrefix(ae.Code, "temporarily_unavailable")):
		return "nothing to change: run check again later (the daemon keeps asking for a token)"
	case errors.As(err, &ae) && ae.AADSTS == 700027:
		return "upload the certificate to the app registration: Entra ID > App registrations > the app > Certificates & secrets > Certificates > Upload certificate, the certificate alone (openssl x509 -in " +
			"<DATAVERSE_CLIENT_CERTIFICATE> -out dataverse.crt writes it without the key); its thumbprint there must be the one on the dataverse certificate line. An expired certificate is refused too: make and upload a new one"
	case errors.As(err, &ae) && ae.AADSTS == 700024:
		return "set this host's clock right (timedatectl; NTP with chrony or systemd-timesyncd): Entra ID refuses client assertions dated more than a few minutes off its own clock"
	case errors.As(err, &ae) && (ae.AADSTS == 700021 || ae.AADSTS == 700023):
		return "check DATAVERSE_CLIENT_ID and DATAVERSE_TENANT_ID, and leave DATAVERSE_TOKEN_URL unset for Entra ID: the client assertion names the client and the tenant's token endpoint"
	case errors.As(err, &ae):
		return "see docs/setup.md, Dataverse: the app registration, its secret or certificate and the application user with the screenpop security role"
	case errors.As(err, &te) ||
		errors.As(err, &pe) && (pe.Status == http.StatusTooManyRequests || pe.Status == http.StatusRequestTimeout || pe.Status >= 500):
		// Dataverse, or the gateway in front of it, answered: this host
		// reaches it and the URL is right.
		return "nothing to change: Dataverse (or its gateway) answered but cannot serve now (an outage or throttling); run check again later (Power Platform admin center > Service health)"
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		return "check the entity set name in SCREENPOP_ENTITIES and DATAVERSE_URL"
	}
	return "check DATAVERSE_URL and that this host reaches it and the token endpoint over HTTPS"
}

// markerTTLText warns, on the nats jetstream line, of a server without
// per-key TTLs (JetStream API level 0: NATS before 2.11), on which pop
// markers cannot end with their call: they live the bucket's 24 h instead
// of grace (the daemon's marker grace) after the call.
func markerTTLText(apiLevel int, grace time.Duration) string {
	if apiLevel >= 1 {
		return ""
	}
	return fmt.Sprintf("; but the server is older than 2.11: pop markers will live 24 h after each pop instead of %.0f minutes after each call (upgrade NATS)", grace.Minutes())
}

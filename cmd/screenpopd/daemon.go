package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/internal/fdlimit"
	"github.com/screenpop/screenpop/internal/httplog"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// A graceful stop, SIGTERM to exit, ends within 10 s: the stages are given
// shutdownBudget, and closing NATS and its store what is left of
// stopWithin, so that a stop whose stages waited on a disk that does not
// answer (the publisher's and the resolver's drains) does not then wait
// the store's own bounds in full as well.
const (
	shutdownBudget = 8 * time.Second
	stopWithin     = 9 * time.Second
)

// Main is the daemon: the built parts, kept so that an end-to-end test can
// build one pointed at the emulators and look inside.
type Main struct {
	Config *Config
	Log    zerolog.Logger

	Registry   *prometheus.Registry
	Bus        *bus.Conn
	Genesys    *notifications.Client
	Dataverse  *dataverse.Client
	Normalizer *bridge.Normalizer
	Events     *bridge.EventPublisher
	Resolver   *bridge.Resolver
	Push       *push.Server

	// DemoAgents, set before Open in demo mode, is served at /demo/agents.
	DemoAgents func() any
	// TempDataDir, set before Open, says SCREENPOP_DATA_DIR is a
	// temporary directory removed at exit (the demo's): its new key is
	// nothing to back up.
	TempDataDir bool

	agentLn, adminLn net.Listener
	dataLock         io.Closer // SCREENPOP_DATA_DIR's lock, with the built-in NATS
	agentAuth        bridge.AgentAuthenticator
	snapshots        chan bridge.Snapshot
	staticAgents     []string // GENESYS_AGENTS and GENESYS_AGENTS_FILE as Open read them
	started          time.Time
	opened           atomic.Bool              // Open has built every part: the admin handlers may look at them
	startupDone      atomic.Bool              // readiness latch: everything came up once
	resolving        atomic.Bool              // the resolver's consumer exists and pulls
	stopping         atomic.Bool              // Run has begun to stop the stages: not ready
	live             atomic.Pointer[liveness] // Run's liveness check, for /healthz

	// The admin server answers from Open on (/healthz ok, /readyz 503),
	// so that probes are answered while the NATS store opens.
	adminSrv  *http.Server
	adminDone chan struct{} // closed when its Serve returned, with adminErr
	adminErr  error
}

// NewMain returns a daemon for cfg; Open builds it.
func NewMain(cfg *Config, log zerolog.Logger) *Main {
	return &Main{Config: cfg, Log: log}
}

// Open builds every part and binds the listeners, without starting the
// long-lived loops. On error the caller calls Close.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.Config
	m.started = time.Now()
	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_ready", Help: "1 while /readyz answers 200."},
		func() float64 {
			if m.Ready() {
				return 1
			}
			return 0
		}))
	// The resolver's consumer lost and not made again (NATS refusing it:
	// the stream's consumers all taken, JetStream away) pops nothing, on
	// any instance, while /readyz stays 200: a state an alert can hold,
	// not only the loss, which consumer_recreated_total counts.
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_bridge_resolver_consuming",
		Help: "1 while the resolver's consumer of the events exists and pulls; 0: no event becomes a pop here."},
		func() float64 {
			if m.resolving.Load() {
				return 1
			}
			return 0
		}))
	// The listeners first: a port in use is the commonest start-up error
	// and should come before any remote call, and the admin listener
	// answers probes while SCREENPOP_DATA_DIR is read (its disk may not
	// answer: onDataDir).
	tlsCfg, err := push.LoadTLS(cfg.TLSCert, cfg.TLSKey, m.Log)
	if err != nil {
		if hint := credentialsHint(cfg, err); hint != "" {
			return fmt.Errorf("%w; %s", err, hint)
		}
		return err // it names SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY
	}
	if tlsCfg != nil {
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_push_tls_certificate_expiry_timestamp_seconds",
			Help: "When the agent listener's certificate (as served now: renewals are read without a restart) expires, in Unix seconds."},
			func() float64 {
				leaf, err := push.Leaf(tlsCfg)
				if err != nil {
					return math.NaN()
				}
				return float64(leaf.NotAfter.Unix())
			}))
	}
	if m.agentLn, err = push.Listen(cfg.Listen, tlsCfg, cfg.AllowPlaintext, m.Log); err != nil {
		if isAddrInUse(err) {
			// The commonest case on a first run: another screenpopd (a
			// demo left running) holds the default ports.
			return fmt.Errorf("%w: another program holds it, perhaps another screenpopd (a demo still running): stop it, or set SCREENPOP_LISTEN to a free address (a second instance also needs its own SCREENPOP_ADMIN_LISTEN, SCREENPOP_NATS_LISTEN and SCREENPOP_DATA_DIR)", err)
		}
		return fmt.Errorf("SCREENPOP_LISTEN %s: %w", cfg.Listen, err)
	}
	// Out of descriptors, the agent listener refuses new tabs before the
	// last ones go, so the pops of the pages open, the admin listener and
	// the lookups keep theirs; both listeners log it as one JSON line
	// every 10 s, not net/http's plain-text line every second.
	fdErrors := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "screenpop_listener_fd_exhausted_total",
		Help: "Accepts that failed for want of a file descriptor (RLIMIT_NOFILE reached), by listener."}, []string{"listener"})
	fdRefused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "screenpop_listener_fd_refused_total",
		Help: "Connections refused because they would take one of the descriptors kept in reserve under RLIMIT_NOFILE, by listener."}, []string{"listener"})
	m.Registry.MustRegister(fdErrors, fdRefused)
	fdLog := m.Log.With().Str("component", "main").Logger()
	m.agentLn = fdlimit.Listen(m.agentLn, fdlimit.Config{Name: "agent", Reserve: true, Log: fdLog,
		Errors: fdErrors.WithLabelValues("agent"), Refused: fdRefused.WithLabelValues("agent")})
	if cfg.AdminListen != "off" {
		if m.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("SCREENPOP_ADMIN_LISTEN %s: %w (choose a free address or off)", cfg.AdminListen, err)
		}
		m.adminLn = fdlimit.Listen(m.adminLn, fdlimit.Config{Name: "admin", Log: fdLog, Errors: fdErrors.WithLabelValues("admin")})
		// Served at once: opening a large NATS store takes seconds, and
		// a liveness probe must not time out meanwhile.
		m.startAdmin()
	}

	keyPath := filepath.Join(cfg.DataDir, "pii-hash.key")
	var hasher bridge.Hasher
	var made bool
	if err := onDataDir(m.Log, cfg.DataDir, "pii-hash.key", startDiskWait, func() error {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("SCREENPOP_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		var err error
		hasher, made, err = loadHasher(keyPath)
		return err
	}); err != nil {
		return err
	}
	if made && m.TempDataDir {
		m.Log.Debug().Str("component", "main").Str("path", keyPath).Msg("made a new pii-hash.key in the temporary data directory")
	} else if made {
		m.Log.Info().Str("component", "main").Str("path", keyPath).Msg("made a new pii-hash.key: caller_hash in the log now differs from any earlier key's (another instance's, a lost data directory's); back it up with SCREENPOP_DATA_DIR and give every instance of a pair the same one")
	}
	if err := privatePIIKey(keyPath); err != nil {
		m.Log.Warn().Str("component", "main").Err(err).Str("path", keyPath).Msg("pii-hash.key is readable by other users and its mode cannot be changed: chmod 600 it and chown it to the service user")
	}

	bcfg := bus.Config{
		URL: cfg.NatsURL, Creds: cfg.NatsCreds, TLSCA: cfg.NatsTLSCA, TLSCrt: cfg.NatsTLSCert, TLSKey: cfg.NatsTLSKey,
		Listen: cfg.NatsListen, DataDir: cfg.DataDir,
		Stream: cfg.Stream, StreamMaxAge: cfg.StreamMaxAge, StreamReplicas: cfg.StreamReplicas,
		MarkerGrace: markerGrace(cfg.MaxEventAge), Owner: deploymentOwner(cfg), Registerer: m.Registry,
	}
	if cfg.NatsURL == "" {
		err = onDataDir(m.Log, cfg.DataDir, "the built-in NATS store", startDiskWait, func() error {
			// The built-in server's store is this process's alone: a
			// second instance on it (a deploy that starts the new one
			// before the old has gone, a second instance on other ports)
			// would write over this one's stored events and pops.
			lock, inUse, err := lockDataDir(cfg.DataDir)
			if inUse {
				return fmt.Errorf("SCREENPOP_DATA_DIR %s is in use by another screenpopd (its built-in NATS store): stop it first, or give this instance its own SCREENPOP_DATA_DIR", cfg.DataDir)
			}
			if err != nil {
				return fmt.Errorf("SCREENPOP_DATA_DIR %s: lock: %w", cfg.DataDir, err)
			}
			m.dataLock = lock
			m.Bus, err = bus.Start(ctx, bcfg, m.Log)
			return err
		})
	} else {
		m.Bus, err = bus.Start(ctx, bcfg, m.Log)
	}
	if err != nil {
		return err
	}
	if store := filepath.Join(cfg.DataDir, "jetstream"); cfg.NatsURL != "" && dirHasEntries(store) {
		// The built-in server's store of an earlier run without NATS_URL:
		// no server opens it any more, so nothing in it ever ages out.
		m.Log.Warn().Str("component", "main").Str("store_dir", store).
			Msg("SCREENPOP_DATA_DIR holds the built-in NATS store of a run without NATS_URL: its events and pops (customer data) are no longer aged out by SCREENPOP_STREAM_MAX_AGE and stay on disk until you delete it; delete the directory once no rollback to the built-in server is needed (docs/operations.md, section 8)")
	}

	if p := cfg.DataverseClientCertificate; p != "" && readableByOthers(p) {
		m.Log.Warn().Str("component", "main").Str("path", p).
			Msg("DATAVERSE_CLIENT_CERTIFICATE is readable by other users: its private key signs in as the app registration; chmod 600 it and chown it to the service user (or hand it over with systemd's LoadCredential=)")
	}
	m.Dataverse, err = dataverse.New(dataverse.Config{
		URL: cfg.DataverseURL, TenantID: cfg.DataverseTenantID, ClientID: cfg.DataverseClientID,
		ClientSecret: cfg.DataverseClientSecret, ClientCertificate: cfg.DataverseClientCertificate,
		TokenURL: cfg.DataverseTokenURL, AppID: cfg.DataverseAppID,
		Phone: cfg.LookupPhone, Email: cfg.LookupEmail, Entities: cfg.Entities, PhoneRegion: cfg.PhoneRegion,
		CacheTTL: cfg.CacheTTL, NegativeCacheTTL: cfg.NegativeCacheTTL, Concurrency: cfg.DataverseConcurrency,
		// A lookup not sent by the pop deadline has no pop left to make.
		QueueTimeout: cfg.PopDeadline,
		Registerer:   m.Registry,
	}, m.Log)
	if err != nil {
		return err
	}

	agents, err := cfg.Agents()
	if err != nil {
		return err
	}
	m.staticAgents = agents
	m.warnNoFile(m.Log.With().Str("component", "main").Logger())
	// Bounded: when the normalizer falls behind, the Genesys readers
	// block (counted as back-pressure) instead of queueing without end.
	m.snapshots = make(chan bridge.Snapshot, 4096)
	m.Genesys, err = notifications.New(notifications.Config{
		Region: cfg.GenesysRegion, APIURL: cfg.GenesysAPIURL, ClientID: cfg.GenesysClientID, ClientSecret: cfg.GenesysClientSecret,
		Agents: agents, AgentsChange: cfg.GenesysAgentsFile != "", Queues: cfg.GenesysQueues, QueueRefresh: cfg.GenesysQueueRefresh,
		TopicsPerChannel: cfg.topicsPerChannel, Registerer: m.Registry,
	}, m.Log, m.snapshots)
	if err != nil {
		return err
	}

	m.Normalizer, err = bridge.NewNormalizer(bridge.NormalizerConfig{PhoneRegion: cfg.PhoneRegion, Registerer: m.Registry}, m.Log)
	if err != nil {
		return err
	}
	// The shutdown budget is 10 s in all: the publisher flushes for at
	// most 2 s, the resolver finishes in-flight pops for at most 3 s.
	m.Events, err = bridge.NewEventPublisher(bridge.EventPublisherConfig{DrainTimeout: 2 * time.Second, Registerer: m.Registry}, m.Bus, m.Log)
	if err != nil {
		return err
	}
	m.Resolver, err = bridge.NewResolver(bridge.ResolverConfig{
		PopOn: bridge.State(cfg.PopOn), MaxEventAge: cfg.MaxEventAge, Deadline: cfg.PopDeadline,
		CreateEntity: cfg.CreateEntity, OverrideEntityKey: cfg.OverrideEntityKey, OverrideIDKey: cfg.OverrideIDKey,
		PopInternal: cfg.PopInternal, PublishTimeout: resolverPublishTimeout(cfg.PopDeadline), Registerer: m.Registry,
		Prefill: createPrefill(cfg),
	}, m.Dataverse, m.Bus, m.Bus, hasher, m.Log)
	if err != nil {
		return err
	}

	var auth bridge.AgentAuthenticator
	switch cfg.Auth {
	case "jwt":
		if auth, err = push.NewJWTAuthenticator([]byte(cfg.JWTSecret), cfg.JWTAudience, []byte(cfg.JWTSecretPrevious)); err != nil {
			return fmt.Errorf("SCREENPOP_JWT_SECRET: %w", err)
		}
	default:
		if auth, err = notifications.NewAuthenticator(notifications.AuthConfig{Region: cfg.GenesysRegion, APIURL: cfg.GenesysAPIURL, Org: m.Genesys.OrgID}, m.Log); err != nil {
			return err
		}
	}
	m.agentAuth = auth
	m.Push, err = push.New(push.Config{
		Auth: cfg.Auth, JWTSecret: []byte(cfg.JWTSecret), JWTAudience: cfg.JWTAudience, AllowedOrigins: cfg.AllowedOrigins,
		ReplayWindow: cfg.ReplayWindow, FreshWindow: cfg.FreshWindow, DemoAgents: m.DemoAgents,
		Registerer: m.Registry, Stuck: func() bool { part, _ := m.stuck(); return part != "" }, Stopping: m.stopping.Load,
	}, m.Bus, auth, m.Log)
	if err != nil {
		return err
	}
	m.opened.Store(true)
	return nil
}

// deploymentOwner names the deployment cfg belongs to, for the resolver's
// consumer (bus.Config.Owner): its Dataverse, which decides what every
// pop opens. The instances of a pair have the same; two deployments
// sharing one NATS account by mistake (staging next to production, two
// Genesys orgs with a Dynamics org each) do not. The Genesys org would not
// do: staging and production may share it, and it is learned only after
// the first login. It is the URL's origin in one form, whichever the
// instances were given: lower case, without a default port or the trailing
// dot of a fully qualified host (the forms of one Dataverse that
// DATAVERSE_URL takes), so a pair written differently is still one.
func deploymentOwner(cfg *Config) string {
	u, err := url.Parse(cfg.DataverseURL)
	if err != nil || u.Host == "" {
		return strings.ToLower(cfg.DataverseURL)
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if port := u.Port(); port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	return scheme + "://" + host
}

// Run runs every component until ctx is cancelled or one of them fails,
// then stops them in the order data flows, so that nothing already read is
// dropped: the Genesys input stops; the snapshots it delivered are
// normalized; the event publisher flushes its buffer to NATS; the resolver
// finishes the pops in flight; then push closes agent sockets with 1001
// and the rest stops. NATS is closed last. It returns nil after a clean
// stop.
func (m *Main) Run(ctx context.Context) error {
	defer m.Close()
	log := m.Log.With().Str("component", "main").Logger()
	live, watchdog := m.newLiveness(log)
	m.live.Store(live) // /healthz reads it
	stages := [][]func(context.Context) error{
		{m.Genesys.Run, m.watchAgentsFile},
		{m.pumpSnapshots},
		{m.Events.Run},
		{func(ctx context.Context) error {
			return m.Bus.ConsumeEvents(ctx, bus.ConsumeConfig{Subjects: bridge.ResolverSubjects, AckWait: resolverAckWait(m.Config.PopDeadline), DrainWithin: 3 * time.Second, Since: m.Config.MaxEventAge, Consuming: m.resolving.Store}, m.Resolver.HandleMessage)
		}},
		{
			func(ctx context.Context) error { return m.Push.Run(ctx, m.agentLn) },
			m.Dataverse.Run,
			func(ctx context.Context) error { return m.watchReady(ctx, log) },
			func(ctx context.Context) error { feedWatchdog(ctx, live, watchdog, log); return nil },
		},
	}
	// names say, in the log of a stop cut short, which stage had not ended.
	names := []string{"genesys input", "snapshot pump", "event publisher", "resolver", "agent listener, dataverse and admin"}
	if m.adminLn != nil {
		last := len(stages) - 1
		stages[last] = append(stages[last], m.serveAdmin)
	}
	failed := make(chan error, 16)
	cancels := make([]context.CancelFunc, len(stages))
	dones := make([]chan struct{}, len(stages))
	for i, stage := range stages {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i], dones[i] = cancel, make(chan struct{})
		var wg sync.WaitGroup
		for _, run := range stage {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := run(sctx); err != nil && sctx.Err() == nil {
					failed <- err
				}
			}()
		}
		go func() { wg.Wait(); close(dones[i]) }()
	}
	log.Info().Str("version", version).Str("agent_listen", m.agentLn.Addr().String()).Str("admin_listen", m.AdminAddr()).
		Str("nats_url", m.Bus.ClientURL()).Str("auth", m.Config.Auth).Msg("screenpopd started")
	sdNotify(log, daemon.SdNotifyReady)
	if aw := resolverAckWait(m.Config.PopDeadline); m.Config.MaxEventAge > 0 && m.Config.MaxEventAge <= aw {
		log.Warn().Dur("max_event_age", m.Config.MaxEventAge).Dur("ack_wait", aw).
			Msg("SCREENPOP_MAX_EVENT_AGE is not above the resolver's ack wait: the events of an instance that dies come back too old to pop; raise it")
	}
	if !searched(m.Config.LookupPhone, m.Config.CreateEntity) && !searched(m.Config.LookupEmail, m.Config.CreateEntity) {
		log.Warn().Str("create_entity", m.Config.CreateEntity).
			Msg("SCREENPOP_CREATE_ENTITY is not searched by SCREENPOP_LOOKUP_PHONE or SCREENPOP_LOOKUP_EMAIL: a record an agent saves from a create pop is never found, and its caller pops create at every call; add the entity to a lookup, or create one the lookups search")
	}

	if set := jwtSettings(m.Config); m.Config.Auth != "jwt" && len(set) > 0 {
		log.Warn().Strs("settings", set).Str("auth", m.Config.Auth).
			Msgf("%s set, but SCREENPOP_AUTH is %s: pages that send a jwt token are refused (4401); set SCREENPOP_AUTH=jwt, or unset them", strings.Join(set, ", "), m.Config.Auth)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		log.Error().Err(err).Msg("screenpopd stopping after a component failed")
	}
	m.stopping.Store(true) // /readyz: send no new agents here
	sdNotify(log, daemon.SdNotifyStopping)
	stopBy := time.Now().Add(stopWithin)
	budget := time.After(shutdownBudget)
	for i := range stages {
		cancels[i]()
		select {
		case <-dones[i]:
		case <-budget:
			for _, c := range cancels[i:] {
				c()
			}
			err := fmt.Errorf("shutdown took longer than %v: the %s had not stopped", shutdownBudget, names[i])
			log.Error().Err(err).Msg("screenpopd stop cut short")
			m.closeWithin(max(0, time.Until(stopBy)))
			return err
		}
	}
	if err != nil {
		return err
	}
	// NATS is flushed and closed last, before the clean stop is reported:
	// a flush NATS did not confirm ("nats flush on close") must not come
	// after "screenpopd stopped".
	m.closeWithin(max(0, time.Until(stopBy)))
	log.Info().Int64("uptime_s", int64(time.Since(m.started).Seconds())).Msg("screenpopd stopped")
	return nil
}

// pumpSnapshots normalizes what the Genesys readers deliver and hands the
// events to the asynchronous publisher. After ctx ends it empties the
// channel so no snapshot already read is lost.
func (m *Main) pumpSnapshots(ctx context.Context) error {
	for {
		select {
		case s := <-m.snapshots:
			m.Events.Enqueue(m.Normalizer.Normalize(s)...)
		case <-ctx.Done():
			for {
				select {
				case s := <-m.snapshots:
					m.Events.Enqueue(m.Normalizer.Normalize(s)...)
				default:
					return nil
				}
			}
		}
	}
}

// resolverAckWait is the resolver consumer's ack wait: bus.DefaultAckWait,
// or longer when a long pop deadline could keep a handler past it.
func resolverAckWait(popDeadline time.Duration) time.Duration {
	return max(bus.DefaultAckWait, popDeadline+5*time.Second)
}

// resolverPublishTimeout bounds the retries of a pop's publish so that a
// handler's worst case, the lookup until the pop deadline, the publish
// retries and the 2 s unmark after they fail, ends a second inside the
// consumer's ack wait: 5 s by default, at least 2 s. The consumer keeps a
// running handler's event in progress past its ack wait, but only while
// NATS hears it; when it does not, the event comes back after the ack wait,
// and a handler that has finished by then leaves it nothing to race.
func resolverPublishTimeout(popDeadline time.Duration) time.Duration {
	return resolverAckWait(popDeadline) - popDeadline - 3*time.Second
}

// markerGrace is how long a pop marker outlives its leg: bus's default, or
// twice the max event age when that is longer, so that every event of an
// ended leg is too old to pop by the time its marker goes.
func markerGrace(maxEventAge time.Duration) time.Duration {
	return max(bus.DefaultMarkerGrace, 2*maxEventAge)
}

// watchReady logs readiness changes, and the liveness check's getting
// stuck and unstuck, once each.
func (m *Main) watchReady(ctx context.Context, log zerolog.Logger) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	was, wasStuck := false, false
	var lost time.Time // when it went not ready after its start
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if l := m.live.Load(); l != nil {
				part, since := l.stuck(time.Now())
				if stuck := part != ""; stuck != wasStuck && !m.stopping.Load() {
					wasStuck = stuck
					if stuck {
						log.Error().Str("part", part).Int64("stuck_s", int64(since.Seconds())).
							Msg("screenpopd is stuck: a component has not answered for its state; /healthz answers 503 and systemd's watchdog restarts it (else restart it), after kill -ABRT for a goroutine dump")
					} else {
						log.Info().Msg("screenpopd is no longer stuck")
					}
				}
			}
			if now := m.Ready(); now != was {
				if m.stopping.Load() {
					// A stop, not an outage: "screenpopd stopped" follows.
					return nil
				}
				was = now
				switch {
				case now && lost.IsZero():
					log.Info().Int64("startup_ms", time.Since(m.started).Milliseconds()).Msg("screenpopd ready")
				case now:
					// After an outage: startup_ms would be the uptime,
					// which reads like a restart.
					log.Info().Int64("not_ready_ms", time.Since(lost).Milliseconds()).Msg("screenpopd ready again")
				default:
					lost = time.Now()
					log.Warn().Msg("screenpopd not ready: NATS disconnected")
				}
			}
		}
	}
}

// Ready is /readyz: true once start-up is complete (NATS and the stream
// up, the resolver's consumer pulling, the agent listener serving, the
// first Genesys subscription done and a first Dataverse token obtained)
// and then for as long as NATS is connected, until the daemon begins to
// stop.
func (m *Main) Ready() bool {
	if !m.opened.Load() || m.stopping.Load() || m.Bus == nil || !m.Bus.Connected() {
		return false
	}
	if m.startupDone.Load() {
		return true
	}
	if m.resolving.Load() && m.Push != nil && m.Push.Ready() && m.Genesys != nil && m.Genesys.Ready() && m.Dataverse != nil && m.Dataverse.Ready() {
		m.startupDone.Store(true)
		return true
	}
	return false
}

// AgentURL is the agent listener's base URL.
func (m *Main) AgentURL() string {
	scheme := "http"
	if m.Config.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + m.agentLn.Addr().String()
}

// AdminAddr is the admin listener's address, "" when off.
func (m *Main) AdminAddr() string {
	if m.adminLn == nil {
		return ""
	}
	return m.adminLn.Addr().String()
}

// Close releases what Open built. Run calls it; call it yourself only
// after a failed Open.
func (m *Main) Close() { m.closeWithin(-1) }

// closeWithin is Close with NATS and its store given at most d in all
// (bus.Conn.CloseWithin; each part keeps a least wait a store that answers
// needs); d < 0: their own bounds (bus.Conn.Close). Only the first close of
// the bus counts.
func (m *Main) closeWithin(d time.Duration) {
	m.stopAdmin(0)
	if m.agentLn != nil {
		m.agentLn.Close()
	}
	if m.adminLn != nil {
		m.adminLn.Close()
	}
	if m.Dataverse != nil {
		m.Dataverse.Close()
	}
	if c, ok := m.agentAuth.(io.Closer); ok {
		// After the agent listener: no check starts any more.
		c.Close()
	}
	if m.Bus != nil {
		if d < 0 {
			m.Bus.Close()
		} else {
			m.Bus.CloseWithin(d)
		}
	}
	if m.dataLock != nil && (m.Bus == nil || !m.Bus.StoreLeftOpen()) {
		// After the store is closed: the next instance may open it now.
		// A store left open (its disk did not answer) keeps the lock
		// until the process is gone.
		m.dataLock.Close()
		m.dataLock = nil
	}
}

// loadHasher reads the per-deployment key of the PII hash, creating it on
// first start (made). Without the key a logged hash cannot be reversed by
// hashing every phone number.
func loadHasher(path string) (h bridge.Hasher, made bool, err error) {
	key, err := readPIIKey(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return bridge.Hasher{}, false, fmt.Errorf("make pii hash key: %w", err)
		}
		if err := writeFileAtomic(path, key); err != nil {
			return bridge.Hasher{}, false, fmt.Errorf("write pii hash key (SCREENPOP_DATA_DIR must be writable): %w", err)
		}
		made = true
	} else if err != nil {
		return bridge.Hasher{}, false, err
	}
	return bridge.NewHasher(key), made, nil
}

// privatePIIKey makes an existing PII hash key readable by its owner only
// (0600, as made at first start). A key copied from another instance
// (architecture.md: every instance needs the same one) gets the copier's
// umask, often 0644: any local user could then read it and, trying every
// phone number, reverse the caller_hash in the logs.
func privatePIIKey(path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return os.Chmod(path, 0o600)
}

// readableByOthers reports whether users other than the file's owner may
// read path: its group or everyone (a key written under the usual umask
// 022 is 0644). Unlike pii-hash.key (privatePIIKey), which the daemon made
// and owns, such a file is the admin's, or systemd's read-only copy, so it
// is warned of, not changed.
func readableByOthers(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return false
	}
	// With an access ACL the group bits are the ACL's mask: systemd's
	// LoadCredential= copy on a tmpfs is 0400 plus a read entry for the
	// service's user, which shows as 0440. The ACL says who may read.
	if others, ok := aclReadableByOthers(path); ok {
		return others
	}
	return true
}

// writeFileAtomic writes b to path (mode 0600) through a temporary file in
// the same directory, so that a write cut short (a full disk, a crash)
// leaves no partial file at path for the next start to refuse, and syncs
// the file and the directory, so that a power cut does not undo it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	// The rename is the directory's change: until the directory is
	// synced, a power cut can undo it, and the next start would make
	// another key (every caller_hash logged before would change). Best
	// effort: some file systems cannot sync a directory.
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// minPIIKey is the shortest PII hash key the daemon accepts.
const minPIIKey = 16

// readPIIKey reads an existing PII hash key: an error wrapping
// os.ErrNotExist when there is none yet, another when it cannot be read or
// is too short. loadHasher and `screenpopd check` share it, so that check
// refuses exactly what would stop the daemon.
func readPIIKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read pii hash key: %w", err)
	}
	if len(key) < minPIIKey {
		return nil, fmt.Errorf("pii hash key %s is shorter than %d bytes; delete it to have a new one made", path, minPIIKey)
	}
	return key, nil
}

// warnNoFile logs the open-file limit, and warns when it leaves fewer agent
// sockets than agents are watched (one tab each; queue members are not
// known yet).
func (m *Main) warnNoFile(log zerolog.Logger) {
	limit, ok := fdlimit.Limit()
	if !ok {
		return
	}
	room := uint64(0)
	if r := fdlimit.Reserve(limit); limit > r+64 {
		room = limit - r - 64 // the daemon's own sockets and files
	}
	if agents := m.staticAgents; uint64(len(agents)) > room {
		log.Warn().Uint64("nofile_limit", limit).Uint64("agent_sockets", room).Int("agents", len(agents)).
			Msg("the open-file limit leaves fewer agent sockets than agents watched: their pages will be refused; " + fdlimit.Hint)
		return
	}
	log.Info().Uint64("nofile_limit", limit).Uint64("agent_sockets", room).Msg("open-file limit")
}

// startAdmin serves the admin listener (/metrics, /healthz, /readyz,
// /status and pprof) in the background, from Open on.
func (m *Main) startAdmin() {
	// Bounded in time like the agent listener: a request not read in
	// ReadTimeout, an answer (/metrics, /status) not taken in WriteTimeout
	// (pprof extends it by a profile's or trace's duration) and a
	// keep-alive connection idle for IdleTimeout are closed, not held for
	// good.
	m.adminSrv = &http.Server{Handler: m.adminHandler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10,
		ErrorLog: httplog.ErrorLog(m.Log.With().Str("component", "main").Logger())}
	m.adminDone = make(chan struct{})
	srv, ln := m.adminSrv, m.adminLn
	go func() {
		m.adminErr = srv.Serve(ln)
		close(m.adminDone)
	}()
}

// stopAdmin stops the admin server, letting requests in flight finish
// for up to grace, and waits for its Serve to return. Close calls it with
// no grace, also while Run's stage is in its grace (a stop cut short):
// the server's Shutdown and Close may run at once.
func (m *Main) stopAdmin(grace time.Duration) {
	if m.adminSrv == nil {
		return
	}
	if grace > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		m.adminSrv.Shutdown(ctx)
		cancel()
	}
	m.adminSrv.Close()
	<-m.adminDone
}

// serveAdmin is the admin listener's stage of Run: it stops the server
// started by Open when ctx ends.
func (m *Main) serveAdmin(ctx context.Context) error {
	select {
	case <-m.adminDone:
		return fmt.Errorf("admin listener: %w", m.adminErr)
	case <-ctx.Done():
		m.stopAdmin(2 * time.Second)
		return nil
	}
}

// createPrefill is the prefill of create pops: the built-in entities'
// columns, except that the caller's number and email go into a column the
// lookups search for the create entity. A contact saved from a create pop
// with the number in telephone1, where SCREENPOP_LOOKUP_PHONE searches
// contacts' mobilephone only, would never be found: every call of that
// caller would pop create again, and the agents would save a contact each
// time.
func createPrefill(cfg *Config) map[string]bridge.PrefillColumns {
	p := bridge.DefaultPrefill()
	cols, ok := p[cfg.CreateEntity]
	if !ok {
		return p
	}
	cols.Phone = searchedColumn(cfg.LookupPhone, cfg.CreateEntity, cols.Phone)
	cols.Email = searchedColumn(cfg.LookupEmail, cfg.CreateEntity, cols.Email)
	p[cfg.CreateEntity] = cols
	return p
}

// searched reports whether list searches entity.
func searched(list []dataverse.EntityColumns, entity string) bool {
	return slices.ContainsFunc(list, func(ec dataverse.EntityColumns) bool { return ec.Entity == entity && len(ec.Columns) > 0 })
}

// searchedColumn returns col when list searches it for entity (or does not
// search entity at all), else the first column list searches for entity.
func searchedColumn(list []dataverse.EntityColumns, entity, col string) string {
	first := ""
	for _, ec := range list {
		if ec.Entity != entity {
			continue
		}
		if slices.Contains(ec.Columns, col) {
			return col
		}
		if first == "" && len(ec.Columns) > 0 {
			first = ec.Columns[0]
		}
	}
	if first == "" {
		return col
	}
	return first
}

// dirHasEntries reports whether dir exists and holds anything.
func dirHasEntries(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// jwtSettings names the jwt-mode settings cfg has, which only
// SCREENPOP_AUTH=jwt reads.
func jwtSettings(cfg *Config) []string {
	return setVars("SCREENPOP_JWT_SECRET", cfg.JWTSecret, "SCREENPOP_JWT_SECRET_PREVIOUS", cfg.JWTSecretPrevious, "SCREENPOP_JWT_AUDIENCE", cfg.JWTAudience)
}

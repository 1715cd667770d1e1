package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/loglimit"
)

// Config says where NATS is and how the stream looks. Zero fields mean the
// defaults of DESIGN.md.
type Config struct {
	// URL of external NATS servers, comma-separated. Empty starts an
	// embedded server.
	URL    string
	Creds  string // NATS credentials file (external only)
	TLSCA  string // CA bundle for external servers
	TLSCrt string // client certificate
	TLSKey string // client key

	// Listen is where the embedded server accepts clients: host:port
	// (port 0 picks a free one) or "off" for in-process connections only.
	// Default 127.0.0.1:4222.
	Listen  string
	DataDir string // the embedded JetStream store lives in DataDir/jetstream; default ./data

	Stream         string        // default SCREENPOP
	StreamMaxAge   time.Duration // default 24h
	StreamReplicas int           // default 1
	// PlacementWait is how long Start waits for a cluster that cannot
	// place the stream's replicas yet (its servers still starting, or
	// electing a leader) before it gives up; default DefaultPlacementWait.
	PlacementWait   time.Duration
	DuplicateWindow time.Duration // default 2m
	MarkerBucket    string        // default screenpop-pops
	// MarkerTTL is how long a pop marker lives unless its leg's end is
	// seen (EndPop); default 24h. It must outlast the normalizer's memory
	// of an idle conversation (12 h), or a leg silent that long whose next
	// snapshot makes an event would pop again.
	MarkerTTL time.Duration
	// MarkerGrace is how long a marker lives once its leg has ended
	// (EndPop); default DefaultMarkerGrace. It must outlast the resolver's
	// max event age, so that an event of the leg still queued when the leg
	// ended is stale by the time its marker goes.
	MarkerGrace time.Duration

	Name string // client connection name; default screenpopd
	// Owner names the deployment this daemon belongs to (cmd: its
	// DATAVERSE_URL): the daemons of one owner (a pair) share the
	// resolver's consumer, which records its owner in its metadata. Another
	// deployment's daemons on the same NATS account would share it too
	// (the subjects, the stream and the consumer are the same), and look
	// up that deployment's events in their own Dataverse: Start and
	// ConsumeEvents refuse a consumer another owner consumes from
	// (ErrOtherDeployment). Empty: no check.
	Owner      string
	Registerer prometheus.Registerer
}

// DefaultDurable is the resolver's durable consumer.
const DefaultDurable = "screenpop-resolver"

// ownerKey is the resolver consumer's metadata key naming its owner
// (Config.Owner).
const ownerKey = "screenpop_owner"

// ErrOtherDeployment is Start's and ConsumeEvents' error when another
// deployment's daemons consume from the resolver's consumer.
var ErrOtherDeployment = errors.New("another screenpop deployment uses this NATS account")

// DefaultOwnerCheck is how often a running resolver reads its consumer's
// owner again (ConsumeConfig.OwnerCheck).
const DefaultOwnerCheck = 15 * time.Second

// DefaultMarkerBucket is the key-value bucket of the pop markers.
const DefaultMarkerBucket = "screenpop-pops"

// DefaultDuplicateWindow is the stream's duplicate window. JetStream
// refuses a stream whose max age is shorter.
const DefaultDuplicateWindow = 2 * time.Minute

// DefaultMarkerGrace is how long a marker outlives its leg by default.
const DefaultMarkerGrace = 15 * time.Minute

// DefaultPlacementWait is how long Start waits by default for a cluster
// that cannot place the stream yet: a cluster whose hosts booted with the
// daemon's forms and elects within seconds.
const DefaultPlacementWait = time.Minute

// markerLimitTTL is how long the server keeps the delete marker it leaves
// when a pop marker expires (a key-value watcher's notice; nothing here
// watches). Setting it is what turns per-key TTLs on; a second is the
// least the server takes.
const markerLimitTTL = time.Second

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Stream == "" {
		c.Stream = "SCREENPOP"
	}
	if c.StreamMaxAge == 0 {
		c.StreamMaxAge = 24 * time.Hour
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MarkerBucket == "" {
		c.MarkerBucket = DefaultMarkerBucket
	}
	if c.MarkerTTL == 0 {
		c.MarkerTTL = 24 * time.Hour
	}
	if c.MarkerGrace == 0 {
		c.MarkerGrace = DefaultMarkerGrace
	}
	if c.PlacementWait == 0 {
		c.PlacementWait = DefaultPlacementWait
	}
	if c.Name == "" {
		c.Name = "screenpopd"
	}
}

// Conn is a connection to NATS with screenpop's stream and bucket in place.
type Conn struct {
	cfg     Config
	log     zerolog.Logger
	ns      *embedded // the built-in server; nil with external NATS
	nc      *nats.Conn
	js      jetstream.JetStream
	leader  nats.JetStreamContext // for reads only a leader answers: lastPop, marker
	stream  jetstream.Stream
	markers jetstream.KeyValue
	// markerTTLs is whether the bucket takes per-key TTLs (NATS 2.11 and
	// later): without them EndPop leaves markers to the bucket's TTL.
	markerTTLs bool
	// markersReplicated is whether the bucket has more than one replica:
	// then the markers that decide are read from its leader (marker).
	markersReplicated bool
	// shareLogged is the stream byte limit storeShare said last.
	shareLogged atomic.Int64
	recheck     sync.Mutex // see recheckStream
	// subjectsChecked is when a publish nothing answered last read the
	// stream's subjects (restoreSubjects), Unix nanoseconds.
	subjectsChecked atomic.Int64
	// epoch is the stream's creation time: it changes when the stream is
	// found recreated under the running daemon (FollowPops).
	epoch   atomic.Pointer[string]
	metrics *metrics
	// clock is the NATS server's clock against this host's (see
	// serverClock): stored times, marker ages and consumer start times are
	// the server's.
	clock serverClock

	// reads bounds the short-lived consumers of ReplayPops held at once.
	// nats-server (releases after 2.10) refuses a stream's consumers past
	// a limit, 1,000 by default, which a stream of MaxConsumers -1 cannot
	// opt out of: every agent's page resuming at once (a restart, a load
	// balancer dropping every socket) made one each, and the pages past
	// the limit were closed with 1013; any other consumer of the stream
	// made meanwhile (the follow's, the resolver's, another service's)
	// would be refused too. checks is PopStored's own few: the resolver's
	// check of a marker left without its pop has 2 s, and must not wait
	// behind a storm of replays (the death of an instance brings both).
	reads, checks chan struct{}
	// fullLines keeps the line of a replay refused its consumer by the
	// stream's consumer limit to one a minute, and FollowPops' own.
	fullLines *loglimit.Limiter
	// followRemaking counts the FollowPops whose consumer, live before,
	// is being made again and was refused (see PopsFollowed).
	followRemaking atomic.Int32

	closeOnce sync.Once
	closing   atomic.Bool

	// store watches the embedded server's store for write errors (a full
	// or read-only disk) and starts the server again once it can write
	// (storewatch.go); nil with external NATS.
	store *storeWatch
	// storeLeftOpen: Close gave up on the embedded server's shutdown.
	storeLeftOpen atomic.Bool
}

var (
	_ bridge.Publisher   = (*Conn)(nil)
	_ bridge.PopStore    = (*Conn)(nil)
	_ bridge.PopEnder    = (*Conn)(nil)
	_ bridge.PopUnmarker = (*Conn)(nil)
	_ bridge.PopFinder   = (*Conn)(nil)
	_ bridge.PopChecker  = (*Conn)(nil)
	_ bridge.PopReader   = (*Conn)(nil)
)

// Start connects to NATS (starting the embedded server first when cfg.URL is
// empty) and creates or updates the stream and the pop-marker bucket.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*Conn, error) {
	cfg.setDefaults()
	c := &Conn{cfg: cfg, log: log.With().Str("component", "bus").Logger(), metrics: newMetrics(cfg.Registerer), reads: make(chan struct{}, maxReadConsumers), checks: make(chan struct{}, maxCheckConsumers),
		fullLines: loglimit.New(time.Minute, 2)}
	authRefusals := loglimit.New(time.Minute, 8)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.metrics.connected.Set(0)
			if !c.closing.Load() {
				c.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.metrics.connected.Set(1)
			c.metrics.reconnects.Inc()
			c.log.Info().Str("server", nc.ConnectedServerId()).Msg("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAuthExpired) {
				// The servers drop the connection of a user revoked or
				// expired: the last step of a rotation done in order (the
				// new NATS_CREDS in place first). The reconnect reads the
				// file again; only its refusal (authorization violation)
				// is an error.
				if ok, held := authRefusals.Allow(err.Error(), time.Now()); ok {
					c.log.Warn().Err(err).Int("held_back", held).Msg("nats dropped the connection's user; reconnecting with NATS_CREDS read again")
				}
				return
			}
			if isAuthError(err) {
				// Each reconnect is refused while the credentials are
				// wrong: once a minute is enough to say so.
				if ok, held := authRefusals.Allow(err.Error(), time.Now()); ok {
					c.log.Error().Err(err).Int("held_back", held).Msg("nats refused the credentials; retrying: check NATS_CREDS or the user in NATS_URL")
				}
				return
			}
			c.log.Warn().Err(err).Msg("nats async error")
		}),
	}
	url := cfg.URL
	if url == "" {
		c.store = newStoreWatch(cfg, c.log, c.metrics)
		ns, err := startEmbedded(cfg, log, c.store) // the caller's logger: its lines get component=nats-server, not bus as well
		if err != nil {
			return nil, err
		}
		c.ns = newEmbedded(cfg, log, c.store, ns)
		// The daemon's own connection is in process either way; Listen is
		// for other local services. It reconnects to the server that
		// replaced this one, if the store watcher restarts it.
		opts = append(opts, nats.InProcessServer(c.ns))
	} else {
		// nats.go reads these files again at every reconnect: bounded
		// reads (boundedFile), so that a hung mount holds no publish.
		opts = append(opts, FileOptions(cfg.Creds, cfg.TLSCA, cfg.TLSCrt, cfg.TLSKey)...)
		// A server that dies with its host, or drops off the network,
		// closes nothing: the connection is stale only when pings go
		// unanswered. nats.go's default (a ping every 2 minutes, stale
		// after 2 unanswered) left the daemon on a dead node of a
		// cluster for 4 to 6 minutes, with no event handled and no pop
		// published, while the other nodes served.
		opts = append(opts, nats.RetryOnFailedConnect(false), nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(maxPingsOut))
		// nats.go closes the connection for good once a server refuses the
		// same credentials twice: a user JWT that expired before its
		// renewal landed, or a password changed on the servers first,
		// would leave the daemon up but never connected again. The creds
		// file is read again at every reconnect, so keep trying.
		opts = append(opts, nats.IgnoreAuthErrorAbort())
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.shutdownServer(storeCloseWait)
		return nil, fmt.Errorf("connect to nats %s: %w (check NATS_URL, NATS_CREDS and NATS_TLS_*)", RedactURL(url), err)
	}
	c.nc = nc
	c.metrics.connected.Set(1)
	if err := c.setup(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.Registerer != nil {
		markers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_bus_pop_markers",
			Help: "Pop markers held (one per live leg that has popped, per leg ended within the marker grace, and per leg of the marker TTL whose end was not seen); NaN when NATS does not answer. The embedded server's index of them is in the daemon's heap (docs/performance.md)."},
			c.markerCount)
		offset := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "screenpop_bus_clock_offset_seconds",
			Help: "The NATS server's clock minus this host's, measured at most once a minute when scraped; beyond a second or two one of them has no working NTP."},
			func() float64 { return c.clockOffset().Seconds() })
		cfg.Registerer.MustRegister(markers, offset) // like newMetrics: a second Start on one registry is a bug
	}
	if c.store != nil {
		c.store.start(c.ns.restart)
	}
	c.log.Info().Str("stream", cfg.Stream).Bool("embedded", c.ns != nil).Str("epoch", c.Epoch()).Msg("nats ready")
	return c, nil
}

// pingInterval and maxPingsOut find a connection to an external NATS
// server stale 4 to 6 s after its last answer, and the client moves to
// another node of the cluster: well inside the resolver's max event age
// (30 s), so that the calls alerting as a node is lost still pop.
const (
	pingInterval = 2 * time.Second
	maxPingsOut  = 2
)

// storeDir is the embedded server's JetStream store directory.
func storeDir(cfg Config) string { return filepath.Join(cfg.DataDir, "jetstream") }

func startEmbedded(cfg Config, log zerolog.Logger, store *storeWatch) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "screenpopd",
		JetStream:          true,
		StoreDir:           storeDir(cfg),
		NoSigs:             true,
		NoSystemAccount:    true,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Listen == "off" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("SCREENPOP_NATS_LISTEN %q: %w (want host:port or off)", cfg.Listen, err)
		}
		p, err := listenPort(port)
		if err != nil {
			return nil, fmt.Errorf("SCREENPOP_NATS_LISTEN %q: %w (want host:port or off)", cfg.Listen, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default 4222
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(serverLogger{log: log.With().Str("component", "nats-server").Logger(), fatal: fatal, store: store,
		accepts: loglimit.New(10*time.Second, 1), slow: loglimit.New(10*time.Second, 1), clients: loglimit.New(10*time.Second, 1)}, false, false, false)
	ns.Start()
	for deadline := time.Now().Add(10 * time.Second); err == nil; {
		if ns.ReadyForConnections(50 * time.Millisecond) {
			return ns, nil
		}
		select {
		case detail := <-fatal:
			if strings.Contains(detail, "JetStream") {
				// The store, not the listener: name the directory,
				// which the server's text does not.
				err = fmt.Errorf("embedded nats: %s: %s (the built-in NATS keeps its store there: it must be a directory the service user can write; move away what is in its place, or set SCREENPOP_DATA_DIR to another directory)", storeDir(cfg), detail)
				break
			}
			err = fmt.Errorf("embedded nats: %s (set SCREENPOP_NATS_LISTEN to a free address or off)", detail)
		default:
			if time.Now().After(deadline) {
				err = fmt.Errorf("embedded nats: not ready after 10s (is %s in use? set SCREENPOP_NATS_LISTEN to another address or off)", cfg.Listen)
			}
		}
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil, err
}

func (c *Conn) setup(ctx context.Context) error {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	c.js = js
	if c.leader, err = c.nc.JetStream(); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Before anything of this daemon changes or runs: its start would
	// update the other deployment's stream and bucket to its settings,
	// its Genesys input publish into that stream, its resolver take that
	// deployment's events.
	if cons, err := js.Consumer(ctx, c.cfg.Stream, DefaultDurable); err == nil {
		if err := c.otherOwner(ctx, cons); err != nil {
			return err
		}
	}
	// A cluster started with the daemon may not place the replicas yet:
	// wait for it, as for the stream's bucket below.
	placing := c.newPlacementWait()
	st, err := whilePlacing(ctx, placing, "stream "+c.cfg.Stream, c.createOrUpdateStream)
	if err != nil {
		hint := "check SCREENPOP_STREAM* and the NATS account's JetStream limits"
		var apiErr *jetstream.APIError
		if h := c.placementHint(err); h != "" {
			hint = h
		} else if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamSubjectOverlap {
			// Another stream of the account captures screenpop.>: most
			// likely another deployment's, renamed to keep apart, which
			// a name cannot do (the subjects are fixed).
			hint = c.overlapHint(ctx)
		} else if c.ns != nil {
			hint = "the built-in NATS keeps its store under SCREENPOP_DATA_DIR: check that disk's free space, and SCREENPOP_STREAM*"
		}
		return fmt.Errorf("create or update stream %s: %w (%s)", c.cfg.Stream, err, hint)
	}
	c.stream = st
	c.epoch.Store(ptr(streamEpoch(st.CachedInfo())))
	c.refreshClock(ctx)
	kv, err := whilePlacing(ctx, placing, "key-value bucket "+c.cfg.MarkerBucket, c.createMarkers)
	if err != nil {
		if h := c.placementHint(err); h != "" {
			return fmt.Errorf("%w (%s)", err, h)
		}
		return err
	}
	ks, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", c.cfg.MarkerBucket, err)
	}
	if c.markerTTLs = ks.LimitMarkerTTL() > 0; !c.markerTTLs {
		c.log.Warn().Dur("marker_ttl", c.cfg.MarkerTTL).Dur("marker_grace", c.cfg.MarkerGrace).
			Msg("the NATS server takes no per-key TTLs (it is older than 2.11): pop markers live marker_ttl from their pop, not marker_grace after their leg ends; upgrade NATS to hold fewer")
	}
	if bs, ok := ks.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		c.markersReplicated = bs.StreamInfo().Config.Replicas > 1
	}
	c.markers = kv
	return nil
}

// placementWait is Start's wait for a cluster that cannot place the
// stream and its bucket yet, shared by both: one deadline, one warning
// every 10 s.
type placementWait struct {
	log      zerolog.Logger
	replicas int
	deadline time.Time
	warned   time.Time
}

func (c *Conn) newPlacementWait() *placementWait {
	return &placementWait{log: c.log, replicas: c.cfg.StreamReplicas, deadline: time.Now().Add(c.cfg.PlacementWait)}
}

// whilePlacing calls create until it succeeds, fails for another reason
// than a cluster not ready to place what it creates (clusterNotReady), or
// the wait is over.
func whilePlacing[T any](ctx context.Context, w *placementWait, what string, create func(context.Context) (T, error)) (T, error) {
	for {
		v, err := create(ctx)
		if err == nil || !clusterNotReady(err) || !time.Now().Before(w.deadline) {
			return v, err
		}
		if now := time.Now(); now.Sub(w.warned) >= 10*time.Second {
			w.warned = now
			w.log.Warn().Err(err).Str("what", what).Int("replicas", w.replicas).Int64("gives_up_in_s", int64(time.Until(w.deadline).Seconds())).
				Msg("the NATS cluster cannot place the stream yet: waiting for its JetStream servers (a cluster starting, or electing its leader)")
		}
		if !sleepCtx(ctx, time.Second) {
			return v, err
		}
	}
}

// JetStream's answers while a cluster is not ready to place a stream: its
// leader does not know enough peers (with their stats) for the replicas,
// or it has no leader.
const (
	errCodeClusterNoPeers  jetstream.ErrorCode = 10005 // no suitable peers for placement
	errCodeClusterNotAvail jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
)

func clusterNotReady(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeClusterNoPeers || apiErr.ErrorCode == errCodeClusterNotAvail)
}

// placementHint is what to do about a cluster that was still not ready
// when the wait ended; "" for other errors.
func (c *Conn) placementHint(err error) string {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return ""
	}
	switch apiErr.ErrorCode {
	case errCodeClusterNoPeers:
		n := c.cfg.StreamReplicas
		servers := fmt.Sprintf("%d JetStream servers", n)
		if words := []string{"one", "two", "three", "four", "five"}; n >= 1 && n <= len(words) {
			servers = words[n-1] + " JetStream servers"
		}
		return fmt.Sprintf("the NATS cluster could not place the replicas within %v: SCREENPOP_STREAM_REPLICAS=%d needs %s in the cluster, each running and reaching the others by its routes (nats server report jetstream lists those the leader knows); or lower SCREENPOP_STREAM_REPLICAS",
			c.cfg.PlacementWait, n, servers)
	case errCodeClusterNotAvail:
		return fmt.Sprintf("the NATS cluster had no JetStream leader for %v: a majority of its servers must run and reach each other by their routes (nats server report jetstream)", c.cfg.PlacementWait)
	}
	return ""
}

// overlapHint is what to do when another stream of the account captures
// screenpop.>: most often this deployment's own, made under an earlier
// SCREENPOP_STREAM (the only one the built-in server can hold), else
// another deployment's, renamed to keep apart, which a name cannot do
// (the subjects are fixed).
func (c *Conn) overlapHint(ctx context.Context) string {
	name, err := c.js.StreamNameBySubject(ctx, bridge.SubjectAll)
	other := "stream " + name
	if err != nil || name == "" {
		name, other = "<name>", "another stream"
	}
	if c.ns != nil {
		return fmt.Sprintf("%s of the built-in NATS captures %s: this deployment's stream under an earlier SCREENPOP_STREAM. "+
			"Set SCREENPOP_STREAM back to %s, or stop screenpopd and delete %s (its events and pops are lost; agents' pages start afresh)",
			other, bridge.SubjectAll, name, filepath.Join(storeDir(c.cfg), "jetstream", "$G", "streams", name))
	}
	return fmt.Sprintf("%s of this NATS account captures %s. If it is this deployment's, made under an earlier SCREENPOP_STREAM, set SCREENPOP_STREAM back to %s, "+
		"or stop every instance and remove it (nats stream rm %s; its events and pops are lost). If it is another screenpop deployment's: a stream name does not keep deployments apart; "+
		"give each its own NATS account (docs/architecture.md, \"Several deployments\")", other, bridge.SubjectAll, name, name)
}

// createMarkers creates the pop-marker bucket, or updates it to this
// configuration.
func (c *Conn) createMarkers(ctx context.Context) (jetstream.KeyValue, error) {
	kcfg := jetstream.KeyValueConfig{
		Bucket:         c.cfg.MarkerBucket,
		Description:    "screenpop pop markers: one key per agent leg that has popped",
		TTL:            c.cfg.MarkerTTL,
		History:        1,
		Replicas:       c.cfg.StreamReplicas,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: markerLimitTTL,
	}
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, kcfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		kcfg.LimitMarkerTTL = 0
		kv, err = c.js.CreateOrUpdateKeyValue(ctx, kcfg)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamInvalidConfig {
			// The bucket has per-key TTLs already, which cannot be turned
			// off (an older server answered mid-upgrade): use it as it is.
			kv, err = c.js.KeyValue(ctx, c.cfg.MarkerBucket)
		}
	}
	if refusedShare(err) {
		// The embedded server's store limit shrank below what the stream
		// reserved at an earlier start: it refuses every update, this one
		// too. A bucket that is there is used as it is.
		if have, kerr := c.js.KeyValue(ctx, c.cfg.MarkerBucket); kerr == nil {
			kv, err = have, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", c.cfg.MarkerBucket, err)
	}
	return kv, nil
}

// streamConfig is the stream's configuration, with maxBytes its byte
// limit (0: none).
func (c *Conn) streamConfig(maxBytes int64) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: "screenpop conversation events and pops",
		Subjects:    []string{bridge.SubjectAll},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.cfg.StreamMaxAge,
		Duplicates:  c.cfg.DuplicateWindow,
		Replicas:    c.cfg.StreamReplicas,
		Storage:     jetstream.FileStorage,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    maxBytes,
	}
}

// storeSharePercent is the part of the JetStream store the stream may fill;
// the rest is for the marker bucket (tens of MB at 10,000 agents) and
// whatever else the account keeps.
const storeSharePercent = 80

// storeShare is the stream's byte limit: storeSharePercent of the file
// store NATS gives this account (the embedded server: its own limit, 75%
// of the disk's free space at its start, plus what its store holds), per
// replica, since each replica counts against it. Without a limit of its own the stream
// discards nothing to make room: once its MaxAge of traffic filled the
// store, JetStream would refuse every event, marker and pop and no call
// would pop. With one, the oldest messages go first. 0 (no limit) when
// NATS sets none or does not say.
func (c *Conn) storeShare(ctx context.Context) int64 {
	var store, perStream int64
	perReplica := int64(c.cfg.StreamReplicas) // a flat limit counts every replica's bytes
	if c.ns != nil {
		if jc := c.ns.server().JetStreamConfig(); jc != nil {
			store = jc.MaxStore
		}
	} else if ai, err := c.js.AccountInfo(ctx); err == nil {
		store, perStream = ai.Limits.MaxStore, ai.Limits.StoreMaxStreamBytes
		if t, ok := ai.Tiers[fmt.Sprintf("R%d", c.cfg.StreamReplicas)]; ok && t.Limits.MaxStore > 0 {
			// Tiered limits, by replica count: NATS scales a tier's
			// limit by its replicas, so it is one replica's room.
			store, perStream, perReplica = t.Limits.MaxStore, t.Limits.StoreMaxStreamBytes, 1
		}
	}
	if store <= 0 {
		return 0
	}
	share := store / 100 * storeSharePercent / perReplica
	if perStream > 0 {
		share = min(share, perStream) // the account's cap on one stream
	}
	if c.shareLogged.Swap(share) != share {
		// Said when it changes: Start asks once a second while a
		// cluster cannot place the stream, the stream's re-checks again.
		c.log.Info().Int64("store_bytes", store).Int64("stream_max_bytes", share).Int("replicas", c.cfg.StreamReplicas).
			Msg("stream limited to its share of the JetStream store: the oldest messages go first when it is full")
	}
	return share
}

// shareRefused are the errors of a NATS that will not reserve the stream's
// byte limit: the account caps a stream's bytes lower, other streams of
// the account reserve part of its store, or the embedded server's store
// limit (75% of the disk's free space at its start, plus what its store
// holds) shrank below what the stream reserved at an earlier start, once
// other files took the disk.
var shareRefused = map[jetstream.ErrorCode]bool{
	10023: true, // insufficient resources
	10047: true, // insufficient storage resources available
	10122: true, // stream max bytes exceeds account limit max stream bytes
}

// createOrUpdateStream creates or updates the stream with its share of the
// store, as the store is now (its limit, and what other streams reserve,
// may have changed since the daemon started). When NATS will not reserve
// that share (shareRefused), a stream that exists is used as it is (made
// meanwhile by another instance, or at an earlier start), and one that
// does not is created without a byte limit, as before it had one: a
// daemon that started before must not be refused now.
func (c *Conn) createOrUpdateStream(ctx context.Context) (jetstream.Stream, error) {
	share := c.storeShare(ctx)
	st, err := c.js.CreateOrUpdateStream(ctx, c.streamConfig(share))
	if share <= 0 || !refusedShare(err) {
		return st, err
	}
	refused := err
	st, err = c.js.Stream(ctx, c.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// A stream being deleted (its consumers' loss is what sent
		// recheckStream here) holds its bytes until the delete is done,
		// and a stream made while the old one's files are being removed
		// can lose its own: wait for the delete once, then ask again.
		if !sleepCtx(ctx, time.Second) {
			return nil, refused
		}
		if st, err = c.js.CreateOrUpdateStream(ctx, c.streamConfig(c.storeShare(ctx))); !refusedShare(err) {
			return st, err
		}
		if st, err = c.js.Stream(ctx, c.cfg.Stream); errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = c.js.CreateOrUpdateStream(ctx, c.streamConfig(0))
		}
	}
	if err != nil {
		return nil, err
	}
	c.log.Warn().Err(refused).Int64("stream_max_bytes", max(st.CachedInfo().Config.MaxBytes, 0)).
		Msg("NATS would not reserve the stream's share of the JetStream store: the stream is kept as it is, or made without a byte limit; see the account's JetStream limits and its other streams, or free disk space")
	// Kept as it is, it keeps its earlier settings too: a lowered
	// SCREENPOP_STREAM_MAX_AGE (a data-protection decision) would not
	// apply, with customer data kept longer than configured. They are
	// applied with the byte limit NATS can still grant; where it grants
	// none (the embedded server's store limit shrank: it refuses every
	// update), on-call is told what the stream keeps.
	have := st.CachedInfo().Config
	if want := c.streamConfig(0); have.MaxAge == want.MaxAge && have.Duplicates == want.Duplicates {
		return st, nil
	}
	if room := c.storeRoom(ctx, have.MaxBytes); room > 0 {
		up, uerr := c.js.UpdateStream(ctx, c.streamConfig(room))
		if uerr == nil {
			c.log.Warn().Int64("stream_max_bytes", room).Dur("max_age", c.cfg.StreamMaxAge).
				Msg("the stream's settings are applied with the byte limit NATS still grants, smaller than its share: the oldest messages go first when it is full")
			return up, nil
		}
		refused = uerr
	}
	c.log.Error().Err(refused).Dur("stream_max_age", have.MaxAge).Dur("configured_max_age", c.cfg.StreamMaxAge).
		Dur("stream_duplicate_window", have.Duplicates).
		Msg("NATS refuses every update of the stream: it keeps its earlier max age and duplicate window, not the configured ones (customer data is kept for stream_max_age); give the account or the disk room, or edit the stream by hand (nats stream edit --max-age)")
	return st, nil
}

// storeRoom is the byte limit the account can still grant the stream
// (an external NATS: storeSharePercent of its store limit less what its
// other streams reserve, own being the stream's own reservation; per
// replica as storeShare reckons it), capped at the stream's share; 0 when it grants
// none or does not say, and for the embedded server, which refuses every
// update once its store limit is below what is reserved.
func (c *Conn) storeRoom(ctx context.Context, own int64) int64 {
	if c.ns != nil {
		return 0
	}
	ai, err := c.js.AccountInfo(ctx)
	if err != nil {
		return 0
	}
	var others int64 // what the account's other streams reserve
	store, perStream, perReplica := ai.Limits.MaxStore, ai.Limits.StoreMaxStreamBytes, int64(c.cfg.StreamReplicas)
	if t, ok := ai.Tiers[fmt.Sprintf("R%d", c.cfg.StreamReplicas)]; ok && t.Limits.MaxStore > 0 {
		// A tier's reservation is one replica's bytes, as its limit.
		store, perStream, perReplica = t.Limits.MaxStore, t.Limits.StoreMaxStreamBytes, 1
		others = int64(t.ReservedStore) - max(own, 0)
	} else {
		// Flat limits count every replica's bytes, but the account's
		// ReservedStore adds one replica's of each stream: counted here,
		// stream by stream, as NATS checks them.
		streams := c.js.ListStreams(ctx)
		for info := range streams.Info() {
			if cfg := info.Config; cfg.Name != c.cfg.Stream && cfg.Storage == jetstream.FileStorage && cfg.MaxBytes > 0 {
				others += cfg.MaxBytes * int64(max(cfg.Replicas, 1))
			}
		}
		if streams.Err() != nil {
			return 0
		}
	}
	if store <= 0 {
		return 0
	}
	// The rest of the store is left as storeShare leaves it: the marker
	// bucket (no byte limit of its own, but a reservation all the same)
	// is refused when the streams hold every byte.
	room := (store/100*storeSharePercent - others) / max(perReplica, 1)
	if perStream > 0 {
		room = min(room, perStream)
	}
	if share := c.storeShare(ctx); share > 0 {
		room = min(room, share)
	}
	return max(room, 0)
}

// refusedShare is whether err is NATS refusing to reserve the stream's
// byte limit (shareRefused).
func refusedShare(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && shareRefused[apiErr.ErrorCode]
}

func ptr[T any](v T) *T { return &v }

// streamEpoch is the epoch of a stream: its creation time.
func streamEpoch(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixNano(), 36)
}

// recheckStream creates the stream and the marker bucket again if they
// are gone (a NATS whose JetStream store was lost: its limits may differ
// now, and another instance may be making them at the same moment) and
// reports whether the stream is another than the epoch's (recreated, here
// or by another instance): its sequences started again at 1. It records
// the new epoch. A stream that is there is only read: its configuration
// is left alone.
func (c *Conn) recheckStream(ctx context.Context) (bool, error) {
	// One at a time: FollowPops' check and a FollowPops starting again
	// both find the stream gone, and two creates of one stream at once
	// make NATS refuse one (the other's bytes are reserved), whose
	// fallback create can then race the first and leave a stream whose
	// message files are gone.
	c.recheck.Lock()
	defer c.recheck.Unlock()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = c.createOrUpdateStream(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("recheck stream %s: %w", c.cfg.Stream, err)
	}
	// Without the bucket no event can be marked, so none pops: a failure
	// here is the caller's to retry (before the epoch moves, so that the
	// retry still reports a recreated stream).
	if _, err := c.recheckMarkers(ctx); err != nil {
		return false, err
	}
	e := streamEpoch(st.CachedInfo())
	old := c.epoch.Swap(&e)
	if *old == e {
		return false, nil
	}
	c.log.Warn().Str("stream", c.cfg.Stream).Str("old_epoch", *old).Str("epoch", e).Msg("stream recreated: its sequences start again; agents resume from the fresh window")
	return true, nil
}

// restoreSubjects puts the stream's subjects back when a publish found no
// stream to answer it and the stream is there with other subjects (edited
// by hand: nats stream edit --subjects): otherwise no pop or event of the
// subjects left out would be stored until a restart. At most once a
// second; a stream that is gone is recheckStream's.
func (c *Conn) restoreSubjects(ctx context.Context) {
	now := time.Now().UnixNano()
	last := c.subjectsChecked.Load()
	// A last check later than now is one made before the wall clock
	// stepped back (NTP): not waited for.
	if now >= last && now-last < int64(time.Second) || !c.subjectsChecked.CompareAndSwap(last, now) {
		return
	}
	c.recheck.Lock()
	defer c.recheck.Unlock()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return
	}
	cfg := st.CachedInfo().Config
	if slices.Equal(cfg.Subjects, []string{bridge.SubjectAll}) {
		return
	}
	was := strings.Join(cfg.Subjects, ",")
	cfg.Subjects = []string{bridge.SubjectAll}
	_, err = c.js.UpdateStream(ctx, cfg)
	ev := c.log.Warn()
	if err != nil {
		ev = c.log.Error().Err(err)
	}
	ev.Str("stream", c.cfg.Stream).Str("subjects", was).Bool("put_back", err == nil).
		Msg("the stream's settings were changed by hand (nats stream edit): its subjects no longer held every screenpop subject, so pops or events were not stored; they are put back")
}

// recheckMarkers creates the marker bucket again if it is gone and reports
// whether it did. Without the bucket no event can be marked, so none pops.
func (c *Conn) recheckMarkers(ctx context.Context) (bool, error) {
	_, err := c.js.KeyValue(ctx, c.cfg.MarkerBucket)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, fmt.Errorf("recheck bucket %s: %w", c.cfg.MarkerBucket, err)
	}
	if _, err := c.createMarkers(ctx); err != nil {
		c.log.Error().Err(err).Msg("pop marker bucket lost and not created again yet: no pop until it is")
		return false, err
	}
	c.log.Warn().Str("bucket", c.cfg.MarkerBucket).Msg("pop marker bucket lost (the NATS store?), created again")
	return true, nil
}

// NATS returns the underlying connection, for other subscribers in process.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the JetStream context.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// StreamName is the name of the stream.
func (c *Conn) StreamName() string { return c.cfg.Stream }

// ClientURL is the embedded server's client URL, "" when it does not listen
// or NATS is external.
func (c *Conn) ClientURL() string {
	if c.ns == nil || c.cfg.Listen == "off" {
		return ""
	}
	return c.ns.server().ClientURL()
}

// ListenAddr is the address the embedded server listens on for clients
// (host:port), "" when it does not listen or NATS is external.
func (c *Conn) ListenAddr() string {
	if c.ns == nil || c.cfg.Listen == "off" {
		return ""
	}
	return c.ns.cfg.Listen
}

// ErrDisconnected is what LatestPop and ReplayPops return, at once, while
// the connection to NATS is down: an agent's hello that waited for the
// reconnect would hold the page for its whole timeout, where a refusal
// (1013) has it retry on its own backoff.
var ErrDisconnected = errors.New("NATS disconnected: the client is reconnecting")

// Connected reports whether the NATS connection is up.
func (c *Conn) Connected() bool { return c.nc != nil && c.nc.IsConnected() }

// Epoch identifies the stream: it changes when the stream is recreated
// (for example after the store was wiped).
func (c *Conn) Epoch() string {
	if e := c.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// Status is the bus part of /status.
type Status struct {
	Connected bool   `json:"connected"`
	Embedded  bool   `json:"embedded"`
	Server    string `json:"server,omitempty"`
	Stream    string `json:"stream"`
	Epoch     string `json:"epoch"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	LastSeq   uint64 `json:"lastSeq"`
	// Markers is the pop markers held: one per live leg that has popped,
	// one per leg ended within the marker grace, and one per leg of the
	// marker TTL whose end was never seen. The embedded server keeps an
	// index entry of about 0.35 KB for each, which the collector of the
	// process it runs in scans on every cycle (docs/performance.md).
	Markers uint64 `json:"markers"`
	Error   string `json:"error,omitempty"`
	// StoreError is the embedded store's write error (a full or
	// read-only disk under SCREENPOP_DATA_DIR) while it lasts: nothing
	// is stored until the disk takes writes again.
	StoreError string `json:"storeError,omitempty"`
}

// Status reads the stream's and the marker bucket's state.
func (c *Conn) Status(ctx context.Context) Status {
	s := Status{Connected: c.Connected(), Embedded: c.ns != nil, Stream: c.cfg.Stream, Epoch: c.Epoch()}
	if c.store != nil {
		s.StoreError = c.store.failure()
	}
	if c.nc != nil {
		s.Server = c.nc.ConnectedServerId()
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := c.stream.Info(sctx)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Messages, s.Bytes, s.LastSeq = info.State.Msgs, info.State.Bytes, info.State.LastSeq
	if s.Markers, err = c.markerEntries(ctx); err != nil {
		s.Error = fmt.Sprintf("pop markers: %v", err)
	}
	return s
}

// markerEntries is the marker bucket's entry count: one request, answered
// within a second or an error.
func (c *Conn) markerEntries(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.markers.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.Values(), nil
}

// markerCount is the gauge's value, read when /metrics is scraped: NaN
// when NATS does not answer, rather than a stale or zero count.
func (c *Conn) markerCount() float64 {
	n, err := c.markerEntries(context.Background())
	if err != nil {
		return math.NaN()
	}
	return float64(n)
}

// Close flushes and drains the connection, then stops the embedded server.
// It waits at most 1 s for the store watcher (its probe in flight, or a
// restart of the embedded server under way), 2 s for the
// flush and 3 s for the store to close: on a disk that does not answer, 6 s
// in all. CloseWithin bounds the whole.
func (c *Conn) Close() { c.closeBy(time.Time{}) }

// CloseWithin is Close taking at most about d in all (each of its waits
// also keeps its own bound), so that a stop that spent most of its time on
// the stages before it still ends when it promised; the store is given at
// least storeCloseFloor, which a disk that answers needs at most. Only the
// first call of Close or CloseWithin closes.
func (c *Conn) CloseWithin(d time.Duration) { c.closeBy(time.Now().Add(d)) }

// closeBy closes by the time by; zero: each wait its own bound only.
func (c *Conn) closeBy(by time.Time) {
	c.closeOnce.Do(func() {
		left := func(most time.Duration) time.Duration {
			if by.IsZero() {
				return most
			}
			return max(0, min(most, time.Until(by)))
		}
		c.closing.Store(true)
		if c.store != nil && !c.store.stop(max(storeCloseFloor, left(probeStopWait))) {
			// Starting the server again, or probing a disk that
			// does not answer before it would: it shuts down by
			// itself whatever it starts; its store may stay open
			// until then.
			c.storeLeftOpen.Store(true)
			c.log.Error().Str("store_dir", storeDir(c.cfg)).
				Msg("the built-in NATS server was being started again after its store failed, and had not finished: stopping without it (its disk under SCREENPOP_DATA_DIR does not answer, or its store is large and still being read back)")
		}
		if c.nc != nil {
			// Flushing a connection that is down would only wait out
			// its timeout, after a stop that is already bounded.
			if c.nc.IsConnected() {
				if err := c.nc.FlushTimeout(max(storeCloseFloor, left(flushCloseWait))); err != nil {
					c.log.Warn().Err(err).Msg("nats flush on close")
				}
			}
			c.nc.Close()
		}
		c.shutdownServer(max(storeCloseFloor, left(storeCloseWait)))
		c.metrics.connected.Set(0)
		c.log.Info().Msg("nats closed")
	})
}

func (c *Conn) shutdownServer(wait time.Duration) {
	if c.ns == nil {
		return
	}
	if c.ns.shutdownWithin(wait) {
		return
	}
	c.storeLeftOpen.Store(true)
	e := c.log.Error().Str("store_dir", storeDir(c.cfg)).Dur("waited", wait)
	if wait < storeCloseWait {
		// Cut short by the stop's end: the disk may answer and the
		// store only have more to write than the time left.
		e.Msg("the built-in NATS store did not close in the time left of the stop: its disk under SCREENPOP_DATA_DIR does not answer, or the stages before took most of the stop's 10 s; stopping without it, as a crash would (nothing acknowledged is lost; the next start reads the store back)")
		return
	}
	e.Msg("the built-in NATS store did not close: the disk under SCREENPOP_DATA_DIR does not answer (a stalled volume, an NFS server gone); stopping without it, as a crash would (nothing acknowledged is lost)")
}

// storeCloseWait bounds the embedded server's shutdown at a stop, so that
// the daemon stops within its 10 s also while its disk does not answer;
// storeCloseFloor is the least it is given (a store on a disk that answers
// closes in milliseconds). flushCloseWait bounds the flush before.
const (
	storeCloseWait  = 3 * time.Second
	storeCloseFloor = 250 * time.Millisecond
	flushCloseWait  = 2 * time.Second
)

// StoreLeftOpen reports whether Close gave up waiting for the embedded
// server's store to close (its disk did not answer): the process still
// holds it, and the data directory's lock must stay held until it exits.
func (c *Conn) StoreLeftOpen() bool { return c.storeLeftOpen.Load() }

// Publish stores m in the stream with m.ID as Nats-Msg-Id. A duplicate within
// the duplicate window is acknowledged by JetStream and is not an error.
func (c *Conn) Publish(ctx context.Context, m bridge.Message) error {
	_, err := c.PublishDedup(ctx, m)
	return err
}

// PublishDedup is Publish that also reports whether JetStream already held
// a message with m.ID within the duplicate window and dropped m.
func (c *Conn) PublishDedup(ctx context.Context, m bridge.Message) (bool, error) {
	start := time.Now()
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	if off, ok := c.lastOffset(); ok {
		msg.Header.Set(ClockOffsetHeader, strconv.FormatInt(off.Milliseconds(), 10))
	}
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			// Refused by the client before it was sent: not NATS failing
			// to store it. The publisher stores it without its largest
			// attributes, or counts it dropped (too_large).
			return false, fmt.Errorf("publish %s: %w", m.Subject, &bridge.TooLargeError{Size: len(m.Data), Max: int(c.nc.MaxPayload())})
		}
		if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeMessageTooLarge {
			// Refused by the stream's own message size limit (set by
			// hand: nats stream edit --max-msg-size): retried, it would
			// be refused for ever in front of its lane's later events.
			// Not counted as a publish error, as above.
			return false, fmt.Errorf("publish %s: %w", m.Subject, &bridge.TooLargeError{Size: len(m.Data), Max: c.streamMaxMsgSize(ctx)})
		}
		c.metrics.publishErrors.Inc()
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			c.restoreSubjects(ctx)
		}
		return false, fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	if ack.Duplicate {
		c.metrics.duplicates.Inc()
	}
	c.metrics.published.Inc()
	c.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	return ack.Duplicate, nil
}

// listenPort is the port number of a listen address's port: a number, or
// a service name as net.Listen takes it (the configuration's check of
// SCREENPOP_NATS_LISTEN takes the same), without the network.
func listenPort(port string) (int, error) { return net.LookupPort("tcp", port) }

// errCodeMessageTooLarge is JetStream refusing a message over the
// stream's MaxMsgSize.
const errCodeMessageTooLarge jetstream.ErrorCode = 10054

// streamMaxMsgSize is the stream's message size limit as NATS has it now
// (0 when it cannot say: the publisher then leaves out every attribute).
func (c *Conn) streamMaxMsgSize(ctx context.Context) int {
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return 0
	}
	return max(int(st.CachedInfo().Config.MaxMsgSize), 0)
}

// markerKey turns a pop id into a key-value key. Keys allow only
// [-/_=.a-zA-Z0-9], so the ':' separators become '.'; an id with anything
// else is hashed rather than allowed to fail or collide.
func markerKey(popID string) string {
	ok := true
	for i := 0; i < len(popID); i++ {
		b := popID[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == ':') {
			ok = false
			break
		}
	}
	if ok && popID != "" && !strings.Contains(popID, "::") && !strings.HasSuffix(popID, ":") {
		return strings.ReplaceAll(popID, ":", ".")
	}
	sum := sha256.Sum256([]byte(popID))
	return "h." + hex.EncodeToString(sum[:16])
}

// MarkPop records popID in the marker bucket with claim as its value and
// reports whether the caller may publish the pop (see bridge.PopStore): the
// marker is new, or it is younger than the stream's duplicate window, so
// that the publish that follows, with the pop id as its Nats-Msg-Id, is
// dropped by JetStream if an earlier attempt had published after all.
// Without this, a marker whose acknowledgement was lost lost its pop (the
// event's redelivery found the marker and skipped it), and so did a marker
// whose writer died before publishing when the leg's next event (the call
// answered meanwhile) came first and its alerting event came back too old
// to pop. A marker of an ended leg (EndPop) gives false and
// bridge.ErrLegEnded.
func (c *Conn) MarkPop(ctx context.Context, popID, claim string) (bool, error) {
	key := markerKey(popID)
	var e *markerEntry
	for attempt := 1; ; attempt++ {
		_, err := c.markers.Create(ctx, key, []byte(claim))
		if err == nil {
			return true, nil
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) && attempt == 1 {
			// No bucket to answer: deleted, or lost alone (nothing else
			// here would notice). Made again, the marker is written.
			if made, rerr := c.recheckMarkers(ctx); rerr == nil && made {
				continue
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("mark pop: %w", err)
		}
		e, err = c.marker(ctx, key)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || attempt == 2 {
			// Removed or expired again since: the event's redelivery will
			// create it.
			return false, fmt.Errorf("read pop marker: %w", err)
		}
		// Removed (UnmarkPop) or expired between the create and the read:
		// create it once more.
	}
	if string(e.value) == markerEnded {
		return false, bridge.ErrLegEnded
	}
	// The marker's time is the server's: its age is read on that clock,
	// as JetStream reads the duplicate window.
	return c.serverNow().Sub(e.created) < c.cfg.DuplicateWindow, nil
}

// markerEntry is a pop marker as read by marker.
type markerEntry struct {
	value   []byte
	rev     uint64
	created time.Time
}

// marker reads key's pop marker, jetstream.ErrKeyNotFound when there is
// none (never written, purged, deleted, expired). On a replicated bucket it asks
// the bucket's leader ($JS.API.STREAM.MSG.GET, through nats.go's
// JetStreamContext, as lastPop): the bucket allows direct gets (nats.go
// makes it so), which any replica answers, one that has not applied the
// newest markers too, and what is read decides a pop (a young marker
// found missing refused its event's redelivery, an ended one let it pop).
// A bucket of one replica keeps its direct get.
func (c *Conn) marker(ctx context.Context, key string) (*markerEntry, error) {
	if !c.markersReplicated {
		e, err := c.markers.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		return &markerEntry{value: e.Value(), rev: e.Revision(), created: e.Created()}, nil
	}
	m, err := c.leader.GetLastMsg("KV_"+c.cfg.MarkerBucket, "$KV."+c.cfg.MarkerBucket+"."+key, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return nil, jetstream.ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	// As the bucket's own Get: a delete, a purge, or the server's marker
	// of a key whose TTL ran out (Nats-Marker-Reason) is no marker.
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil, jetstream.ErrKeyNotFound
	}
	return &markerEntry{value: m.Data, rev: m.Sequence, created: m.Time}, nil
}

// markerEnded is the value of a marker whose leg has ended: it is no
// event's claim, so MarkPop refuses every event of the leg from then on.
const markerEnded = "ended"

// EndPop tells the marker bucket that popID's leg has ended: its marker
// (written whether or not the leg popped) now lives MarkerGrace, after
// which no event of the leg can be young enough to pop, instead of the
// bucket's TTL from its pop. One publish, no read: a leg that never popped
// gets a short-lived marker it does not need, and a marker rewritten by a
// redelivered end lives MarkerGrace from then. Without per-key TTLs on the
// server it does nothing.
func (c *Conn) EndPop(ctx context.Context, popID string) error {
	if !c.markerTTLs {
		return nil
	}
	// The subject the bucket's own writes use (Create, Put) with the
	// default JetStream API prefix, which Start's jetstream.New has.
	m := &nats.Msg{Subject: "$KV." + c.cfg.MarkerBucket + "." + markerKey(popID), Data: []byte(markerEnded)}
	if _, err := c.js.PublishMsg(ctx, m, jetstream.WithMsgTTL(c.cfg.MarkerGrace)); err != nil {
		return fmt.Errorf("end pop marker: %w", err)
	}
	return nil
}

// UnmarkPop removes a marker that still holds claim, so that a pop whose
// publish failed for good can be tried again. A marker that no longer
// holds it (its leg has ended since: EndPop) is left alone: the leg is not
// to pop any more.
func (c *Conn) UnmarkPop(ctx context.Context, popID, claim string) error {
	key := markerKey(popID)
	e, err := c.marker(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unmark pop: read marker: %w", err)
	}
	if string(e.value) != claim {
		return nil
	}
	return c.purgeMarker(ctx, key, e.rev)
}

// purgeMarker purges key if its revision is still rev; a marker rewritten
// since (ended) is left alone.
func (c *Conn) purgeMarker(ctx context.Context, key string, rev uint64) error {
	opts := []jetstream.KVDeleteOpt{jetstream.LastRevision(rev)}
	if c.markerTTLs {
		opts = append(opts, jetstream.PurgeTTL(c.cfg.MarkerGrace)) // the purge's own marker goes too
	}
	err := c.markers.Purge(ctx, key, opts...)
	if isWrongLastSeq(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unmark pop: %w", err)
	}
	return nil
}

// errCodeStreamInvalidConfig is JetStream's error code for a stream update
// it refuses, such as turning per-message TTLs off (nats.go names no
// constant for it).
const errCodeStreamInvalidConfig jetstream.ErrorCode = 10052

// errCodeStreamSubjectOverlap is JetStream's refusal of a stream whose
// subjects another stream of the account captures.
const errCodeStreamSubjectOverlap jetstream.ErrorCode = 10065

// isWrongLastSeq reports a compare-and-set conflict (10164 on replicated
// streams, 10071 otherwise).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// LatestPop returns the stream sequence of agent's newest pop, 0 if none;
// ErrDisconnected at once while NATS is down. It is a direct get: on a
// cluster the replica that answers may be behind the leader, so it is no
// bound for what a replay reads (ReplayPops asks the leader).
func (c *Conn) LatestPop(ctx context.Context, agent bridge.AgentID) (uint64, error) {
	if !c.Connected() {
		return 0, fmt.Errorf("latest pop: %w", ErrDisconnected)
	}
	m, err := c.stream.GetLastMsgForSubject(ctx, bridge.PopSubject(agent))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("latest pop: %w", err)
	}
	return m.Sequence, nil
}

// LeaderLatestPop is LatestPop answered by the stream's leader on a
// replicated stream (see lastPop), by its one replica otherwise: push asks
// it when a page's cursor is beyond LatestPop's answer, which a replica
// behind the leader gives, before taking the stream for set back.
func (c *Conn) LeaderLatestPop(ctx context.Context, agent bridge.AgentID) (uint64, error) {
	if !c.Connected() {
		return 0, fmt.Errorf("latest pop: %w", ErrDisconnected)
	}
	m, err := c.lastPop(ctx, agent)
	if err != nil {
		return 0, fmt.Errorf("latest pop: %w", err)
	}
	if m == nil {
		return 0, nil
	}
	return m.Sequence, nil
}

// PopAt reports whether the stream holds a pop of agent at seq, and that
// pop's id: the check push makes of a resuming page's cursor. A cursor
// that names no pop of its agent, or another pop than the page's last
// (lastPopId), is from another history of the stream (a store restored
// from a backup, its last writes lost to a power cut), or of a pop aged
// out. On a replicated stream a seq not found is asked of the leader too
// (a replica behind it has not the newest pops yet).
func (c *Conn) PopAt(ctx context.Context, agent bridge.AgentID, seq uint64) (popID string, found bool, err error) {
	if !c.Connected() {
		return "", false, fmt.Errorf("pop at seq: %w", ErrDisconnected)
	}
	var subject string
	var data []byte
	m, err := c.stream.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound) && c.stream.CachedInfo().Config.Replicas > 1:
		lm, lerr := c.leader.GetMsg(c.cfg.Stream, seq, nats.Context(ctx))
		if errors.Is(lerr, nats.ErrMsgNotFound) {
			return "", false, nil
		}
		if lerr != nil {
			return "", false, fmt.Errorf("pop at seq: %w", lerr)
		}
		subject, data = lm.Subject, lm.Data
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("pop at seq: %w", err)
	default:
		subject, data = m.Subject, m.Data
	}
	if subject != bridge.PopSubject(agent) {
		return "", false, nil
	}
	return gjson.GetBytes(data, "data.id").String(), true, nil // the pop frame's id
}

// PoppedLast reports whether agent's newest stored pop has the id popID
// (its Nats-Msg-Id).
func (c *Conn) PoppedLast(ctx context.Context, agent bridge.AgentID, popID string) (bool, error) {
	m, err := c.stream.GetLastMsgForSubject(ctx, bridge.PopSubject(agent))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("last pop: %w", err)
	}
	return m.Header.Get(jetstream.MsgIDHeader) == popID, nil
}

// PopStored reports whether agent's pop popID is stored (see
// bridge.PopChecker): it reads popID's marker and agent's pops stored since
// the marker was written. It answers true when there is nothing to check
// against: no claim (gone, or ended), or a stream whose oldest message is
// younger than the marker (its oldest messages discarded, or the stream
// made again), where a missing pop proves nothing.
func (c *Conn) PopStored(ctx context.Context, agent bridge.AgentID, popID string) (bool, error) {
	e, err := c.marker(ctx, markerKey(popID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("pop stored: read marker: %w", err)
	}
	if string(e.value) == markerEnded {
		return true, nil
	}
	// The agent's newest pop answers the common case in one read (a
	// restart's reconciliation asks for every live leg): it is this leg's.
	// The leader's on a cluster (lastPop): a replica behind it, which a
	// direct get may ask, has not the pop yet, and the leg would pop again.
	last, err := c.lastPop(ctx, agent)
	if err != nil {
		return false, fmt.Errorf("pop stored: %w", err)
	}
	if last != nil && last.Header.Get(jetstream.MsgIDHeader) == popID {
		return true, nil
	}
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return false, fmt.Errorf("pop stored: %w", err)
	}
	if first := st.CachedInfo().State.FirstTime; first.IsZero() || first.After(e.created) {
		return true, nil
	}
	// The pop is published after its marker: stored at or after the
	// marker's time, both the server's (a window's margin for a cluster's
	// leaders, whose clocks may differ). An agent with no pop since has
	// none of this leg's.
	since := e.created.Add(-c.cfg.DuplicateWindow)
	if last == nil || last.Time.Before(since) {
		return false, nil
	}
	data, err := c.findPop(ctx, agent, popID, since, last.Sequence)
	if err != nil {
		return false, fmt.Errorf("pop stored: %w", err)
	}
	return data != nil, nil
}

// ReadPop returns the bytes of agent's pop popID stored at or after since
// (this host's clock), nil when there is none (see bridge.PopReader). It
// waits for one of PopStored's slots, not behind the replays of resuming
// pages.
func (c *Conn) ReadPop(ctx context.Context, agent bridge.AgentID, popID string, since time.Time) ([]byte, error) {
	data, err := c.findPop(ctx, agent, popID, since.Add(c.clockOffset()), 0)
	if err != nil {
		return nil, fmt.Errorf("read pop: %w", err)
	}
	return data, nil
}

// findPop reads agent's pops stored at or after since (the server's clock)
// through a short-lived consumer that takes one of the checks slots, and
// returns a copy of the one stored under popID, nil when there is none.
// upTo, when not 0, is the stream leader's newest pop of agent, and the
// read goes on to it: the consumer may be on a replica behind the leader,
// whose NumPending is short (see ReplayPops). 0 reads what matched on the
// consumer's replica.
func (c *Conn) findPop(ctx context.Context, agent bridge.AgentID, popID string, since time.Time, upTo uint64) ([]byte, error) {
	release, err := slot(ctx, c.checks)
	if err != nil {
		return nil, err
	}
	defer release() // after the consumer's deletion
	cons, err := c.js.OrderedConsumer(ctx, c.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{bridge.PopSubject(agent)},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	defer c.deleteConsumer(ctx, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	pending := info.NumPending
	if pending == 0 && upTo == 0 {
		return nil, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(int(min(max(pending, 1), 64))))
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if m.Headers().Get(jetstream.MsgIDHeader) == popID {
			return bytes.Clone(m.Data()), nil
		}
		if upTo != 0 {
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= upTo {
				return nil, nil
			}
			continue
		}
		if pending--; pending == 0 {
			return nil, nil
		}
	}
}

// ReplayPops calls fn, in stream order, for agent's pops after afterSeq that
// were stored at or after since, up to the newest one at the time of the
// call.
//
// What is to replay is the stream leader's answer (lastPop), and the
// replay reads up to it: on a cluster any replica answers a direct get,
// and a replay's consumer goes to any replica, one that has not applied
// the newest pops yet too (a moment behind the leader, seconds when its
// disk stalls). A page resuming then would miss the pop push followed,
// with no page open, just before.
func (c *Conn) ReplayPops(ctx context.Context, agent bridge.AgentID, afterSeq uint64, since time.Time, fn func(bridge.StoredPop) error) error {
	if !c.Connected() {
		return fmt.Errorf("replay pops: %w", ErrDisconnected)
	}
	if !since.IsZero() {
		// since is this host's clock, the stored times the server's.
		since = since.Add(c.clockOffset())
	}
	last, err := c.lastPop(ctx, agent)
	if err != nil {
		return fmt.Errorf("replay pops: %w", err)
	}
	if last == nil || last.Sequence <= afterSeq || (!since.IsZero() && last.Time.Before(since)) {
		return nil
	}
	latest := last.Sequence
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{bridge.PopSubject(agent)},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		InactiveThreshold: 30 * time.Second,
	}
	if since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, afterSeq+1
	}
	release, err := slot(ctx, c.reads)
	if err != nil {
		return fmt.Errorf("replay pops: %w", err)
	}
	defer release() // after the consumer's deletion
	cons, err := c.js.OrderedConsumer(ctx, c.cfg.Stream, cfg)
	if errors.Is(err, jetstream.ErrMaximumConsumersLimit) {
		return c.replayNewest(agent, last, fn)
	}
	if err != nil {
		return fmt.Errorf("replay pops: %w", err)
	}
	// Every agent's hello replays: left to the server's inactivity
	// threshold, the consumers of a day of reconnecting tabs would be
	// thousands at once, each with its goroutines on the server.
	defer c.deleteConsumer(ctx, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("replay pops: %w", err)
	}
	// What matched on the consumer's replica when it was made, fewer than
	// the leader's on one behind it: a hint for the batch, not where to
	// stop.
	pending := info.NumPending
	it, err := cons.Messages(jetstream.PullMaxMessages(int(min(max(pending, 1), 64))))
	if err != nil {
		return fmt.Errorf("replay pops: %w", err)
	}
	defer it.Stop()
	// Messages has no context: stop the iterator when ctx ends.
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("replay pops: %w", err)
		}
		p, _, err := c.storedPop(m)
		if err != nil {
			return err
		}
		if p.Seq > afterSeq {
			if err := fn(p); err != nil {
				return err
			}
		}
		if p.Seq >= latest {
			return nil
		}
	}
}

// replayNewest is ReplayPops when the stream has no room for another
// consumer: its limit (nats-server's 1,000 a stream by default) is taken,
// by another service's consumers left behind (ours are bounded by reads
// and checks). Refusing the page (1013) would leave the agent without
// pops, live ones too, for as long as they stay, and every page of
// Unified Interface says hello; so the agent's newest pop is read without
// a consumer and replayed if it is in the range: the one a page reloading
// most likely missed. Older missed pops are not replayed meanwhile.
func (c *Conn) replayNewest(agent bridge.AgentID, last *jetstream.RawStreamMsg, fn func(bridge.StoredPop) error) error {
	if ok, held := c.fullLines.Allow("full", time.Now()); ok {
		c.log.Error().Str("stream", c.cfg.Stream).Int("held_back", held).
			Msg("the stream has no room for another consumer (nats-server's limit, 1,000 a stream by default): another service holds that many; pages resume with their agent's newest pop only until it lets them go (nats consumer ls " + c.cfg.Stream + ")")
	}
	d, _ := c.correction(last.Header)
	return fn(bridge.StoredPop{Seq: last.Sequence, Agent: agent, Data: last.Data, Time: last.Time, ClockCorrection: d})
}

// lastPop reads agent's newest pop, nil if none. On a replicated stream it
// asks the leader ($JS.API.STREAM.MSG.GET, which only the leader answers,
// through nats.go's JetStreamContext, whose GetLastMsg is not a direct get
// unless told): a direct get (jetstream's GetLastMsgForSubject on a stream
// that allows them) is answered by any replica, one behind the leader too.
// A stream of one replica has no other: its direct get is the leader's,
// and it stays off the JetStream API's queue.
func (c *Conn) lastPop(ctx context.Context, agent bridge.AgentID) (*jetstream.RawStreamMsg, error) {
	if c.stream.CachedInfo().Config.Replicas <= 1 {
		m, err := c.stream.GetLastMsgForSubject(ctx, bridge.PopSubject(agent))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		return m, err
	}
	m, err := c.leader.GetLastMsg(c.cfg.Stream, bridge.PopSubject(agent), nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Header: m.Header, Data: m.Data, Time: m.Time}, nil
}

// maxReadConsumers and maxCheckConsumers are how many consumers
// ReplayPops and PopStored hold at once (see Conn.reads): together well
// below nats-server's default of 1,000 a stream, with room for other
// instances and services.
const (
	maxReadConsumers  = 64
	maxCheckConsumers = 8
)

// slot waits for one of the slots of pool; release gives it back.
func slot(ctx context.Context, pool chan struct{}) (release func(), err error) {
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// deleteConsumer deletes a consumer that is done with (after its
// iterator is stopped); one not deleted goes at its inactivity threshold.
func (c *Conn) deleteConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := c.js.DeleteConsumer(dctx, c.cfg.Stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		c.log.Debug().Err(err).Msg("delete replay consumer")
	}
}

// storedPop reads a pop delivered by a consumer, with the delivery's
// metadata.
func (c *Conn) storedPop(m jetstream.Msg) (bridge.StoredPop, *jetstream.MsgMetadata, error) {
	md, err := m.Metadata()
	if err != nil {
		return bridge.StoredPop{}, nil, fmt.Errorf("pop metadata: %w", err)
	}
	d, _ := c.correction(m.Headers())
	return bridge.StoredPop{
		Seq:             md.Sequence.Stream,
		Agent:           bridge.AgentFromPopSubject(m.Subject()),
		Data:            m.Data(),
		Time:            md.Timestamp,
		ClockCorrection: d,
	}, md, nil
}

// DefaultAckWait is how long the resolver's consumer waits for an event's
// ack before it delivers the event again. It is what an event in the hands
// of an instance that died waits before another (or the restarted one)
// gets it, so it must stay well below the resolver's max event age (30 s by
// default), beyond which a redelivered event makes no pop; and above what a
// handler takes, its lookup deadline (2 s by default) and its wait for a
// worker included, or events still waiting for a worker come back for
// nothing. A running handler keeps its event in progress (ConsumeEvents),
// but only while NATS hears it: so the daemon keeps a handler's retries
// (the pop's publish) well inside the ack wait too.
const DefaultAckWait = 10 * time.Second

// pullHeartbeat is how often NATS tells the resolver's consumer that its
// pull is held. nats.go sends a pull that no server took ("no responders")
// again only after two missed heartbeats: with its default (15 s), 30 s,
// by when the events waiting were too old to pop (the resolver's max
// event age, 30 s by default). On a cluster that happens when the pull
// meets the moment the consumer has no leader: just made (the first
// start, a lost consumer made again), or a failover.
const pullHeartbeat = 2 * time.Second

// pullExpiry is how long one of the resolver consumer's pull requests
// stays with the server. The server hands an event to any waiting pull, of
// whichever instance, and a pull outlives the instance that sent it when
// that instance hangs (a paused VM, a stopped process: its connection
// stays open, nothing runs): until the pull expires, some of the events of
// the deployment go to the hung instance, come back after the ack wait,
// and may go to it again. With nats.go's default (30 s) the calls of that
// half minute popped 10 to 20 s late on the healthy instance, or not at
// all (older than the max event age by the second return). Twice the
// heartbeat and a little, so that nats.go accepts it; a fresh pull every
// 5 s costs nothing.
const pullExpiry = 5 * time.Second

// ConsumeConfig tunes ConsumeEvents.
type ConsumeConfig struct {
	Durable     string        // consumer name; default screenpop-resolver
	Subjects    []string      // event subjects consumed; default all (screenpop.events.>)
	Workers     int           // events handled at once; default 64
	AckWait     time.Duration // redelivery after this long without an ack; default DefaultAckWait
	MaxDeliver  int           // attempts before an event is given up; default 5
	DrainWithin time.Duration // on shutdown, how long in-flight handlers may finish; default 5s
	// Since is how far back a durable made anew starts: one absent at the
	// start (deleted while no instance ran), or lost while this one ran.
	// Events stored in that time, while no consumer existed, are then
	// still delivered; the resolver passes its max event age, beyond which
	// an event makes no pop anyway. A consumer lost while running starts
	// instead at the newest event this instance was given, when that is
	// later: that one comes again (its pop marker makes it harmless), what
	// it was given before then does not (nor an older event waiting for
	// its redelivery). 0: a durable made anew starts at new events.
	Since time.Duration
	// OwnerCheck is how often the consumer's owner (Config.Owner) is read
	// again while consuming; default DefaultOwnerCheck.
	OwnerCheck time.Duration
	// Consuming, if set, is told true each time the consumer exists and
	// its pulls are out (at the start, and once made again after a loss),
	// and false when it was lost.
	Consuming func(bool)
}

// ConsumeEvents runs the durable consumer of conversation events: fn gets
// each event's CloudEvent bytes, up to Workers at once. A nil error acks the
// message; an error asks for redelivery after a short delay. While fn runs,
// the message is kept in progress (its ack wait restarted every third of
// it), so JetStream does not hand an event being handled to another handler,
// here or in another instance; an event comes back after AckWait only when
// its handler's process has died or cannot reach NATS. A durable made
// anew starts cc.Since back (see there); an existing one resumes where it
// stopped, its start kept as it was made. On ctx
// cancel it stops taking messages and waits for the handlers in flight,
// which get a context that outlives ctx by DrainWithin.
func (c *Conn) ConsumeEvents(ctx context.Context, cc ConsumeConfig, fn func(ctx context.Context, data []byte) error) error {
	if cc.Durable == "" {
		cc.Durable = DefaultDurable
	}
	if cc.OwnerCheck <= 0 {
		cc.OwnerCheck = DefaultOwnerCheck
	}
	if len(cc.Subjects) == 0 {
		cc.Subjects = []string{bridge.SubjectEvents}
	}
	if cc.Workers <= 0 {
		cc.Workers = 64
	}
	if cc.AckWait == 0 {
		cc.AckWait = DefaultAckWait
	}
	if cc.MaxDeliver == 0 {
		cc.MaxDeliver = 5
	}
	if cc.DrainWithin == 0 {
		cc.DrainWithin = 5 * time.Second
	}
	// wg counts the events taken and not yet handled or handed back.
	var wg sync.WaitGroup
	// Workers goroutines, started once, handle the events, rather than a
	// goroutine started for each: a new goroutine starts on a small stack,
	// and decoding an event grew it two or three times, each a copy of the
	// stack (1-2% of the daemon's CPU at 500 pops/s; docs/performance-log.md,
	// "Stack growth"). A worker's stack stays grown from one event to the
	// next. The channel is unbuffered: with every worker busy the consume
	// loop waits, back-pressure rather than an unbounded queue.
	type job struct {
		m     jetstream.Msg
		md    *jetstream.MsgMetadata
		mdErr error
	}
	work := make(chan job)
	var workers sync.WaitGroup
	// Handlers outlive ctx by DrainWithin, so a pop in flight at shutdown
	// is finished rather than lost.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	// closing, under mu, is set before the handlers are waited for: a
	// callback after that (a drained subscription's buffer) only hands its
	// event back, and wg.Add never races wg.Wait.
	var mu sync.Mutex
	closing := false
	// stopping is closed, with closing set, when the consume loop ends for
	// an error: a callback waiting for a worker then hands its event back,
	// as at a shutdown. Otherwise the wait for the subscription to close
	// waits on it, it on a busy worker, and that worker's handler on a
	// drain that starts only after the wait: a handler that runs until its
	// context ends held the error's return (the takeover by another
	// deployment) for ever.
	stopping := make(chan struct{})
	// The handlers' DrainWithin runs from the stop (ctx done), not from
	// the end of the wait for the subscription to close: that wait is part
	// of it, or a stop could take twice DrainWithin.
	var drainOnce sync.Once
	var drain *time.Timer
	startDrain := func() { drainOnce.Do(func() { drain = time.AfterFunc(cc.DrainWithin, hcancel) }) }
	// Every return waits for the handlers in flight, which get DrainWithin
	// from the stop (or from this return) before their context ends.
	defer func() {
		mu.Lock()
		closing = true
		mu.Unlock()
		startDrain()
		wg.Wait()
		drain.Stop()
		close(work) // no sender is left: each counted in wg, none after closing
		workers.Wait()
	}()
	// handBack leaves an event to the next start or another instance
	// rather than start work that must be cut short; it comes back in a
	// second, not after the ack wait.
	handBack := func(m jetstream.Msg) {
		if err := m.NakWithDelay(time.Second); err != nil {
			c.log.Debug().Err(err).Msg("nak event")
		}
	}
	// newest is the stored time (Unix nanoseconds) of the newest event
	// this instance was given: where a lost consumer starts again.
	var newest atomic.Int64
	handle := func(m jetstream.Msg) {
		md, mdErr := m.Metadata()
		if mdErr == nil {
			storeMax(&newest, md.Timestamp.UnixNano())
		}
		mu.Lock()
		if closing || ctx.Err() != nil {
			mu.Unlock()
			handBack(m)
			return
		}
		wg.Add(1)
		mu.Unlock()
		select {
		case work <- job{m, md, mdErr}: // blocks the consume loop while every worker is busy
		case <-ctx.Done():
			wg.Done()
			handBack(m)
		case <-stopping:
			wg.Done()
			handBack(m)
		}
	}
	process := func(j job) {
		m, md, mdErr := j.m, j.md, j.mdErr
		stop := keepInProgress(m, inProgressEvery(cc.AckWait), c.log)
		mctx := hctx
		if mdErr == nil {
			mctx = bridge.WithDelivery(hctx, md.NumDelivered)
		}
		if d, ok := c.correction(m.Headers()); ok {
			mctx = bridge.WithClockCorrection(mctx, d)
		}
		err := fn(mctx, m.Data())
		stop()
		if err != nil {
			c.metrics.handleErrors.Inc()
			if mdErr == nil && md.NumDelivered >= uint64(cc.MaxDeliver) {
				// JetStream will not deliver it again: if it was to
				// pop, that pop is lost. Say so where on-call looks.
				c.metrics.givenUp.Inc()
				c.log.Error().Err(err).Str("subject", m.Subject()).Uint64("deliveries", md.NumDelivered).Msg("event given up after its last delivery")
				if err := m.Term(); err != nil {
					c.log.Debug().Err(err).Msg("term event")
				}
				return
			}
			if err := m.NakWithDelay(500 * time.Millisecond); err != nil {
				c.log.Debug().Err(err).Msg("nak event")
			}
			return
		}
		if err := m.Ack(); err != nil {
			c.log.Debug().Err(err).Msg("ack event")
		}
	}
	workers.Add(cc.Workers)
	for range cc.Workers {
		go func() {
			defer workers.Done()
			for j := range work {
				func() {
					defer wg.Done() // even if fn ends its goroutine (runtime.Goexit)
					process(j)
				}()
			}
		}()
	}
	backoff := 100 * time.Millisecond
	// consumed: the consumer was made and consumed from once; until then
	// a failure is the start's, after it the making again of a lost one.
	// failed counts the failures in a row.
	consumed, failed := false, 0
	want := jetstream.ConsumerConfig{
		Durable:        cc.Durable,
		Description:    "screenpop resolver: conversation events to pops",
		FilterSubjects: cc.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cc.AckWait,
		MaxDeliver:     cc.MaxDeliver,
		MaxAckPending:  cc.Workers * 4,
	}
	for attempt := 0; ; attempt++ {
		cons, err := c.eventConsumer(ctx, want, cc.Since, time.Unix(0, newest.Load()))
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			// At the start, a refusal (NATS answered: an older or newer
			// daemon's consumer, the account's permissions) stops the
			// daemon with its cause; no answer (NATS away or slow for a
			// moment, just after the stream was made), or a cluster's
			// "temporarily unavailable" (503: no JetStream leader while
			// it elects one), is tried again, and /readyz waits for it
			// (cc.Consuming).
			// A refusal after a start attempt that got no answer is a
			// refusal all the same; only a stream not found then may be a
			// NATS back without its store, whose stream is being made again.
			var refused *jetstream.APIError
			if errors.Is(err, ErrOtherDeployment) || !consumed && errors.As(err, &refused) && refused.Code != http.StatusServiceUnavailable &&
				(failed == 0 || !errors.Is(err, jetstream.ErrStreamNotFound)) {
				return fmt.Errorf("create consumer %s: %w", cc.Durable, err)
			}
			// Making it again after it was lost: keep trying, NATS may be
			// coming back.
			failed++
			switch {
			case !consumed && (failed == 1 || failed%10 == 0):
				c.log.Error().Err(err).Str("consumer", cc.Durable).Int("attempt", failed).Msg("the resolver's consumer cannot be created yet, retrying: no pops until it is")
			case consumed && (failed == 1 || failed%10 == 0):
				c.log.Error().Err(err).Str("consumer", cc.Durable).Int("attempt", failed).Msg("the resolver's consumer cannot be created again, retrying: no pops until it is")
			}
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		// The consumer can go from under a running Consume: deleted (by
		// hand, or by an incident on an external cluster) while this
		// instance is connected (a 409 to its waiting pull) or while it is
		// not (its pulls then find no responder). Consume does not make it
		// again, so without this no event would pop again while the daemon
		// looked healthy.
		lost := make(chan error, 1)
		suspect := make(chan struct{}, 1)
		consCtx, err := cons.Consume(handle, jetstream.PullMaxMessages(cc.Workers*2), jetstream.PullHeartbeat(pullHeartbeat), jetstream.PullExpiry(pullExpiry), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound):
				select {
				case lost <- err:
				default:
				}
				return
			case errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat):
				select { // is it still there? asked outside the consume loop
				case suspect <- struct{}{}:
				default:
				}
			}
			c.log.Debug().Err(err).Msg("consume events")
		}))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if attempt == 0 {
				return fmt.Errorf("consume events: %w", err)
			}
			c.log.Error().Err(err).Str("consumer", cc.Durable).Int("attempt", attempt).Msg("the resolver's consumer cannot be consumed again, retrying: no pops until it is")
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		consumed, failed = true, 0
		if cc.Consuming != nil {
			cc.Consuming(true)
		}
		started := time.Now()
		owner := time.NewTicker(cc.OwnerCheck)
		var why, fatal error
		for why == nil && fatal == nil {
			select {
			case <-owner.C:
				// A daemon of another deployment that came up while this
				// one's pulls were not there (a start at the same moment,
				// a NATS blip) took the consumer over: both now resolve
				// each other's events.
				ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
				info, err := cons.Info(ictx)
				cancel()
				if err != nil {
					continue
				}
				if other := info.Config.Metadata[ownerKey]; c.cfg.Owner != "" && other != "" && other != c.cfg.Owner {
					fatal = fmt.Errorf("consumer %s: %w: the deployment of %s took it over while this one (%s) consumed from it; each deployment needs its own NATS account", cc.Durable, ErrOtherDeployment, other, c.cfg.Owner)
					continue
				}
				// Edited by hand (nats consumer edit): a narrowed filter
				// pops no call of the other subjects, a lower max deliver
				// loses the events whose pop failed once, a longer ack wait
				// holds a dead instance's events past the max event age.
				// A restart would put it back: do it now.
				if changed := consumerChanged(info.Config, want); changed != "" {
					uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := c.eventConsumer(uctx, want, cc.Since, time.Unix(0, newest.Load()))
					cancel()
					ev := c.log.Warn()
					if err != nil {
						ev = c.log.Error().Err(err)
					}
					ev.Str("consumer", cc.Durable).Str("changed", changed).Bool("put_back", err == nil).
						Msg("the resolver's consumer was changed by hand (nats consumer edit), or by an instance of this deployment with other settings: its settings are put back")
				}
			case <-ctx.Done():
				// Drain, not Stop: the events already pulled into the
				// subscription's buffer reach handle, which hands them
				// back at once; Stop would drop them, to come back only
				// after the ack wait (after a restart, perhaps too old).
				// With NATS unreachable nothing can be handed back, and a
				// drain would wait out nats.go's 10 s flush, past the
				// shutdown budget: Stop then, and wait DrainWithin at most
				// whichever it was.
				startDrain()
				if c.Connected() {
					consCtx.Drain()
				} else {
					consCtx.Stop()
				}
				t := time.NewTimer(cc.DrainWithin)
				defer t.Stop()
				select {
				case <-consCtx.Closed():
				case <-t.C:
					c.log.Warn().Str("consumer", cc.Durable).Msg("the resolver's consumer did not stop in time: the events it held come back after their ack wait")
				}
				return nil
			case why = <-lost:
			case <-consCtx.Closed():
				why = errors.New("consume stopped")
			case <-suspect:
				ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cons.Info(ictx)
				cancel()
				// The stream gone (a NATS back without its store) took the
				// consumer with it: it is made again once the stream is.
				if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
					why = err
				}
			}
		}
		owner.Stop()
		if fatal != nil {
			mu.Lock()
			closing = true
			close(stopping)
			mu.Unlock()
		}
		consCtx.Stop()
		<-consCtx.Closed()
		if fatal != nil {
			return fatal
		}
		if cc.Consuming != nil {
			cc.Consuming(false)
		}
		c.metrics.consumerLost.Inc()
		c.log.Error().Err(why).Str("consumer", cc.Durable).Msg("the resolver's consumer was lost, creating it again from the newest event this instance was given")
		// A consumer lost again and again (a terminal error that is not a
		// deletion) must not spin: back off unless it ran a good while.
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		} else {
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// consumerChanged names the settings of the resolver's consumer that are
// not want's, "" when none is.
func consumerChanged(have, want jetstream.ConsumerConfig) string {
	filters := have.FilterSubjects
	if have.FilterSubject != "" {
		filters = append([]string{have.FilterSubject}, filters...)
	}
	var changed []string
	if !slices.Equal(filters, want.FilterSubjects) {
		changed = append(changed, fmt.Sprintf("filter %s", strings.Join(filters, ",")))
	}
	if have.AckPolicy != want.AckPolicy {
		changed = append(changed, "ack policy "+have.AckPolicy.String())
	}
	if have.AckWait != want.AckWait {
		changed = append(changed, "ack wait "+have.AckWait.String())
	}
	if have.MaxDeliver != want.MaxDeliver {
		changed = append(changed, fmt.Sprintf("max deliver %d", have.MaxDeliver))
	}
	if have.MaxAckPending != want.MaxAckPending {
		changed = append(changed, fmt.Sprintf("max ack pending %d", have.MaxAckPending))
	}
	return strings.Join(changed, "; ")
}

// eventConsumer updates the durable cfg names, keeping where it was made to
// start (JetStream refuses to change that), or creates it: starting since
// back, or at newest when that is later, but not after the stream's last
// message; at new events when since is 0.
// Another instance may create or delete it in between: each outcome is
// tried again a few times.
func (c *Conn) eventConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, since time.Duration, newest time.Time) (jetstream.Consumer, error) {
	if c.cfg.Owner != "" {
		cfg.Metadata = map[string]string{ownerKey: c.cfg.Owner}
	}
	var err error
	for range 3 {
		var cons jetstream.Consumer
		cons, err = c.js.Consumer(ctx, c.cfg.Stream, cfg.Durable)
		switch {
		case err == nil:
			if err := c.otherOwner(ctx, cons); err != nil {
				return nil, err
			}
			was := cons.CachedInfo().Config
			if other := was.Metadata[ownerKey]; other != "" && c.cfg.Owner != "" && other != c.cfg.Owner {
				c.log.Warn().Str("consumer", cfg.Durable).Str("owner", other).Str("new_owner", c.cfg.Owner).
					Msg("the resolver's consumer was another deployment's, not in use now: taking it over (its DATAVERSE_URL changed, or another deployment used this NATS account before)")
			}
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = was.DeliverPolicy, was.OptStartSeq, was.OptStartTime
			cons, err = c.js.UpdateConsumer(ctx, c.cfg.Stream, cfg)
			if errors.Is(err, jetstream.ErrConsumerDoesNotExist) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue // deleted in between
			}
			return cons, err
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverNewPolicy, 0, nil
			if since > 0 {
				// The stored times are the NATS server's: since back is
				// counted on its clock (the stream info's time), not this
				// host's. Never past the stream's last message either (a
				// server too old to say its time, and a clock behind this
				// one by more than since: every new event would come
				// before the start).
				start := time.Now().Add(-since)
				t0 := time.Now()
				st, err := c.js.Stream(ctx, c.cfg.Stream)
				if err == nil {
					if now, ok := c.sampleClock(st.CachedInfo().TimeStamp, t0, time.Now()); ok {
						start = now.Add(-since)
					}
				}
				if newest.After(start) {
					start = newest
				}
				if err == nil {
					if last := st.CachedInfo().State.LastTime; !last.IsZero() && last.Before(start) {
						start = last
					}
				}
				cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
			}
			cons, err = c.js.CreateConsumer(ctx, c.cfg.Stream, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue // made by another instance in between
			}
			return cons, err
		default:
			return nil, err
		}
	}
	return nil, err
}

// otherOwner is ConsumerOwnerConflict for this daemon's owner.
func (c *Conn) otherOwner(ctx context.Context, cons jetstream.Consumer) error {
	return ConsumerOwnerConflict(ctx, cons, c.cfg.Owner)
}

// ConsumerOwnerConflict is OwnerConflict for cons, read again twice over
// half a second while it belongs to another owner and no one seems to
// consume from it: a running resolver's pull expires every pullExpiry and is sent
// again at once, and a read in that moment (about 1 in 3,000 here) would
// take a running deployment's consumer for an unused one.
func ConsumerOwnerConflict(ctx context.Context, cons jetstream.Consumer, owner string) error {
	info := cons.CachedInfo()
	for i := 0; ; i++ {
		if err := OwnerConflict(info, owner); err != nil {
			return err
		}
		other := ""
		if info != nil {
			other = info.Config.Metadata[ownerKey]
		}
		if owner == "" || other == "" || other == owner || i == 2 || !sleepCtx(ctx, 250*time.Millisecond) {
			return nil
		}
		again, err := cons.Info(ctx)
		if err != nil {
			return nil // as before the re-read: the caller's next step meets the same error
		}
		info = again
	}
}

// OwnerConflict is ErrOtherDeployment, wrapped with what to do, when info
// (the resolver consumer's) names an owner other than owner (Config.Owner)
// and someone consumes from it (consuming: pulls waiting, or events in
// its handlers while deliveries or acks move; a resolver whose workers
// are all busy pulls again only once it has worked its batch down): that
// deployment's daemons run. One no one consumes from is owner's to take
// (its DATAVERSE_URL changed, with every daemon stopped; one that died
// with events in its handlers, once the ack wait has passed since its
// last delivery or ack); one without an owner (made by an earlier
// version) too. An empty owner has no conflict.
func OwnerConflict(info *jetstream.ConsumerInfo, owner string) error {
	if owner == "" || info == nil {
		return nil
	}
	other := info.Config.Metadata[ownerKey]
	if other == "" || other == owner || !consuming(info) {
		return nil
	}
	return fmt.Errorf("%w: its resolver (consumer %s of stream %s) belongs to the deployment of %s, and it is running; this one is %s. "+
		"The subjects (screenpop.>), the stream and the consumer are the same for every deployment: give each deployment its own NATS account (docs/architecture.md, \"Several deployments\")",
		ErrOtherDeployment, info.Name, info.Stream, other, owner)
}

// consuming reports whether info shows someone consuming: pulls waiting,
// or events delivered and not acknowledged (in handlers) while deliveries
// or acks still move, within the ack wait (on the server's clock). A
// resolver whose workers are all busy has no pull waiting; a deployment
// that died with events in its handlers leaves them counted as pending
// until someone pulls again, but nothing moves.
func consuming(info *jetstream.ConsumerInfo) bool {
	if info.NumWaiting > 0 {
		return true
	}
	if info.NumAckPending == 0 {
		return false
	}
	window := info.Config.AckWait
	if window <= 0 {
		window = DefaultAckWait
	}
	for _, last := range []*time.Time{info.Delivered.Last, info.AckFloor.Last} {
		if last != nil && info.TimeStamp.Sub(*last) < window {
			return true
		}
	}
	return false
}

// storeMax sets a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for was := a.Load(); v > was; was = a.Load() {
		if a.CompareAndSwap(was, v) {
			return
		}
	}
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// keepInProgress tells JetStream, every interval until stop is called, that
// m is still being handled, which restarts its ack wait. Without it an
// event whose handler outlasts the ack wait (a pop whose publish is retried
// for seconds) is delivered again while the first handler works: to this
// process, or to another instance sharing the consumer. The copy may be
// acknowledged (its handler finds the leg's pop under way) before the first
// fails and asks for redelivery, and an acknowledged event is never
// delivered again: its pop would be lost. Where JetStream cannot hear it
// (the connection is down), the event comes back after the ack wait all the
// same, and the resolver's handler of the copy waits for the first one's
// outcome (bridge.Resolver). stop returns once no tick is running, so
// nothing is sent for m after its ack.
func keepInProgress(m jetstream.Msg, every time.Duration, log zerolog.Logger) (stop func()) {
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := m.InProgress(); err != nil {
			log.Debug().Err(err).Msg("event in progress")
		}
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// inProgressEvery is how often a handler's event is said to be in progress:
// three times per ack wait, so that one lost notice does not let it expire.
// Handlers done within a third of the ack wait (nearly all) send none.
func inProgressEvery(ackWait time.Duration) time.Duration {
	return max(ackWait/3, 10*time.Millisecond)
}

// RedactURL is a NATS_URL (one URL or a comma-separated list) fit to log:
// each URL's user info is masked, also a password's with a comma in it,
// which splits the list before its '@' (nats://user:pa,ss@host), and any
// part that is not a plain scheme://host:port is masked whole.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	var urls []string
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		// The parts up to the next '@' belong to this URL when they
		// start no URL of their own and its user info is still open.
		if strings.Contains(p, "://") && !strings.Contains(p, "@") {
			for j := i + 1; j < len(parts) && !strings.Contains(parts[j], "://"); j++ {
				if strings.Contains(parts[j], "@") {
					p = strings.Join(parts[i:j+1], ",")
					i = j
					break
				}
			}
		}
		urls = append(urls, redactOne(p))
	}
	return strings.Join(urls, ",")
}

// redactOne is RedactURL for one URL.
func redactOne(p string) string {
	scheme, rest := "", p
	if s := strings.Index(p, "://"); s >= 0 {
		scheme, rest = p[:s+3], p[s+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "***@" + rest[at+1:]
	}
	hostport, _, _ := strings.Cut(rest, "/") // a websocket URL's path stays
	if !plainHostPort(strings.TrimSpace(hostport)) {
		return scheme + "***"
	}
	return p
}

// plainHostPort reports whether s is a host name or address with an
// optional numeric port, and nothing else.
func plainHostPort(s string) bool {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		for _, r := range port {
			if r < '0' || r > '9' {
				return false
			}
		}
		host = h
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1] // an IPv6 address without a port
	} else if strings.Contains(s, ":") {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:%", r)) {
			return false
		}
	}
	return true
}

// isAuthError reports whether err is a NATS server's refusal of the
// connection's credentials.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

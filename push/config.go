package push

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Auth modes.
const (
	AuthGenesys = "genesys" // the agent presents its Genesys access token
	AuthJWT     = "jwt"     // HS256 token, sub = Genesys user id, exp required
)

// Config configures a Server. Zero fields mean the defaults of DESIGN.md.
type Config struct {
	// Auth is AuthGenesys (default) or AuthJWT.
	Auth string
	// JWTSecret is the HS256 secret for AuthJWT (at least 32 bytes).
	JWTSecret []byte
	// JWTAudience, if set, must be in the aud of every AuthJWT token.
	JWTAudience string
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// to open the websocket, besides the server's own origin. A request
	// without an Origin header (a non-browser client) is always allowed.
	AllowedOrigins []string

	ReplayWindow      time.Duration // pops replayed after a hello with lastSeq; default 2m
	FreshWindow       time.Duration // pops sent after a hello without lastSeq; default 30s
	HelloTimeout      time.Duration // the hello must arrive within; default 10s
	PingInterval      time.Duration // websocket pings; default 25s
	HeartbeatInterval time.Duration // {"type":"heartbeat"} frames; default 25s
	WriteTimeout      time.Duration // one frame write; default 10s
	// IdleTimeout closes a keep-alive connection idle after its request
	// (not a websocket). Default 75s: longer than a load balancer keeps an
	// idle connection to its backend (AWS ALB: 60 s), as AWS advises;
	// closed first here, a request the balancer sends on it just then
	// gets a 502.
	IdleTimeout time.Duration
	// Revalidate caps how long an authentication answer is trusted before
	// the token is checked again (the authenticator's own time may be
	// sooner). Default 5m.
	Revalidate time.Duration
	SendQueue  int   // frames queued per connection before it is closed with 4008; default 256
	MaxFrame   int64 // largest frame accepted from a browser, bytes; default 16384
	// AgentSockets caps one agent's open sockets: a hello beyond it is
	// closed with 4429. The web resource keeps one per browser tab, so
	// more means a client that leaks sockets or a token used elsewhere.
	// Default 16.
	AgentSockets int
	// HelloPending caps the sockets open whose hello has not arrived: one
	// client can open thousands, each held for HelloTimeout, and their
	// descriptors are the process's, which Genesys, Dataverse and NATS
	// need too. Past it an upgrade is refused with 503 and Retry-After 1
	// (a browser retries with its backoff). A browser sends its hello
	// right after the upgrade, so even every agent reconnecting at once
	// keeps few waiting. Default 4096.
	HelloPending int

	// Stuck, when set, reports a wedged process (the daemon's liveness
	// check: a component that has stopped answering). GET /healthz then
	// answers 503, so that the load balancer in front sends agents to
	// the other instance until this one is restarted.
	Stuck func() bool

	// Stopping, when set, reports that the daemon has begun to stop. Its
	// earlier stages drain (seconds) before push's own stop: GET /healthz
	// answers 503 from the start, so that new pages go to the other
	// instance rather than to one that closes them (1001) a moment later.
	Stopping func() bool

	// DemoAgents, when set (demo mode only), is served as JSON at
	// GET /demo/agents: the emulated agents with ready-made tokens.
	DemoAgents func() any

	// Registerer registers the metrics; nil does not register.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Auth == "" {
		c.Auth = AuthGenesys
	}
	if c.Auth != AuthGenesys && c.Auth != AuthJWT {
		return fmt.Errorf("auth mode %q: want %q or %q (SCREENPOP_AUTH)", c.Auth, AuthGenesys, AuthJWT)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReplayWindow, 2*time.Minute)
	def(&c.FreshWindow, 30*time.Second)
	def(&c.HelloTimeout, 10*time.Second)
	def(&c.PingInterval, 25*time.Second)
	def(&c.HeartbeatInterval, 25*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.IdleTimeout, 75*time.Second)
	def(&c.Revalidate, 5*time.Minute)
	if c.SendQueue <= 0 {
		c.SendQueue = 256
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 16 << 10
	}
	if c.AgentSockets <= 0 {
		c.AgentSockets = 16
	}
	if c.HelloPending <= 0 {
		c.HelloPending = 4096
	}
	return nil
}

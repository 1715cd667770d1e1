package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/internal/filevalue"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// Config is the daemon's whole configuration, parsed once from the
// environment and flags (flags win) and validated in one place.
type Config struct {
	GenesysRegion       string
	GenesysAPIURL       string
	GenesysClientID     string
	GenesysClientSecret string
	GenesysAgents       []string
	GenesysAgentsFile   string
	agentsFilePoll      time.Duration // how often the agents file is looked at (tests; 0: 5 s)
	agentsFileRead      func()        // called by the watcher after a look that finds the file settled, before it reads it (tests)
	GenesysQueues       []string
	topicsPerChannel    int // agents per Genesys channel (tests, to spread few agents over channels; 0: 1,000)
	GenesysQueueRefresh time.Duration

	DataverseURL          string
	DataverseTenantID     string
	DataverseClientID     string
	DataverseClientSecret string
	// DataverseClientCertificate is the PEM file of the app registration's
	// certificate and its key, used instead of DataverseClientSecret.
	DataverseClientCertificate string
	DataverseTokenURL          string
	DataverseAppID             string

	LookupPhone          []dataverse.EntityColumns
	LookupEmail          []dataverse.EntityColumns
	Entities             map[string]dataverse.EntityInfo
	PhoneRegion          string
	PopOn                string
	CreateEntity         string
	OverrideEntityKey    string
	OverrideIDKey        string
	PopInternal          bool
	PopDeadline          time.Duration
	MaxEventAge          time.Duration
	CacheTTL             time.Duration
	NegativeCacheTTL     time.Duration
	DataverseConcurrency int

	NatsURL        string
	NatsCreds      string
	NatsTLSCA      string
	NatsTLSCert    string
	NatsTLSKey     string
	NatsListen     string
	Stream         string
	StreamMaxAge   time.Duration
	StreamReplicas int
	ReplayWindow   time.Duration
	FreshWindow    time.Duration
	DataDir        string

	Listen         string
	AdminListen    string
	TLSCert        string
	TLSKey         string
	AllowPlaintext bool
	AllowedOrigins []string
	Auth           string
	JWTSecret      string
	// JWTSecretPrevious is a secret whose tokens are still accepted while
	// a new JWTSecret is rolled out.
	JWTSecretPrevious string
	JWTAudience       string
	PProf             bool

	LogLevel  string
	LogFormat string

	// explicit holds the variables set by the environment or a flag
	// rather than left at their default.
	explicit map[string]bool
	// invalid holds the variables whose value did not parse: they are
	// reported as malformed, not again as missing.
	invalid map[string]bool
	// trimmedSecrets names the jwt secrets given with whitespace at an
	// end (a file's last newline), which is dropped (Advice).
	trimmedSecrets []string
}

// IsSet reports whether the variable env was set, by the environment or
// by its flag, rather than left at its default.
func (c *Config) IsSet(env string) bool { return c.explicit[env] }

// setting is one configuration variable: its environment name, default,
// help and how it is parsed into Config. The flag name is derived from the
// variable's name.
type setting struct {
	env   string
	def   string
	help  string
	parse func(c *Config, v string) error
}

// flagName is the flag for an environment variable: lower case, '_' as '-',
// the SCREENPOP_ prefix dropped (GENESYS_REGION -> genesys-region).
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "SCREENPOP_")), "_", "-")
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = strings.TrimSpace(v); return nil }
}

// jwtSecret reads a jwt secret as str does, noting whitespace dropped
// from its ends: a secret from a file (a Kubernetes secret made
// --from-file) ends in a newline, which a login signing with the file's
// bytes keeps, and every token it makes is then refused (Advice).
// screenpopd token reads it the same way (JWTSecretOf).
func jwtSecret(env string, dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*dst(c) = JWTSecretOf(v)
		if *dst(c) != v {
			c.trimmedSecrets = append(c.trimmedSecrets, env)
		}
		return nil
	}
}

// JWTSecretOf is the jwt secret a variable's value gives: without the
// whitespace at its ends.
func JWTSecretOf(v string) string { return strings.TrimSpace(v) }

// idList reads a comma-separated list of Genesys ids, in lower case:
// Genesys writes user ids so in conversation bodies and in the agents' own
// tokens (users/me), and an id pasted in capitals would watch an agent
// whose pops reach no one.
func idList(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		ids := splitList(v)
		for i, id := range ids {
			if dataverse.IsGUID(id) {
				ids[i] = bridge.GenesysID(id) // anything else is quoted as written
			}
		}
		*dst(c) = ids
		return nil
	}
}

// maxDuration bounds every duration setting. Ten years is more than any
// of them can mean, and keeps what the daemon derives from them (twice
// the max event age, the pop deadline plus 5 s, the times NATS adds them
// to) clear of time.Duration's and NATS's int64 nanoseconds, which wrap
// around near 292 years from 1970.
const maxDuration = 10 * 365 * 24 * time.Hour

func dur(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive Go duration (e.g. 30s, 5m, 2h)", v)
		}
		if d > maxDuration {
			return fmt.Errorf("%q is longer than 10 years (%s), more than it can mean; give a shorter Go duration (e.g. 30s, 5m, 2h)", v, maxDuration)
		}
		*dst(c) = d
		return nil
	}
}

func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}
}

func posInt(dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a whole number of at least 1", v)
		}
		*dst(c) = n
		return nil
	}
}

// validPort reports whether port is one the listen takes: a number from
// 0 to 65535, or a service name this machine's /etc/services (or Go's own
// table) knows, as net.Listen resolves it, without the network.
func validPort(port string) bool {
	_, err := net.LookupPort("tcp", port)
	return err == nil
}

func hostPort(dst func(*Config) *string, allowOff bool, example string) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if allowOff && v == "off" {
			*dst(c) = v
			return nil
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			if allowOff {
				return fmt.Errorf("%q is not host:port (e.g. %s) or off", v, example)
			}
			return fmt.Errorf("%q is not host:port (e.g. %s)", v, example)
		}
		if _, port, _ := net.SplitHostPort(v); !validPort(port) {
			// Caught here, not by the listen: that is a start-up
			// failure (exit 1), after the data directory is made.
			return fmt.Errorf("%q: the port is neither a number from 0 to 65535 nor a service name this machine knows (e.g. %s)", v, example)
		}
		*dst(c) = v
		return nil
	}
}

func httpURL(dst func(*Config) *string) func(*Config, string) error { return httpURLOf(dst, false) }

// httpRootURL is httpURL for a URL that must be an origin (scheme and host
// only): the value a scheme-less one is told to write drops its path.
func httpRootURL(dst func(*Config) *string) func(*Config, string) error { return httpURLOf(dst, true) }

func httpURLOf(dst func(*Config) *string, root bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.TrimRight(strings.TrimSpace(v), "/")
		if v == "" {
			*dst(c) = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			switch {
			case strings.Contains(v, "@"):
				// Not quoted: what comes before the @ may be a password.
				return errors.New("the value (not shown: it has an @, so it may hold a password) is not an http(s) URL; give the scheme and host only, without credentials, e.g. https://host")
			case !strings.Contains(v, "://"):
				want := v
				if i := strings.IndexAny(want, "/?#"); root && i >= 0 {
					want = want[:i]
				}
				return fmt.Errorf("%q is not an http(s) URL: it has no scheme; write it as https://%s", v, want)
			}
			return fmt.Errorf("%q is not an http(s) URL; give the scheme and host, e.g. https://host", v)
		}
		if u.User != nil {
			return errors.New("the URL must not carry credentials; give the scheme and host only")
		}
		*dst(c) = v
		return nil
	}
}

// lookup reads a lookup list. Only none turns the lookups off: a blank
// value (an empty flag) is unset and gives the default, as an empty
// variable does, and one that names no entity (";") is refused.
func lookup(dst func(*Config) *[]dataverse.EntityColumns, def string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			v = def
		}
		l, err := dataverse.ParseLookup(v)
		if err == nil && len(l) == 0 && strings.TrimSpace(v) != "none" {
			err = fmt.Errorf("%q names no entity:column; write none to turn these lookups off", v)
		}
		*dst(c) = l
		return err
	}
}

func oneOf(dst func(*Config) *string, values ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		for _, ok := range values {
			if v == ok {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(values, ", "))
	}
}

// settings lists every variable of DESIGN.md, in its order, and the three
// this daemon adds (DATAVERSE_CLIENT_CERTIFICATE, SCREENPOP_JWT_SECRET_PREVIOUS,
// SCREENPOP_JWT_AUDIENCE: docs/configuration.md marks them).
var settings = []setting{
	{"GENESYS_REGION", "", "Genesys Cloud region domain, e.g. mypurecloud.com, mypurecloud.ie, usw2.pure.cloud", str(func(c *Config) *string { return &c.GenesysRegion })},
	{"GENESYS_API_URL", "", "override the Genesys API base URL (and so the login host), e.g. an emulator", httpURL(func(c *Config) *string { return &c.GenesysAPIURL })},
	{"GENESYS_CLIENT_ID", "", "Genesys client-credentials OAuth client id", str(func(c *Config) *string { return &c.GenesysClientID })},
	{"GENESYS_CLIENT_SECRET", "", "Genesys client-credentials OAuth client secret", str(func(c *Config) *string { return &c.GenesysClientSecret })},
	{"GENESYS_AGENTS", "", "comma-separated Genesys user ids to watch", idList(func(c *Config) *[]string { return &c.GenesysAgents })},
	{"GENESYS_AGENTS_FILE", "", "a file of Genesys user ids to watch, one a line", str(func(c *Config) *string { return &c.GenesysAgentsFile })},
	{"GENESYS_QUEUES", "", "comma-separated queue ids whose members are watched", idList(func(c *Config) *[]string { return &c.GenesysQueues })},
	{"GENESYS_QUEUE_REFRESH", "5m", "how often queue membership is re-read", dur(func(c *Config) *time.Duration { return &c.GenesysQueueRefresh })},
	{"DATAVERSE_URL", "", "Dataverse environment URL, e.g. https://contoso.crm.dynamics.com", httpRootURL(func(c *Config) *string { return &c.DataverseURL })},
	{"DATAVERSE_TENANT_ID", "", "Entra ID tenant id (GUID or domain)", str(func(c *Config) *string { return &c.DataverseTenantID })},
	{"DATAVERSE_CLIENT_ID", "", "Entra ID app registration (client) id", str(func(c *Config) *string { return &c.DataverseClientID })},
	{"DATAVERSE_CLIENT_SECRET", "", "Entra ID app registration client secret", str(func(c *Config) *string { return &c.DataverseClientSecret })},
	{"DATAVERSE_CLIENT_CERTIFICATE", "", "instead of the client secret: a PEM file of the certificate uploaded to the app registration and its unencrypted RSA private key", str(func(c *Config) *string { return &c.DataverseClientCertificate })},
	{"DATAVERSE_TOKEN_URL", "", "override the token endpoint (emulator); default the Entra ID v2 endpoint of the tenant", httpURL(func(c *Config) *string { return &c.DataverseTokenURL })},
	{"DATAVERSE_APP_ID", "", "model-driven app id used in record URLs: the app's appmoduleid GUID, not its unique name", func(c *Config, v string) error {
		// Every pop's link carries it as appid=: the app's unique name
		// (the other column of the appmodules query setup.md gives) makes
		// every link one the browser cannot open in an app.
		v = strings.TrimSpace(v)
		if v != "" && !dataverse.IsGUID(v) {
			return fmt.Errorf("%q is not a model-driven app id; give its appmoduleid, a GUID such as 7b4f2c6a-0000-4000-8000-000000000001, not its uniquename (GET /api/data/v9.2/appmodules?$select=appmoduleid,uniquename lists both)", v)
		}
		c.DataverseAppID = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}"))
		return nil
	}},
	{"SCREENPOP_LOOKUP_PHONE", dataverse.DefaultLookupPhone, "entities in search order and their phone columns", lookup(func(c *Config) *[]dataverse.EntityColumns { return &c.LookupPhone }, dataverse.DefaultLookupPhone)},
	{"SCREENPOP_LOOKUP_EMAIL", dataverse.DefaultLookupEmail, "entities in search order and their email columns", lookup(func(c *Config) *[]dataverse.EntityColumns { return &c.LookupEmail }, dataverse.DefaultLookupEmail)},
	{"SCREENPOP_ENTITIES", "", "extra entities as logicalname=entityset/idcolumn/namecolumn;…", func(c *Config, v string) error {
		m, err := dataverse.ParseEntities(v)
		c.Entities = m
		return err
	}},
	{"SCREENPOP_PHONE_REGION", "US", "default region (ISO 3166 code) for numbers without a country code", func(c *Config, v string) error {
		v = strings.ToUpper(strings.TrimSpace(v))
		if phonenumbers.GetCountryCodeForRegion(v) == 0 {
			return fmt.Errorf("%q is not a region phone numbers know (use a two-letter code such as US, GB, DE)", v)
		}
		c.PhoneRegion = v
		return nil
	}},
	{"SCREENPOP_POP_ON", "alerting", "when a leg pops: alerting or connected", oneOf(func(c *Config) *string { return &c.PopOn }, "alerting", "connected")},
	{"SCREENPOP_CREATE_ENTITY", "contact", "entity offered for create when nothing matches", str(func(c *Config) *string { return &c.CreateEntity })},
	{"SCREENPOP_OVERRIDE_KEYS", "screenpop.entity,screenpop.id", "participant attributes naming a record directly: entity-key,id-key", func(c *Config, v string) error {
		k := splitList(v)
		if len(k) != 2 {
			return fmt.Errorf("%q: want two attribute names, entity-key,id-key", v)
		}
		if k[0] == k[1] {
			return fmt.Errorf("%q: want two different attribute names, entity-key,id-key: with one, its value would be read as both the entity and the id, and no override would open", v)
		}
		c.OverrideEntityKey, c.OverrideIDKey = k[0], k[1]
		return nil
	}},
	{"SCREENPOP_POP_INTERNAL", "false", "also pop internal calls", boolean(func(c *Config) *bool { return &c.PopInternal })},
	{"SCREENPOP_POP_DEADLINE", "2s", "longest wait for a lookup before the search fallback", dur(func(c *Config) *time.Duration { return &c.PopDeadline })},
	{"SCREENPOP_MAX_EVENT_AGE", "30s", "events older than this at the resolver make no pop", dur(func(c *Config) *time.Duration { return &c.MaxEventAge })},
	{"SCREENPOP_CACHE_TTL", "5m", "lifetime of a lookup with matches", dur(func(c *Config) *time.Duration { return &c.CacheTTL })},
	{"SCREENPOP_NEGATIVE_CACHE_TTL", "30s", "lifetime of a lookup without matches", dur(func(c *Config) *time.Duration { return &c.NegativeCacheTTL })},
	{"SCREENPOP_DATAVERSE_CONCURRENCY", "8", "most Dataverse requests in flight", posInt(func(c *Config) *int { return &c.DataverseConcurrency })},
	{"NATS_URL", "", "external NATS URLs, comma-separated; empty starts the embedded server", str(func(c *Config) *string { return &c.NatsURL })},
	{"NATS_CREDS", "", "NATS credentials file", str(func(c *Config) *string { return &c.NatsCreds })},
	{"NATS_TLS_CA", "", "CA bundle for external NATS", str(func(c *Config) *string { return &c.NatsTLSCA })},
	{"NATS_TLS_CERT", "", "client certificate for external NATS", str(func(c *Config) *string { return &c.NatsTLSCert })},
	{"NATS_TLS_KEY", "", "client key for external NATS", str(func(c *Config) *string { return &c.NatsTLSKey })},
	{"SCREENPOP_NATS_LISTEN", "127.0.0.1:4222", "where the embedded NATS server listens; off = in-process only", hostPort(func(c *Config) *string { return &c.NatsListen }, true, "127.0.0.1:4222")},
	{"SCREENPOP_STREAM", "SCREENPOP", "the JetStream stream name", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "" || strings.ContainsAny(v, ".*> \t/\\") {
			return fmt.Errorf("%q is not a JetStream stream name (no spaces, '.', '*', '>', '/')", v)
		}
		c.Stream = v
		return nil
	}},
	{"SCREENPOP_STREAM_MAX_AGE", "24h", "how long the stream keeps events and pops", dur(func(c *Config) *time.Duration { return &c.StreamMaxAge })},
	{"SCREENPOP_STREAM_REPLICAS", "1", "stream replicas (1, 3 or 5 on a cluster); more than 1 needs NATS_URL", posInt(func(c *Config) *int { return &c.StreamReplicas })},
	{"SCREENPOP_REPLAY_WINDOW", "2m", "how far back a resuming agent gets missed pops", dur(func(c *Config) *time.Duration { return &c.ReplayWindow })},
	{"SCREENPOP_FRESH_WINDOW", "30s", "how far back a new agent page gets pops", dur(func(c *Config) *time.Duration { return &c.FreshWindow })},
	{"SCREENPOP_DATA_DIR", "./data", "embedded JetStream store and local state", func(c *Config, v string) error {
		// Set blank (an empty flag), it would reach the daemon's start as
		// no directory at all: "mkdir : no such file or directory".
		if v = strings.TrimSpace(v); v == "" {
			return errors.New("is empty; give a directory, e.g. /var/lib/screenpop, or leave it unset for ./data")
		}
		c.DataDir = v
		return nil
	}},
	{"SCREENPOP_LISTEN", "127.0.0.1:8080", "agent-facing listener (websocket, web assets)", hostPort(func(c *Config) *string { return &c.Listen }, false, "127.0.0.1:8080")},
	{"SCREENPOP_ADMIN_LISTEN", "127.0.0.1:9090", "admin listener: /metrics, /healthz, /readyz, /status, pprof", hostPort(func(c *Config) *string { return &c.AdminListen }, true, "127.0.0.1:9090")},
	{"SCREENPOP_TLS_CERT", "", "TLS certificate for the agent listener", str(func(c *Config) *string { return &c.TLSCert })},
	{"SCREENPOP_TLS_KEY", "", "TLS key for the agent listener", str(func(c *Config) *string { return &c.TLSKey })},
	{"SCREENPOP_ALLOW_PLAINTEXT", "false", "allow a non-loopback agent listener without TLS (behind a TLS proxy)", boolean(func(c *Config) *bool { return &c.AllowPlaintext })},
	{"SCREENPOP_ALLOWED_ORIGINS", "", "browser origins allowed to open the websocket, comma-separated", func(c *Config, v string) error {
		c.AllowedOrigins = nil
		for _, o := range splitList(v) {
			if strings.Contains(o, "*") {
				// A browser's Origin is its page's, whole: a pattern
				// would match no page and refuse every agent (403).
				return fmt.Errorf("%q has a wildcard, and origins are matched whole: list each organization's origin (scheme://host, e.g. https://contoso.crm4.dynamics.com,https://fabrikam.crm4.dynamics.com)", o)
			}
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
				return fmt.Errorf("%q is not an origin (scheme://host[:port], e.g. https://contoso.crm.dynamics.com)", o)
			}
			c.AllowedOrigins = append(c.AllowedOrigins, u.Scheme+"://"+strings.ToLower(u.Host))
		}
		return nil
	}},
	{"SCREENPOP_AUTH", "genesys", "agent auth: genesys (Genesys access token) or jwt (HS256)", oneOf(func(c *Config) *string { return &c.Auth }, "genesys", "jwt")},
	{"SCREENPOP_JWT_SECRET", "", "secret for jwt auth (at least 32 bytes)", jwtSecret("SCREENPOP_JWT_SECRET", func(c *Config) *string { return &c.JWTSecret })},
	{"SCREENPOP_JWT_SECRET_PREVIOUS", "", "jwt auth: the secret before SCREENPOP_JWT_SECRET, whose tokens are still accepted while a new secret is rolled out; unset it once no page holds such a token", jwtSecret("SCREENPOP_JWT_SECRET_PREVIOUS", func(c *Config) *string { return &c.JWTSecretPrevious })},
	{"SCREENPOP_JWT_AUDIENCE", "", "jwt auth: a value every token's aud must hold; set it when your login signs tokens for other services with the same secret", str(func(c *Config) *string { return &c.JWTAudience })},
	{"SCREENPOP_PPROF", "false", "serve pprof on the admin listener", boolean(func(c *Config) *bool { return &c.PProf })},
	{"LOG_LEVEL", "info", "trace, debug, info, warn or error", oneOf(func(c *Config) *string { return &c.LogLevel }, "trace", "debug", "info", "warn", "error")},
	{"LOG_FORMAT", "", "json or console; default console on a TTY, else json", oneOf(func(c *Config) *string { return &c.LogFormat }, "", "json", "console")},
}

// secretSettings are never echoed, not even in error messages.
var secretSettings = map[string]bool{"GENESYS_CLIENT_SECRET": true, "DATAVERSE_CLIENT_SECRET": true, "SCREENPOP_JWT_SECRET": true, "SCREENPOP_JWT_SECRET_PREVIOUS": true}

// UsageError is a command line the flags do not parse (a flag that does
// not exist, one without its value): exit code 2, as for an invalid
// configuration.
type UsageError struct{ err error }

func (e *UsageError) Error() string { return e.err.Error() }
func (e *UsageError) Unwrap() error { return e.err }

// ConfigError lists every problem found, each naming its variable.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Requirements says what a subcommand needs beyond well-formed values.
type Requirements struct {
	Genesys   bool // credentials and agents
	Dataverse bool // URL and credentials
}

// environ lists the process environment; a variable for the tests.
var environ = os.Environ

// Advice lists the settings that are valid but unwise, each as
// "VARIABLE: what is wrong; the fix": screenpopd check shows them as
// warnings, and run logs them at start.
func (c *Config) Advice() []string {
	var a []string
	if r := c.StreamReplicas; r == 2 || r == 4 {
		// JetStream stores a message once a majority of its replicas
		// has it: R2 needs both, R4 three.
		a = append(a, fmt.Sprintf("SCREENPOP_STREAM_REPLICAS: %d is an even count: JetStream needs a majority of a stream's replicas for every write, so %d stop storing when %d of their nodes are lost, as %d would, with one more copy of every message; set %d or %d", r, r, r/2, r-1, r-1, r+1))
	}
	for _, env := range c.trimmedSecrets {
		a = append(a, env+": the whitespace at its ends (a file's last newline?) is dropped, and tokens are checked with the secret without it; make sure your login signs with it so too (screenpopd token does), or remove the whitespace from the secret")
	}
	return a
}

// UnknownVariables names the variables of environ that look like settings
// (GENESYS_, DATAVERSE_, NATS_, SCREENPOP_) but are none, each with the
// nearest setting: a misspelled variable is otherwise silently ignored
// and its default used (SCREENPOP_ALLOWED_ORIGIN: every browser refused).
func UnknownVariables(environ []string) []string {
	known := make(map[string]bool, len(settings))
	for _, s := range settings {
		known[s.env] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if known[k] || strings.HasPrefix(k, "SCREENPOP_TEST_") || !(strings.HasPrefix(k, "SCREENPOP_") || strings.HasPrefix(k, "GENESYS_") ||
			strings.HasPrefix(k, "DATAVERSE_") || strings.HasPrefix(k, "NATS_")) {
			continue
		}
		best, dist := "", 4 // suggest within three edits
		for _, s := range settings {
			if d := editDistance(k, s.env); d < dist {
				best, dist = s.env, d
			}
		}
		msg := k + " is not a setting and is ignored"
		if best != "" {
			msg += "; did you mean " + best + "?"
		} else {
			msg += "; docs/configuration.md lists every setting"
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// flagValue is a setting's flag: a string, except that a boolean setting's
// flag may stand alone (--pprof means --pprof=true).
type flagValue struct {
	s      string
	isBool bool
}

func (v *flagValue) String() string     { return v.s }
func (v *flagValue) Set(s string) error { v.s = s; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

// ParseConfig reads every setting from flags (args) and getenv (flags win),
// applies defaults and validates. Unknown flags and malformed values are
// errors naming the variable and the fix.
func ParseConfig(name string, args []string, getenv func(string) string, req Requirements, stderr io.Writer) (*Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		help := s.help + " (" + s.env
		if s.def != "" {
			help += ", default " + s.def
		}
		v := &flagValue{isBool: s.def == "false" || s.def == "true"}
		fs.Var(v, flagName(s.env), help+")")
		vals[s.env] = &v.s
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: screenpopd %s [flags]\n\nEvery flag has an environment variable (shown); flags win.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		// The flag package has printed it, with the flags.
		return nil, nil, &UsageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := &Config{explicit: map[string]bool{}, invalid: map[string]bool{}}
	var problems []string
	if fs.NArg() > 0 {
		// Parsing stopped at a word that is no flag, typically the value
		// of a boolean flag given without '=' ("--pprof false" is --pprof
		// and the word "false"): the rest would be silently dropped.
		// The words are not quoted: the unread ones include the values of
		// any flags after it, secrets among them. Only a true or false,
		// the usual stray word, is named.
		stray := "an argument"
		if _, err := strconv.ParseBool(fs.Arg(0)); err == nil {
			stray = strconv.Quote(fs.Arg(0))
		}
		problems = append(problems, fmt.Sprintf("%s that is not a flag, and the %d argument(s) from it on were not read; give a boolean flag its value with = (--allow-plaintext=false, --pprof=false)", stray, fs.NArg()))
	}
	for _, s := range settings {
		v, from := s.def, "default"
		if e := getenv(s.env); e != "" {
			v, from = e, s.env
		}
		if set[flagName(s.env)] {
			v, from = *vals[s.env], "--"+flagName(s.env)
		}
		c.explicit[s.env] = from != "default"
		where := s.env
		if from != s.env && from != "default" {
			where = s.env + " (" + from + ")"
		}
		if q := enclosingQuote(v); q != "" && from != "default" {
			// systemd and the shell remove the quotes an env file needs
			// around some values (docs/configuration.md, "The env file");
			// docker run --env-file keeps them as part of the value. The
			// rest is read without them, so that only this is reported.
			problems = append(problems, fmt.Sprintf("%s: the value is enclosed in %s quotes, which are then part of it (docker run --env-file keeps them, systemd and the shell remove them); write the value without the quotes in a container's env file (docs/deploy/README.md)", where, q))
			v = v[1 : len(v)-1]
		}
		if i := inlineComment(v); i > 0 && from != "default" {
			// "VALUE  # note": the shell of the documented check command
			// drops the comment, systemd's EnvironmentFile= (and docker
			// run --env-file) keep it in the value the service gets. The
			// rest is read without it, so that only this is reported.
			problems = append(problems, fmt.Sprintf("%s: the value ends in an inline comment (a # after a space), which systemd's EnvironmentFile= and docker run --env-file keep as part of the value (only the shell drops it); put the comment on a line of its own, starting with #", where))
			v = strings.TrimSpace(v[:i])
		}
		if err := s.parse(c, v); err != nil {
			c.invalid[s.env] = true
			if secretSettings[s.env] {
				err = errors.New("invalid value")
			}
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
		}
	}
	problems = append(problems, c.validate(req)...)
	if req.Genesys || req.Dataverse {
		problems = append(problems, proxyProblems(getenv)...)
	}
	if len(problems) > 0 {
		return nil, fs.Args(), &ConfigError{Problems: problems}
	}
	return c, fs.Args(), nil
}

// enclosingQuote names the quote that both begins and ends v ("single" or
// "double"), or returns "". No setting's value is ever written so.
func enclosingQuote(v string) string {
	if len(v) < 2 || v[0] != v[len(v)-1] {
		return ""
	}
	switch v[0] {
	case '\'':
		return "single"
	case '"':
		return "double"
	}
	return ""
}

// inlineComment returns the index of a '#' that follows a space or a tab
// in v, or -1.
func inlineComment(v string) int {
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// minQueueRefresh is the shortest GENESYS_QUEUE_REFRESH.
const minQueueRefresh = 30 * time.Second

// validate checks what single values cannot: required settings and
// combinations.
func (c *Config) validate(req Requirements) []string {
	var p []string
	need := func(v, env, fix string) {
		if v == "" && !c.invalid[env] {
			p = append(p, env+": required; "+fix)
		}
	}
	if req.Genesys {
		if c.GenesysRegion == "" && c.GenesysAPIURL == "" && !c.invalid["GENESYS_API_URL"] {
			p = append(p, "GENESYS_REGION: required; set the org's region domain, e.g. mypurecloud.com or mypurecloud.ie (Admin > Organization Settings shows it in the login URL)")
		}
		need(c.GenesysClientID, "GENESYS_CLIENT_ID", "create a client-credentials OAuth client in Genesys Cloud (Admin > Integrations > OAuth) and set its id")
		need(c.GenesysClientSecret, "GENESYS_CLIENT_SECRET", "set the secret of that OAuth client")
		if len(c.GenesysAgents) == 0 && c.GenesysAgentsFile == "" && len(c.GenesysQueues) == 0 {
			p = append(p, "GENESYS_AGENTS, GENESYS_AGENTS_FILE or GENESYS_QUEUES: at least one is required; name the agents (user ids) or queues to watch")
		}
		// The notifications client derives its hosts the same way at
		// start; asking it here refuses a wrong region before anything
		// connects. GENESYS_API_URL, when set, wins over the region.
		if c.GenesysRegion != "" || c.GenesysAPIURL != "" {
			if _, err := notifications.RegionHosts(c.GenesysRegion, c.GenesysAPIURL); err != nil {
				p = append(p, fmt.Sprintf("GENESYS_REGION: %s; set the domain of the address the org logs in at (https://login.mypurecloud.ie means mypurecloud.ie), without https:// or a path",
					strings.TrimPrefix(err.Error(), "GENESYS_REGION ")))
			}
		}
	}
	// Genesys user and queue ids are UUIDs. Anything else would be sent
	// in a topic name, and one bad topic can fail a channel's whole
	// subscription request, so it is refused here, by name.
	for _, a := range c.GenesysAgents {
		if !dataverse.IsGUID(a) {
			p = append(p, fmt.Sprintf("GENESYS_AGENTS: %q is not a Genesys user id (a UUID such as 5e1f0a1c-0000-4000-8000-000000000001); Admin > People shows it in the user's URL", a))
		}
	}
	for _, q := range c.GenesysQueues {
		if !dataverse.IsGUID(q) {
			p = append(p, fmt.Sprintf("GENESYS_QUEUES: %q is not a Genesys queue id (a UUID); Admin > Queues shows it in the queue's URL", q))
		}
	}
	if c.GenesysAgentsFile != "" {
		// What the file's watcher refuses later (an empty file: one being
		// written; one naming no agent when it is the only source) is
		// refused at the start too: the daemon would say ready watching
		// no one of it, until the watcher next read the file.
		alone := len(c.GenesysAgents) == 0 && len(c.GenesysQueues) == 0
		if _, _, err := readAgentsFileLines(c.GenesysAgentsFile); err != nil {
			p = append(p, fmt.Sprintf("GENESYS_AGENTS_FILE: %v; give a readable file of user ids, one a line", err))
		} else if _, err := readValidAgents(c.GenesysAgentsFile, nil, alone); err != nil {
			p = append(p, fmt.Sprintf("GENESYS_AGENTS_FILE: %v", err))
		}
	}
	if req.Dataverse {
		need(c.DataverseURL, "DATAVERSE_URL", "set the environment URL, e.g. https://contoso.crm.dynamics.com")
		if c.DataverseTenantID == "" && c.DataverseTokenURL == "" && !c.invalid["DATAVERSE_TOKEN_URL"] {
			p = append(p, "DATAVERSE_TENANT_ID: required; set the Entra ID tenant of the app registration: its id (a GUID) or its domain (contoso.onmicrosoft.com)")
		}
		need(c.DataverseClientID, "DATAVERSE_CLIENT_ID", "set the Entra ID app registration's application (client) id")
		switch {
		case c.DataverseClientSecret != "" && c.DataverseClientCertificate != "":
			p = append(p, "DATAVERSE_CLIENT_SECRET, DATAVERSE_CLIENT_CERTIFICATE: both are set; set one: the certificate's file, or the client secret")
		case c.DataverseClientSecret == "" && c.DataverseClientCertificate == "":
			p = append(p, "DATAVERSE_CLIENT_SECRET or DATAVERSE_CLIENT_CERTIFICATE: one is required; create a client secret for that app registration and set it, or upload a certificate to it and set the path of a PEM file with that certificate and its private key (docs/setup.md, 3.1)")
		}
		if c.DataverseClientCertificate != "" {
			if _, err := dataverse.ReadClientCertificate(c.DataverseClientCertificate); err != nil {
				msg := err.Error()
				if hint := certCredentialsHint(c.DataverseClientCertificate, err); hint != "" {
					detail, _, _ := strings.Cut(msg, "; ")
					msg = detail + "; " + hint
				}
				p = append(p, "DATAVERSE_CLIENT_CERTIFICATE: "+msg)
			}
		}
		if c.DataverseURL != "" {
			if problem := dataverseURLProblem(c.DataverseURL); problem != "" {
				p = append(p, problem)
			}
		}
	}
	if c.Entities != nil {
		for _, l := range [][]dataverse.EntityColumns{c.LookupPhone, c.LookupEmail} {
			for _, ec := range l {
				if _, ok := c.Entities[ec.Entity]; !ok {
					p = append(p, fmt.Sprintf("SCREENPOP_LOOKUP_PHONE/SCREENPOP_LOOKUP_EMAIL: entity %q is not known; add it to SCREENPOP_ENTITIES as %s=entityset/idcolumn/namecolumn", ec.Entity, ec.Entity))
				}
			}
		}
		if _, ok := c.Entities[c.CreateEntity]; !ok && c.CreateEntity != "" {
			p = append(p, fmt.Sprintf("SCREENPOP_CREATE_ENTITY: entity %q is not known; use contact, account, lead or one from SCREENPOP_ENTITIES", c.CreateEntity))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		p = append(p, "SCREENPOP_TLS_CERT, SCREENPOP_TLS_KEY: set both or neither")
	}
	if (c.NatsTLSCert == "") != (c.NatsTLSKey == "") {
		p = append(p, "NATS_TLS_CERT, NATS_TLS_KEY: set both or neither")
	}
	// A file's content where its path belongs (a Kubernetes secretKeyRef,
	// "$(cat key.pem)"): every error naming the path would print the key
	// or the credentials. Refused without being echoed.
	// (DATAVERSE_CLIENT_CERTIFICATE: dataverse.ReadClientCertificate.)
	for _, f := range []struct{ name, value, example string }{
		{"SCREENPOP_TLS_CERT", c.TLSCert, "/etc/screenpop/tls.crt"},
		{"SCREENPOP_TLS_KEY", c.TLSKey, "/etc/screenpop/tls.key"},
		{"NATS_CREDS", c.NatsCreds, "/etc/screenpop/nats.creds"},
		{"NATS_TLS_CA", c.NatsTLSCA, "/etc/screenpop/nats-ca.pem"},
		{"NATS_TLS_CERT", c.NatsTLSCert, "/etc/screenpop/nats.crt"},
		{"NATS_TLS_KEY", c.NatsTLSKey, "/etc/screenpop/nats.key"},
	} {
		if what := filevalue.Content(f.value); what != "" {
			p = append(p, fmt.Sprintf("%s: the value is %s (the file's content), not the path of a file; write it to a file only the service user can read (e.g. %s, mode 0600) and give that file's path", f.name, what, f.example))
		}
	}
	if c.TLSCert == "" && !c.AllowPlaintext && c.Listen != "" && !push.IsLoopback(c.Listen) {
		p = append(p, fmt.Sprintf("SCREENPOP_LISTEN: %s is not loopback and has no TLS; set SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY, or SCREENPOP_ALLOW_PLAINTEXT=true behind a TLS-terminating proxy", c.Listen))
	}
	if c.NatsURL == "" && c.NatsListen != "" && c.NatsListen != "off" && !push.IsLoopback(c.NatsListen) {
		// The embedded server has no users: whoever reaches it reads every
		// customer's events and can forge pops and delete the stream.
		p = append(p, fmt.Sprintf("SCREENPOP_NATS_LISTEN: %s is not loopback, and the embedded NATS server has no authentication; listen on 127.0.0.1 (or off), or run your own NATS with accounts and set NATS_URL", c.NatsListen))
	}
	if c.Auth == "jwt" && len(c.JWTSecret) < 32 {
		p = append(p, "SCREENPOP_JWT_SECRET: required with SCREENPOP_AUTH=jwt, at least 32 bytes; generate one with: openssl rand -base64 48")
	}
	if c.Auth == "jwt" && c.JWTSecretPrevious != "" && len(c.JWTSecretPrevious) < 32 {
		p = append(p, "SCREENPOP_JWT_SECRET_PREVIOUS: at least 32 bytes, as SCREENPOP_JWT_SECRET was; or unset it")
	}
	if c.StreamMaxAge > 0 && c.StreamMaxAge < bus.DefaultDuplicateWindow {
		// JetStream refuses a max age below the duplicate window, which
		// would stop the daemon at start with NATS's words.
		p = append(p, fmt.Sprintf("SCREENPOP_STREAM_MAX_AGE: %s is shorter than the stream's duplicate window; set at least %s", c.StreamMaxAge, bus.DefaultDuplicateWindow))
	}
	if c.NatsURL == "" && !c.invalid["NATS_URL"] {
		// Without NATS_URL the built-in server runs, which takes none of
		// these: set, they mean a cluster was meant, and the daemon would
		// keep the deployment's events to itself without a word.
		if set := setVars("NATS_CREDS", c.NatsCreds, "NATS_TLS_CA", c.NatsTLSCA, "NATS_TLS_CERT", c.NatsTLSCert, "NATS_TLS_KEY", c.NatsTLSKey); len(set) > 0 {
			p = append(p, fmt.Sprintf("%s: set without NATS_URL, which starts the built-in NATS server instead (it takes no credentials or TLS); set NATS_URL to your NATS servers, or unset %s", strings.Join(set, ", "), strings.Join(set, ", ")))
		}
	}
	if c.GenesysQueueRefresh > 0 && c.GenesysQueueRefresh < minQueueRefresh {
		// Every refresh reads every queue's members: a few milliseconds
		// (5ms written for 5m) spend the client's whole request budget
		// on queue pages, for as long as the daemon runs.
		p = append(p, fmt.Sprintf("GENESYS_QUEUE_REFRESH: %s is shorter than %s: each refresh reads every queue's members from the OAuth client's budget of 300 requests a minute; set %s or more (default 5m)", c.GenesysQueueRefresh, minQueueRefresh, minQueueRefresh))
	}
	// JetStream keeps at most 5 replicas, and the built-in server one:
	// refused here rather than by NATS once it has started.
	switch {
	case c.StreamReplicas > 5:
		p = append(p, fmt.Sprintf("SCREENPOP_STREAM_REPLICAS: %d is more than NATS keeps; set 1, or 3 or 5 on a cluster", c.StreamReplicas))
	case c.StreamReplicas > 1 && c.NatsURL == "":
		p = append(p, fmt.Sprintf("SCREENPOP_STREAM_REPLICAS: %d needs a NATS cluster, and the built-in server (NATS_URL empty) keeps one copy; set 1, or set NATS_URL to your cluster", c.StreamReplicas))
	}
	if c.FreshWindow > c.ReplayWindow && c.ReplayWindow > 0 {
		p = append(p, "SCREENPOP_FRESH_WINDOW: must not be longer than SCREENPOP_REPLAY_WINDOW")
	}
	if c.NatsURL != "" {
		for _, u := range splitList(c.NatsURL) {
			if pu, err := url.Parse(u); err != nil || pu.Host == "" {
				fix := "write each as scheme://host:port, e.g. nats://nats1.example.com:4222"
				if strings.Contains(u, "@") {
					// A password from openssl rand -base64 has '/', which
					// ends the URL's host part; one with a comma splits
					// the list.
					fix = "percent-encode the user name and password: every character but letters, digits and -._~ (/ as %2F, ? as %3F, # as %23, , as %2C, % as %25, a space as %20), or use NATS_CREDS"
				}
				p = append(p, fmt.Sprintf("NATS_URL: %q is not a URL such as nats://nats1.example.com:4222; %s", bus.RedactURL(u), fix))
			}
		}
	}
	sort.Strings(p)
	return p
}

// proxyProblems checks HTTPS_PROXY (or https_proxy), which is not a
// setting of ours but the proxy Go's HTTP clients and the Genesys
// websocket dialer use for every https and wss connection
// (http.ProxyFromEnvironment). Go drops a value it cannot parse without a
// word and connects directly (or misreads it: a password's # or / ends
// the host): behind a proxy-only firewall that fails with a DNS or connect
// error that names no proxy. A password with an unencoded %, # or / is
// enough. And gorilla's dialer reaches a proxy over http:// or socks5://
// only: with an https:// proxy the API calls work and no socket ever
// opens. The value is never quoted: it may hold a password.
func proxyProblems(getenv func(string) string) []string {
	name, v := "HTTPS_PROXY", getenv("HTTPS_PROXY")
	if v == "" {
		name, v = "https_proxy", getenv("https_proxy")
	}
	if v == "" {
		return nil
	}
	// A value without a scheme is taken as http:// (as net/http does; it
	// also retries one with a scheme that way, and then reads a password's
	// # or / as the end of the host, "http:" the proxy's host).
	u, err := url.Parse(v)
	if (err != nil || u.Scheme == "" || u.Host == "") && !strings.Contains(v, "://") {
		if u2, err2 := url.Parse("http://" + v); err2 == nil {
			u, err = u2, nil
		}
	}
	switch {
	// A # / or ? in the user or password ends the host there, and the
	// real host follows an @ in what Go takes for the path, query or
	// fragment (which it otherwise ignores, as gorilla does).
	case err != nil || u.Hostname() == "" || strings.Contains(u.Path+u.RawQuery+u.Fragment, "@"):
		return []string{name + ": not a valid proxy URL, which Go ignores (every connection is then made without the proxy) or misreads (the value is not shown: it may hold a password); " +
			"write it as http://host:port or http://user:password@host:port, the user and password percent-encoded: every character but letters, digits and -._~ (% as %25, # as %23, / as %2F, @ as %40, a space as %20)"}
	case u.Scheme != "http" && u.Scheme != "socks5":
		return []string{fmt.Sprintf("%s: a %s:// proxy is not supported: the Genesys websocket reaches a proxy over http:// or socks5:// only; write it as http://host:port (the proxy still tunnels TLS to the services)", name, u.Scheme)}
	}
	return nil
}

// dataverseURLProblem asks dataverse.New, which validates its configuration
// without making a request, about the URL alone, so that a URL the client
// would refuse at start (one with a path, such as a browser address ending
// in /main.aspx) is refused here, before anything connects. The
// credentials are stand-ins (the real ones are checked by name in
// validate), so any error is the URL's.
func dataverseURLProblem(raw string) string {
	d, err := dataverse.New(dataverse.Config{URL: raw, ClientID: "validate", ClientSecret: "validate", TokenURL: "https://token.invalid/"}, zerolog.Nop())
	if err == nil {
		d.Close()
		return ""
	}
	root := "https://contoso.crm.dynamics.com"
	if u, perr := url.Parse(raw); perr == nil && u.Host != "" {
		root = u.Scheme + "://" + u.Host
	}
	return fmt.Sprintf("DATAVERSE_URL: %q is refused: %s; set it to the environment's root URL, scheme and host only: %s",
		raw, strings.TrimPrefix(err.Error(), dataverse.ErrConfig.Error()+": "), root)
}

// Agents returns the agent ids from GENESYS_AGENTS and GENESYS_AGENTS_FILE,
// without duplicates.
func (c *Config) Agents() ([]string, error) {
	out := append([]string(nil), c.GenesysAgents...)
	if c.GenesysAgentsFile != "" {
		ids, err := readAgentsFile(c.GenesysAgentsFile)
		if err != nil {
			return nil, fmt.Errorf("GENESYS_AGENTS_FILE: %w", err)
		}
		out = append(out, ids...)
	}
	seen := make(map[string]bool, len(out))
	uniq := out[:0]
	for _, a := range out {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
		}
	}
	return uniq, nil
}

// readAgentsFile reads user ids, one a line; blank lines and lines
// starting with # are skipped.
func readAgentsFile(path string) ([]string, error) {
	ids, _, err := readAgentsFileLines(path)
	return ids, err
}

// maxAgentsFile bounds the agents file: one instance watches at most
// notifications.Config.AgentCapacity agents, 37 bytes a line.
const maxAgentsFile = 4 << 20

// readAgentsFileLines is readAgentsFile with each id's line number in the
// file (from 1, comments and blank lines counted), for error messages.
func readAgentsFileLines(path string) (ids []string, lines []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// Read at most one byte past the bound, so that a wrong path (a log,
	// an image, /dev/zero) fails at once with a message instead of
	// taking the daemon's memory.
	b, err := io.ReadAll(io.LimitReader(f, maxAgentsFile+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxAgentsFile {
		return nil, nil, fmt.Errorf("%s is larger than %d MiB, far more than any agents file (10,000 user ids take 370 KB); is it the right file?", path, maxAgentsFile>>20)
	}
	// Notepad's "Unicode" and Windows PowerShell's > and Out-File write
	// UTF-16 with a byte-order mark: every other byte is a NUL, and the
	// ids would be refused quoted byte by byte.
	if bytes.HasPrefix(b, []byte{0xff, 0xfe}) || bytes.HasPrefix(b, []byte{0xfe, 0xff}) {
		return nil, nil, fmt.Errorf("%s is UTF-16 text (Notepad's \"Unicode\", or Windows PowerShell's > and Out-File); save it as UTF-8 (Notepad: Save as, Encoding UTF-8; PowerShell: Out-File -Encoding utf8)", path)
	}
	// A file saved by a Windows editor or spreadsheet may start with a
	// UTF-8 byte-order mark; its CRLF line ends are trimmed below.
	for i, line := range strings.Split(strings.TrimPrefix(string(b), "\ufeff"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if id := csvID(line); id != line && dataverse.IsGUID(id) {
				line = id
			}
			if dataverse.IsGUID(line) {
				line = bridge.GenesysID(line) // as idList; anything else is quoted as written
			}
			ids = append(ids, line)
			lines = append(lines, i+1)
		}
	}
	return ids, lines, nil
}

// csvID is line as a spreadsheet or PowerShell exports a column of ids:
// without the empty fields after it (Excel writes a comma for each column
// of the sheet ever used: 5e1f…,,) and without the double quotes around
// it (Export-Csv quotes every value). Only a line that is then a user id
// is read so; anything else is quoted as written.
func csvID(line string) string {
	for {
		t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ","))
		t = strings.TrimSpace(strings.TrimSuffix(t, `,""`))
		if t == line {
			break
		}
		line = t
	}
	if len(line) >= 2 && line[0] == '"' && line[len(line)-1] == '"' {
		line = strings.TrimSpace(line[1 : len(line)-1])
	}
	return line
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// credentialsDir is where systemd's LoadCredential= puts the unit's files
// (docs/deploy/screenpopd.service), and where the env file points
// SCREENPOP_TLS_*.
const credentialsDir = "/run/credentials/"

// certCredentialsHint is credentialsHint for DATAVERSE_CLIENT_CERTIFICATE:
// a file missing from systemd's credentials directory outside the service.
func certCredentialsHint(path string, err error) string {
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(path, credentialsDir) {
		return ""
	}
	return "that is systemd's credentials directory of the service, there only while the service runs with its LoadCredential= line; " +
		"outside it give the original, e.g. DATAVERSE_CLIENT_CERTIFICATE=/etc/screenpop/dataverse.pem screenpopd check (docs/deploy/README.md)"
}

// credentialsHint explains a TLS file missing from systemd's credentials
// directory outside the service (`screenpopd check`, or run or demo by
// hand with the env file): the directory exists only while the service
// runs. It returns "" for any other error.
func credentialsHint(c *Config, err error) string {
	if !errors.Is(err, os.ErrNotExist) || !(strings.HasPrefix(c.TLSCert, credentialsDir) || strings.HasPrefix(c.TLSKey, credentialsDir)) {
		return ""
	}
	return "that is systemd's credentials directory of the service, there only while the service runs with its LoadCredential= lines; " +
		"outside it give the originals, e.g. SCREENPOP_TLS_CERT=/etc/screenpop/tls.crt SCREENPOP_TLS_KEY=/etc/screenpop/tls.key screenpopd check (docs/deploy/README.md); " +
		"behind a TLS-terminating proxy set both empty in the env file (deleted, the unit's own Environment= points them there)"
}

// setVars takes pairs of a variable's name and its value and returns the
// names of those set.
func setVars(pairs ...string) []string {
	var set []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			set = append(set, pairs[i])
		}
	}
	return set
}

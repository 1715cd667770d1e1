package dataverse

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/internal/egress"
)

// Defaults, as documented in DESIGN.md and docs/dataverse.md.
const (
	DefaultLookupPhone      = "contact:telephone1,mobilephone,telephone2;account:telephone1,telephone2;lead:telephone1,mobilephone"
	DefaultLookupEmail      = "contact:emailaddress1,emailaddress2;account:emailaddress1;lead:emailaddress1"
	DefaultPhoneRegion      = "US"
	DefaultCacheTTL         = 5 * time.Minute
	DefaultNegativeCacheTTL = 30 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultConcurrency      = 8
	// MaxRecords is how many rows one entity query asks for ($top): the
	// resolver offers at most 10 candidates.
	MaxRecords = 10
	apiPath    = "/api/data/v9.2/"
)

// EntityColumns is one entry of a lookup list: an entity (logical name) and
// the columns compared with the customer's identifier, in search order.
type EntityColumns struct {
	Entity  string
	Columns []string
}

// EntityInfo describes an entity the client can query: its entity set (the
// Web API collection), its primary id column and its primary name column.
type EntityInfo struct {
	LogicalName string
	EntitySet   string
	IDColumn    string
	NameColumn  string
	// ActiveOnly adds "statecode eq 0" to lookups, so inactive records
	// (deactivated contacts, qualified leads) do not pop. True for the
	// built-ins; custom entities opt in with a trailing "/active" in
	// SCREENPOP_ENTITIES.
	ActiveOnly bool
}

// BuiltinEntities are the entities whose sets, id and name columns are known
// without configuration.
func BuiltinEntities() map[string]EntityInfo {
	return map[string]EntityInfo{
		"contact": {LogicalName: "contact", EntitySet: "contacts", IDColumn: "contactid", NameColumn: "fullname", ActiveOnly: true},
		"account": {LogicalName: "account", EntitySet: "accounts", IDColumn: "accountid", NameColumn: "name", ActiveOnly: true},
		"lead":    {LogicalName: "lead", EntitySet: "leads", IDColumn: "leadid", NameColumn: "fullname", ActiveOnly: true},
	}
}

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	URL          string // DATAVERSE_URL, e.g. https://contoso.crm.dynamics.com (required)
	TenantID     string // DATAVERSE_TENANT_ID (required unless TokenURL is set)
	ClientID     string // DATAVERSE_CLIENT_ID (required)
	ClientSecret string // DATAVERSE_CLIENT_SECRET (this or ClientCertificate)
	TokenURL     string // DATAVERSE_TOKEN_URL; default the token endpoint of the tenant in the environment's cloud (entraAuthority)
	AppID        string // DATAVERSE_APP_ID, the model-driven app id put in record URLs; optional
	// ClientCertificate is DATAVERSE_CLIENT_CERTIFICATE, the path of a
	// PEM file with the certificate uploaded to the app registration and
	// its unencrypted RSA private key (ReadClientCertificate). It is read
	// again at each token request. Set this or ClientSecret.
	ClientCertificate string

	// Phone and Email are the lookup lists (ParseLookup). nil takes the
	// default; an empty, non-nil list disables that kind of lookup.
	Phone, Email []EntityColumns
	// Entities are the entities lookups may name: the built-in contact,
	// account and lead plus SCREENPOP_ENTITIES (ParseEntities). nil = the
	// built-ins; extra entries are added to the built-ins.
	Entities map[string]EntityInfo

	PhoneRegion      string        // default region for numbers without a country code (US)
	CacheTTL         time.Duration // how long a lookup with matches is kept (5m)
	NegativeCacheTTL time.Duration // how long a lookup without matches is kept (30s)
	RequestTimeout   time.Duration // per HTTP attempt (5s)
	Concurrency      int           // most Dataverse requests in flight (8)
	// MaxCacheEntries bounds each cache (positive, negative); 0 = 100000.
	MaxCacheEntries int

	// Breaker: after BreakerFailures consecutive failed lookups (after
	// retries) the client answers errors without calling Dataverse for
	// BreakerCooldown, then lets one probe through, and again
	// BreakerCooldown after each failed probe. 0 = 5 and 1s: the cooldown
	// is how long after Dataverse is back that calls may still pop
	// `search`, so it stays below the pop deadline; one probe a second is
	// nothing to a Dataverse that is down.
	BreakerFailures int
	BreakerCooldown time.Duration
	// MaxAttempts per lookup, counting the first (0 = 5); FlightTimeout
	// bounds one lookup including retries and Retry-After waits (0 = 60s).
	MaxAttempts   int
	FlightTimeout time.Duration
	// QueueTimeout bounds how long a request waits for one of the
	// Concurrency slots (0 = 2s; the daemon gives SCREENPOP_POP_DEADLINE):
	// a lookup still waiting then has no caller left to answer (its pops
	// went out as search), so it ends with ErrBusy instead of holding its
	// goroutine, and every later cache miss behind it, for FlightTimeout.
	QueueTimeout time.Duration
	// SequentialLookups sends the entity queries one at a time, in order,
	// stopping at the first entity with a match, instead of one $batch.
	SequentialLookups bool

	HTTPClient *http.Client          // nil = a client with sane transport timeouts
	Registerer prometheus.Registerer // nil = no metrics registered
	Now        func() time.Time      // nil = time.Now
}

// ParseLookup parses a lookup list such as
// "contact:telephone1,mobilephone;account:telephone1": entries separated by
// ';', each an entity logical name, ':', and comma-separated column names.
// The empty string and "none" are an empty list ("none" is for an
// environment variable, where empty means unset). Errors name the
// offending entry.
func ParseLookup(s string) ([]EntityColumns, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return []EntityColumns{}, nil
	}
	var out []EntityColumns
	seen := map[string]bool{}
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		ent, cols, ok := strings.Cut(entry, ":")
		ent = strings.TrimSpace(ent)
		if !ok || ent == "" {
			return nil, fmt.Errorf("lookup entry %d %q: want entity:column[,column...]", i+1, entry)
		}
		if !validName(ent) {
			return nil, fmt.Errorf("lookup entry %d: entity %q is not a Dataverse logical name (lower-case letters, digits, _)", i+1, ent)
		}
		if seen[ent] {
			return nil, fmt.Errorf("lookup entry %d: entity %q listed twice", i+1, ent)
		}
		seen[ent] = true
		ec := EntityColumns{Entity: ent}
		colSeen := map[string]bool{}
		for _, c := range strings.Split(cols, ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			if !validName(c) {
				return nil, fmt.Errorf("lookup entry %d: column %q of %s is not a Dataverse logical name", i+1, c, ent)
			}
			if !colSeen[c] {
				colSeen[c] = true
				ec.Columns = append(ec.Columns, c)
			}
		}
		if len(ec.Columns) == 0 {
			return nil, fmt.Errorf("lookup entry %d: entity %s has no columns", i+1, ent)
		}
		out = append(out, ec)
	}
	return out, nil
}

// ParseEntities parses SCREENPOP_ENTITIES, extra entities as
// "logicalname=entityset/idcolumn/namecolumn[/active];…" (a trailing
// "/active" restricts lookups to statecode 0), and returns them together
// with the built-in contact, account and lead (an entry may redefine a
// built-in). Errors name the offending entry.
func ParseEntities(s string) (map[string]EntityInfo, error) {
	out := BuiltinEntities()
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, rest, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		parts := strings.Split(rest, "/")
		active := false
		if len(parts) == 4 && strings.TrimSpace(parts[3]) == "active" {
			active, parts = true, parts[:3]
		}
		if !ok || len(parts) != 3 {
			return nil, fmt.Errorf("entity entry %d %q: want logicalname=entityset/idcolumn/namecolumn[/active]", i+1, entry)
		}
		for j := range parts {
			parts[j] = strings.TrimSpace(parts[j])
		}
		for _, v := range append([]string{name}, parts...) {
			if !validName(v) {
				return nil, fmt.Errorf("entity entry %d: %q is not a Dataverse logical name (lower-case letters, digits, _)", i+1, v)
			}
		}
		out[name] = EntityInfo{LogicalName: name, EntitySet: parts[0], IDColumn: parts[1], NameColumn: parts[2], ActiveOnly: active}
	}
	return out, nil
}

// validName reports whether s is a Dataverse logical name as we accept it in
// configuration: lower-case ASCII letters, digits and '_', starting with a
// letter. Names go into URLs and $filter expressions unquoted, so nothing
// else is allowed.
func validName(s string) bool {
	if s == "" || len(s) > 128 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// entraAuthority returns the Entra ID host that issues tokens for a
// Dataverse environment host: each Microsoft cloud has its own, and an
// environment's app registration exists only in its cloud's Entra ID
// (learn.microsoft.com/entra/identity-platform/authentication-national-cloud).
// GCC High (*.crm.microsoftdynamics.us) and DoD (*.crm.appsplatform.us)
// use Azure Government's, China (*.crm.dynamics.cn, operated by 21Vianet)
// its own; commercial and GCC (*.crm9.dynamics.com) the global one.
func entraAuthority(host string) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case strings.HasSuffix(h, ".microsoftdynamics.us"), strings.HasSuffix(h, ".appsplatform.us"):
		return "https://login.microsoftonline.us"
	case strings.HasSuffix(h, ".dynamics.cn"):
		return "https://login.partner.microsoftonline.cn"
	}
	return "https://login.microsoftonline.com"
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid dataverse configuration")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.URL == "" {
		return cfg, fmt.Errorf("%w: DATAVERSE_URL is required (e.g. https://contoso.crm.dynamics.com)", ErrConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return cfg, fmt.Errorf("%w: DATAVERSE_URL %q is not an absolute https URL (e.g. https://contoso.crm.dynamics.com)", ErrConfig, cfg.URL)
	}
	if u.Path != "" && u.Path != "/" {
		return cfg, fmt.Errorf("%w: DATAVERSE_URL must be the environment root without a path (e.g. https://contoso.crm.dynamics.com, not …/api/data/v9.2)", ErrConfig)
	}
	cfg.URL = u.Scheme + "://" + u.Host
	if cfg.ClientID == "" {
		return cfg, fmt.Errorf("%w: DATAVERSE_CLIENT_ID is required (the Entra ID app registration)", ErrConfig)
	}
	switch {
	case cfg.ClientSecret != "" && cfg.ClientCertificate != "":
		return cfg, fmt.Errorf("%w: DATAVERSE_CLIENT_SECRET and DATAVERSE_CLIENT_CERTIFICATE are both set: set one", ErrConfig)
	case cfg.ClientSecret == "" && cfg.ClientCertificate == "":
		return cfg, fmt.Errorf("%w: DATAVERSE_CLIENT_SECRET or DATAVERSE_CLIENT_CERTIFICATE is required (the Entra ID app registration's credential)", ErrConfig)
	}
	if cfg.TokenURL == "" {
		if cfg.TenantID == "" {
			return cfg, fmt.Errorf("%w: DATAVERSE_TENANT_ID is required (the Entra ID tenant id or domain)", ErrConfig)
		}
		cfg.TokenURL = entraAuthority(u.Hostname()) + "/" + url.PathEscape(cfg.TenantID) + "/oauth2/v2.0/token"
	}
	if cfg.Entities == nil {
		cfg.Entities = BuiltinEntities()
	} else {
		m := BuiltinEntities()
		for k, v := range cfg.Entities {
			if b, ok := m[k]; ok && b.ActiveOnly {
				// A built-in redefined (another name column, say)
				// keeps its active-only filter: deactivated and
				// merged contacts, qualified leads never pop.
				v.ActiveOnly = true
			}
			m[k] = v
		}
		cfg.Entities = m
	}
	if cfg.Phone == nil {
		cfg.Phone, _ = ParseLookup(DefaultLookupPhone)
	}
	if cfg.Email == nil {
		cfg.Email, _ = ParseLookup(DefaultLookupEmail)
	}
	for _, l := range []struct {
		name string
		list []EntityColumns
	}{{"SCREENPOP_LOOKUP_PHONE", cfg.Phone}, {"SCREENPOP_LOOKUP_EMAIL", cfg.Email}} {
		for _, ec := range l.list {
			if _, ok := cfg.Entities[ec.Entity]; !ok {
				return cfg, fmt.Errorf("%w: %s names entity %q, which is neither built in (contact, account, lead) nor defined in SCREENPOP_ENTITIES", ErrConfig, l.name, ec.Entity)
			}
		}
	}
	if cfg.PhoneRegion == "" {
		cfg.PhoneRegion = DefaultPhoneRegion
	}
	cfg.PhoneRegion = strings.ToUpper(cfg.PhoneRegion)
	if !validRegion(cfg.PhoneRegion) {
		return cfg, fmt.Errorf("%w: SCREENPOP_PHONE_REGION %q is not a known ISO 3166 region code (e.g. US, GB, DE)", ErrConfig, cfg.PhoneRegion)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.NegativeCacheTTL <= 0 {
		cfg.NegativeCacheTTL = DefaultNegativeCacheTTL
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = 100000
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.FlightTimeout <= 0 {
		cfg.FlightTimeout = 60 * time.Second
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			OnProxyConnectResponse: egress.OnProxyConnectResponse,
			DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  cfg.RequestTimeout,
			MaxIdleConnsPerHost:    cfg.Concurrency + 2,
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
			// Dataverse and Entra ID speak HTTP/2: one connection per
			// host, its health checked by PINGs (egress.HTTP2), so a
			// connection gone silent stops no pops for long
			// (TestClient_HTTP2DeadConnection).
			HTTP2: egress.HTTP2(),
		}}
	}
	if cfg.HTTPClient.CheckRedirect == nil {
		// A redirect is never followed: the token's audience is URL, so
		// no other host's answer can be the environment's (a 301/302
		// also turns the $batch POST into a GET without its body, and a
		// 307 from the token endpoint would resend the client secret).
		// The 3xx itself is the answer, and names where it points.
		hc := *cfg.HTTPClient
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		cfg.HTTPClient = &hc
	}
	return cfg, nil
}

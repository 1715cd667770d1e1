package dataversetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Server; zero fields take defaults.
type Config struct {
	TenantID      string        // default "00000000-0000-0000-0000-0000000000aa"
	ClientID      string        // default "00000000-0000-0000-0000-0000000000bb"
	ClientSecret  string        // default "emulator-secret"
	TokenLifetime time.Duration // expires_in of issued tokens; default 1h
	// InFlightGrace: a request that arrives inside a Retry-After window
	// less than this long after the 429 was answered is not counted as a
	// violation: it may have been sent before the client read the 429 (on
	// a loaded machine under -race, such a request was seen to reach the
	// handler 20ms late). A client that ignores Retry-After still shows:
	// its retries keep landing inside the window, past the grace. Default
	// 250ms.
	InFlightGrace time.Duration
	// KeepRequests, when set, bounds the request log of a long-running
	// emulator (screenpopd demo) to about that many of the newest
	// requests; zero keeps every request (tests read the log).
	KeepRequests int
	// ClientCertificates are the certificates uploaded to the app
	// registration (Certificates & secrets > Certificates): a token
	// request with a client assertion signed by one of them gets a token,
	// as one with the secret does. NewCertificate makes one.
	ClientCertificates []*x509.Certificate
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS an
	// HTTP/2 connection (StartTLS) advertises; 0 = net/http's default
	// (250).
	MaxConcurrentStreams int
}

// Server is the emulator. Use Handler with your own listener, Serve, or
// Start for 127.0.0.1 on a free port.
type Server struct {
	cfg  Config
	done chan struct{}

	mu       sync.Mutex
	url      string
	tables   map[string]*Table // by entity set
	tokens   map[string]time.Time
	requests requestLog
	tokenReq int
	changed  chan struct{} // closed and replaced on every logged request
	seq      int

	// faults
	throttleNext  int
	throttleEvery int
	throttleRA    time.Duration
	throttleCount int
	throttleLimit string    // ThrottleLimit: the error code of the 429s
	windowStart   time.Time // the 5-minute window x-ms-ratelimit-burst-remaining counts in
	windowCount   int
	secretExpired bool // ExpireSecret
	htmlNext      int  // FailNextHTML
	htmlStatus    int
	windowUntil   time.Time
	windowGiven   time.Time
	violations    []Violation
	failNext      int
	tokenFail     int // FailTokenNext: token requests left to refuse
	tokenStatus   int
	failStatus    int
	failSet       map[string]setFailure // by entity set: FailNextIn
	ignoreCOE     bool                  // IgnoreContinueOnError
	latency       time.Duration
	denied        map[string]bool
	appUserOff    bool
	redirectTo    string // RedirectAPI: the other environment's URL
	redirectCode  int
	inflight      int
	maxInflight   int
	arrived       int // authenticated API requests since ResetLog, answered or not

	srv     *http.Server
	tls     *tls.Config    // StartTLS: the server's certificate
	roots   *x509.CertPool // StartTLS: trusts that certificate
	protos  map[string]int // requests by protocol (HTTP/1.1, HTTP/2.0)
	serveWG sync.WaitGroup
	closeMu sync.Once

	certsUsed []string // CertificatesUsed; under mu
}

// Request is one logged API request (or one request inside a $batch).
type Request struct {
	Seq       int
	Time      time.Time
	Method    string
	Path      string // after /api/data/v9.2/, e.g. contacts, $batch, WhoAmI
	InBatch   bool   // a part of a $batch; the $batch itself is logged too
	EntitySet string
	Select    []string
	Top       int
	OrderBy   string
	RawFilter string   // the decoded $filter text
	Filter    string   // the parsed filter in canonical form; "" if none or unparsable
	Literals  []string // the filter's string literals, unescaped
	Operators []string // eq, or, contains, …
	Status    int
	Rows      int
}

// Violation is a request that arrived while a Retry-After the emulator had
// answered was still running.
type Violation struct {
	At          time.Time
	Path        string
	WindowGiven time.Time
	WindowUntil time.Time
}

// New returns a Server with the built-in contact, account and lead tables
// and no rows.
func New(cfg Config) *Server {
	if cfg.TenantID == "" {
		cfg.TenantID = "00000000-0000-0000-0000-0000000000aa"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "00000000-0000-0000-0000-0000000000bb"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "emulator-secret"
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.InFlightGrace <= 0 {
		cfg.InFlightGrace = 250 * time.Millisecond
	}
	s := &Server{
		cfg:     cfg,
		done:    make(chan struct{}),
		tables:  map[string]*Table{},
		tokens:  map[string]time.Time{},
		changed: make(chan struct{}),
		denied:  map[string]bool{},
		failSet: map[string]setFailure{},
		protos:  map[string]int{},
	}
	for _, t := range builtinTables() {
		s.tables[t.Set] = t
	}
	return s
}

// Config returns the effective configuration (credentials to give the
// client).
func (s *Server) Config() Config { return s.cfg }

// Start listens on 127.0.0.1:0 and serves plain HTTP/1.1 until Close.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dataversetest listen: %w", err)
	}
	s.SetURL("http://" + ln.Addr().String())
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		_ = s.Serve(context.Background(), ln)
	}()
	return nil
}

// StartTLS listens on 127.0.0.1:0 and serves HTTPS until Close, as
// Dataverse and Entra ID do: HTTP/2 for a client that offers it in ALPN
// (Go's does), HTTP/1.1 otherwise, with the MaxConcurrentStreams of the
// Config. The certificate is self-signed for 127.0.0.1 and ::1; RootCAs
// trusts it. The URL is https://127.0.0.1:PORT.
func (s *Server) StartTLS() error {
	cert, roots, err := serverCertificate()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dataversetest listen: %w", err)
	}
	s.mu.Lock()
	s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	s.roots = roots
	s.mu.Unlock()
	s.SetURL("https://" + ln.Addr().String())
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		_ = s.Serve(context.Background(), ln)
	}()
	return nil
}

// serverCertificate makes a self-signed ECDSA certificate for the
// loopback addresses, and a pool that trusts it.
func serverCertificate() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dataversetest server certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "dataversetest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dataversetest server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dataversetest server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots, nil
}

// RootCAs trusts the certificate StartTLS serves (nil before StartTLS).
func (s *Server) RootCAs() *x509.CertPool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roots
}

// RequestsByProto counts the requests served (token and API), by their
// protocol: "HTTP/1.1", "HTTP/2.0".
func (s *Server) RequestsByProto() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.protos))
	for k, v := range s.protos {
		out[k] = v
	}
	return out
}

// Serve serves on ln until ctx is done or Close is called: over TLS (and
// HTTP/2) after StartTLS, plain HTTP/1.1 otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.url == "" {
		s.url = "http://" + ln.Addr().String()
	}
	s.srv = srv
	tlsCfg := s.tls
	s.mu.Unlock()
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.Clone()
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: s.cfg.MaxConcurrentStreams}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	go func() {
		<-s.done
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dataversetest serve: %w", err)
	}
	return nil
}

// Close stops serving and ends pending latency waits.
func (s *Server) Close() error {
	s.closeMu.Do(func() { close(s.done) })
	s.serveWG.Wait()
	return nil
}

// URL is the environment URL (DATAVERSE_URL), e.g. http://127.0.0.1:PORT,
// once serving. With Handler alone, SetURL tells the server its address.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// SetURL sets the environment URL when the handler is served elsewhere.
func (s *Server) SetURL(u string) {
	s.mu.Lock()
	s.url = strings.TrimSuffix(u, "/")
	s.mu.Unlock()
}

// TokenURL is the token endpoint (DATAVERSE_TOKEN_URL).
func (s *Server) TokenURL() string {
	return s.URL() + "/" + s.cfg.TenantID + "/oauth2/v2.0/token"
}

const apiPrefix = "/api/data/v9.2/"

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.protos[r.Proto]++
	s.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		s.serveToken(w, r)
	case strings.HasPrefix(r.URL.Path, apiPrefix):
		s.mu.Lock()
		to, code := s.redirectTo, s.redirectCode
		s.mu.Unlock()
		if to != "" {
			s.logRequest(Request{Time: time.Now(), Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, apiPrefix), Status: code})
			http.Redirect(w, r, to+r.URL.RequestURI(), code)
			return
		}
		s.serveAPI(w, r)
	case r.URL.Path == "/main.aspx" && r.Method == http.MethodGet:
		s.serveRecordPage(w, r)
	default:
		writeError(w, http.StatusNotFound, "0x80060888", "Resource not found for the segment '"+strings.TrimPrefix(r.URL.Path, "/")+"'.")
	}
}

// --- token endpoint ---

func writeAAD(w http.ResponseWriter, status int, errCode string, aadsts int, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":             errCode,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: %s", aadsts, desc, time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          "00000000-0000-0000-0000-000000000000",
		"correlation_id":    "00000000-0000-0000-0000-000000000000",
	})
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenReq++
	fail := s.tokenFail > 0
	if fail {
		s.tokenFail--
	}
	status := s.tokenStatus
	s.mu.Unlock()
	if fail {
		// The OAuth error for a service that cannot answer now (RFC 6749,
		// 5.2 and 4.1.2.1), without an AADSTS code to act on.
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."})
		return
	}
	tenant := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token")
	if r.Method != http.MethodPost {
		writeAAD(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAAD(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	// A client assertion (a certificate credential) stands instead of the
	// secret; the secret's answers below are for requests without one.
	assertion := r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type")
	var (
		assertionErr *aadError
		certUsed     string
	)
	if assertion && tenant == s.cfg.TenantID && id == s.cfg.ClientID {
		certUsed, assertionErr = s.verifyAssertion(r.PostForm.Get("client_assertion_type"), r.PostForm.Get("client_assertion"), id, time.Now())
	}
	switch {
	case tenant != s.cfg.TenantID:
		writeAAD(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
	case r.PostForm.Get("grant_type") != "client_credentials":
		writeAAD(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
	case id != s.cfg.ClientID:
		writeAAD(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", id, tenant))
	case assertionErr != nil:
		writeAAD(w, assertionErr.status, assertionErr.code, assertionErr.aadsts, assertionErr.desc)
	case !assertion && secret != s.cfg.ClientSecret:
		writeAAD(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
	case !assertion && s.expiredSecret():
		// As Entra ID answers it (401 invalid_client; the answer quoted in
		// github.com/liprec/vsts-release-aas/issues/119 and
		// github.com/dotnet/sign/issues/849).
		writeAAD(w, http.StatusUnauthorized, "invalid_client", 7000222, fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", id))
	case strings.TrimSuffix(r.PostForm.Get("scope"), "/") != s.URL()+"/.default":
		writeAAD(w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s.", strings.TrimSuffix(r.PostForm.Get("scope"), "/.default"), tenant))
	default:
		var b [24]byte
		_, _ = rand.Read(b[:])
		tok := "dvemu." + base64.RawURLEncoding.EncodeToString(b[:])
		s.mu.Lock()
		s.tokens[tok] = time.Now().Add(s.cfg.TokenLifetime)
		if certUsed != "" {
			s.certsUsed = append(s.certsUsed, certUsed)
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_type": "Bearer", "expires_in": int(s.cfg.TokenLifetime / time.Second),
			"ext_expires_in": int(s.cfg.TokenLifetime / time.Second), "access_token": tok,
		})
	}
}

// --- Web API ---

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	path := strings.TrimPrefix(r.URL.Path, apiPrefix)
	req := Request{Time: now, Method: r.Method, Path: path}

	// Authentication first, as Dataverse does.
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	exp, known := s.tokens[tok]
	s.mu.Unlock()
	if !ok || !known || now.After(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri=https://login.microsoftonline.com/`+s.cfg.TenantID+`/oauth2/authorize, resource_id=`+s.URL())
		req.Status = http.StatusUnauthorized
		s.logRequest(req)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}

	s.mu.Lock()
	s.arrived++
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()

	if status, ra, ok := s.throttle(now, path); ok {
		req.Status = status
		s.logRequest(req)
		code := s.rateLimitHeaders(w, now, true)
		w.Header().Set("Retry-After", strconv.Itoa(ra))
		writeError(w, http.StatusTooManyRequests, code, serviceProtection[code])
		return
	}
	s.rateLimitHeaders(w, now, false)
	if status := s.takeHTMLFailure(); status != 0 {
		req.Status = status
		s.logRequest(req)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><h1>%d %s</h1><p>The service is unavailable.</p></body></html>", status, http.StatusText(status), status, http.StatusText(status))
		return
	}
	if status := s.takeFailure(); status != 0 {
		req.Status = status
		s.logRequest(req)
		writeError(w, status, "0x80040216", "An unexpected error occurred.")
		return
	}
	if err := s.wait(r.Context()); err != nil {
		return
	}
	s.mu.Lock()
	off := s.appUserOff
	s.mu.Unlock()
	if off {
		req.Status = http.StatusForbidden
		s.logRequest(req)
		writeError(w, http.StatusForbidden, "0x80072560", "The user is not a member of the organization.")
		return
	}

	switch {
	case path == "$batch":
		s.serveBatch(w, r, req)
	case path == "WhoAmI" && r.Method == http.MethodGet:
		req.Status = http.StatusOK
		s.logRequest(req)
		writeJSON(w, map[string]any{
			"@odata.context": s.URL() + apiPrefix + "$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
			"BusinessUnitId": "00000000-0000-0000-0000-0000000000c1",
			"UserId":         "00000000-0000-0000-0000-0000000000c2",
			"OrganizationId": "00000000-0000-0000-0000-0000000000c3",
		})
	case r.Method == http.MethodGet:
		status, body, rows := s.query(&req, path, r.URL.RawQuery, r.Header.Get("Prefer"))
		req.Status, req.Rows = status, rows
		s.logRequest(req)
		w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
		w.Header().Set("OData-Version", "4.0")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	default:
		req.Status = http.StatusMethodNotAllowed
		s.logRequest(req)
		writeError(w, http.StatusMethodNotAllowed, "0x80060888", "The emulator supports GET queries and $batch only.")
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.Header().Set("OData-Version", "4.0")
	_ = json.NewEncoder(w).Encode(v)
}

func errBody(code, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return b
}

// query answers GET <set>?<rawQuery>, filling req's query fields. It
// returns the status, the JSON body and the number of rows.
func (s *Server) query(req *Request, set, rawQuery, prefer string) (int, []byte, int) {
	req.EntitySet = set
	s.mu.Lock()
	t := s.tables[set]
	denied := s.denied[set]
	failed := 0
	if f := s.failSet[set]; f.n > 0 && t != nil {
		f.n--
		s.failSet[set], failed = f, f.status
	}
	s.mu.Unlock()
	if t == nil {
		return http.StatusNotFound, errBody("0x8006088a", "Resource not found for the segment '"+set+"'."), 0
	}
	if failed == http.StatusUnauthorized {
		return failed, nil, 0 // Dataverse's 401 has no body
	}
	if failed != 0 {
		return failed, errBody("0x80040216", "An unexpected error occurred."), 0
	}
	if denied {
		return http.StatusForbidden, errBody("0x80040220", fmt.Sprintf("Principal user (Id=00000000-0000-0000-0000-0000000000c2, type=8, roleCount=1, privilegeCount=0, accessMode=4, MetadataCachePrivilegesCount=0, BusinessUnitId=00000000-0000-0000-0000-0000000000c1), is missing prvRead%s privilege (Id=00000000-0000-0000-0000-000000000000) on OTC=0 for entity '%s'.", t.Logical, t.Logical)), 0
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return http.StatusBadRequest, errBody("0x80060888", "The query string is malformed."), 0
	}
	typeName := "Microsoft.Dynamics.CRM." + t.Logical
	// An unknown property, in $select, $filter or $orderby, fails in the
	// OData URI parser, before Dataverse's own code: its error code is
	// 0x0 (learn.microsoft.com, "Troubleshoot Dataverse Web API client
	// errors").
	noProp := func(p string) (int, []byte, int) {
		return http.StatusBadRequest, errBody("0x0", fmt.Sprintf("Could not find a property named '%s' on type '%s'.", p, typeName)), 0
	}
	for k := range q {
		switch k {
		case "$select", "$filter", "$top", "$orderby", "$count", "$skiptoken":
		case "$skip", "$search", "$format":
			return http.StatusBadRequest, errBody("0x80060888", "The query parameter "+k+" is not supported"), 0
		case "$expand", "$apply":
			return http.StatusBadRequest, errBody("0x80060888", "The query option "+k+" is not supported by the emulator."), 0
		default:
			if strings.HasPrefix(k, "$") {
				return http.StatusBadRequest, errBody("0x80060888", "The query parameter "+k+" is not supported"), 0
			}
			if !strings.HasPrefix(k, "@") {
				return http.StatusBadRequest, errBody("0x80060888", "The query parameter '"+k+"' is not supported"), 0
			}
		}
	}
	if v := q.Get("$select"); v != "" {
		for _, c := range strings.Split(v, ",") {
			c = strings.TrimSpace(c)
			if !t.columns[c] {
				return noProp(c)
			}
			req.Select = append(req.Select, c)
		}
	}
	top := -1
	if v, ok := q["$top"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return http.StatusBadRequest, errBody("0x80060888", "Invalid value '"+v[0]+"' for $top query option found."), 0
		}
		top = n
		req.Top = n
	}
	var filter *Filter
	if v, ok := q["$filter"]; ok {
		req.RawFilter = v[0]
		// Parameter aliases (@p1) are substituted before parsing.
		text := v[0]
		for k, vals := range q {
			if strings.HasPrefix(k, "@") {
				text = strings.ReplaceAll(text, k, vals[0])
			}
		}
		f, err := ParseFilter(text)
		if err != nil {
			return http.StatusBadRequest, errBody("0x80060888", err.Error()), 0
		}
		for _, p := range f.Props {
			if !t.columns[p] {
				return noProp(p)
			}
		}
		if msg := mistyped(f.Root, t.types); msg != "" {
			return http.StatusBadRequest, errBody("0x0", msg), 0
		}
		filter = f
		req.Filter, req.Literals, req.Operators = f.Root.String(), f.Literals, f.Operators
	}
	type key struct {
		col  string
		desc bool
	}
	var order []key
	if v := q.Get("$orderby"); v != "" {
		req.OrderBy = v
		for _, part := range strings.Split(v, ",") {
			f := strings.Fields(part)
			if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "asc" && f[1] != "desc") {
				return http.StatusBadRequest, errBody("0x80060888", "Syntax error in $orderby '"+v+"'."), 0
			}
			if !t.columns[f[0]] {
				return noProp(f[0])
			}
			order = append(order, key{f[0], len(f) == 2 && f[1] == "desc"})
		}
	}

	s.mu.Lock()
	rows, err := t.match(filter)
	s.mu.Unlock()
	if err != nil {
		return http.StatusBadRequest, errBody("0x80060888", err.Error()), 0
	}
	if len(order) > 0 {
		sort.SliceStable(rows, func(i, j int) bool {
			for _, k := range order {
				c, _ := compare(normalize(rows[i][k.col]), normalize(rows[j][k.col]))
				if c != 0 {
					return (c < 0) != k.desc
				}
			}
			return false
		})
	}
	total := len(rows)
	offset := 0
	if v := q.Get("$skiptoken"); v != "" {
		n, err := decodeSkipToken(v)
		if err != nil {
			return http.StatusBadRequest, errBody("0x80060888", "The $skiptoken is invalid."), 0
		}
		offset = min(n, len(rows))
	}
	page := 5000
	if top < 0 {
		if n, ok := preferPageSize(prefer); ok {
			page = n
		}
	}
	var next string
	switch {
	case top >= 0:
		rows = rows[:min(top, len(rows))]
	default:
		rows = rows[offset:]
		if len(rows) > page {
			rows = rows[:page]
			vals, _ := url.ParseQuery(rawQuery)
			vals.Set("$skiptoken", encodeSkipToken(offset+page))
			next = s.URL() + apiPrefix + set + "?" + vals.Encode()
		}
	}
	out := make([]map[string]any, 0, len(rows))
	for _, row := range rows {
		o := map[string]any{"@odata.etag": fmt.Sprintf("W/\"%v\"", row["versionnumber"])}
		if len(req.Select) == 0 {
			for k, v := range row {
				if k != "versionnumber" {
					o[k] = v
				}
			}
		} else {
			o[t.IDColumn] = row[t.IDColumn]
			for _, c := range req.Select {
				o[c] = row[c]
			}
		}
		out = append(out, o)
	}
	ctxSel := set
	if len(req.Select) > 0 {
		ctxSel += "(" + strings.Join(req.Select, ",") + ")"
	}
	resp := map[string]any{"@odata.context": s.URL() + apiPrefix + "$metadata#" + ctxSel, "value": out}
	if q.Get("$count") == "true" {
		resp["@odata.count"] = total
	}
	if next != "" {
		resp["@odata.nextLink"] = next
	}
	b, _ := json.Marshal(resp)
	return http.StatusOK, b, len(out)
}

func normalize(v any) any {
	if i, ok := v.(int); ok {
		return float64(i)
	}
	return v
}

func preferPageSize(prefer string) (int, bool) {
	for _, p := range strings.Split(prefer, ",") {
		p = strings.TrimSpace(p)
		if v, ok := strings.CutPrefix(p, "odata.maxpagesize="); ok {
			n, err := strconv.Atoi(strings.Trim(v, `"`))
			if err == nil && n > 0 && n <= 5000 {
				return n, true
			}
		}
	}
	return 0, false
}

func encodeSkipToken(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`<cookie pagenumber="x" offset="%d" />`, n)))
}

func decodeSkipToken(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscanf(string(b), `<cookie pagenumber="x" offset="%d" />`, &n); err != nil {
		return 0, err
	}
	return n, nil
}

// serveBatch answers a $batch of GET requests.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request, outer Request) {
	if r.Method != http.MethodPost {
		outer.Status = http.StatusMethodNotAllowed
		s.logRequest(outer)
		writeError(w, http.StatusMethodNotAllowed, "0x80060888", "$batch requires POST.")
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		outer.Status = http.StatusBadRequest
		s.logRequest(outer)
		writeError(w, http.StatusBadRequest, "0x80060888", "The batch request must have a \"Content-Type\" header of multipart/mixed with a boundary.")
		return
	}
	type answer struct {
		status int
		body   []byte
	}
	// Dataverse stops a batch at the first request that fails, unless
	// the batch asks it to go on (Prefer: odata.continue-on-error); then
	// every request is answered, failed ones with their error.
	s.mu.Lock()
	goOn := continueOnError(r.Header.Get("Prefer")) && !s.ignoreCOE
	s.mu.Unlock()
	failed := 0 // the status of the request the batch stopped at
	var answers []answer
	var parts []Request
	mr := multipart.NewReader(io.LimitReader(r.Body, 8<<20), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			outer.Status = http.StatusBadRequest
			s.logRequest(outer)
			writeError(w, http.StatusBadRequest, "0x80060888", "The batch request body is malformed.")
			return
		}
		ct := p.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "multipart/mixed") {
			outer.Status = http.StatusBadRequest
			s.logRequest(outer)
			writeError(w, http.StatusBadRequest, "0x80060888", "Change sets are not supported by the emulator.")
			return
		}
		if !strings.HasPrefix(ct, "application/http") || p.Header.Get("Content-Transfer-Encoding") != "binary" {
			outer.Status = http.StatusBadRequest
			s.logRequest(outer)
			writeError(w, http.StatusBadRequest, "0x80060888", "Each batch part must be application/http with Content-Transfer-Encoding: binary.")
			return
		}
		// The CRLF before the next boundary belongs to the delimiter, so a
		// part written as in Microsoft's examples ends right after its
		// headers' CRLF: complete the blank line before parsing.
		raw, err := io.ReadAll(io.LimitReader(p, 1<<20))
		if err == nil && !bytes.Contains(raw, []byte("\r\n\r\n")) {
			raw = append(raw, '\r', '\n')
		}
		var inner *http.Request
		if err == nil {
			inner, err = http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		}
		if err != nil {
			outer.Status = http.StatusBadRequest
			s.logRequest(outer)
			writeError(w, http.StatusBadRequest, "0x80060888", "A batch part is not an HTTP request.")
			return
		}
		u := inner.URL
		preq := Request{Time: time.Now(), Method: inner.Method, InBatch: true, Path: strings.TrimPrefix(u.Path, apiPrefix)}
		if inner.Method != http.MethodGet || !strings.HasPrefix(u.Path, apiPrefix) {
			preq.Status = http.StatusBadRequest
			parts = append(parts, preq)
			answers = append(answers, answer{http.StatusBadRequest, errBody("0x80060888", "The emulator supports GET requests in $batch only.")})
			if !goOn {
				failed = http.StatusBadRequest
				break
			}
			continue
		}
		status, body, rows := s.query(&preq, preq.Path, u.RawQuery, inner.Header.Get("Prefer"))
		preq.Status, preq.Rows = status, rows
		parts = append(parts, preq)
		answers = append(answers, answer{status, body})
		if status >= 400 && !goOn {
			failed = status
			break
		}
	}
	if len(answers) == 0 {
		outer.Status = http.StatusBadRequest
		s.logRequest(outer)
		writeError(w, http.StatusBadRequest, "0x80060888", "The batch request contains no requests.")
		return
	}
	// A batch that stopped carries the failed request's status, with the
	// answers up to and including it in the body (Microsoft's example
	// shows a 400 batch around the failed 400 request).
	outer.Status = http.StatusOK
	if failed != 0 {
		outer.Status = failed
	}
	s.logRequest(outer)
	for _, p := range parts {
		s.logRequest(p)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	boundary := "batchresponse_" + hex.EncodeToString(rnd[:])
	var buf bytes.Buffer
	for _, a := range answers {
		fmt.Fprintf(&buf, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n", boundary)
		fmt.Fprintf(&buf, "HTTP/1.1 %d %s\r\nContent-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n", a.status, http.StatusText(a.status))
		buf.Write(a.body)
		buf.WriteString("\r\n")
	}
	fmt.Fprintf(&buf, "--%s--\r\n", boundary)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+boundary)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(outer.Status)
	_, _ = w.Write(buf.Bytes())
}

// continueOnError reports whether a Prefer header asks for
// odata.continue-on-error (OData 4.0 names it bare; 4.01 allows =true or
// =false). Preference names are case-insensitive (RFC 7240).
func continueOnError(prefer string) bool {
	for _, p := range strings.Split(prefer, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(name), "odata.continue-on-error") {
			v := strings.Trim(strings.TrimSpace(val), `"`)
			return v == "" || strings.EqualFold(v, "true")
		}
	}
	return false
}

func (s *Server) logRequest(r Request) {
	s.mu.Lock()
	s.seq++
	r.Seq = s.seq
	s.requests.add(r)
	if s.cfg.KeepRequests > 0 {
		s.requests.trim(s.cfg.KeepRequests)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// throttle decides whether the request gets a 429, and records a request
// that arrives inside a Retry-After window as a violation.
func (s *Server) throttle(now time.Time, path string) (status, retryAfter int, throttled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.windowUntil) {
		if now.Sub(s.windowGiven) >= s.cfg.InFlightGrace {
			s.violations = append(s.violations, Violation{At: now, Path: path, WindowGiven: s.windowGiven, WindowUntil: s.windowUntil})
		}
		return http.StatusTooManyRequests, int(math.Ceil(time.Until(s.windowUntil).Seconds())), true
	}
	hit := false
	if s.throttleNext > 0 {
		s.throttleNext--
		hit = true
	} else if s.throttleEvery > 0 {
		s.throttleCount++
		hit = s.throttleCount%s.throttleEvery == 0
	}
	if !hit {
		return 0, 0, false
	}
	ra := max(int(math.Ceil(s.throttleRA.Seconds())), 1)
	s.windowGiven = time.Now()
	s.windowUntil = s.windowGiven.Add(time.Duration(ra) * time.Second)
	return http.StatusTooManyRequests, ra, true
}

// serviceProtection are the messages of Dataverse's three service
// protection limit errors, by the hex code the Web API returns
// (learn.microsoft.com/power-apps/developer/data-platform/api-limits,
// "Service protection API limit errors returned").
var serviceProtection = map[string]string{
	LimitRequests:      "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
	LimitExecutionTime: "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
	LimitConcurrency:   "Number of concurrent requests exceeded the limit of 52.",
}

// rateLimitHeaders sets the x-ms-ratelimit-*-remaining-xrm-requests
// headers Dataverse sends on Web API answers "for debugging purposes"
// (api-limits.md, "HTTP Response headers"): the requests left in the
// 5-minute window, and the execution time left. The emulator counts the
// requests of a fixed window and measures no execution time: that header
// is the full 1,200,000 ms unless a 429 reports the execution-time limit.
// The values' exact format on Dataverse is unverified. It returns the
// error code of a throttled answer.
func (s *Server) rateLimitHeaders(w http.ResponseWriter, now time.Time, throttled bool) (code string) {
	s.mu.Lock()
	if now.Sub(s.windowStart) >= 5*time.Minute {
		s.windowStart, s.windowCount = now, 0
	}
	s.windowCount++
	burst, exec := max(6000-s.windowCount, 0), 1200000
	code = s.throttleLimit
	if code == "" {
		code = LimitRequests
	}
	s.mu.Unlock()
	if throttled {
		switch code {
		case LimitRequests:
			burst = 0
		case LimitExecutionTime:
			exec = 0
		}
	}
	w.Header().Set("x-ms-ratelimit-burst-remaining-xrm-requests", strconv.Itoa(burst))
	w.Header().Set("x-ms-ratelimit-time-remaining-xrm-requests", strconv.Itoa(exec))
	return code
}

func (s *Server) expiredSecret() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secretExpired
}

func (s *Server) takeHTMLFailure() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.htmlNext > 0 {
		s.htmlNext--
		return s.htmlStatus
	}
	return 0
}

func (s *Server) takeFailure() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		return s.failStatus
	}
	return 0
}

func (s *Server) wait(ctx context.Context) error {
	s.mu.Lock()
	d := s.latency
	s.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errors.New("closed")
	}
}

// recordPage stands for the model-driven app's record form.
var recordPage = template.Must(template.New("record").Parse(`<!doctype html>
<meta charset="utf-8"><title>{{.Title}} (Dataverse emulator)</title>
<h1>{{.Title}}</h1>
{{if .Cols}}<table>{{range .Cols}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
{{else}}<p>{{.Note}}</p>{{end}}`))

// serveRecordPage answers the record URLs pops carry
// (main.aspx?…&etn=<entity>&id=<id>, without id a new record's form) with
// a read-only page, so that a demo's "open in Dynamics" shows the record.
func (s *Server) serveRecordPage(w http.ResponseWriter, r *http.Request) {
	etn, id := r.URL.Query().Get("etn"), r.URL.Query().Get("id")
	page := struct {
		Title, Note string
		Cols        [][2]string
	}{Title: "new " + etn, Note: "A new record's form: the emulator saves nothing."}
	status := http.StatusOK
	if id != "" {
		status, page.Title, page.Note = http.StatusNotFound, etn+" "+id, "No such record."
		s.mu.Lock()
		for _, t := range s.tables {
			if t.Logical != etn {
				continue
			}
			for _, row := range t.rows {
				if v, _ := row[t.IDColumn].(string); strings.EqualFold(v, id) {
					status = http.StatusOK
					if n, _ := row[t.NameColumn].(string); n != "" {
						page.Title = n
					}
					for k, v := range row {
						if v != nil && v != "" {
							page.Cols = append(page.Cols, [2]string{k, fmt.Sprint(v)})
						}
					}
				}
			}
		}
		s.mu.Unlock()
		sort.Slice(page.Cols, func(i, j int) bool { return page.Cols[i][0] < page.Cols[j][0] })
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = recordPage.Execute(w, page)
}

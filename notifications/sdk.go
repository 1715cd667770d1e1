package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/tidwall/gjson"
)

// sdkMu guards the SDK's package globals: NewConfigurationWithConfigFile
// rewrites them (viper, its loggers) and every API call reads the loggers.
// Creating a configuration takes it for writing, every SDK call (through
// Client.call and sdkLogin) for reading, so that a second Client (a check
// or probe next to a running one in the same process) cannot race the
// first one's calls. It is the one piece of package-level state, owed to
// the SDK.
var sdkMu sync.RWMutex

// sdkLogin runs the SDK's client-credentials login under sdkMu.
func sdkLogin(cfg *platformclientv2.Configuration, id, secret string) error {
	sdkMu.RLock()
	defer sdkMu.RUnlock()
	return cfg.AuthorizeClientCredentials(id, secret)
}

// sdkConfigPath is the configuration file the SDK is given: one that
// cannot exist (a path below the null device, not a directory), so that
// nobody can make it. The SDK reads its logging (its log lines carry whole
// channel ids and request bodies) and a gateway (a host every request and
// the login, with the client secret, would go to) from that file; a path
// in a shared directory such as /tmp would let any local user set both.
var sdkConfigPath = filepath.Join(os.DevNull, "screenpop-genesys-sdk.ini")

// newSDKConfig builds an SDK configuration that reads no file
// (sdkConfigPath), never refreshes tokens by itself, and sends every
// request through doer.
func newSDKConfig(base string, doer *sdkHTTP) (*platformclientv2.Configuration, error) {
	sdkMu.Lock()
	defer sdkMu.Unlock()
	cfg := platformclientv2.NewConfigurationWithConfigFile(sdkConfigPath, false)
	cfg.BasePath = base
	cfg.AutomaticTokenRefresh = false
	cfg.ShouldRefreshAccessToken = false
	cfg.RetryConfiguration = nil // we retry ourselves, honouring Retry-After
	if err := cfg.APIClient.SetHttpClient(doer); err != nil {
		return nil, fmt.Errorf("genesys sdk: %w", err)
	}
	return cfg, nil
}

// sdkHTTP is the SDK's HTTP client: one plain attempt per call (no
// retryablehttp, so a 429 keeps its response and Retry-After), a timeout,
// cancellation by the Run context, and the bearer token taken from the
// token store at call time, so the SDK configuration's AccessToken is
// never assigned while calls are in flight.
type sdkHTTP struct {
	hc    *http.Client
	token func() string

	mu  sync.Mutex
	ctx context.Context

	// loginRetryAfter is the Retry-After of the last login the token
	// endpoint refused with 429 or 503: the SDK's login returns only an
	// error string, so the auth loop takes it from here.
	loginRetryAfter atomic.Int64
}

// takeLoginRetryAfter returns and clears the last login's Retry-After.
func (s *sdkHTTP) takeLoginRetryAfter() time.Duration {
	return time.Duration(s.loginRetryAfter.Swap(0))
}

var _ platformclientv2.AbstractHttpClient = (*sdkHTTP)(nil)

func (s *sdkHTTP) setContext(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
}

func (s *sdkHTTP) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

func (s *sdkHTTP) Do(o *platformclientv2.HTTPRequestOptions) (*http.Response, error) {
	var body io.Reader
	if f := o.GetFormParams(); len(f) > 0 {
		body = strings.NewReader(f.Encode())
	} else if b := o.GetBody(); b != nil {
		if str, ok := b.(*string); ok {
			body = strings.NewReader(*str)
		} else {
			j, err := json.Marshal(b)
			if err != nil {
				return nil, fmt.Errorf("encode request body: %w", err)
			}
			body = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequestWithContext(s.context(), strings.ToUpper(o.GetMethod()), o.GetUrl().String(), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range o.GetHeaders() {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("Authorization") == "" && s.token != nil {
		if t := s.token(); t != "" {
			req.Header.Set("Authorization", "Bearer "+t)
		}
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	b, err := readWhole(resp)
	if err != nil {
		return nil, err
	}
	// A body of JSON null is decoded by the SDK into a nil pointer that
	// it then dereferences, a panic in the caller's goroutine (none
	// recovers: the daemon stops): an error answer's *APIError
	// (NewAPIResponse), a login's *AuthResponse or *AuthErrorResponse
	// (AuthorizeClientCredentials). Any other body that is no object the
	// SDK fails to decode, an error of the call.
	null := bytes.Equal(bytes.TrimSpace(b), []byte("null"))
	if !strings.HasSuffix(req.URL.Path, "/oauth/token") {
		if null && (resp.StatusCode < 200 || resp.StatusCode > 299) {
			// Without a body the call fails with its status, as with
			// an empty gateway error page.
			resp.Body = io.NopCloser(bytes.NewReader(nil))
			resp.ContentLength = 0
		}
		return resp, nil
	}
	if resp.StatusCode < 300 && !null { // a redirect too is a refused login
		return resp, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if ra := retryAfter(resp.Header.Get("Retry-After")); ra > 0 {
			s.loginRetryAfter.Store(int64(ra))
		}
	}
	return oauthErrorBody(resp)
}

// noRedirects makes a redirect the call's answer. Followed, a 301, 302 or
// 303 turns a PUT or POST into a GET without its body: a subscription PUT
// answered by GET …/subscriptions (200, what the channel holds) passes
// for a subscription that put nothing, and a redirect to another host
// drops the bearer token (a 401: a new login and a handover of every
// channel). No Genesys API call redirects; a gateway or proxy in front of
// it that does is a misconfiguration to report, with where it points.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// maxAnswer bounds a Genesys API answer. The largest the client asks for
// (an activity query page of 100 users, a conversation with its
// participants' attributes) is well under a megabyte.
const maxAnswer = 16 << 20

// readWhole reads resp's body into memory, at most maxAnswer, and puts it
// back as a reader. The SDK reads the body itself but drops the read error
// (platformclientv2 CallAPI: body, _ := ioutil.ReadAll): an answer cut
// mid-body (a reset, the HTTPTimeout on a slow answer) would reach the
// caller as a shorter body, and gjson reads what is there, so a queue page
// cut before its nextUri would pass for the last one. Read here, the cut is
// the call's error, and an endless answer stops at maxAnswer. The error
// names neither the URL nor the body (a channel's URL is its credential).
func readWhole(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(b) > maxAnswer {
		return nil, fmt.Errorf("answer (HTTP %d) larger than %d MiB: refused", resp.StatusCode, maxAnswer>>20)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return b, nil
}

// oauthErrorBody makes a refused login's answer one the SDK's login can
// report: it decodes the body as an OAuth error and, when that fails,
// reports the decoding error instead of the status. A gateway's answer
// (a 502/503/504 HTML page in an outage, an empty body) is replaced by an
// OAuth error without a code, so the login error reads "Auth Error: 503 -
// ..." like any other refusal.
func oauthErrorBody(resp *http.Response) (*http.Response, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read login answer: %w", err)
	}
	if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
		what := "an empty answer"
		if len(b) > 0 {
			what = "a non-JSON answer"
			if gjson.ValidBytes(b) {
				what = "a JSON answer that is no object"
			}
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				what += " (" + ct + ")"
			}
		}
		b, _ = json.Marshal(map[string]string{"error": "", "error_description": what + " from the login host"})
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// The SDK configures retries on its client before every call; this client
// never retries, so these are no-ops (and so race-free).
func (s *sdkHTTP) SetRetryMax(int)                                                          {}
func (s *sdkHTTP) SetRetryWaitMax(time.Duration)                                            {}
func (s *sdkHTTP) SetRetryWaitMin(time.Duration)                                            {}
func (s *sdkHTTP) SetRequestLogHook(func(retryablehttp.Logger, *http.Request, int))         {}
func (s *sdkHTTP) SetResponseLogHook(func(retryablehttp.Logger, *http.Response))            {}
func (s *sdkHTTP) SetCheckRetry(func(context.Context, *http.Response, error) (bool, error)) {}
func (s *sdkHTTP) SetTransport(*http.Transport)                                             {}
func (s *sdkHTTP) SetHttpsAgent(*platformclientv2.ProxyAgent)                               {}

// APIError is a failed Genesys API call.
type APIError struct {
	Op         string
	Status     int
	Code       string        // Genesys ErrorBody code, e.g. notification.unauthorized.topic
	Message    string        // Genesys ErrorBody message
	RetryAfter time.Duration // from Retry-After on 429/503
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// errNotFound is wrapped by APIErrors with status 404.
var errNotFound = errors.New("not found")

func (e *APIError) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return errNotFound
	}
	return nil
}

// apiError turns an SDK answer into an error (nil on 2xx).
func apiError(op string, resp *platformclientv2.APIResponse, err error) error {
	if resp == nil {
		if err == nil {
			err = errors.New("no response")
		}
		// A transport error names the URL, and a channel's URL holds its
		// id, the socket's credential: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	ae := &APIError{Op: op, Status: resp.StatusCode}
	if resp.Error != nil {
		ae.Code, ae.Message = resp.Error.Code, resp.Error.Message
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Where it points, without the path (a channel's id is in it).
		where := "elsewhere"
		if u, err := url.Parse(first(resp.Header, "Location")); err == nil && u.Host != "" {
			where = u.Scheme + "://" + u.Host
		}
		ae.Code, ae.Message = "", "redirected "+where+": a proxy or gateway in front of the Genesys API? check GENESYS_REGION / GENESYS_API_URL (https://api.<region>)"
	}
	ae.RetryAfter = retryAfter(first(resp.Header, "Retry-After"))
	return ae
}

// retryAfter reads a Retry-After of whole seconds, as Genesys sends it,
// at most maxRetryAfter; 0 when absent or unreadable.
func retryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps a Retry-After: Genesys' rate limits reset within a
// minute, and a gateway or proxy in front of it that asks for an hour
// during an outage would keep agents without pops for that hour after
// Genesys is back (the Dataverse client caps it the same).
const maxRetryAfter = 5 * time.Minute

func first(h map[string][]string, k string) string {
	for key, v := range h {
		if strings.EqualFold(key, k) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

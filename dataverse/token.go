package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/screenpop/screenpop/internal/statuslabel"
)

// tokenSource holds the Entra ID access token for the Dataverse scope.
//
// Lookups use the token in hand for as long as it is valid, with a safety
// margin before its expiry; replacing it early (at 80% of its lifetime) is
// Run's job, which backs off when Entra ID fails. Only when there is no
// usable token does a lookup ask for one, and then only one request is out
// at a time: the others wait for its outcome without holding the lock, and
// after a failure every caller gets that error until failUntil instead of
// asking again. (A failing token endpoint must not put a slow token request
// in front of every Dataverse request while the token in hand still works.)
type tokenSource struct {
	c *Client

	mu        sync.Mutex
	token     string
	expires   time.Time // the token's expiry
	usable    time.Time // lookups use the token until then: expiry less a margin
	refreshAt time.Time // when Run replaces it: 80% of its lifetime
	lastErr   error
	failUntil time.Time   // after a failure, answer lastErr without asking again until then
	fetching  *tokenFetch // the token request in progress, if any
}

// tokenFetch is one token request in progress, shared by the callers that
// need its outcome.
type tokenFetch struct {
	done chan struct{}
	err  error // the endpoint's failure; nil on success or if its caller gave up
}

// tokenFailMemory is how long a failed token request's error is the
// answer to every lookup without asking again: enough that a burst of
// lookups sends one request, short of the pop deadline, since it is also
// how long after Entra ID is back that lookups still fail with it (Run
// asks again only after its own backoff, up to a minute in an outage).
const tokenFailMemory = time.Second

// tokenMargin is how long before its expiry a token is no longer handed
// out: a request must reach Dataverse before the token expires.
const tokenMargin = 30 * time.Second

// get returns the token in hand while it is usable. Only without one does
// it ask Entra ID, or wait for the request already out.
func (ts *tokenSource) get(ctx context.Context) (string, error) {
	for {
		ts.mu.Lock()
		now := ts.c.cfg.Now()
		if ts.token != "" && now.Before(ts.usable) {
			tok := ts.token
			ts.mu.Unlock()
			return tok, nil
		}
		if ts.lastErr != nil && now.Before(ts.failUntil) {
			err := ts.lastErr
			ts.mu.Unlock()
			return "", err
		}
		if f := ts.fetching; f != nil {
			ts.mu.Unlock()
			select {
			case <-f.done:
				continue // its outcome is in ts now
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		f := ts.startLocked()
		ts.mu.Unlock()
		return ts.fetch(ctx, f)
	}
}

// invalidate drops tok after Dataverse refused it, so the next get fetches
// a new one.
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	if ts.token == tok {
		ts.token, ts.expires, ts.usable, ts.refreshAt = "", time.Time{}, time.Time{}, time.Time{}
	}
	ts.mu.Unlock()
}

// refresh fetches a new token now if the current one is due within ahead.
// It ignores the failure backoff (Run has its own) but not a request
// already out: it takes that one's outcome.
func (ts *tokenSource) refresh(ctx context.Context, ahead time.Duration) error {
	for {
		ts.mu.Lock()
		if ts.token != "" && ts.c.cfg.Now().Add(ahead).Before(ts.refreshAt) {
			ts.mu.Unlock()
			return nil
		}
		if f := ts.fetching; f != nil {
			ts.mu.Unlock()
			select {
			case <-f.done:
				if f.err != nil {
					return f.err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		f := ts.startLocked()
		ts.mu.Unlock()
		_, err := ts.fetch(ctx, f)
		return err
	}
}

func (ts *tokenSource) next() (refreshAt time.Time, ok bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refreshAt, ts.token != ""
}

func (ts *tokenSource) expiry() time.Time {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.expires
}

// startLocked registers a token request that the caller then makes with
// fetch.
func (ts *tokenSource) startLocked() *tokenFetch {
	f := &tokenFetch{done: make(chan struct{})}
	ts.fetching = f
	return f
}

// fetch makes the token request f, without holding the lock, records its
// outcome for everyone and returns the new token.
func (ts *tokenSource) fetch(ctx context.Context, f *tokenFetch) (string, error) {
	tok, life, err := ts.request(ctx)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.c.cfg.Now()
	switch {
	case err == nil:
		ts.token = tok
		ts.expires = now.Add(life)
		ts.usable = ts.expires.Add(-min(tokenMargin, life/10))
		ts.refreshAt = now.Add(life * 8 / 10)
		ts.lastErr = nil
		ts.c.ready.Store(true)
		ts.c.tokenErr.Store(nil) // also when a lookup, not Run, got it
	case ctx.Err() != nil:
		// The caller gave up (its deadline, or Close): that says
		// nothing about the endpoint, so no backoff for the others.
	default:
		ts.lastErr = err
		ts.failUntil = now.Add(tokenFailMemory)
		f.err = err
		// Also a lookup's: after a refused token, Run asks again only
		// at the dropped token's refresh time.
		msg := err.Error()
		ts.c.tokenErr.Store(&msg)
	}
	ts.fetching = nil
	close(f.done)
	if err != nil {
		return "", err
	}
	return tok, nil
}

type tokenResponse struct {
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"` // a number, or a string in some Entra answers
	AccessToken string          `json:"access_token"`

	Error      string `json:"error"`
	ErrorCodes []int  `json:"error_codes"`
}

// request asks the token endpoint for a token and returns it with its
// lifetime.
func (ts *tokenSource) request(ctx context.Context) (string, time.Duration, error) {
	c := ts.c
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	form := url.Values{
		"client_id":  {c.cfg.ClientID},
		"scope":      {c.cfg.URL + "/.default"},
		"grant_type": {"client_credentials"},
	}
	var cert *ClientCertificate
	if c.certs != nil {
		// The file is read again for each token: a certificate replaced
		// on disk is used from the next token on.
		cert = c.certs.get()
		a, err := cert.assertion(c.cfg.ClientID, c.cfg.TokenURL, c.cfg.Now())
		if err != nil {
			return "", 0, fmt.Errorf("sign the client assertion: %w", err)
		}
		form.Set("client_assertion_type", ClientAssertionType)
		form.Set("client_assertion", a)
	} else {
		form.Set("client_secret", c.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.metrics.request("token", "error", time.Since(start))
		// Without the local port: the error is also the failed lookups'
		// cause, for the log limiter.
		return "", 0, fmt.Errorf("token request: %w (check DATAVERSE_TOKEN_URL / DATAVERSE_TENANT_ID and network access to the Entra ID endpoint)", withoutLocalAddr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	c.metrics.request("token", statuslabel.Of(resp.StatusCode), time.Since(start))
	if err != nil {
		return "", 0, fmt.Errorf("token response: %w", err)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || jerr != nil || tr.AccessToken == "" {
		return "", 0, tokenError(resp.StatusCode, &tr, cert)
	}
	secs, _ := strconv.Atoi(strings.Trim(string(tr.ExpiresIn), `"`))
	if secs <= 0 {
		secs = 3600
	}
	// No Entra ID token lives longer than a day; a larger value would
	// overflow a time.Duration into a token that has already expired.
	secs = min(secs, 24*3600)
	return tr.AccessToken, time.Duration(secs) * time.Second, nil
}

// tokenError turns an Entra ID error answer into an AuthError naming the
// setting to fix. cert is the certificate the request was signed with, nil
// with a client secret. The error_description is not kept: it is long and
// the codes say the same.
func tokenError(status int, tr *tokenResponse, cert *ClientCertificate) error {
	code := tr.Error
	aad := 0
	if len(tr.ErrorCodes) > 0 {
		aad = tr.ErrorCodes[0]
		code += " AADSTS" + strconv.Itoa(aad)
	}
	if status == http.StatusTooManyRequests || status >= 500 || tr.Error == "temporarily_unavailable" {
		// The identity platform cannot answer now (an outage, throttling):
		// not the configuration's fault, and the caller asks again.
		if code == "" {
			code = "no_error_code"
		}
		return &AuthError{Status: status, Code: strings.TrimSpace(code), AADSTS: aad, Hint: "Entra ID cannot issue a token now (an outage or throttling on its side): nothing to change here; it is asked again"}
	}
	credential := "DATAVERSE_CLIENT_SECRET"
	if cert != nil {
		credential = "DATAVERSE_CLIENT_CERTIFICATE"
	}
	var hint string
	switch aad {
	case 90002, 90023, 900023:
		hint = "the tenant was not found: check DATAVERSE_TENANT_ID (the directory (tenant) id of the app registration)"
	case 700016:
		hint = "the application was not found in the tenant: check DATAVERSE_CLIENT_ID (the app registration's application (client) id) and DATAVERSE_TENANT_ID"
	case 7000215:
		hint = "invalid client secret: check DATAVERSE_CLIENT_SECRET (use the secret's Value, not its Secret ID)"
	case 7000222:
		hint = "the client secret has expired: create a new secret on the app registration and set DATAVERSE_CLIENT_SECRET"
	case 500011, 70011, 500014:
		hint = "Entra ID does not know the scope <DATAVERSE_URL>/.default: check DATAVERSE_URL is your environment's URL (e.g. https://contoso.crm.dynamics.com)"
	case 700027:
		if cert == nil {
			hint = "the client assertion's signature was rejected: check the app registration's certificates"
			break
		}
		// The certificate is not registered on the app (the commonest:
		// never uploaded, or uploaded to another registration), or the
		// registered one has expired.
		hint = fmt.Sprintf("Entra ID does not accept the certificate of DATAVERSE_CLIENT_CERTIFICATE (thumbprint %s, valid until %s): upload it (the certificate alone, without its key) to the app registration under Certificates & secrets > Certificates, or renew it there if it has expired",
			cert.Thumbprint(), cert.Cert.NotAfter.UTC().Format(time.DateOnly))
	case 700024:
		hint = "the client assertion is outside its valid time (it is valid for 10 minutes from this host's clock): set this host's clock right (NTP: chrony, systemd-timesyncd)"
	case 700021:
		hint = "the client assertion names another application than client_id: check DATAVERSE_CLIENT_ID (the app registration's application (client) id)"
	case 700023:
		hint = "the client assertion's audience is not this tenant's token endpoint: check DATAVERSE_TENANT_ID, and leave DATAVERSE_TOKEN_URL unset for Entra ID"
	case 50027:
		hint = "Entra ID could not read the client assertion: check DATAVERSE_CLIENT_CERTIFICATE holds the certificate uploaded to the app registration and its RSA key"
	default:
		switch tr.Error {
		case "invalid_client":
			hint = "the client credentials were rejected: check DATAVERSE_CLIENT_ID and " + credential
		case "unauthorized_client":
			hint = "the application is not allowed to use client credentials: check DATAVERSE_CLIENT_ID and DATAVERSE_TENANT_ID"
		case "invalid_scope":
			hint = "invalid scope: check DATAVERSE_URL"
		case "":
			hint = "unexpected answer from the token endpoint: check DATAVERSE_TOKEN_URL (leave it unset for Entra ID)"
			code = "no_error_code"
		default:
			hint = "the token request was refused: check DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_ID and " + credential
		}
	}
	return &AuthError{Status: status, Code: strings.TrimSpace(code), AADSTS: aad, Hint: hint}
}

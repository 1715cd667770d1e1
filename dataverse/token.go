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
)

// tokenSource holds the Entra ID access token for the Dataverse scope. One
// request at a time refreshes it; callers wait on the mutex rather than
// sending a second request.
type tokenSource struct {
	c *Client

	mu        sync.Mutex
	token     string
	expires   time.Time // the token's expiry
	refreshAt time.Time // when to replace it: 80% of its lifetime
	lastErr   error
	failUntil time.Time // after a failure, answer lastErr without asking again until then
}

// get returns a usable token, refreshing it when it is due.
func (ts *tokenSource) get(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.c.cfg.Now()
	if ts.token != "" && now.Before(ts.refreshAt) {
		return ts.token, nil
	}
	if ts.token == "" && ts.lastErr != nil && now.Before(ts.failUntil) {
		return "", ts.lastErr
	}
	if err := ts.fetchLocked(ctx); err != nil {
		if ts.token != "" && now.Before(ts.expires.Add(-30*time.Second)) {
			return ts.token, nil // the old one is still good; Run retries
		}
		return "", err
	}
	return ts.token, nil
}

// invalidate drops tok after Dataverse refused it, so the next get fetches
// a new one.
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	if ts.token == tok {
		ts.token, ts.refreshAt = "", time.Time{}
	}
	ts.mu.Unlock()
}

// refresh fetches a new token now if the current one is due within ahead.
func (ts *tokenSource) refresh(ctx context.Context, ahead time.Duration) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token != "" && ts.c.cfg.Now().Add(ahead).Before(ts.refreshAt) {
		return nil
	}
	return ts.fetchLocked(ctx)
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

type tokenResponse struct {
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"` // a number, or a string in some Entra answers
	AccessToken string          `json:"access_token"`

	Error      string `json:"error"`
	ErrorCodes []int  `json:"error_codes"`
}

func (ts *tokenSource) fetchLocked(ctx context.Context) error {
	c := ts.c
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	form := url.Values{
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"scope":         {c.cfg.URL + "/.default"},
		"grant_type":    {"client_credentials"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.metrics.request("token", "error", time.Since(start))
		return ts.fail(fmt.Errorf("token request: %w (check DATAVERSE_TOKEN_URL / DATAVERSE_TENANT_ID and network access to the Entra ID endpoint)", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	c.metrics.request("token", strconv.Itoa(resp.StatusCode), time.Since(start))
	if err != nil {
		return ts.fail(fmt.Errorf("token response: %w", err))
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || jerr != nil || tr.AccessToken == "" {
		return ts.fail(tokenError(resp.StatusCode, &tr))
	}
	secs, _ := strconv.Atoi(strings.Trim(string(tr.ExpiresIn), `"`))
	if secs <= 0 {
		secs = 3600
	}
	now := c.cfg.Now()
	life := time.Duration(secs) * time.Second
	ts.token = tr.AccessToken
	ts.expires = now.Add(life)
	ts.refreshAt = now.Add(life * 8 / 10)
	ts.lastErr = nil
	c.ready.Store(true)
	return nil
}

func (ts *tokenSource) fail(err error) error {
	ts.lastErr = err
	ts.failUntil = ts.c.cfg.Now().Add(5 * time.Second)
	return err
}

// tokenError turns an Entra ID error answer into an AuthError naming the
// setting to fix. The error_description is not kept: it is long and the
// codes say the same.
func tokenError(status int, tr *tokenResponse) error {
	code := tr.Error
	aad := 0
	if len(tr.ErrorCodes) > 0 {
		aad = tr.ErrorCodes[0]
		code += " AADSTS" + strconv.Itoa(aad)
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
	case 700024, 700027:
		hint = "the client assertion was rejected: check the app registration's credentials"
	default:
		switch tr.Error {
		case "invalid_client":
			hint = "the client credentials were rejected: check DATAVERSE_CLIENT_ID and DATAVERSE_CLIENT_SECRET"
		case "unauthorized_client":
			hint = "the application is not allowed to use client credentials: check DATAVERSE_CLIENT_ID and DATAVERSE_TENANT_ID"
		case "invalid_scope":
			hint = "invalid scope: check DATAVERSE_URL"
		case "":
			hint = "unexpected answer from the token endpoint: check DATAVERSE_TOKEN_URL (leave it unset for Entra ID)"
			code = "no_error_code"
		default:
			hint = "the token request was refused: check DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_ID and DATAVERSE_CLIENT_SECRET"
		}
	}
	return &AuthError{Status: status, Code: strings.TrimSpace(code), Hint: hint}
}

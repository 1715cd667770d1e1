package notificationstest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

type oauthError struct {
	Error            string `json:"error"`
	Description      string `json:"description"`
	ErrorDescription string `json:"error_description"`
}

func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	delay := e.loginDelay
	e.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form", "malformed form"})
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		id, secret, ok := r.BasicAuth()
		if !ok {
			writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", "client authentication required", "client authentication required"})
			return
		}
		want, known := e.clientSecret(id)
		if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", "client not found or bad secret", "client not found or bad secret"})
			return
		}
		t := e.mint(id, "", e.cfg.TokenLifetime)
		writeJSON(w, http.StatusOK, tokenResponse{AccessToken: t.value, TokenType: "bearer", ExpiresIn: seconds(e.cfg.TokenLifetime)})
	case "authorization_code":
		code := r.PostForm.Get("code")
		e.mu.Lock()
		c := e.codes[code]
		delete(e.codes, code)
		e.mu.Unlock()
		if c == nil || time.Now().After(c.expires) {
			writeJSON(w, http.StatusBadRequest, oauthError{"invalid_grant", "unknown or expired code", "unknown or expired code"})
			return
		}
		if r.PostForm.Get("redirect_uri") != c.redirectURI {
			writeJSON(w, http.StatusBadRequest, oauthError{"invalid_grant", "redirect_uri mismatch", "redirect_uri mismatch"})
			return
		}
		if c.challenge != "" {
			sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
			if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
				writeJSON(w, http.StatusBadRequest, oauthError{"invalid_grant", "code_verifier does not match", "code_verifier does not match"})
				return
			}
		}
		t := e.mint(c.clientID, c.userID, e.cfg.UserTokenLifetime)
		writeJSON(w, http.StatusOK, tokenResponse{AccessToken: t.value, TokenType: "bearer", ExpiresIn: seconds(e.cfg.UserTokenLifetime)})
	default:
		writeJSON(w, http.StatusBadRequest, oauthError{"unsupported_grant_type", "unsupported grant_type", "unsupported grant_type"})
	}
}

func (e *Emulator) redirectAllowed(u string) bool {
	if len(e.cfg.RedirectURIs) > 0 {
		for _, x := range e.cfg.RedirectURIs {
			if x == u {
				return true
			}
		}
		return false
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") {
		return false
	}
	h := p.Hostname()
	return h == "127.0.0.1" || h == "localhost" || h == "::1"
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Genesys Cloud (emulated) login</title></head>
<body><h1>Emulated Genesys Cloud login</h1><form method="post" action="/oauth/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<label>Agent <select name="user" id="user">{{range .Agents}}<option value="{{.ID}}">{{.Name}}</option>{{end}}</select></label>
<button type="submit" id="login">Log in</button></form></body></html>`))

// handleAuthorize serves GET /oauth/authorize (a tiny login page, or a
// direct redirect when user=<id> is given) and POST (the page's form).
// response_type=code (with PKCE code_challenge, S256) and token (implicit).
func (e *Emulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	q := r.Form
	if q.Get("client_id") != e.cfg.BrowserClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if !e.redirectAllowed(redirect) {
		http.Error(w, "redirect_uri not registered", http.StatusBadRequest)
		return
	}
	rt := q.Get("response_type")
	if rt != "code" && rt != "token" {
		http.Error(w, "unsupported response_type", http.StatusBadRequest)
		return
	}
	user := q.Get("user")
	if user == "" {
		params := map[string]string{}
		for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method"} {
			if v := q.Get(k); v != "" {
				params[k] = v
			}
		}
		e.mu.Lock()
		agents := make([]AgentSpec, 0, len(e.agents))
		for _, a := range e.agents {
			agents = append(agents, a)
		}
		e.mu.Unlock()
		sort.Slice(agents, func(i, j int) bool { return agents[i].ID < agents[j].ID })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = loginPage.Execute(w, map[string]any{"Params": params, "Agents": agents})
		return
	}
	target, _ := url.Parse(redirect)
	if rt == "code" {
		if q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256" {
			http.Error(w, "only S256 code_challenge_method is supported", http.StatusBadRequest)
			return
		}
		code := randToken()
		e.mu.Lock()
		e.codes[code] = &authCode{userID: user, redirectURI: redirect, challenge: q.Get("code_challenge"), clientID: e.cfg.BrowserClientID, expires: time.Now().Add(5 * time.Minute)}
		e.mu.Unlock()
		v := target.Query()
		v.Set("code", code)
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		target.RawQuery = v.Encode()
	} else {
		t := e.mint(e.cfg.BrowserClientID, user, e.cfg.UserTokenLifetime)
		f := url.Values{"access_token": {t.value}, "token_type": {"bearer"}, "expires_in": {strconv.Itoa(seconds(e.cfg.UserTokenLifetime))}}
		if s := q.Get("state"); s != "" {
			f.Set("state", s)
		}
		target.Fragment = ""
		target.RawFragment = ""
		http.Redirect(w, r, target.String()+"#"+f.Encode(), http.StatusFound)
		return
	}
	http.Redirect(w, r, target.String(), http.StatusFound)
}

type namedEntity struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	SelfURI string `json:"selfUri,omitempty"`
}

type tokenInfo struct {
	Organization     namedEntity `json:"organization"`
	HomeOrganization namedEntity `json:"homeOrganization"`
	AuthorizedScope  []string    `json:"authorizedScope"`
	OAuthClient      struct {
		ID                  string `json:"id"`
		Name                string `json:"name"`
		AuthorizedGrantType string `json:"authorizedGrantType"`
	} `json:"OAuthClient"`
}

func (e *Emulator) tokenInfo(t *token) tokenInfo {
	ti := tokenInfo{Organization: namedEntity{ID: e.cfg.OrgID, Name: "Emulated Org"}, HomeOrganization: namedEntity{ID: e.cfg.OrgID, Name: "Emulated Org"}}
	ti.OAuthClient.ID = t.clientID
	ti.OAuthClient.Name = t.clientID
	if t.userID == "" {
		ti.OAuthClient.AuthorizedGrantType = "CLIENT-CREDENTIALS"
		ti.AuthorizedScope = []string{}
	} else {
		ti.OAuthClient.AuthorizedGrantType = "CODE"
		ti.AuthorizedScope = []string{"user-basic-info"}
	}
	return ti
}

func (e *Emulator) handleUsersMe(w http.ResponseWriter, r *http.Request, t *token) {
	if t.userID == "" {
		writeError(w, http.StatusBadRequest, "bad.request", "This request requires a user context. Client credentials cannot be used for requests to this resource.", nil)
		return
	}
	e.mu.Lock()
	a, ok := e.agents[t.userID]
	e.mu.Unlock()
	if !ok {
		a = AgentSpec{ID: t.userID, Name: "Agent " + t.userID}
	}
	email := a.Email
	if email == "" {
		email = strings.ToLower(strings.ReplaceAll(a.Name, " ", ".")) + "@example.invalid"
	}
	me := map[string]any{
		"id": a.ID, "name": a.Name, "email": email, "username": email, "state": "active",
		"division":     namedEntity{ID: "division-home", Name: "Home", SelfURI: "/api/v2/authorization/divisions/division-home"},
		"organization": namedEntity{ID: e.cfg.OrgID, Name: "Emulated Org", SelfURI: "/api/v2/organizations/" + e.cfg.OrgID},
		"selfUri":      "/api/v2/users/" + a.ID,
	}
	for _, x := range strings.Split(r.URL.Query().Get("expand"), ",") {
		if x == "token" {
			me["token"] = e.tokenInfo(t)
		}
	}
	writeJSON(w, http.StatusOK, me)
}

func (e *Emulator) handleTokensMe(w http.ResponseWriter, r *http.Request, t *token) {
	writeJSON(w, http.StatusOK, e.tokenInfo(t))
}

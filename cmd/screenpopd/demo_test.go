package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDemo_TrafficPopsEveryKind: the demo's own traffic, faster, pops for
// every kind the README lists that pops by default (inbound and outbound
// calls, transfers, chats, messages, emails, callbacks), and every pop is
// the right one for its caller: a unique number or an email opens the
// record in the Dataverse emulator that holds it, a shared one offers a
// choice, an unknown one offers a create.
func TestDemo_TrafficPopsEveryKind(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	pops := make(chan bridge.Pop, 256)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	for _, a := range demoAgents {
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(a.ID))
		go func(ws *websocket.Conn) {
			for {
				var p bridge.Pop
				ws.SetReadDeadline(time.Time{})
				if err := ws.ReadJSON(&p); err != nil {
					return
				}
				if p.Target.Action == "" {
					continue // not a pop
				}
				select {
				case pops <- p:
				case <-stop:
					return
				}
			}
		}(ws)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Traffic.Run(ctx, 150*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	unique := set(d.Seed.Unique)
	shared := set(d.Seed.Shared)
	emails := set(d.Seed.Emails)
	tok := demoDataverseToken(t, d)
	want := []string{"voice/alerting", "voice/dialing", "chat/alerting", "message/alerting", "email/alerting", "callback/alerting"}
	seen := map[string]bool{}
	deadline := time.After(90 * time.Second)
	for len(seen) < len(want) {
		var p bridge.Pop
		select {
		case p = <-pops:
		case <-deadline:
			t.Fatalf("pops seen for %v, want all of %v", seen, want)
		}
		kind := string(p.Media) + "/" + string(p.State)
		caller := p.Customer.Phone
		if caller == "" {
			caller = p.Customer.Email
		}
		if caller == "" {
			t.Fatalf("%s pop names no caller (action %s): the demo's %s carries no phone or email", kind, p.Target.Action, p.Media)
		}
		switch {
		case emails[caller] || unique[caller]:
			if p.Target.Action != "open" {
				t.Fatalf("%s pop for %s (on one record): action %s, want open", kind, caller, p.Target.Action)
			}
			rec := demoRecord(t, d, tok, p.Target.Entity, p.Target.ID)
			if !recordHolds(rec, caller) {
				t.Fatalf("%s pop for %s opens %s %s, which holds %v", kind, caller, p.Target.Entity, p.Target.ID, rec)
			}
		case shared[caller]:
			if p.Target.Action != "choose" || len(p.Candidates) < 2 {
				t.Fatalf("%s pop for shared %s: action %s with %d candidates, want choose", kind, caller, p.Target.Action, len(p.Candidates))
			}
		default:
			if p.Target.Action != "create" {
				t.Fatalf("%s pop for unknown %s: action %s, want create", kind, caller, p.Target.Action)
			}
		}
		if slices.Contains(want, kind) {
			seen[kind] = true
		}
	}
}

func set(list []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range list {
		m[s] = true
	}
	return m
}

// demoDataverseToken gets a token from the demo's Dataverse emulator, as
// the daemon does.
func demoDataverseToken(t *testing.T, d *Demo) string {
	t.Helper()
	c := d.Dataverse.Config()
	resp, err := http.PostForm(d.Dataverse.TokenURL(), url.Values{"grant_type": {"client_credentials"},
		"client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "scope": {d.Dataverse.URL() + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("dataverse token: %v (HTTP %d)", err, resp.StatusCode)
	}
	return tok.AccessToken
}

// demoRecord reads one record from the demo's Dataverse emulator.
func demoRecord(t *testing.T, d *Demo, tok, entity, id string) map[string]any {
	t.Helper()
	sets := map[string]string{"contact": "contacts", "account": "accounts", "lead": "leads"}
	q := url.Values{"$filter": {entity + "id eq " + id}}
	req, _ := http.NewRequest(http.MethodGet, d.Dataverse.URL()+"/api/data/v9.2/"+sets[entity]+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Value []map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Value) != 1 {
		t.Fatalf("%s %s: %d records (%v, HTTP %d), want 1", entity, id, len(body.Value), err, resp.StatusCode)
	}
	return body.Value[0]
}

// recordHolds reports whether a record has the E.164 number (its digits,
// typed in any format, end with the national number) or the email.
func recordHolds(rec map[string]any, caller string) bool {
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
	}
	for k, v := range rec {
		s, ok := v.(string)
		if !ok || s == "" {
			continue
		}
		switch {
		case strings.Contains(k, "email") && strings.EqualFold(s, caller):
			return true
		case (strings.Contains(k, "phone") || strings.HasPrefix(k, "telephone")) && strings.HasPrefix(caller, "+"):
			// the last 7 digits: national numbers here are 7 to 10 digits
			c, r := digits(caller), strings.TrimLeft(digits(s), "0")
			if len(r) >= 7 && strings.HasSuffix(c, r[len(r)-7:]) {
				return true
			}
		}
	}
	return false
}

// TestDemo_EmulatorForgetsEndedConversations: a demo left running scripts
// a conversation every 4 s; its Genesys emulator must not keep every one
// (and every token and request) for as long as the process lives. A call
// that ended hours ago is gone once the next one is scripted; a live one
// stays.
func TestDemo_EmulatorForgetsEndedConversations(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	past := time.Now().Add(-3 * time.Hour)
	old := d.Genesys.InboundCall(agent, "+13125550100", notificationstest.Options{Now: func() time.Time { return past }})
	old.Alert()
	old.Connect()
	old.Disconnect()
	live := d.Genesys.InboundCall(agent, "+13125550101", notificationstest.Options{Now: func() time.Time { return past }})
	live.Alert()
	d.Genesys.InboundCall(agent, "+13125550102", notificationstest.Options{})
	if d.Genesys.Conversation(old.ID()) != nil {
		t.Errorf("conversation that ended 3h ago still held by the demo's emulator")
	}
	if d.Genesys.Conversation(live.ID()) == nil {
		t.Errorf("live conversation forgotten")
	}
}

package notificationstest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/tidwall/gjson"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustStart(t *testing.T, cfg notificationstest.Config) (*notificationstest.Emulator, string) {
	t.Helper()
	e := notificationstest.New(cfg)
	u, err := e.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, u
}

func do(t *testing.T, method, u, token, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestEmulator_OAuth(t *testing.T) {
	e, u := mustStart(t, notificationstest.Config{Agents: []notificationstest.AgentSpec{{ID: "u1", Name: "Alice Agent"}}})
	t.Run("ClientCredentials", func(t *testing.T) {
		form := url.Values{"grant_type": {"client_credentials"}}
		req, _ := http.NewRequest(http.MethodPost, u+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("screenpop-client", "bad")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || gjson.GetBytes(b, "error").Str != "invalid_client" {
			t.Fatalf("bad secret: %d %s", resp.StatusCode, b)
		}
		// The SDK itself logs in against the emulator.
		cfg := platformclientv2.NewConfigurationWithConfigFile("/nonexistent/screenpop.ini", false)
		cfg.BasePath = u
		if err := cfg.AuthorizeClientCredentials("screenpop-client", "screenpop-secret"); err != nil || cfg.AccessToken == "" || cfg.AccessTokenExpiresIn < 60 {
			t.Fatalf("SDK login: %v, expires_in %d", err, cfg.AccessTokenExpiresIn)
		}
		if code, b, _ := do(t, http.MethodGet, u+"/api/v2/users/me", cfg.AccessToken, ""); code != http.StatusBadRequest {
			t.Fatalf("users/me with a client token: %d %s", code, b)
		}
	})
	t.Run("PKCE", func(t *testing.T) {
		verifier := "a-verifier-of-enough-length-0123456789abcdefghijklmnop"
		sum := sha256.Sum256([]byte(verifier))
		challenge := base64.RawURLEncoding.EncodeToString(sum[:])
		redirect := "http://127.0.0.1:1/callback"
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		q := url.Values{"client_id": {"screenpop-browser"}, "redirect_uri": {redirect}, "response_type": {"code"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"xyz"}}
		resp, err := noFollow.Get(u + "/oauth/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(page), `name="user"`) || !strings.Contains(string(page), "Alice Agent") {
			t.Fatalf("login page: %s", page)
		}
		q.Set("user", "u1")
		resp, err = noFollow.PostForm(u+"/oauth/authorize", q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "xyz" || loc.Query().Get("code") == "" {
			t.Fatalf("redirect: %d %s", resp.StatusCode, loc)
		}
		tokenForm := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
			"client_id": {"screenpop-browser"}, "code_verifier": {"wrong"}}
		resp, _ = http.PostForm(u+"/oauth/token", tokenForm)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("wrong verifier: %d", resp.StatusCode)
		}
		// Codes are single use: get a new one and redeem it properly.
		resp, _ = noFollow.PostForm(u+"/oauth/authorize", q)
		resp.Body.Close()
		loc, _ = url.Parse(resp.Header.Get("Location"))
		tokenForm.Set("code", loc.Query().Get("code"))
		tokenForm.Set("code_verifier", verifier)
		resp, _ = http.PostForm(u+"/oauth/token", tokenForm)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tok := gjson.GetBytes(b, "access_token").Str
		if resp.StatusCode != http.StatusOK || tok == "" {
			t.Fatalf("token: %d %s", resp.StatusCode, b)
		}
		code, me, _ := do(t, http.MethodGet, u+"/api/v2/users/me?expand=token", tok, "")
		if code != 200 || gjson.GetBytes(me, "id").Str != "u1" || gjson.GetBytes(me, "token.organization.id").Str != "org-emulated" {
			t.Fatalf("users/me: %d %s", code, me)
		}
		if code, _, _ := do(t, http.MethodGet, u+"/api/v2/users/me", e.AgentToken("u2"), ""); code != 200 {
			t.Fatalf("AgentToken users/me: %d", code)
		}
	})
}

func TestEmulator_Subscriptions(t *testing.T) {
	e, u := mustStart(t, notificationstest.Config{MaxTopics: 3, MaxChannels: 2})
	tok := e.ClientToken()
	create := func() string {
		code, b, _ := do(t, http.MethodPost, u+"/api/v2/notifications/channels", tok, "")
		if code != 200 || !strings.HasPrefix(gjson.GetBytes(b, "connectUri").Str, "ws://") || gjson.GetBytes(b, "expires").Str == "" {
			t.Fatalf("create: %d %s", code, b)
		}
		return gjson.GetBytes(b, "id").Str
	}
	ch := create()
	subs := u + "/api/v2/notifications/channels/" + ch + "/subscriptions"
	e.RejectTopicsFor("bad", "")
	cases := []struct {
		name, method, query, body string
		status                    int
		code                      string
	}{
		{"Permitted", "PUT", "", `[{"id":"v2.users.a.conversations"},{"id":"v2.users.b.conversations"}]`, 200, ""},
		{"Forbidden", "PUT", "", `[{"id":"v2.users.a.conversations"},{"id":"v2.users.bad.conversations"}]`, 403, "notification.unauthorized.topic"},
		{"IgnoreErrors", "PUT", "?ignoreErrors=true", `[{"id":"v2.users.a.conversations"},{"id":"v2.users.bad.conversations"}]`, 200, ""},
		{"Invalid", "PUT", "", `[{"id":"v2.nonsense"}]`, 400, "notification.invalid.topic"},
		{"TooMany", "POST", "", `[{"id":"v2.users.c.conversations"},{"id":"v2.users.d.conversations"},{"id":"v2.users.e.conversations"}]`, 400, "notification.subscription.too.many.subscriptions"},
		{"Combined", "PUT", "", `[{"id":"v2.users.a?presence&conversations"}]`, 200, ""},
		{"Unknown channel", "PUT", "", `[]`, 404, "entity.not.found"},
		{"No token", "GET", "", ``, 401, "bad.credentials"},
	}
	for _, tc := range cases {
		target, token := subs, tok
		if tc.name == "Unknown channel" {
			target = u + "/api/v2/notifications/channels/streaming-0-nope/subscriptions"
		}
		if tc.name == "No token" {
			token = ""
		}
		code, b, _ := do(t, tc.method, target+tc.query, token, tc.body)
		if code != tc.status || (tc.code != "" && gjson.GetBytes(b, "code").Str != tc.code) {
			t.Errorf("%s: %d %s", tc.name, code, b)
		}
		if tc.name == "IgnoreErrors" {
			if gjson.GetBytes(b, `entities.#(id=="v2.users.bad.conversations").state`).Str != "Rejected" ||
				gjson.GetBytes(b, `entities.#(id=="v2.users.a.conversations").state`).Str != "Permitted" {
				t.Errorf("ignoreErrors entities: %s", b)
			}
		}
		if code >= 400 && tc.status >= 400 && gjson.GetBytes(b, "status").Int() != int64(code) {
			t.Errorf("%s: ErrorBody status field: %s", tc.name, b)
		}
	}
	code, b, _ := do(t, http.MethodGet, subs, tok, "")
	if code != 200 || gjson.GetBytes(b, "entities.#").Int() != 2 {
		t.Fatalf("combined topic expansion: %s", b)
	}
	// A third channel evicts the oldest.
	create()
	create()
	if code, _, _ := do(t, http.MethodHead, u+"/api/v2/notifications/channels/"+ch, tok, ""); code != 404 {
		t.Fatalf("evicted channel HEAD = %d, want 404", code)
	}
	e.FailNext(http.MethodPost, "/api/v2/notifications/channels", 429, 2*time.Second, 1)
	code, b, h := do(t, http.MethodPost, u+"/api/v2/notifications/channels", tok, "")
	if code != 429 || h.Get("Retry-After") != "2" || gjson.GetBytes(b, "code").Str != "too.many.requests.retry.after" {
		t.Fatalf("429: %d %s %v", code, b, h)
	}
}

func TestEmulator_Socket(t *testing.T) {
	e, u := mustStart(t, notificationstest.Config{HeartbeatInterval: 50 * time.Millisecond, SocketClosingGrace: 100 * time.Millisecond})
	tok := e.ClientToken()
	_, b, _ := do(t, http.MethodPost, u+"/api/v2/notifications/channels", tok, "")
	id, uri := gjson.GetBytes(b, "id").Str, gjson.GetBytes(b, "connectUri").Str
	do(t, http.MethodPut, u+"/api/v2/notifications/channels/"+id+"/subscriptions", tok, `[{"id":"v2.users.u1.conversations"}]`)
	if _, resp, err := websocket.DefaultDialer.Dial(strings.Replace(uri, id, "streaming-0-unknown", 1), nil); err == nil || resp.StatusCode != 404 {
		t.Fatalf("unknown channel dial: %v", err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func(want string) []byte {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if strings.Contains(string(m), want) {
				return m
			}
		}
	}
	read("WebSocket Heartbeat")
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"message":"ping"}`))
	read(`"pong"`)
	c := e.InboundCall("u1", "+13175550123", notificationstest.Options{QueueID: "Q1"}).Alert()
	m := read(c.ID())
	if gjson.GetBytes(m, "topicName").Str != "v2.users.u1.conversations" || gjson.GetBytes(m, "version").Str != "2" ||
		gjson.GetBytes(m, "metadata.CorrelationId").Str == "" || gjson.GetBytes(m, "eventBody.id").Str != c.ID() {
		t.Fatalf("envelope: %s", m)
	}
	// PublishTraced calls back as the socket's writer takes the frame, so
	// before the client can read it; once per write (one socket here).
	var traced atomic.Int32
	if n := e.PublishTraced("v2.users.u1.conversations", c.Snapshot(), func() { traced.Add(1) }); n != 1 {
		t.Fatalf("PublishTraced went to %d sockets, want 1", n)
	}
	read(c.ID())
	if n := traced.Load(); n != 1 {
		t.Fatalf("writing called %d times before the frame was read, want 1", n)
	}
	// Not subscribed: not delivered.
	if n := e.InboundCall("u2", "+13175550124", notificationstest.Options{}).Alert(); n == nil || e.IsDelivered("v2.users.u2.conversations") {
		t.Fatal("u2 delivered")
	}
	e.SocketClosing()
	read("v2.system.socket_closing")
	_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break // closed after the grace period
		}
	}
	// The channel survives: a new socket on it still gets its topics.
	ws2, _, err := websocket.DefaultDialer.Dial(uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	_ = ws2.SetReadDeadline(time.Now().Add(3 * time.Second))
	// The handshake completes before the emulator registers the socket on
	// its channel; its first heartbeat says it has, so the event that
	// follows has a socket to go to.
	for {
		_, m, err := ws2.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the new socket's heartbeat: %v", err)
		}
		if strings.Contains(string(m), "WebSocket Heartbeat") {
			break
		}
	}
	c.Connect()
	for {
		_, m, err := ws2.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m), c.ID()) {
			break
		}
	}
}

// TestSnapshots checks the SDK-built payloads: the wire shape the service
// sends (millisecond times, lowercase media arrays) and that the SDK's own
// decoder reads them back.
func TestSnapshots(t *testing.T) {
	now := time.Date(2025, 3, 4, 15, 0, 1, 120_000_000, time.UTC)
	n := 0
	o := notificationstest.Options{ConversationID: "CONV1", QueueID: "Q-SALES", DNIS: "+18005551000",
		Now: func() time.Time { return now }, IDs: func() string { n++; return fmt.Sprintf("ID%d", n) },
		Attributes: map[string]string{"context.email": "jane@example.com"}}
	for name, c := range map[string]*notificationstest.Conversation{
		"inbound":  notificationstest.NewInboundCall("AAAA", "+16175550123", o).Alert(),
		"outbound": notificationstest.NewOutboundCall("AAAA", "+16175550123", o).Alert(),
		"internal": notificationstest.NewInternalCall("BBBB", "AAAA", o).Alert(),
		"callback": notificationstest.NewCallback("AAAA", "+16175550123", o).Alert(),
		"chat":     notificationstest.NewChat("AAAA", o).Alert(),
		"message":  notificationstest.NewMessage("AAAA", "Jane", o).Alert(),
		"email":    notificationstest.NewEmail("AAAA", "jane@example.com", o).Alert(),
		"transfer": notificationstest.NewInboundCall("AAAA", "+16175550123", o).Alert().Connect().BlindTransfer("BBBB"),
		"consult":  notificationstest.NewInboundCall("AAAA", "+16175550123", o).Alert().Connect().ConsultTransfer("BBBB"),
	} {
		b := c.Snapshot()
		if !json.Valid(b) {
			t.Fatalf("%s: invalid JSON", name)
		}
		if strings.Contains(string(b), "120000Z") || (name == "inbound" && !strings.Contains(string(b), `"2025-03-04T15:00:01.120Z"`)) {
			t.Errorf("%s: times not in the service's millisecond form: %s", name, b)
		}
		var sdk platformclientv2.Conversationeventtopicconversation
		if err := json.Unmarshal(b, &sdk); err != nil || sdk.Participants == nil {
			t.Fatalf("%s: the SDK cannot read it back: %v", name, err)
		}
		agentState := ""
		for _, p := range *sdk.Participants {
			if p.UserId == nil || *p.UserId != "AAAA" {
				continue
			}
			switch {
			case p.Calls != nil:
				agentState = *(*p.Calls)[0].State
			case p.Callbacks != nil:
				agentState = *(*p.Callbacks)[0].State
			case p.Chats != nil:
				agentState = *(*p.Chats)[0].State
			case p.Messages != nil:
				agentState = *(*p.Messages)[0].State
			case p.Emails != nil:
				agentState = *(*p.Emails)[0].State
			}
			if p.ConnectedTime != nil && p.ConnectedTime.IsZero() {
				t.Errorf("%s: SDK decoded a zero connectedTime", name)
			}
		}
		want := map[string]string{"outbound": "dialing", "transfer": "disconnected", "consult": "connected"}[name]
		if want == "" {
			want = "alerting"
		}
		if agentState != want {
			t.Errorf("%s: agent state %q, want %q: %s", name, agentState, want, b)
		}
		if name == "transfer" && gjson.GetBytes(b, `participants.#(userId=="BBBB").calls.0.state`).Str != "alerting" {
			t.Errorf("transfer: B not alerting: %s", b)
		}
		if name == "consult" && gjson.GetBytes(b, `participants.#(userId=="BBBB").consultParticipantId`).Str == "" {
			t.Errorf("consult: no consultParticipantId: %s", b)
		}
	}
}

// TestEmulator_QueueMembersPaging pages queue members as the API does: at
// most 100 a page (swagger: "Max value is 100"; more is a 400), a nextUri
// while more follow.
func TestEmulator_QueueMembersPaging(t *testing.T) {
	members := make([]string, 150)
	for i := range members {
		members[i] = fmt.Sprintf("u%03d", i)
	}
	e, u := mustStart(t, notificationstest.Config{Queues: map[string][]string{"q1": members}})
	tok := e.ClientToken()
	if st, b, _ := do(t, http.MethodGet, u+"/api/v2/routing/queues/q1/members?pageSize=101", tok, ""); st != http.StatusBadRequest || gjson.GetBytes(b, "code").Str != "bad.request" {
		t.Errorf("pageSize 101: %d %.80s, want 400 bad.request", st, b)
	}
	st, b, _ := do(t, http.MethodGet, u+"/api/v2/routing/queues/q1/members?pageSize=100&pageNumber=2", tok, "")
	if st != http.StatusOK || len(gjson.GetBytes(b, "entities").Array()) != 50 || gjson.GetBytes(b, "nextUri").Exists() {
		t.Errorf("page 2: %d %.80s, want the last 50 members and no nextUri", st, b)
	}
}

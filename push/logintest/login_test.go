// Package logintest runs the genesys-mode browser login (authorization code
// + PKCE in a popup) against the Genesys Cloud emulator. It is a package of
// its own so that push's own tests do not link the emulator (and through it
// the Genesys SDK).
package logintest

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/chromiumtest"
	"github.com/screenpop/screenpop/internal/testenv"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBrowser_GenesysLogin(t *testing.T) {
	page := chromiumtest.Start(t)
	emu := notificationstest.New(notificationstest.Config{Agents: []notificationstest.AgentSpec{{ID: "agent-pkce", Name: "Pat Kce"}}})
	t.Cleanup(emu.Close)
	gen := httptest.NewServer(emu.Handler())
	t.Cleanup(gen.Close)

	log := zerolog.Nop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Listen: "off", DataDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	auth, err := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: gen.URL}, log)
	if err != nil {
		t.Fatal(err)
	}
	// Demo mode, as `screenpopd demo` runs it: only there does the page's
	// link prefill the login.
	srv, err := push.New(push.Config{Auth: push.AuthGenesys, DemoAgents: func() any { return []any{} }}, b, auth, log)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + testenv.Serve(t, srv.Run)

	do := func(c context.Context, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(c, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond))
	}

	do(page, chromedp.Navigate(base+"/web/demo.html#login="+gen.URL+"&clientId=screenpop-browser"),
		chromedp.WaitVisible(chromedp.CSS(`#login`)), poll(`document.getElementById('loginURL').value !== ''`))
	popups := chromedp.WaitNewTarget(page, func(i *target.Info) bool { return i.Type == "page" })
	// A real click: the popup must get past Chromium's popup blocker.
	do(page, chromedp.Click(chromedp.CSS(`#login`)))
	var id target.ID
	select {
	case id = <-popups:
	case <-time.After(10 * time.Second):
		t.Fatal("no login popup opened (blocked?)")
	}
	popup, cancelP := chromedp.NewContext(page, chromedp.WithTargetID(id))
	defer cancelP()
	if err := chromedp.Do(popup); err != nil {
		t.Fatal(err)
	}
	// The emulator's login page: pick the agent and log in.
	do(popup, chromedp.WaitVisible(chromedp.CSS(`#user`)))
	loc, err := chromedp.Run(popup, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" ||
		q.Get("redirect_uri") != base+"/web/oauth-callback.html" {
		t.Fatalf("authorize URL %s lacks PKCE or the redirect URI", loc)
	}
	if err := chromedp.Do(popup, chromedp.Click(chromedp.CSS(`#login`))); err != nil && !errors.Is(err, context.Canceled) {
		// The popup may close itself while the click returns.
		t.Logf("click in popup: %v", err)
	}
	do(page, poll(`document.getElementById('status').dataset.state === 'ready'`))
	agent, err := chromedp.Run(page, chromedp.Evaluate[string](`document.getElementById('agent').textContent`))
	if err != nil || !strings.Contains(agent, "agent-pkce") {
		t.Fatalf("agent shown %q (%v)", agent, err)
	}
	// And pops arrive for the logged-in agent.
	p := &bridge.Pop{ID: "pop:c-pkce:p1", ConversationID: "c-pkce", AgentID: "agent-pkce", Media: bridge.MediaVoice, State: bridge.StateAlerting,
		Target: bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "c0ffee00-0000-4000-8000-000000000001"}, IssuedAt: bridge.NewTime(time.Now())}
	m, _ := bridge.EncodePop(p, time.Now())
	if err := b.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	do(page, poll(`!!document.querySelector('#pops li[data-id="pop:c-pkce:p1"]')`))
	if st := srv.Status().(push.Status); st.Connections != 1 || st.Agents != 1 {
		t.Fatalf("status %+v", st)
	}
}

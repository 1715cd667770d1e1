package push

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The demo page is served by every daemon, not only by `screenpopd demo`.
// A link to the real screenpop host that names a login URL of its own
// (demo.html#login=https://evil…&clientId=<the browser client>) must not
// prefill the Genesys login there: the agent's click would send the
// authorization code, with the PKCE verifier that makes it usable, to the
// /oauth/token of the host in the link, which trades them at Genesys for
// the agent's access token, and with it the agent's pops (customer names,
// numbers, record ids). The evil server stands for the attacker: its
// authorize endpoint bounces to the callback as Genesys would after the
// agent's (often single sign-on, so silent) login.
func TestBrowser_DemoPageLoginIgnoresALoginURLInItsLink(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil) // a production daemon: no demo agents
	stolen := make(chan url.Values, 1)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/oauth/authorize":
			q := r.URL.Query()
			back := q.Get("redirect_uri") + "?" + url.Values{"code": {"CODE-OF-THE-AGENT"}, "state": {q.Get("state")}}.Encode()
			http.Redirect(w, r, back, http.StatusFound)
		case "/oauth/token":
			_ = r.ParseForm()
			select {
			case stolen <- r.PostForm:
			default:
			}
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"x","expires_in":60}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer evil.Close()

	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#login="+url.QueryEscape(evil.URL)+"&clientId=screenpop-browser"),
		chromedp.WaitVisible(chromedp.CSS(`#login`)),
		// The page has asked whether it runs in demo mode.
		poll(`performance.getEntriesByType('resource').some(function (r) { return r.name.indexOf('/demo/agents') >= 0; })`))
	popups := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return i.Type == "page" })
	run(t, ctx, chromedp.Click(chromedp.CSS(`#login`)))
	select {
	case <-popups:
	case <-time.After(10 * time.Second):
		t.Fatal("no login popup opened")
	}
	select {
	case f := <-stolen:
		t.Fatalf("the demo page posted the agent's authorization code %q and PKCE verifier %q to the token endpoint named in its link (%s)",
			f.Get("code"), f.Get("code_verifier"), evil.URL)
	case <-time.After(5 * time.Second):
	}
}

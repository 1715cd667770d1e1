package push

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// A sign-in that did not complete (the agent closed the login window, or
// a popup blocker stopped it) shows "sign-in did not complete"; once the
// agent signs in again and the page is connected, that notification must
// go, as the "Sign in" one does: left up, it tells a connected agent the
// sign-in failed.
func TestBrowser_SignInFailedNoteGoesAfterTheSignIn(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`ScreenPop.Dynamics.start({url: %q, lockMs: 1500, onState: onState, loginURL: 'https://login.example.test', clientId: 'browser-client'})`, e.wsURL)),
		poll(`document.getElementById('state').textContent === 'auth' && window.__notes.length === 1 && window.__notes[0].action === 'Sign in'`),
		// The first try: the login window closed before the sign-in.
		js(`ScreenPop.login = function () { return Promise.reject(new Error('login window closed')); }; ScreenPop.Dynamics.current.login()`),
		poll(`window.__notes.length === 2`))
	if m := eval[string](t, ctx, `window.__notes[1].message`); m != "Screen pop: Genesys Cloud sign-in did not complete." {
		t.Fatalf("failed sign-in shown as %q", m)
	}
	run(t, ctx, js(fmt.Sprintf(`window.__signIn(%q)`, e.token("agent-signin2"))),
		poll(`document.getElementById('state').textContent === 'ready'`), sleepJS(300))
	cleared := eval[[]string](t, ctx, `window.__cleared || []`)
	for _, id := range []string{"note-1", "note-2"} {
		found := false
		for _, c := range cleared {
			found = found || c == id
		}
		if !found {
			t.Errorf("signed in and connected, %s (%s) is still up (cleared: %v)", id, eval[string](t, ctx, fmt.Sprintf(`JSON.stringify(window.__notes[%d])`, id[len(id)-1]-'1')), cleared)
		}
	}
}

// jwt mode (a token function of the integrator's, no Genesys sign-in): a
// refused token shows "the screen-pop token was refused. Reload the page
// to sign in again". When a newer page of the tab (every record opened is
// one) takes the connection over and connects with a renewed token, that
// notification must go, as the "Sign in" one does: left up, it tells a
// connected agent to reload because they get no pops.
func TestBrowser_UCIRefusedTokenNoteGoesWhenANewerPageConnects(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html"),
		js(fmt.Sprintf(`window.__tok = 'not-a-valid-token';
			window.__onLoadParam = {url: %q, lockMs: 1500, token: function () { return window.__tok; }};
			loadPage('contact', '00000000-0000-4000-8000-000000000001')`, e.wsURL)),
		poll(`window.__frames === 1 && window.__clients()[0] === 'auth' && window.__notes.length === 1`))
	if m := eval[string](t, ctx, `window.__notes[0].message`); m != "Screen pop: the screen-pop token was refused. Reload the page to sign in again." {
		t.Fatalf("refused token shown as %q", m)
	}
	// The integrator's SSO renews the token; the agent opens a record.
	run(t, ctx, js(fmt.Sprintf(`window.__tok = %q; loadPage('account', 'nav')`, e.token("agent-jwtnote"))),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`), sleepJS(300))
	if cleared := eval[[]string](t, ctx, `window.__cleared || []`); len(cleared) != 1 || cleared[0] != "note-1" {
		t.Fatalf("a newer page is connected, yet %q is still up (cleared: %v; notes %s)",
			eval[string](t, ctx, `window.__notes[0].message`), cleared, eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
}

// The app answers addGlobalNotification asynchronously (the notification's
// id comes once it is shown). A newer page of the tab that takes the
// connection over while the refused-token notification is on its way
// must still take it down once it is shown: left up, it tells an agent
// whose newer page is connected (a renewed token) to reload.
func TestBrowser_UCIRefusedTokenNoteShownLateStillGoes(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html"),
		js(fmt.Sprintf(`var add = Xrm.App.addGlobalNotification;
			Xrm.App.addGlobalNotification = function (n) {
				var p = add(n);
				return new Promise(function (resolve) { setTimeout(function () { resolve(p); }, 1000); });
			};
			window.__tok = 'not-a-valid-token';
			window.__onLoadParam = {url: %q, lockMs: 1500, token: function () { return window.__tok; }};
			loadPage('contact', '00000000-0000-4000-8000-000000000001')`, e.wsURL)),
		poll(`window.__frames === 1 && window.__clients()[0] === 'auth' && window.__notes.length === 1`),
		// The token is renewed and the agent opens a record before the
		// app has answered with the notification's id.
		js(fmt.Sprintf(`window.__tok = %q; loadPage('account', 'nav')`, e.token("agent-jwtlate"))),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`), sleepJS(2000))
	if n := eval[int](t, ctx, `window.__notes.length`); n != 1 {
		t.Fatalf("%d notifications shown, want the one refused-token notice: %s", n, eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
	if cleared := eval[[]string](t, ctx, `window.__cleared || []`); len(cleared) != 1 || cleared[0] != "note-1" {
		t.Fatalf("a newer page is connected, yet %q is still up (cleared: %v)", eval[string](t, ctx, `window.__notes[0].message`), cleared)
	}
}

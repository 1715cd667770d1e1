package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// uciPop publishes a pop for agent that opens a record of its own (its id
// ends in n), and returns that record id.
func uciPop(e *env, agent string, n int) string {
	p := testPop(bridge.AgentID(agent), fmt.Sprintf("conv-%s-%d", agent, n))
	p.Target.ID = fmt.Sprintf("eeeeeeee-0000-4000-8000-%012d", n)
	e.publishPop(p)
	return p.Target.ID
}

// openedOnce waits until every record in ids has been opened in the tabs of
// ctxs, and the tabs have settled (one connection per tab, every page's
// pops done), then fails unless each was opened exactly once.
func openedOnce(t *testing.T, e *env, ids []string, ctxs ...context.Context) {
	t.Helper()
	count := `(function () { var n = {}; window.__calls.forEach(function (c) { n[c.options.entityId] = (n[c.options.entityId] || 0) + 1; }); return n; })()`
	settled := `Array.prototype.every.call(document.querySelectorAll('iframe'), function (f) {
		var ns = f.contentWindow && f.contentWindow.ScreenPop, d = ns && ns.Dynamics && ns.Dynamics.current;
		return !d || d.handled.every(function (h) { return h.done; });
	})`
	got := map[string]int{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		clear(got)
		done := e.srv.Status().(Status).Connections == len(ctxs)
		for _, ctx := range ctxs {
			for k, v := range eval[map[string]int](t, ctx, count) {
				got[k] += v
			}
			done = done && eval[bool](t, ctx, settled)
		}
		all := true
		for _, id := range ids {
			all = all && got[id] > 0
		}
		if (all && done) || time.Now().After(deadline) {
			break
		}
		run(t, ctxs[0], poll(`new Promise(function (r) { setTimeout(function () { r(true); }, 50); })`))
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("record %s opened %d times, want once (all: %v; %d connections)", id, got[id], got, e.srv.Status().(Status).Connections)
		}
	}
}

// While a new page takes the tab's connection over (the old page's client
// closed, the new one not ready yet) pops keep coming: each must open once,
// neither lost between the two clients nor opened by both. Here every pop
// opens its record (a new page) and the agent also clicks through five
// records in a second.
func TestBrowser_UCIHandoverOpensEachPopOnce(t *testing.T) {
	for _, mode := range []struct{ name, query string }{{"PagesKept", ""}, {"PagesDropped", "?drop"}} {
		t.Run(mode.name, func(t *testing.T) {
			e, pages := pageEnv(t)
			ctx := uciApp(t, e, pages, mode.query, "agent-ho")
			var ids []string
			// Five pages in one second, a pop published as each loads.
			run(t, ctx, js(`for (var k = 0; k < 5; k++) { setTimeout(function () { loadPage('account', 'nav'); }, k * 200); }`))
			for k := range 5 {
				run(t, ctx, poll(fmt.Sprintf(`window.__frames >= %d`, k+2)))
				ids = append(ids, uciPop(e, "agent-ho", k))
			}
			// A pop right after a page starts loading, and one right before.
			run(t, ctx, js(`loadPage('account', 'nav')`))
			ids = append(ids, uciPop(e, "agent-ho", 10))
			ids = append(ids, uciPop(e, "agent-ho", 11))
			run(t, ctx, js(`loadPage('account', 'nav')`))
			openedOnce(t, e, ids, ctx)
		})
	}
}

// Two browser tabs of one agent, each with several pages: one connection
// per tab, and each pop opened in one tab only, once.
func TestBrowser_UCITwoTabsSeveralPages(t *testing.T) {
	e, pages := pageEnv(t)
	ctx1 := uciApp(t, e, pages, "", "agent-ho2")
	ctx2, cancel := chromedp.NewContext(ctx1)
	defer cancel()
	if err := chromedp.Do(ctx2); err != nil {
		t.Fatal(err)
	}
	run(t, ctx2, chromedp.Navigate(pages.URL+"/uci.html?drop"),
		js(fmt.Sprintf(`window.__open(%q, %q)`, e.wsURL, e.token("agent-ho2"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	var ids []string
	for k := range 4 {
		for _, ctx := range []context.Context{ctx1, ctx2} {
			run(t, ctx, js(`loadPage('account', 'nav')`))
		}
		ids = append(ids, uciPop(e, "agent-ho2", k))
	}
	openedOnce(t, e, ids, ctx1, ctx2)
}

// An agent not signed in to Genesys gets a "Sign in" notification from the
// page; every record opened is a new page, which asks again. A "Sign in"
// still shown must work when clicked: one left by a page that is gone ran
// in its detached frame, where no login window can open, and the agent
// read "sign-in did not complete".
func TestBrowser_UCISignInFromAnEarlierPage(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html?drop"),
		js(fmt.Sprintf(`window.__open(%q, ''); window.__onLoadParam = window.__onLoadParam.replace('https://login.example.test', location.origin)`, e.wsURL)),
		poll(`window.__clients()[0] === 'auth' && document.querySelectorAll('button[id^="note-"]').length === 1`),
		js(`loadPage('account', 'nav')`),
		poll(`window.__frames === 2 && window.__clients()[0] === 'auth' && window.__notes.filter(function (n) { return n.action === 'Sign in'; }).length === 2`))
	for _, id := range eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll('button[id^="note-"]'), function (b) { return b.id; })`) {
		popups := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return i.Type == "page" })
		run(t, ctx, chromedp.Click(chromedp.ID(id)))
		select {
		case <-popups:
		case <-time.After(5 * time.Second):
			t.Fatalf("the %q notification still shown opened no sign-in window; notes: %s", id, eval[string](t, ctx, `JSON.stringify(window.__notes)`))
		}
	}
}

package push

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// A choose pop's access check is still waiting (Xrm.WebApi slow) when the
// agent opens another record: the new page takes the tab's connection, and
// the next caller's pop opens that caller's record. The first page's
// check, once done, must not draw the earlier caller's list over the next
// caller's record (a click there opens the wrong customer).
func TestBrowser_UCIAccessCheckDoesNotOutliveItsPage(t *testing.T) {
	e, pages := pageEnv(t)
	const agent = "agent-bu-race"
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html"),
		js(fmt.Sprintf(`window.__open(%q, %q, {accessWaitMs: 4000})`, e.wsURL, e.token(bridge.AgentID(agent)))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`),
		js(`window.__webApiHang = true`))

	first := testPop(agent, "conv-bu-race-1")
	first.Target = bridge.Target{Action: bridge.ActionChoose}
	first.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000021", Name: "Ann Earlier"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000022", Name: "Bob Earlier"},
	}
	e.publishPop(first)
	run(t, ctx, poll(`window.__retrieves.length === 2`))

	// The agent opens another record: a new page takes the connection.
	run(t, ctx, js(`loadPage('account', 'nav')`),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`))
	next := testPop(agent, "conv-bu-race-2")
	e.publishPop(next)
	run(t, ctx, poll(`window.__calls.length === 1`))

	time.Sleep(4500 * time.Millisecond) // past the first page's accessWaitMs
	if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
		t.Fatalf("the earlier caller's list is drawn over the next caller's record: %q",
			eval[string](t, ctx, `document.querySelector('.screenpop-chooser').textContent`))
	}
}

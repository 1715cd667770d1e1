package push

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// A chooser whose access check gave up (Xrm.WebApi slow while the call's
// record loads: after accessWaitMs every candidate is kept) is on screen;
// the agent leaves it and opens another record, and Unified Interface drops
// the page that drew it. The next page shows the list again (resumeChoice):
// it must show the list the agent saw, not check again and, finding one
// readable record this time, open the chat customer's record by itself
// over the page the agent just opened.
func TestBrowser_ResumedChoiceOpensNothingByItself(t *testing.T) {
	const agent = "agent-resume-open"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?drop", agent)
	run(t, ctx, js(`window.__webApiHang = true`))
	chat := chatChoosePop(agent, 7)
	e.publishPop(chat)
	// The check gives up after 1.5 s and the list shows both records.
	run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('.screenpop-chooser button[data-id="%s"]')`, chat.Candidates[0].ID)))
	waitFor(t, 10*time.Second, "the chat's pop acked", func() bool { return e.srv.nAcked.Load() == 1 })
	// Dataverse answers again; the agent may not read the second record.
	run(t, ctx, js(fmt.Sprintf(`window.__webApiHang = false; window.__denied[%q] = 2147746336`, chat.Candidates[1].ID)))
	// The agent opens an account from the sitemap: a new page.
	run(t, ctx, js(`window.Xrm.Navigation.openForm({ entityName: 'account', entityId: '00000000-0000-4000-8000-0000000000ab' })`),
		poll(`window.__frames === 2 && window.__clients()[0] === 'ready'`), sleepJS(800))
	calls := eval[string](t, ctx, `JSON.stringify(window.__calls.map(function (c) { return c.options.entityName + ' ' + (c.options.entityId || ''); }))`)
	if strings.Contains(calls, chat.Candidates[0].ID) {
		t.Fatalf("the agent opened an account and the page then opened the chat customer's record by itself: openForm calls %s", calls)
	}
}

// The page that drew a chooser is dropped by Unified Interface only after
// the next page has taken the tab's connection (the order in which the app
// ends a page and loads the next is its own): the list must still be there
// for the agent, as it is when the page goes first (docs/agents.md: "the
// next page shows it again").
func TestBrowser_ChooserKeptWhenItsPageGoesAfterTheNext(t *testing.T) {
	const agent = "agent-resume-late"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent) // pages kept: the test drops the first itself
	ids := popChoose(t, e, ctx, agent, "conv-resume-late")
	waitFor(t, 10*time.Second, "the pop acked", func() bool { return e.srv.nAcked.Load() == 1 })
	// A record opens (another interaction's pop, or the agent): page 2
	// loads and takes the connection; then the app drops page 1.
	run(t, ctx, js(`window.Xrm.Navigation.openForm({ entityName: 'account', entityId: '00000000-0000-4000-8000-0000000000ac' })`),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`), sleepJS(300),
		js(`document.getElementById('ClientApiFrame_1').remove()`), sleepJS(800))
	if !eval[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('.screenpop-chooser button[data-id="%s"]')`, ids[1])) {
		t.Fatalf("the list went with the page that drew it and the page holding the connection did not show it again: the agent cannot pick the record (acked, never shown again)")
	}
}

// A search notification tells the agent the caller's number; the agent
// searches and opens a record (a new page, which takes the connection).
// The next pop must take the earlier caller's notification down
// (docs/agents.md: "The next pop takes it down"), whichever page showed it.
func TestBrowser_SearchNoteClearedByNextPopOnAnotherPage(t *testing.T) {
	for _, mode := range []struct{ name, query string }{{"PagesKept", ""}, {"PagesDropped", "?drop"}} {
		t.Run(mode.name, func(t *testing.T) {
			agent := "agent-notes-" + strings.ToLower(mode.name)
			e, pages := pageEnv(t)
			ctx := uciApp(t, e, pages, mode.query, agent)
			search := testPop(bridge.AgentID(agent), "conv-notes-search")
			search.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550199"}
			e.publishPop(search)
			run(t, ctx, poll(`window.__notes.length === 1`))
			// The agent searches and opens the record found: page 2.
			run(t, ctx, js(`window.Xrm.Navigation.openForm({ entityName: 'contact', entityId: '00000000-0000-4000-8000-0000000000ad' })`),
				poll(`window.__frames === 2 && window.__clients()[window.__clients().length - 1] === 'ready'`))
			next := testPop(bridge.AgentID(agent), "conv-notes-next")
			e.publishPop(next)
			run(t, ctx, poll(`window.__calls.length === 2`), sleepJS(300))
			if open := eval[int](t, ctx, `window.__notes.length - (window.__cleared || []).length`); open != 0 {
				t.Fatalf("the earlier caller's search notification (+13175550199) is still up after the next pop: %d open (cleared: %s)",
					open, eval[string](t, ctx, `JSON.stringify(window.__cleared || [])`))
			}
		})
	}
}

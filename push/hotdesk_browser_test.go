package push

import (
	"fmt"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// Hot desking on one page: agent A's last pop left something on the screen
// (the list of A's caller's records, or the notification with A's caller's
// number), A leaves without dismissing it, and agent B signs in to Genesys
// on the same page (the "Sign in" action after A's token went, as
// TestBrowser_AgentSwitchDoesNotUseTheOtherAgentsCursor does). Once the
// page is connected as B, nothing of A's callers may stay on it: B would
// read a stranger's caller as its own (a click opens A's caller's record
// for B's call), and A's callers' names and numbers stay on show until B's
// first call pops.
func TestBrowser_HotDeskAgentSwitchClearsTheLastAgentsPop(t *testing.T) {
	for _, kind := range []string{"choose", "search"} {
		t.Run(kind, func(t *testing.T) {
			e, pages := pageEnv(t)
			ctx := newBrowser(t)
			run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
				js(fmt.Sprintf(`window.__startStored(%q)`, e.wsURL)),
				poll(`document.getElementById('state').textContent === 'auth'`),
				js(fmt.Sprintf(`window.__signIn(%q)`, e.token("agent-a"))),
				poll(`document.getElementById('state').textContent === 'ready'`))

			p := testPop("agent-a", "conv-a-last")
			p.Customer = bridge.PopCustomer{Phone: "+13175550199", Name: "Alice Private"}
			if kind == "choose" {
				p.Target = bridge.Target{Action: bridge.ActionChoose}
				p.Candidates = []bridge.Candidate{
					{Entity: "contact", ID: "aaaaaaaa-0000-4000-8000-000000000001", Name: "Alice Private"},
					{Entity: "contact", ID: "aaaaaaaa-0000-4000-8000-000000000002", Name: "Alice Private (old)"},
				}
				e.publishPop(p)
				run(t, ctx, poll(`!!document.querySelector('.screenpop-chooser')`))
			} else {
				p.Target = bridge.Target{Action: bridge.ActionSearch, Entity: "contact", Query: "+13175550199"}
				e.publishPop(p)
				run(t, ctx, poll(`window.__notes.some(function (n) { return n.message.indexOf('+13175550199') >= 0; })`))
			}

			// A leaves; B signs in on the page.
			run(t, ctx, js(fmt.Sprintf(`window.__signIn(%q)`, e.token("agent-b"))),
				poll(`ScreenPop.Dynamics.current.client.agentId === 'agent-b' && typeof ScreenPop.Dynamics.current.client.cursor.base === 'number'`),
				sleepJS(300))

			if kind == "choose" {
				if txt := eval[string](t, ctx, `(document.querySelector('.screenpop-chooser') || {}).textContent || ''`); txt != "" {
					t.Fatalf("connected as agent-b, the page still shows agent-a's caller list: %q", txt)
				}
			} else {
				// The stub's ids are note-<n>, n counting from 1.
				id := eval[string](t, ctx, `'note-' + (1 + window.__notes.findIndex(function (n) { return n.message.indexOf('+13175550199') >= 0; }))`)
				cleared := eval[[]string](t, ctx, `window.__cleared || []`)
				if !slices.Contains(cleared, id) {
					t.Fatalf("connected as agent-b, agent-a's caller's notification is still up: %s (cleared: %v)",
						eval[string](t, ctx, `JSON.stringify(window.__notes)`), cleared)
				}
			}
		})
	}
}

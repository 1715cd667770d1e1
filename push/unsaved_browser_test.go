package push

import (
	"fmt"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// The agent is on a form with unsaved changes (auto-save off, or a new
// record not saved yet) when a pop comes: openForm makes Unified Interface
// ask "save / discard / cancel" before it leaves the page. The agent, in
// the middle of that work, cancels: the page stays, the caller's record
// never opens, and openForm rejects (testdata/uci.html). The pop is acked
// already ("started opening the form", docs/agents.md), so it never comes
// again. What is left must let the agent open the caller's record once
// their own work is saved: the notification the failure puts up (up until
// the next pop) needs an action that opens it. Without one the agent is
// told "could not be opened", as if Dynamics had failed, and has no way
// back to the record the pop found (nor, for create, to the form with the
// caller's number filled in) but searching for a caller it does not name.
func TestBrowser_UnsavedChangesCancelledPopCanBeOpened(t *testing.T) {
	for _, tc := range []struct {
		name string
		pop  func(p *bridge.Pop)
	}{
		{"open", func(p *bridge.Pop) {}},
		{"create", func(p *bridge.Pop) {
			p.Target = bridge.Target{Action: bridge.ActionCreate, Entity: "contact"}
			p.Prefill = map[string]string{"telephone1": p.Customer.Phone}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, pages := pageEnv(t)
			agent := "agent-unsaved-" + tc.name
			ctx := uciApp(t, e, pages, "", agent)
			run(t, ctx, js(`window.__dirty = true`)) // the agent is typing into the contact they are on
			p := testPop(bridge.AgentID(agent), "conv-unsaved-"+tc.name)
			tc.pop(p)
			e.publishPop(p)
			run(t, ctx, poll(`window.__prompt !== null`))
			waitFor(t, 10*time.Second, "the pop acked", func() bool { return e.srv.nAcked.Load() == 1 })
			// The agent keeps their work: cancel. Then they save it.
			run(t, ctx, js(`window.__answer('cancel')`))
			time.Sleep(time.Second) // the rejection and its notification
			run(t, ctx, js(`window.__dirty = false`))
			if got := eval[int](t, ctx, `window.__frames`); got != 1 {
				t.Fatalf("the agent cancelled, yet %d pages loaded", got)
			}
			notes := eval[[]struct {
				Message string `json:"message"`
				Action  string `json:"action"`
			}](t, ctx, `window.__notes`)
			act := ""
			for i, n := range notes {
				if n.Action != "" && !contains(eval[[]string](t, ctx, `window.__cleared || []`), fmt.Sprintf("note-%d", i+1)) {
					act = fmt.Sprintf("note-%d", i+1)
				}
			}
			if act == "" {
				t.Fatalf("after the agent cancelled the unsaved-changes prompt (pop acked: %d), nothing lets them open the caller's record: notifications %+v", e.srv.nAcked.Load(), notes)
			}
			run(t, ctx, js(fmt.Sprintf(`document.getElementById(%q).click()`, act)))
			want := "contact " + p.Target.ID
			run(t, ctx, poll(`window.__frames === 2 && document.getElementById('record').textContent !== 'contact 00000000-0000-4000-8000-000000000001'`))
			if got := eval[string](t, ctx, `document.getElementById('record').textContent`); got != want {
				t.Fatalf("the notification's action opened %q, want %q", got, want)
			}
			if tc.name == "create" {
				if got := eval[string](t, ctx, `JSON.stringify(window.__calls[window.__calls.length - 1].params)`); got != `{"telephone1":"+13175550123"}` {
					t.Errorf("the new contact form opened again with %s, want the caller's number", got)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

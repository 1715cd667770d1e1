package push

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// Dataverse's refusals as Xrm.WebApi reports them (errorCode, a positive
// decimal): see testdata/uci.html.
const (
	errNoReadPrivilege = 0x80040220 // the agent's roles lack Read on the table
	errNoReadAccess    = 0x80048306 // Read at a depth that does not reach the record (another business unit)
)

// settled waits until the pop of the newest page's frames has been acted
// on: a form opened, a chooser drawn or a notification shown.
func settled(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, poll(`window.__calls.length > 0 || window.__notes.length > 0 || !!document.querySelector('.screenpop-chooser')`))
	time.Sleep(300 * time.Millisecond) // anything else it would do
}

// An open pop is not held for an access check (one Web API round trip on
// every pop): a record the agent may not read opens on Dynamics' own
// access-denied form, which names nothing.
func TestBrowser_UCIOpenIsNotHeldForAnAccessCheck(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", "agent-bu")
	run(t, ctx, js(`window.__webApiHang = true`))
	p := testPop("agent-bu", "conv-bu-open")
	e.publishPop(p)
	run(t, ctx, poll(`window.__calls.length === 1`))
	if n := eval[int](t, ctx, `window.__retrieves.length`); n != 0 {
		t.Fatalf("%d Web API reads before an open pop, want none", n)
	}
}

// Several matches of which the agent may read some: the chooser must not
// name the customers of another business unit (nor offer them, to end on
// an access-denied form). One readable match left opens as a single match
// would; none left is the search notification.
func TestBrowser_UCIChooserOnlyReadableRecords(t *testing.T) {
	cands := []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000001", Name: "Ann Readable"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000002", Name: "Bob OtherUnit"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000003", Name: "Cy Readable"},
	}
	pop := func(conv string, cs ...bridge.Candidate) *bridge.Pop {
		p := testPop("agent-bu-ch", conv)
		p.Target = bridge.Target{Action: bridge.ActionChoose}
		p.Candidates = cs
		return p
	}
	deny := func(t *testing.T, ctx context.Context, code uint32, cs ...bridge.Candidate) {
		for _, c := range cs {
			run(t, ctx, js(fmt.Sprintf(`window.__denied[%q] = %d`, c.ID, code)))
		}
	}
	named := func(t *testing.T, ctx context.Context, name string) bool {
		return eval[bool](t, ctx, fmt.Sprintf(`document.body.textContent.indexOf(%q) >= 0`, name))
	}

	t.Run("SomeReadable", func(t *testing.T) {
		e, pages := pageEnv(t)
		ctx := uciApp(t, e, pages, "", "agent-bu-ch")
		deny(t, ctx, errNoReadAccess, cands[1])
		e.publishPop(pop("conv-bu-some", cands...))
		settled(t, ctx)
		if named(t, ctx, "Bob OtherUnit") {
			t.Fatalf("the chooser names a customer the agent may not read: %q", eval[string](t, ctx, `document.querySelector('.screenpop-chooser').textContent`))
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS(`button.screenpop-candidate[data-id="`+cands[2].ID+`"]`))); err != nil {
			t.Fatalf("the readable candidates are not offered: %v", err)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('button.screenpop-candidate').length`); n != 2 {
			t.Fatalf("%d candidates offered, want the 2 readable ones", n)
		}
	})

	t.Run("OneReadable", func(t *testing.T) {
		e, pages := pageEnv(t)
		ctx := uciApp(t, e, pages, "", "agent-bu-ch")
		deny(t, ctx, errNoReadAccess, cands[1])
		e.publishPop(pop("conv-bu-one", cands[0], cands[1]))
		settled(t, ctx)
		if named(t, ctx, "Bob OtherUnit") {
			t.Fatal("the chooser names a customer the agent may not read")
		}
		if got := eval[string](t, ctx, `window.__calls.length ? window.__calls[0].options.entityId : ''`); got != cands[0].ID {
			t.Fatalf("opened %q, want the one readable match %s opened as a single match", got, cands[0].ID)
		}
	})

	t.Run("NoneReadable", func(t *testing.T) {
		e, pages := pageEnv(t)
		ctx := uciApp(t, e, pages, "", "agent-bu-ch")
		deny(t, ctx, errNoReadPrivilege, cands...)
		e.publishPop(pop("conv-bu-none", cands...))
		settled(t, ctx)
		for _, c := range cands {
			if named(t, ctx, c.Name) {
				t.Fatalf("the chooser names %q, which the agent may not read", c.Name)
			}
		}
		if n := eval[int](t, ctx, `window.__calls.length`); n != 0 {
			t.Fatalf("opened a record the agent may not read: %s", eval[string](t, ctx, `JSON.stringify(window.__calls)`))
		}
		if notes := eval[string](t, ctx, `JSON.stringify(window.__notes)`); !strings.Contains(notes, "+13175550123") {
			t.Fatalf("no search notification: %s", notes)
		}
	})
}

// The check must never cost the agent a pop: a Web API that does not
// answer (or fails otherwise) leaves every candidate offered, once
// accessWaitMs has passed.
func TestBrowser_UCIAccessCheckUnansweredStillOffers(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", "agent-bu-hang")
	run(t, ctx, js(`window.__webApiHang = true`))
	p := testPop("agent-bu-hang", "conv-bu-hang")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	p.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000011", Name: "Ann One"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000012", Name: "Ann Two"},
	}
	e.publishPop(p)
	run(t, ctx, poll(`document.querySelectorAll('.screenpop-chooser button.screenpop-candidate').length === 2`))
	if n := eval[int](t, ctx, `window.__retrieves.length`); n != 2 {
		t.Fatalf("%d Web API reads, want one per candidate", n)
	}
}

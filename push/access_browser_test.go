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

// The check reads each candidate by its table's primary key, which is not
// always <logicalname>id: every activity table (phonecall, email, a custom
// activity, any of which an admin may list in SCREENPOP_ENTITIES) is keyed
// by activityid. Dataverse answers a $select of phonecallid with a 400
// (0x80060888), no refusal, so the record was kept unchecked and an agent
// was offered a call of another business unit. The web resource asks
// Xrm.Utility.getEntityMetadata for the key (once per table), and without
// it, or should it fail, reads <logicalname>id as before.
func TestBrowser_AccessCheckPrimaryKey(t *testing.T) {
	cands := []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000021", Name: "Ann Readable"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000022", Name: "Bob OtherUnit"},
		{Entity: "phonecall", ID: "eeeeeeee-0000-4000-8000-000000000023", Name: "Call with Cy"},
		{Entity: "phonecall", ID: "eeeeeeee-0000-4000-8000-000000000024", Name: "Call of OtherUnit"},
	}
	readable, unreadable := []bridge.Candidate{cands[0], cands[2]}, []bridge.Candidate{cands[1], cands[3]}
	pop := func(conv string) *bridge.Pop {
		p := testPop("agent-pk", conv)
		p.Target = bridge.Target{Action: bridge.ActionChoose}
		p.Candidates = cands
		return p
	}
	// offered waits for the chooser of conv and returns the ids it lists.
	offered := func(t *testing.T, ctx context.Context, e *env, conv string) []string {
		t.Helper()
		e.publishPop(pop(conv))
		settled(t, ctx)
		return eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll('.screenpop-chooser button.screenpop-candidate'), function (b) { return b.dataset.id; })`)
	}
	setup := func(t *testing.T, script string) (*env, context.Context) {
		e, pages := pageEnv(t)
		ctx := uciApp(t, e, pages, "", "agent-pk")
		for _, c := range unreadable {
			run(t, ctx, js(fmt.Sprintf(`window.__denied[%q] = %d`, c.ID, errNoReadAccess)))
		}
		if script != "" {
			run(t, ctx, js(script))
		}
		return e, ctx
	}
	ids := func(cs []bridge.Candidate) []string {
		var s []string
		for _, c := range cs {
			s = append(s, c.ID)
		}
		return s
	}
	selects := func(t *testing.T, ctx context.Context) string {
		return eval[string](t, ctx, `JSON.stringify(window.__retrieves.map(function (r) { return r.entity + r.options; }))`)
	}

	t.Run("ActivityTable", func(t *testing.T) {
		e, ctx := setup(t, "")
		got := offered(t, ctx, e, "conv-pk-activity")
		if strings.Join(got, " ") != strings.Join(ids(readable), " ") {
			t.Fatalf("offered %v, want the readable %v (reads: %s)", got, ids(readable), selects(t, ctx))
		}
		if s := selects(t, ctx); !strings.Contains(s, `phonecall?$select=activityid`) || strings.Contains(s, "phonecallid") {
			t.Fatalf("a phonecall is not read by its key activityid: %s", s)
		}
		// The key is learnt once per table for the page's life.
		run(t, ctx, js(`document.querySelectorAll('.screenpop-chooser').forEach(function (c) { c.remove(); })`))
		if got := offered(t, ctx, e, "conv-pk-activity-2"); strings.Join(got, " ") != strings.Join(ids(readable), " ") {
			t.Fatalf("second pop offered %v, want %v", got, ids(readable))
		}
		if m := eval[string](t, ctx, `JSON.stringify(window.__metadata.slice().sort())`); m != `["contact","phonecall"]` {
			t.Fatalf("metadata asked %s, want once per table", m)
		}
	})

	// Without getEntityMetadata (or should it fail) the check reads
	// <logicalname>id, as before: right for contact, a 400 for phonecall,
	// whose records are then kept unchecked.
	for _, fb := range []struct{ name, script string }{
		{"NoMetadata", `delete Xrm.Utility.getEntityMetadata`},
		{"NoUtility", `delete Xrm.Utility`},
		{"MetadataFails", `window.__metadataFail = true`},
	} {
		t.Run(fb.name, func(t *testing.T) {
			e, ctx := setup(t, fb.script)
			want := []string{cands[0].ID, cands[2].ID, cands[3].ID}
			if got := offered(t, ctx, e, "conv-pk-"+strings.ToLower(fb.name)); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("offered %v, want %v (reads: %s)", got, want, selects(t, ctx))
			}
			if s := selects(t, ctx); !strings.Contains(s, `contact?$select=contactid`) || !strings.Contains(s, `phonecall?$select=phonecallid`) {
				t.Fatalf("reads %s, want <logicalname>id", s)
			}
		})
	}

	// A metadata call that never answers costs no more than accessWaitMs
	// (1.5 s) in all: every candidate is offered then, unchecked.
	t.Run("MetadataHangs", func(t *testing.T) {
		e, ctx := setup(t, `window.__denied = {}; window.__metadataHang = true`)
		start := time.Now()
		e.publishPop(pop("conv-pk-hang"))
		run(t, ctx, poll(`document.querySelectorAll('.screenpop-chooser button.screenpop-candidate').length === 4`))
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("the chooser came after %v, want about accessWaitMs (1.5 s)", d)
		}
		// The call that never answered is not kept: once metadata
		// answers, the next pop learns the key and checks the activity.
		run(t, ctx, js(`window.__metadataHang = false`))
		for _, c := range unreadable {
			run(t, ctx, js(fmt.Sprintf(`window.__denied[%q] = %d`, c.ID, errNoReadAccess)))
		}
		if got := offered(t, ctx, e, "conv-pk-hang-2"); strings.Join(got, " ") != strings.Join(ids(readable), " ") {
			t.Fatalf("after metadata answers again, offered %v, want the readable %v (reads: %s)", got, ids(readable), selects(t, ctx))
		}
	})
}

package push

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/screenpop/screenpop/bridge"
)

// An agent who works by keyboard or with a screen reader, with the
// chooser the web resource draws for a choose pop. The reference is the
// WAI-ARIA Authoring Practices dialog pattern: focus moves into the dialog
// when it opens (to a static element when a button there would act on a
// stray key), Escape closes it, and focus goes back where it was.

// axNode returns the node Chromium's accessibility tree, what a screen
// reader reads, has for the element expr evaluates to.
func axNode(t *testing.T, ctx context.Context, expr string) *accessibility.Node {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var node *accessibility.Node
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		obj, err := cdp.Call(ctx, tg, runtime.Evaluate, runtime.EvaluateParams{Expression: expr})
		if err != nil {
			return err
		}
		if obj.Result == nil || obj.Result.ObjectID == "" {
			return fmt.Errorf("%s is no element", expr)
		}
		no := false
		res, err := cdp.Call(ctx, tg, accessibility.GetPartialAXTree, accessibility.GetPartialAXTreeParams{ObjectID: obj.Result.ObjectID, FetchRelatives: &no})
		if err != nil {
			return err
		}
		if len(res.Nodes) == 0 {
			return fmt.Errorf("%s has no accessibility node", expr)
		}
		node = res.Nodes[0]
		return nil
	}))
	if err != nil {
		t.Fatalf("accessibility node of %s: %v", expr, err)
	}
	return node
}

// axString is an accessibility value as a string ("" if none).
func axString(v *accessibility.Value) string {
	var s string
	if v != nil {
		_ = json.Unmarshal(v.Value, &s)
	}
	return s
}

// axOf returns the role and name of the element expr evaluates to.
func axOf(t *testing.T, ctx context.Context, expr string) (role, name string) {
	t.Helper()
	n := axNode(t, ctx, expr)
	return axString(n.Role), axString(n.Name)
}

// axLive returns the live region politeness ("polite", "assertive" or "")
// of the element expr evaluates to.
func axLive(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	for _, p := range axNode(t, ctx, expr).Properties {
		if p.Name == accessibility.PropertyNameLive {
			return axString(p.Value)
		}
	}
	return ""
}

// focusedDesc describes the app's focused element for a failure message.
const focusedDesc = `(function (a) { return a ? a.tagName.toLowerCase() + (a.id ? '#' + a.id : '') + (a.className ? '.' + a.className : '') : 'none'; })(document.activeElement)`

// chooserApp is the Unified Interface test page with a field the agent is
// typing in (a note on the current record) when a pop arrives.
func chooserApp(t *testing.T, agent string) (*env, context.Context) {
	t.Helper()
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent)
	run(t, ctx, js(`document.body.insertAdjacentHTML('afterbegin', '<label>Note <input id="notes"></label>')`))
	return e, ctx
}

// typing puts the agent in the note field, typing, with no chooser shown.
func typing(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, js(`document.querySelectorAll('.screenpop-chooser').forEach(function (b) { b.remove(); });
		document.getElementById('notes').value = ''`),
		chromedp.Click(chromedp.CSS(`#notes`)), chromedp.KeyEvent("Ann"))
}

// popChoose publishes a choose pop between two contacts and waits for its
// chooser; it returns the ids of the candidates.
func popChoose(t *testing.T, e *env, ctx context.Context, agent, conv string) [2]string {
	t.Helper()
	// The tab's newest page holds the socket: a pop sent while a record
	// opened by the subtest before is still loading is drawn by the page
	// before and taken over by the new one under the test's keys.
	run(t, ctx, poll(`window.__clients()[window.__clients().length - 1] === 'ready'`))
	p := testPop(bridge.AgentID(agent), conv)
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	h := fnv.New32a()
	h.Write([]byte(conv))
	n := uint64(h.Sum32()) * 2
	ids := [2]string{fmt.Sprintf("eeeeeeee-0000-4000-8000-%012x", n), fmt.Sprintf("eeeeeeee-0000-4000-8000-%012x", n+1)}
	p.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: ids[0], Name: "Ann One"},
		{Entity: "contact", ID: ids[1], Name: "Ann Two"},
	}
	e.publishPop(p)
	run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('.screenpop-chooser button[data-id="%s"]')`, ids[0])))
	return ids
}

// A choose pop arrives while the agent types in a field. A screen reader
// user hears nothing of a dialog that appears out of focus, and a keyboard
// user would have to tab through the whole app to reach it (it is the
// app document's last element). Focus must move to the dialog itself (not
// to a candidate, which the next Space or Enter typed would open).
func TestBrowser_ChooserTakesFocus(t *testing.T) {
	e, ctx := chooserApp(t, "agent-a11y-focus")
	typing(t, ctx)
	popChoose(t, e, ctx, "agent-a11y-focus", "conv-a11y-focus")
	if !eval[bool](t, ctx, `!!(document.activeElement && document.activeElement.closest('.screenpop-chooser'))`) {
		t.Fatalf("the chooser opened and focus stayed on %s: a screen reader does not announce it, and the keyboard reaches it only after every control of the app",
			eval[string](t, ctx, focusedDesc))
	}
	if role, name := axOf(t, ctx, `document.activeElement`); role != "dialog" || name != "Choose the caller's record" {
		t.Fatalf("focus on %s %q, want the dialog named \"Choose the caller's record\"", role, name)
	}
	// The agent was typing: keys still on their way pick nothing.
	run(t, ctx, chromedp.KeyEvent(" Smith"+kb.Enter))
	if n := eval[int](t, ctx, `window.__calls.length`); n != 0 {
		t.Fatalf("typing on after the pop opened %d records", n)
	}
	if !eval[bool](t, ctx, `!!document.querySelector('.screenpop-chooser')`) {
		t.Fatal("typing on after the pop closed the chooser")
	}
}

func TestBrowser_ChooserKeyboard(t *testing.T) {
	const agent = "agent-a11y-kb"
	e, ctx := chooserApp(t, agent)
	calls := func() int { return eval[int](t, ctx, `window.__calls.length`) }
	// reach stands for however the agent got into the list (the focus the
	// chooser takes, or Tab): the first candidate has focus.
	reach := js(`document.querySelector('.screenpop-chooser .screenpop-candidate').focus()`)
	backOnNotes := func(t *testing.T, what string) {
		t.Helper()
		if eval[bool](t, ctx, `!!document.querySelector('.screenpop-chooser')`) {
			t.Fatalf("%s: the chooser is still open", what)
		}
		if !eval[bool](t, ctx, `document.activeElement === document.getElementById('notes')`) {
			t.Fatalf("%s: focus on %s, want it back on the field the agent was typing in", what, eval[string](t, ctx, focusedDesc))
		}
	}

	t.Run("Labels", func(t *testing.T) {
		typing(t, ctx)
		ids := popChoose(t, e, ctx, agent, "conv-a11y-labels")
		if role, name := axOf(t, ctx, `document.querySelector('.screenpop-chooser')`); role != "dialog" || name != "Choose the caller's record" {
			t.Fatalf("chooser is %s %q", role, name)
		}
		if role, name := axOf(t, ctx, fmt.Sprintf(`document.querySelector('.screenpop-chooser button[data-id="%s"]')`, ids[1])); role != "button" || name != "Ann Two · contact" {
			t.Fatalf("second candidate is %s %q, want button \"Ann Two · contact\"", role, name)
		}
	})

	t.Run("EnterOpens", func(t *testing.T) {
		typing(t, ctx)
		n := calls()
		ids := popChoose(t, e, ctx, agent, "conv-a11y-enter")
		run(t, ctx, reach, chromedp.KeyEvent(kb.Tab+kb.Enter), poll(fmt.Sprintf(`window.__calls.length === %d`, n+1)))
		if got := eval[string](t, ctx, `window.__calls[window.__calls.length - 1].options.entityId`); got != ids[1] {
			t.Fatalf("Tab, Enter opened %q, want the second candidate %q", got, ids[1])
		}
	})

	t.Run("SpaceOpens", func(t *testing.T) {
		typing(t, ctx)
		n := calls()
		ids := popChoose(t, e, ctx, agent, "conv-a11y-space")
		run(t, ctx, reach, chromedp.KeyEvent(" "), poll(fmt.Sprintf(`window.__calls.length === %d`, n+1)))
		if got := eval[string](t, ctx, `window.__calls[window.__calls.length - 1].options.entityId`); got != ids[0] {
			t.Fatalf("Space opened %q, want the first candidate %q", got, ids[0])
		}
	})

	t.Run("EscapeCloses", func(t *testing.T) {
		typing(t, ctx)
		n := calls()
		popChoose(t, e, ctx, agent, "conv-a11y-escape")
		run(t, ctx, reach, chromedp.KeyEvent(kb.Escape))
		backOnNotes(t, "Escape")
		if calls() != n {
			t.Fatal("Escape opened a record")
		}
	})

	t.Run("DismissReturnsFocus", func(t *testing.T) {
		typing(t, ctx)
		popChoose(t, e, ctx, agent, "conv-a11y-dismiss")
		run(t, ctx, js(`Array.prototype.find.call(document.querySelectorAll('.screenpop-chooser button'), function (b) { return b.textContent === 'Dismiss'; }).focus()`),
			chromedp.KeyEvent(kb.Enter))
		backOnNotes(t, "Enter on Dismiss")
	})

	t.Run("SecondPopReplaces", func(t *testing.T) {
		typing(t, ctx)
		popChoose(t, e, ctx, agent, "conv-a11y-first")
		run(t, ctx, reach)
		ids := popChoose(t, e, ctx, agent, "conv-a11y-second")
		if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 1 {
			t.Fatalf("%d choosers open, want the second pop's only", n)
		}
		if !eval[bool](t, ctx, fmt.Sprintf(`!!(document.activeElement && document.activeElement.closest('.screenpop-chooser') && document.activeElement.closest('.screenpop-chooser').querySelector('[data-id="%s"]'))`, ids[0])) {
			t.Fatalf("focus on %s after the second pop replaced the list the agent was in, want in the new list", eval[string](t, ctx, focusedDesc))
		}
		run(t, ctx, chromedp.KeyEvent(kb.Escape))
		backOnNotes(t, "Escape from the second list")
	})

	// The agent leaves the list open and the next caller's pop opens a
	// record: the earlier caller's list must not stay over it, with focus
	// in it, where a click would open that caller's record.
	t.Run("OpenPopClosesTheList", func(t *testing.T) {
		typing(t, ctx)
		popChoose(t, e, ctx, agent, "conv-a11y-before-open")
		calls := eval[int](t, ctx, `window.__calls.length`)
		e.publishPop(testPop(bridge.AgentID(agent), "conv-a11y-open"))
		run(t, ctx, poll(fmt.Sprintf(`window.__calls.length > %d`, calls)))
		if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
			t.Fatalf("%d earlier caller's lists left over the record the next pop opened", n)
		}
	})

	// The agent is in the list when the next caller, found nowhere in
	// time, gets a search pop: the list goes (see OpenPopClosesTheList),
	// and focus must go back to the field, not to the top of the app.
	t.Run("SearchPopReturnsFocus", func(t *testing.T) {
		typing(t, ctx)
		popChoose(t, e, ctx, agent, "conv-a11y-before-search")
		notes := eval[int](t, ctx, `window.__notes.length`)
		p := testPop(bridge.AgentID(agent), "conv-a11y-search")
		p.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550142"}
		e.publishPop(p)
		run(t, ctx, poll(fmt.Sprintf(`window.__notes.length > %d`, notes)))
		backOnNotes(t, "a search pop while the agent was in the list")
	})

	// The agent leaves the list open and opens another record; the new
	// page's library gets the next pop.
	t.Run("SecondPopAfterNavigation", func(t *testing.T) {
		typing(t, ctx)
		popChoose(t, e, ctx, agent, "conv-a11y-nav1")
		frames := eval[int](t, ctx, `window.__frames`)
		run(t, ctx, js(`Xrm.Navigation.openForm({entityName: 'account', entityId: 'ffffffff-0000-4000-8000-000000000001'})`),
			poll(fmt.Sprintf(`window.__frames === %d && window.__clients()[%d] === 'ready'`, frames+1, frames)), reach)
		ids := popChoose(t, e, ctx, agent, "conv-a11y-nav2")
		if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 1 {
			t.Fatalf("%d choosers stacked in the app, want the newest pop's only: the last caller's list shows again once the agent picks from this one", n)
		}
		if !eval[bool](t, ctx, fmt.Sprintf(`!!(document.activeElement && document.activeElement.closest('.screenpop-chooser') && document.activeElement.closest('.screenpop-chooser').querySelector('[data-id="%s"]'))`, ids[0])) {
			t.Fatalf("focus on %s after the new page's list replaced the one the agent was in", eval[string](t, ctx, focusedDesc))
		}
		run(t, ctx, chromedp.KeyEvent(kb.Escape))
		backOnNotes(t, "Escape from the new page's list")
	})
}

// The demo page (make demo: "pick an agent and watch the pops arrive")
// adds each pop to a list and shows the connection state: a screen reader
// says nothing of either unless they are live regions.
func TestBrowser_DemoPageAnnouncesPops(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#token="+e.token("agent-a11y-demo")),
		poll(`document.getElementById('status').dataset.state === 'ready'`))
	seq := e.publish("agent-a11y-demo", "conv-a11y-demo")
	run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('#pops li[data-seq="%d"]')`, seq)))
	if live := axLive(t, ctx, `document.getElementById('pops')`); live != "polite" {
		t.Errorf("the pops list is live %q, want polite: a new pop is not announced", live)
	}
	if live := axLive(t, ctx, `document.getElementById('status')`); live != "polite" {
		t.Errorf("the connection state is live %q, want polite: a signed-out page (auth) is not announced", live)
	}
}

// hiddenWaitMs is how long a tab out of sight lets the tab in front claim a
// pop, in the tests of which tab acts (300 ms in the page): one Chromium
// draws both tabs, and under -race on a loaded machine the tab in front can
// see its pop more than 300 ms after the other, which then opens it.
const hiddenWaitMs = 2000

// Two tabs of one agent: the list one tab drew for a caller must go when
// the other tab acts on the next caller's pop, or the agent finds the
// earlier caller's list on switching back, where a click opens that
// caller's record.
func TestBrowser_ChooserLeavesTheOtherTabOnTheNextPop(t *testing.T) {
	e, pages := pageEnv(t)
	a := newBrowser(t)
	b, cancel := chromedp.NewContext(a)
	defer cancel()
	if err := chromedp.Do(b); err != nil {
		t.Fatal(err)
	}
	tok := e.token("agent-tabs")
	for _, ctx := range []context.Context{a, b} {
		run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
			js(`window.__vis = 'hidden'; Object.defineProperty(document, 'visibilityState', { get: function () { return window.__vis; } })`),
			js(fmt.Sprintf(`window.__start(%q, %q, %d)`, e.wsURL, tok, hiddenWaitMs)),
			poll(`document.getElementById('state').textContent === 'ready'`))
	}
	// Tab b is in front for the first caller, who has two records.
	run(t, b, js(`window.__vis = 'visible'`))
	p := testPop("agent-tabs", "conv-tabs-choose")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	p.Candidates = []bridge.Candidate{{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-00000000a001", Name: "Ann One"}, {Entity: "contact", ID: "eeeeeeee-0000-4000-8000-00000000a002", Name: "Ann Two"}}
	e.publishPop(p)
	run(t, b, poll(`document.querySelectorAll('.screenpop-chooser').length === 1`))
	// The agent switches to tab a; the next caller's record opens there.
	run(t, b, js(`window.__vis = 'hidden'`))
	run(t, a, js(`window.__vis = 'visible'`))
	e.publish("agent-tabs", "conv-tabs-open")
	run(t, a, poll(`window.__calls.length === 1`))
	run(t, b, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 2`))
	if n := eval[int](t, b, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
		t.Fatalf("the earlier caller's list is still in the other tab (%d) after the next pop opened a record", n)
	}
}

// A page of the tab draws a choose pop's list, and the app navigates
// before that page's ack reaches the server: the next page takes the
// socket over and is replayed the pop, which this tab has claimed already.
// The list must stay. It was dropped as if another tab had taken the pop,
// and the agent saw no list at all (TestBrowser_ChooserKeyboard lost one
// now and then when a subtest's pop met the previous one's navigation).
func TestBrowser_ChooserStaysWhenTheNextPageIsReplayedItsPop(t *testing.T) {
	const agent = "agent-a11y-takeover"
	e, ctx := chooserApp(t, agent)
	typing(t, ctx)
	const conv = "conv-a11y-takeover"
	ids := popChoose(t, e, ctx, agent, conv)
	id := testPop(bridge.AgentID(agent), conv).ID
	run(t, ctx, js(`window.Xrm.Navigation.openForm({ entityName: 'account', entityId: '00000000-0000-4000-8000-0000000000aa' })`),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`))
	// The replay, as the server sends it to the page that took over.
	run(t, ctx, js(fmt.Sprintf(`window.__page().Dynamics.current.handlePop({ id: %q, seq: 99, target: { action: 'choose' }, candidates: [] })`, id)),
		poll(fmt.Sprintf(`window.__page().Dynamics.current.handled.some(function (h) { return h.id === %q && h.done; })`, id)))
	if !eval[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('.screenpop-chooser button[data-id="%s"]')`, ids[0])) {
		t.Fatal("the caller's list was dropped when the next page of the tab was replayed its pop")
	}
}

// An agent at 200% zoom with the browser on half of a 1280-pixel screen
// (the softphone on the other half) has a viewport 320 CSS pixels wide,
// WCAG's reflow width. The chooser must fit it: it was 338 pixels wide at
// 8 pixels from the right edge, so the start of every name, of the heading
// and of Dismiss was cut off.
func TestBrowser_ChooserFitsAt200PercentZoom(t *testing.T) {
	const agent = "agent-a11y-zoom"
	e, ctx := chooserApp(t, agent)
	run(t, ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 320, Height: 360, DeviceScaleFactor: 2})
		return err
	}))
	typing(t, ctx)
	popChoose(t, e, ctx, agent, "conv-a11y-zoom")
	type box struct{ Left, Right float64 }
	type layout struct {
		Width float64
		Boxes []box // the chooser, then each of its buttons
	}
	l := eval[layout](t, ctx, `(function () {
		var c = document.querySelector('.screenpop-chooser'), out = { width: document.documentElement.clientWidth, boxes: [] };
		[c].concat(Array.prototype.slice.call(c.querySelectorAll('button'))).forEach(function (el) {
			var r = el.getBoundingClientRect();
			out.boxes.push({ left: r.left, right: r.right });
		});
		return out;
	})()`)
	for i, b := range l.Boxes {
		if b.Left < 0 || b.Right > l.Width {
			what := "the chooser"
			if i > 0 {
				what = fmt.Sprintf("button %d", i)
			}
			t.Errorf("%s spans %v to %v of a viewport %v wide: cut off at 200%% zoom", what, b.Left, b.Right, l.Width)
		}
	}
}

// An agent typing in a frame of the app (the Genesys panel's chat reply,
// an HTML web resource) when a choose pop arrives: the chooser taking
// focus cleared the field's focus inside the frame, the rest of what they
// typed went nowhere, and Escape gave focus back to the frame element
// only, not to the field (a frame of another origin cannot be reached
// from the page at all). The chooser shows without taking focus there.
func TestBrowser_ChooserLeavesFocusInAFrame(t *testing.T) {
	const agent = "agent-a11y-frame"
	e, ctx := chooserApp(t, agent)
	run(t, ctx, js(`document.body.insertAdjacentHTML('afterbegin', '<iframe id="panel" srcdoc="<input id=reply>"></iframe>')`),
		poll(`!!(document.getElementById('panel').contentDocument && document.getElementById('panel').contentDocument.getElementById('reply'))`),
		chromedp.Click(chromedp.CSS(`#panel`)),
		js(`document.getElementById('panel').contentDocument.getElementById('reply').focus()`),
		chromedp.KeyEvent("Hel"))
	popChoose(t, e, ctx, agent, "conv-a11y-frame")
	run(t, ctx, chromedp.KeyEvent("lo"))
	got := eval[string](t, ctx, `document.getElementById('panel').contentDocument.getElementById('reply').value`)
	if got != "Hello" {
		t.Fatalf("the reply the agent was typing in the frame reads %q, want \"Hello\": the chooser took the keys", got)
	}
	if !eval[bool](t, ctx, `!!document.querySelector('.screenpop-chooser')`) {
		t.Fatal("no chooser shown")
	}
	// Focus did not move, so a screen reader would not hear of the list:
	// a polite live region says it.
	run(t, ctx, poll(`!!document.querySelector('.screenpop-live') && document.querySelector('.screenpop-live').textContent.indexOf('Several records match the caller') === 0`))
	if live := axLive(t, ctx, `document.querySelector('.screenpop-live')`); live != "polite" {
		t.Fatalf("the announcement's region is live %q, want polite", live)
	}
}

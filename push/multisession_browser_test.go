package push

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// appTab is a call of the multisession app's Microsoft.Apm.createTab, as
// testdata/uci.html records it.
type appTab struct {
	TemplateName string            `json:"templateName"`
	IsFocused    bool              `json:"isFocused"`
	IsMap        bool              `json:"isMap"` // appContext is a Map of the app window's own
	AppContext   map[string]string `json:"appContext"`
}

// In a multisession app (Customer Service workspace) Xrm.Navigation.openForm
// opens the record in the page the agent is on, in its place: the case or
// conversation they were working in goes. A pop opens a new tab of the
// focused session instead, with the app profile manager's createTab and
// its entity-record template (Microsoft's reference, "createTab (app profile
// manager)": appContext is a Map of entityName, entityId, and data, the
// form's values as JSON).
func TestBrowser_MultisessionOpensTabs(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?apm", "agent-ms")

	open := testPop("agent-ms", "conv-ms-open")
	open.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "account", ID: "eeeeeeee-0000-4000-8000-000000000001"}
	e.publishPop(open)
	// The tab's page loads (its form libraries and OnLoad), and the first
	// page stays.
	run(t, ctx, poll(`window.__tabs.length === 1 && window.__frames === 2 && document.getElementById('record').textContent === 'account eeeeeeee-0000-4000-8000-000000000001'`))

	create := testPop("agent-ms", "conv-ms-create")
	create.Target = bridge.Target{Action: bridge.ActionCreate, Entity: "contact"}
	create.Prefill = map[string]string{"telephone1": "+13175550123", "lastname": "O'Brien"}
	e.publishPop(create)
	run(t, ctx, poll(`window.__tabs.length === 2`))

	choose := testPop("agent-ms", "conv-ms-choose")
	choose.Target = bridge.Target{Action: bridge.ActionChoose}
	choose.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000002", Name: "Ann One"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000003", Name: "Ann Two"},
	}
	e.publishPop(choose)
	sel := `button.screenpop-candidate[data-id="eeeeeeee-0000-4000-8000-000000000003"]`
	run(t, ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)), poll(`window.__tabs.length === 3`))

	tabs := eval[[]appTab](t, ctx, `window.__tabs`)
	for i, tab := range tabs {
		if tab.TemplateName != "msdyn_entityrecord" || !tab.IsFocused || !tab.IsMap {
			t.Fatalf("tab %d: createTab(%+v), want the msdyn_entityrecord template, focused, with a Map of the app's", i, tab)
		}
	}
	if c := tabs[0].AppContext; c["entityName"] != "account" || c["entityId"] != open.Target.ID || c["data"] != "" {
		t.Fatalf("open: appContext %v", c)
	}
	var data map[string]string
	if c := tabs[1].AppContext; c["entityName"] != "contact" || c["entityId"] != "" || json.Unmarshal([]byte(c["data"]), &data) != nil {
		t.Fatalf("create: appContext %v", c)
	}
	if data["telephone1"] != "+13175550123" || data["lastname"] != "O'Brien" {
		t.Fatalf("create: form values %v, want the pop's prefill", data)
	}
	if c := tabs[2].AppContext; c["entityName"] != "contact" || c["entityId"] != "eeeeeeee-0000-4000-8000-000000000003" {
		t.Fatalf("choose: appContext %v after clicking Ann Two", c)
	}
	if n := eval[int](t, ctx, `window.__calls.length`); n != 0 {
		t.Fatalf("%d openForm calls beside createTab, want none", n)
	}
	// Every tab's page loaded the scripts: the browser tab still holds one
	// connection.
	waitFor(t, 10*time.Second, "one connection", func() bool { return e.srv.Status().(Status).Connections == 1 }, true)
	if n := e.srv.Status().(Status).Connections; n != 1 {
		t.Fatalf("%d connections from one browser tab with 3 app tabs, want 1", n)
	}
}

// A createTab that fails (its template removed, or a session that takes no
// tabs) must not lose the pop: openForm opens it, and the agent sees no
// error.
func TestBrowser_MultisessionCreateTabFails(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?apm=fail", "agent-ms-fail")
	p := testPop("agent-ms-fail", "conv-ms-fail")
	p.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000010"}
	e.publishPop(p)
	run(t, ctx, poll(`window.__tabs.length === 1 && window.__calls.length === 1`))
	if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != p.Target.ID {
		t.Fatalf("openForm opened %q, want %q", got, p.Target.ID)
	}
	// A failure notice would have followed openForm's call in the same
	// task (its promise settles in a microtask): none came.
	if n := eval[int](t, ctx, `window.__notes.length`); n != 0 {
		t.Fatalf("%d notifications for a record that opened: %s", n, eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
}

// An admin who wants the record in the agent's current page keeps openForm
// with the option multisession: false.
func TestBrowser_MultisessionOptedOut(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html?apm"),
		js(fmt.Sprintf(`window.__open(%q, %q, {multisession: false})`, e.wsURL, e.token("agent-ms-out"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	p := testPop("agent-ms-out", "conv-ms-out")
	e.publishPop(p)
	run(t, ctx, poll(`window.__calls.length === 1`))
	if n := eval[int](t, ctx, `window.__tabs.length`); n != 0 {
		t.Fatalf("%d createTab calls with multisession: false, want none", n)
	}
}

// A createTab whose promise never settles (the pop is claimed and acked
// as soon as it is called) must not lose the pop without a word: past
// tabWaitMs it counts as failed, and openForm opens the record.
func TestBrowser_MultisessionCreateTabHangs(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html?apm=hang"),
		js(fmt.Sprintf(`window.__open(%q, %q, {tabWaitMs: 1000})`, e.wsURL, e.token("agent-ms-hang"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	p := testPop("agent-ms-hang", "conv-ms-hang")
	p.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000020"}
	e.publishPop(p)
	run(t, ctx, poll(`window.__tabs.length === 1`))
	// Without the wait nothing follows: the pop is acked, and the agent
	// sees neither the record nor a notification.
	run(t, ctx, poll(`window.__calls.length === 1`))
	if n := eval[int](t, ctx, `window.__notes.length`); n != 0 {
		t.Fatalf("%d notifications for a record openForm opened", n)
	}
	if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != p.Target.ID {
		t.Fatalf("openForm opened %q, want %q", got, p.Target.ID)
	}
}

// A createTab that opens its tab after tabWaitMs, once openForm has opened
// the record, would leave the agent with the record twice: the late tab
// is closed.
func TestBrowser_MultisessionLateTabClosed(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html?apm=late"),
		js(fmt.Sprintf(`window.__open(%q, %q, {tabWaitMs: 500})`, e.wsURL, e.token("agent-ms-late"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	p := testPop("agent-ms-late", "conv-ms-late")
	p.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000030"}
	e.publishPop(p)
	run(t, ctx, poll(`window.__tabs.length === 1 && window.__calls.length === 1`))
	run(t, ctx, poll(`window.__closed.length === 1`))
	if got := eval[string](t, ctx, `window.__closed[0]`); got != "tab-id-1" {
		t.Fatalf("closeTab(%q), want the late tab, tab-id-1", got)
	}
}

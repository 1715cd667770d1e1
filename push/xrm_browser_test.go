package push

import (
	"fmt"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// An open pop names a record that is no longer in Dataverse: deleted since
// the lookup was cached (SCREENPOP_CACHE_TTL: "for that long a caller's
// pops open the records found, even if they are deleted"), or a stale
// override id from an Architect flow. In a multisession app the pop opens a
// tab with the entity-record template, and Microsoft documents that
// template ("Manage application tab templates", Entity record): "If the
// system doesn't match the entityId value to an existing record in
// Dataverse, then the form opens in create mode to create a record. If you
// want the system to load the form only when the record exists in
// Dataverse, then set the validateRecord parameter to true."
//
// Without validateRecord the agent gets a blank "New Contact" form for the
// caller whose record the pop named: nothing says the record is gone, and
// the agent takes it for "no record yet" and saves a duplicate (openForm,
// in a single-session app, shows Dynamics' own "record unavailable"
// instead). testdata/uci.html's createTab now does what the reference says.
func TestBrowser_MultisessionGoneRecordNoCreateForm(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?apm", "agent-ms-gone")
	p := testPop("agent-ms-gone", "conv-ms-gone")
	p.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "eeeeeeee-0000-4000-8000-0000000000a1", Name: "Deleted Person"}
	run(t, ctx, js(fmt.Sprintf(`window.__gone[%q] = true`, p.Target.ID)))
	e.publishPop(p)
	// The tab either loads a page (its OnLoad sets #record) or, with
	// validateRecord, shows no form.
	run(t, ctx, poll(`window.__tabs.length === 1 && (window.__unavailable.length === 1 || document.getElementById('record').textContent !== 'contact 00000000-0000-4000-8000-000000000001')`))
	time.Sleep(500 * time.Millisecond) // nothing else follows
	tab := eval[appTab](t, ctx, `window.__tabs[0]`)
	if shown := eval[string](t, ctx, `document.getElementById('record').textContent`); shown == "contact " {
		t.Fatalf("an open pop for a record no longer in Dataverse opened a new contact form (create mode) in the workspace: createTab appContext %v has no validateRecord", tab.AppContext)
	}
}

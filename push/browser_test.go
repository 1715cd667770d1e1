package push

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/chromiumtest"
)

// NewBrowser starts headless Chromium (popup blocking on, a fresh profile)
// and returns the context of its first tab. Without Chromium the test is
// skipped locally and fails in CI.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return chromiumtest.Start(t)
}

// run runs steps in the tab of ctx, bounded.
func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// poll waits until the expression is truthy in the page.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond))
}

// js runs a statement in the page.
func js(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](expr)
}

// pageServer serves the test pages on another origin than the push server
// (as Dynamics is), with the push server's URL filled in.
func pageServer(t *testing.T, pushBase string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for _, name := range []string{"webresource.html", "foreign.html"} {
		tpl := template.Must(template.ParseFiles("testdata/" + name))
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = tpl.Execute(w, map[string]string{"Push": pushBase})
		})
	}
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

// pageEnv is a push server that allows the page server's origin.
func pageEnv(t *testing.T) (*env, *httptest.Server) {
	return pageEnvStore(t, nil)
}

// pageEnvStore is pageEnv over store (nil: a real bus).
func pageEnvStore(t *testing.T, store bridge.PopStore) (*env, *httptest.Server) {
	// The page server must exist before the push server (its origin is
	// allowed), and needs the push URL: listen first, then fill in.
	var pushBase string
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	e := newEnv(t, Config{AllowedOrigins: []string{ts.URL}}, store, nil)
	pushBase = e.base
	for _, name := range []string{"webresource.html", "uci.html", "uci-form.html"} {
		tpl := template.Must(template.ParseFiles("testdata/" + name))
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = tpl.Execute(w, map[string]string{"Push": pushBase})
		})
	}
	return e, ts
}

func TestBrowser_DemoPage(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	ctx := newBrowser(t)
	tok := e.token("agent-demo")
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#token="+tok))
	run(t, ctx, poll(`document.getElementById('status').dataset.state === 'ready'`))
	loc := eval[string](t, ctx, `location.href`)
	if strings.Contains(loc, tok) {
		t.Fatal("token left in the address bar")
	}
	p := testPop("agent-demo", "conv-demo")
	p.Customer.Name = "Ada <b>Lovelace</b>"
	seq := e.publishPop(p)
	run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('#pops li[data-seq="%d"]')`, seq)))
	text := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#pops li[data-seq="%d"]').textContent`, seq))
	if !strings.Contains(text, "Ada <b>Lovelace</b>") || !strings.Contains(text, "conv-demo") {
		t.Fatalf("pop shown as %q", text)
	}
	// The page acked it.
	waitFor(t, 10*time.Second, "ack", func() bool { return e.srv.nAcked.Load() == 1 })

	t.Run("ResumeAfterServerClose", func(t *testing.T) {
		oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
		e.srv.closeAll(CloseTooSlow, msgTooSlow)
		waitFor(t, 15*time.Second, "page reconnected", func() bool {
			return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > oks && e.srv.Status().(Status).Connections == 1
		})
		seq2 := e.publish("agent-demo", "conv-demo-2")
		run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('#pops li[data-seq="%d"]')`, seq2)))
		n := eval[int](t, ctx, `document.querySelectorAll('#pops li').length`)
		if n != 2 {
			t.Fatalf("%d pops listed after resume, want 2 (no duplicate)", n)
		}
	})
	t.Run("ResumeAfterReload", func(t *testing.T) {
		// sessionStorage keeps the cursor; the reloaded page (token typed
		// again in the form) gets nothing it already processed.
		oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
		run(t, ctx, chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS(`#token`)),
			chromedp.SendKeys(chromedp.CSS(`#token`), tok),
			chromedp.Click(chromedp.CSS(`#connectBtn`)),
			poll(`document.getElementById('status').dataset.state === 'ready'`))
		waitFor(t, 10*time.Second, "reconnected", func() bool {
			return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > oks
		})
		seq3 := e.publish("agent-demo", "conv-demo-3")
		run(t, ctx, poll(fmt.Sprintf(`!!document.querySelector('#pops li[data-seq="%d"]')`, seq3)))
		n := eval[int](t, ctx, `document.querySelectorAll('#pops li').length`)
		if n != 1 {
			t.Fatalf("%d pops listed after reload, want only the new one", n)
		}
	})
}

type formCall struct {
	Options struct {
		EntityName string `json:"entityName"`
		EntityID   string `json:"entityId"`
	} `json:"options"`
	Params map[string]string `json:"params"`
}

func TestBrowser_WebResource(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	tok := e.token("agent-wr")
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready'`))

	calls := func(n int) []formCall {
		t.Helper()
		run(t, ctx, poll(fmt.Sprintf(`window.__calls.length >= %d`, n)))
		return eval[[]formCall](t, ctx, `window.__calls`)
	}

	open := testPop("agent-wr", "conv-open")
	open.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "account", ID: "11111111-2222-3333-4444-555555555555"}
	e.publishPop(open)
	got := calls(1)
	if got[0].Options.EntityName != "account" || got[0].Options.EntityID != open.Target.ID {
		t.Fatalf("openForm(%+v)", got[0])
	}

	create := testPop("agent-wr", "conv-create")
	create.Target = bridge.Target{Action: bridge.ActionCreate, Entity: "contact"}
	create.Prefill = map[string]string{"telephone1": "+13175550123", "firstname": "Ada", "lastname": "O'Brien"}
	e.publishPop(create)
	got = calls(2)
	if c := got[1]; c.Options.EntityName != "contact" || c.Options.EntityID != "" || c.Params["telephone1"] != "+13175550123" || c.Params["lastname"] != "O'Brien" {
		t.Fatalf("openForm(%+v)", c)
	}

	search := testPop("agent-wr", "conv-search")
	search.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550199"}
	e.publishPop(search)
	type note struct {
		Level   int
		Message string
	}
	run(t, ctx, poll(`window.__notes.length >= 1`))
	notes := eval[[]note](t, ctx, `window.__notes`)
	if !strings.Contains(notes[0].Message, "+13175550199") || notes[0].Level != 4 {
		t.Fatalf("search notification %+v", notes)
	}

	choose := testPop("agent-wr", "conv-choose")
	choose.Target = bridge.Target{Action: bridge.ActionChoose}
	choose.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: "aaaaaaaa-0000-0000-0000-000000000001", Name: "Ann One"},
		{Entity: "contact", ID: "aaaaaaaa-0000-0000-0000-000000000002", Name: "Ann Two"},
	}
	e.publishPop(choose)
	sel := `button.screenpop-candidate[data-id="aaaaaaaa-0000-0000-0000-000000000002"]`
	run(t, ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
	got = calls(3)
	if c := got[2]; c.Options.EntityName != "contact" || c.Options.EntityID != "aaaaaaaa-0000-0000-0000-000000000002" {
		t.Fatalf("openForm(%+v) after choosing", c)
	}
	if len(got) != 3 {
		t.Fatalf("%d openForm calls, want 3 (search opens nothing)", len(got))
	}
}

func TestBrowser_TwoTabsOpenOnce(t *testing.T) {
	e, pages := pageEnv(t)
	ctx1 := newBrowser(t)
	ctx2, cancel := chromedp.NewContext(ctx1) // a second tab of the same profile
	defer cancel()
	if err := chromedp.Do(ctx2); err != nil { // open it outside any timeout: the tab lives as long as that context
		t.Fatal(err)
	}
	tok := e.token("agent-tabs")
	for _, ctx := range []context.Context{ctx1, ctx2} {
		run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
			js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
			poll(`document.getElementById('state').textContent === 'ready'`))
	}
	var pops []*bridge.Pop
	for i := range 3 {
		p := testPop("agent-tabs", fmt.Sprintf("conv-tab-%d", i))
		e.publishPop(p)
		pops = append(pops, p)
	}
	total := 0
	for _, ctx := range []context.Context{ctx1, ctx2} {
		// Wait until this tab has received and settled every pop.
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := chromedp.Do(tctx, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 3`))
		cancel()
		if err != nil {
			t.Fatalf("tab never settled the pops: %v; handled %s", err, eval[string](t, ctx, `JSON.stringify(ScreenPop.Dynamics.current.handled)+document.visibilityState+document.getElementById('state').textContent`))
		}
		total += eval[int](t, ctx, `window.__calls.length`)
	}
	if total != len(pops) {
		t.Fatalf("%d openForm calls across two tabs for %d pops, want one per pop", total, len(pops))
	}
}

func TestBrowser_ForeignOrigin(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil) // allows its own origin only
	pages := pageServer(t, e.base)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/foreign.html"),
		js(fmt.Sprintf(`window.__try(%q)`, e.wsURL)),
		poll(`window.__result !== 'pending'`))
	res := eval[string](t, ctx, `window.__result`)
	if res == "open" {
		t.Fatal("a page from a disallowed origin opened the websocket")
	}
	if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("origin")); n != 1 {
		t.Fatalf("origin refusals counted %v, want 1", n)
	}
}

// TestBrowser_ResumeBeforeFirstPop: a tab that has been ready but has not
// processed a pop yet must still resume after a reconnect (a hello with
// lastSeq and epoch, so it gets the replay window), or a pop stored while
// it was away and older than the fresh window would never be shown.
func TestBrowser_ResumeBeforeFirstPop(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	ctx := newBrowser(t)
	tok := e.token("agent-nopop")
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#token="+tok))
	run(t, ctx, poll(`document.getElementById('status').dataset.state === 'ready'`))
	// The heartbeat after the replay makes the ready frame's seq the tab's
	// base (TestBrowser_FreshPopSurvivesEarlyClose: not before).
	run(t, ctx, poll(`typeof window.screenpopClient.cursor.base === 'number'`))
	// Record what the page sends from now on.
	run(t, ctx, js(`window.__sent = []; (function (send) { WebSocket.prototype.send = function (d) { window.__sent.push(d); return send.call(this, d); }; })(WebSocket.prototype.send)`))
	// The server counts the socket after the heartbeat has gone out: count
	// from there, or the reconnect below is this socket's count.
	waitFor(t, 10*time.Second, "the first socket counted", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == 1
	})
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	e.srv.closeAll(CloseTooSlow, msgTooSlow)
	waitFor(t, 15*time.Second, "page reconnected", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > oks
	})
	var hello struct {
		Type    string  `json:"type"`
		LastSeq *uint64 `json:"lastSeq"`
		Epoch   string  `json:"epoch"`
	}
	raw := eval[string](t, ctx, `window.__sent.find(function (s) { return JSON.parse(s).type === 'hello'; }) || ''`)
	if err := json.Unmarshal([]byte(raw), &hello); err != nil {
		t.Fatalf("hello %q: %v", raw, err)
	}
	if hello.LastSeq == nil || hello.Epoch == "" {
		t.Fatalf("reconnect hello %s has no lastSeq/epoch: it would get only the fresh window", raw)
	}
}

// TestBrowser_ResumeNamesItsLastPop: a tab that processed a pop resumes
// from it naming it (lastPopId), so that a store set back that holds
// another pop of the agent at that seq is told apart
// (TestDaemon_RestoredDataDirNewPopAtTheCursorsSeq); on the stream that
// holds it, the reconnect resumes after it and nothing is handed over
// twice.
func TestBrowser_ResumeNamesItsLastPop(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#token="+e.token("agent-named")))
	run(t, ctx, poll(`document.getElementById('status').dataset.state === 'ready'`))
	p := testPop("agent-named", "conv-named")
	seq := e.publishPop(p)
	run(t, ctx, poll(fmt.Sprintf(`window.screenpopClient.cursor.lastSeq === %d`, seq)))
	if id := eval[string](t, ctx, `window.screenpopClient.cursor.lastPopId || ''`); id != p.ID {
		t.Fatalf("cursor's lastPopId %q, want the pop's id %q", id, p.ID)
	}
	run(t, ctx, js(`window.__sent = []; (function (send) { WebSocket.prototype.send = function (d) { window.__sent.push(d); return send.call(this, d); }; })(WebSocket.prototype.send)`))
	waitFor(t, 10*time.Second, "the first socket counted", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == 1
	})
	e.srv.closeAll(CloseTooSlow, msgTooSlow)
	waitFor(t, 15*time.Second, "page reconnected", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > 1
	})
	var hello struct {
		LastSeq   uint64 `json:"lastSeq"`
		LastPopID string `json:"lastPopId"`
	}
	raw := eval[string](t, ctx, `window.__sent.find(function (s) { return JSON.parse(s).type === 'hello'; }) || ''`)
	if err := json.Unmarshal([]byte(raw), &hello); err != nil {
		t.Fatalf("hello %q: %v", raw, err)
	}
	if hello.LastSeq != seq || hello.LastPopID != p.ID {
		t.Fatalf("reconnect hello %s: want lastSeq %d and lastPopId %q", raw, seq, p.ID)
	}
	if c := eval[uint64](t, ctx, `window.screenpopClient.cursor.lastSeq`); c != seq {
		t.Fatalf("after the reconnect the cursor is at %d, want %d: the server took the named pop for a set back", c, seq)
	}
	if n := e.srv.nAcked.Load(); n != 1 {
		t.Fatalf("%d acks, want 1: the pop was handed over again", n)
	}
}

// In Dynamics openForm's promise never settles for a main form (the page's
// stub does the same): the tab must not wait for it. Every pop is opened
// and acked in turn, and a failing openForm is reported and acked too.
func TestBrowser_OpenFormNeverSettles(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-nf"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	var ids []string
	for i := range 3 {
		p := testPop("agent-nf", fmt.Sprintf("conv-nf-%d", i))
		p.Target.ID = fmt.Sprintf("bbbbbbbb-0000-0000-0000-%012d", i)
		e.publishPop(p)
		ids = append(ids, p.Target.ID)
	}
	run(t, ctx, poll(`window.__calls.length >= 3`))
	waitFor(t, 10*time.Second, "three acks", func() bool { return e.srv.nAcked.Load() == 3 })
	for i, c := range eval[[]formCall](t, ctx, `window.__calls`) {
		if c.Options.EntityID != ids[i] {
			t.Fatalf("openForm call %d opened %q, want %q", i, c.Options.EntityID, ids[i])
		}
	}

	run(t, ctx, js(`window.__openFormFails = true`))
	failing := testPop("agent-nf", "conv-nf-fails")
	e.publishPop(failing)
	run(t, ctx, poll(`window.__notes.some(function (n) { return n.level === 2 && n.message.indexOf('could not be opened') >= 0; })`))
	waitFor(t, 10*time.Second, "the failed pop acked", func() bool { return e.srv.nAcked.Load() == 4 })
	if !eval[bool](t, ctx, `ScreenPop.Dynamics.current.handled[3].error === true`) {
		t.Fatal("the failed openForm is not recorded as an error")
	}
}

// A user's onPop that never settles holds the next pop for popTimeoutMs at
// most: every pop is handed over, in order, and acked.
func TestBrowser_ClientPopTimeout(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__seen = []; window.__client = ScreenPop.connect({url: %q, token: %q, storage: 'none', popTimeoutMs: 300,
			onState: function (s) { document.getElementById('state').textContent = s; },
			onPop: function (p) { window.__seen.push(p.seq); return new Promise(function () {}); }})`, e.wsURL, e.token("agent-to"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, e.publish("agent-to", fmt.Sprintf("conv-to-%d", i)))
	}
	run(t, ctx, poll(`window.__seen.length === 3`))
	if got := eval[[]uint64](t, ctx, `window.__seen`); fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("onPop got %v, want %v", got, seqs)
	}
	waitFor(t, 10*time.Second, "three acks", func() bool { return e.srv.nAcked.Load() == 3 })
	if c := eval[uint64](t, ctx, `window.__client.cursor.lastSeq`); c != seqs[2] {
		t.Fatalf("cursor at %d, want %d", c, seqs[2])
	}
}

// A socket that ends after ready but before the replayed pops arrive (here
// the replay fails: 1013) must not make the tab resume after them: the pop
// of the fresh window is opened after the reconnect.
func TestBrowser_FreshPopSurvivesEarlyClose(t *testing.T) {
	st := newMemStore()
	e, pages := pageEnvStore(t, st)
	pop := testPop("agent-ec", "conv-ec")
	p := st.add(pop, time.Now(), false)
	st.failReplay.Store(1)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-ec"))),
		poll(`window.__calls.length >= 1`))
	waitFor(t, 10*time.Second, "the pop acked", func() bool { return e.srv.nAcked.Load() == 1 })
	if got := eval[[]formCall](t, ctx, `window.__calls`); len(got) != 1 || got[0].Options.EntityID != pop.Target.ID {
		t.Fatalf("openForm calls %+v, want the pop's record once", got)
	}
	calls := st.replayCalls()
	if len(calls) != 2 || calls[1].after != 0 {
		t.Fatalf("replays %+v, want a failed one and then the fresh window again (after 0)", calls)
	}
	// The second socket's replay completed: the base is set from now on.
	run(t, ctx, poll(fmt.Sprintf(`JSON.parse(sessionStorage.getItem('screenpop.cursor:' + %q)).base === %d`, e.wsURL, p.Seq)))
}

// In jwt mode the server closes the socket with 4401 when the token's exp
// passes. A token function that has a new token by then reconnects the tab
// without asking for a sign-in; one that returns the same token again asks.
func TestBrowser_TokenFunctionRenewsAfterExpiry(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	short, err := MintToken(testSecret, "agent-exp", 3*time.Second) // exp 2-3 s away: whole seconds
	if err != nil {
		t.Fatal(err)
	}
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, short, e.wsURL)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	// The integrator's SSO code renews the token before it expires.
	long := e.token("agent-exp")
	run(t, ctx, js(fmt.Sprintf(`window.__tok = %q`, long)))
	waitFor(t, 15*time.Second, "the expired socket closed and the tab back", func() bool {
		return testutil.ToFloat64(e.srv.m.closes.WithLabelValues("4401")) == 1 &&
			testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == oks+2
	})
	run(t, ctx, poll(`window.__states.length >= 5`))
	if states := eval[[]string](t, ctx, `window.__states`); fmt.Sprint(states) != "[connecting ready reconnecting connecting ready]" {
		t.Fatalf("states %v", states)
	}
	if n := eval[int](t, ctx, `window.__notes.length`); n != 0 {
		t.Fatalf("%d notifications after a renewed token, want none (no sign-in asked)", n)
	}
	e.publish("agent-exp", "conv-exp")
	run(t, ctx, poll(`window.__calls.length === 1`))
	waitFor(t, 10*time.Second, "the pop acked", func() bool { return e.srv.nAcked.Load() == 1 })

	t.Run("SameTokenAsksSignIn", func(t *testing.T) {
		calls := eval[int](t, ctx, `window.__tokenCalls`)
		e.srv.closeAll(CloseInvalidToken, msgInvalidToken)
		run(t, ctx, poll(`document.getElementById('state').textContent === 'auth'`),
			poll(`window.__notes.length === 1`))
		if n := eval[int](t, ctx, `window.__tokenCalls`); n != calls+1 {
			t.Fatalf("token function called %d times after the 4401, want once", n-calls)
		}
		if msg := eval[string](t, ctx, `window.__notes[0].message`); !strings.Contains(msg, "refused") {
			t.Fatalf("notification %q, want the refused-token one", msg)
		}
	})
	t.Run("EveryNewTokenRefused", func(t *testing.T) {
		// A token function whose every new token is refused: the tab
		// tries three in a row, then asks for a sign-in.
		refused := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("auth"))
		run(t, ctx, js(`Object.defineProperty(window, '__tok', { get: function () { return 'not-a-jwt-' + window.__tokenCalls; } });
			ScreenPop.Dynamics.current.client.reconnect()`),
			poll(`window.__notes.length === 2`))
		if state := eval[string](t, ctx, `document.getElementById('state').textContent`); state != "auth" {
			t.Fatalf("state %q, want auth", state)
		}
		if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("auth")) - refused; n != 3 {
			t.Fatalf("%v hellos refused, want 3", n)
		}
	})
}

// A token function that throws is retried like a failed connection; it
// left the client in connecting for good.
func TestBrowser_TokenFunctionThrows(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tries = 0; ScreenPop.connect({url: %q, storage: 'none', minBackoffMs: 50,
			onState: function (s) { document.getElementById('state').textContent = s; },
			token: function () { if (++window.__tries === 1) { throw new Error('SSO not ready'); } return %q; }})`, e.wsURL, e.token("agent-th"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	if n := eval[int](t, ctx, `window.__tries`); n != 2 {
		t.Fatalf("token function called %d times, want 2 (a throw, then the token)", n)
	}
}

// Without Web Locks a tab claims a pop with a localStorage key; claims and
// markers older than six hours, and claims of earlier versions (no time),
// are pruned when a pop is marked.
func TestBrowser_ClaimsPruned(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html?nolocks"),
		js(`var old = Date.now() - 7 * 3600 * 1000;
			localStorage.setItem('screenpop.claim:pop:v1', 'tabid0abc');
			localStorage.setItem('screenpop.claim:pop:stale', 'tab1 ' + old);
			localStorage.setItem('screenpop.popped:pop:stale', String(old));
			localStorage.setItem('screenpop.claim:pop:recent', 'tab2 ' + Date.now());
			localStorage.setItem('screenpop.popped:pop:recent', String(Date.now()))`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-cl"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	if eval[bool](t, ctx, `!!navigator.locks`) {
		t.Fatal("the page still has Web Locks")
	}
	p := testPop("agent-cl", "conv-cl")
	e.publishPop(p)
	run(t, ctx, poll(`window.__calls.length === 1`))
	keys := eval[[]string](t, ctx, `Object.keys(localStorage).filter(function (k) { return k.indexOf('screenpop.') === 0; }).sort()`)
	want := []string{"screenpop.claim:pop:recent", "screenpop.claim:" + p.ID, "screenpop.popped:pop:recent", "screenpop.popped:" + p.ID}
	slices.Sort(want)
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("localStorage keys %q, want %q", keys, want)
	}
}

// The OAuth redirect page hands the authorization code to window.opener.
// Any page can open the Genesys authorize URL with screenpop's public
// client id, its registered redirect URI and a PKCE challenge of its own:
// a code posted to such an opener (it used to post with targetOrigin "*")
// is exchanged, with the verifier, for the agent's Genesys access token.
// The callback posts only to its own origin and to the allowed origins.
func TestBrowser_OAuthCallbackPostsOnlyToAllowedOrigins(t *testing.T) {
	got := openCallbackFrom(t, false)
	if got != "null" {
		t.Fatalf("a page on a foreign origin received the OAuth callback message %s", got)
	}
	t.Run("AllowedOriginStillGetsIt", func(t *testing.T) {
		if got := openCallbackFrom(t, true); got == "null" {
			t.Fatal("the allowed origin (the Dynamics web resource) did not receive the code")
		}
	})
}

// openCallbackFrom opens the callback page from a page on another origin,
// allowed or not, and returns what that page received (JSON).
func openCallbackFrom(t *testing.T, allowed bool) string {
	var callback string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><button id="go">go</button><script>
window.got = null;
addEventListener('message', function (ev) { window.got = ev.data; });
document.getElementById('go').onclick = function () { window.w = open(%q, 'x', 'popup'); };
</script>`, callback)
	}))
	defer evil.Close()
	cfg := Config{}
	if allowed {
		cfg.AllowedOrigins = []string{evil.URL}
	}
	e := newEnv(t, cfg, newMemStore(), nil)
	callback = e.base + "/web/oauth-callback.html?code=STOLEN-CODE&state=attacker-state"

	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(evil.URL+"/"))
	popups := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return i.Type == "page" })
	run(t, ctx, chromedp.Click(chromedp.CSS(`#go`)))
	select {
	case <-popups:
	case <-time.After(10 * time.Second):
		t.Fatal("no popup opened")
	}
	// The callback page closes itself 300 ms after posting.
	run(t, ctx, poll(`window.got !== null || (window.w && window.w.closed)`))
	run(t, ctx, chromedp.Sleep(200*time.Millisecond))
	return eval[string](t, ctx, `JSON.stringify(window.got)`)
}

// The demo page connects to its own server only: a link to the real
// screenpop host naming another socket in its fragment (#ws=…) used to
// send the token the agent signed in with to that socket.
func TestBrowser_DemoPageIgnoresASocketNamedInItsLink(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	got := make(chan string, 1)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var hello struct{ Token string }
		if ws.ReadJSON(&hello) == nil {
			select {
			case got <- hello.Token:
			default:
			}
		}
	}))
	defer evil.Close()

	ctx := newBrowser(t)
	tok := e.token("agent-link")
	run(t, ctx, chromedp.Navigate(e.base+"/web/demo.html#ws=ws://"+evil.Listener.Addr().String()+"/v1/ws&token="+tok))
	run(t, ctx, poll(`document.getElementById('status').dataset.state === 'ready'`))
	select {
	case tk := <-got:
		t.Fatalf("the demo page sent the token %q to the socket named in its link (%s)", tk, evil.URL)
	default:
	}
}

// Dynamics serves a form's script libraries under a version segment that
// changes with every publish, e.g.
// /%7B638000000000000000%7D/WebResources/new_/screenpop/screenpop.js, while
// the redirect URI docs/agents.md has the admin register is the plain
// .../WebResources/new_/screenpop/oauth-callback.html. ScreenPop.login's
// default redirect URI, next to the script, must be that registered
// string: Genesys compares it exactly.
func TestBrowser_LoginRedirectURIUnderDynamicsVersionPath(t *testing.T) {
	src, err := webFS.ReadFile("web/screenpop.js")
	if err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t)
	// The segment's case, and the folder's, vary with the Dynamics version
	// and the way the library was loaded.
	for _, lib := range []string{
		"/%7B638000000000000000%7D/WebResources/new_/screenpop/screenpop.js",
		"/%7b638000000000000000%7d/webresources/new_/screenpop/screenpop.js",
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.EscapedPath() == lib {
				w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
				w.Write(src)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><script>
window.__popup = { location: {}, closed: false };
window.open = function () { return window.__popup; };
</script><script src=%q></script>`, lib)
		}))
		run(t, ctx, chromedp.Navigate(ts.URL+"/main.aspx?pagetype=entityrecord"),
			js(`ScreenPop.login({loginURL: location.origin, clientId: 'browser-client'})`),
			poll(`!!window.__popup.location.href`))
		got := eval[string](t, ctx, `new URL(window.__popup.location.href).searchParams.get('redirect_uri')`)
		ts.Close()
		if want := ts.URL + "/WebResources/new_/screenpop/oauth-callback.html"; got != want {
			t.Fatalf("library %s: redirect_uri %q, want the registered %q", lib, got, want)
		}
	}
}

// TestBrowser_StoredTokenStaysWithItsDynamicsUser: on a shared workstation
// agent A signs out of Dynamics and agent B signs in, in the same tab. The
// tab's sessionStorage outlives the sign-out, and with it A's Genesys token:
// B's page must not connect with it (B would get A's pops, customers'
// names and numbers included, and never be asked to sign in as B), while
// A's own reload still reconnects without a new sign-in.
func TestBrowser_StoredTokenStaysWithItsDynamicsUser(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	const userA, userB = "aaaaaaaa-d365-4000-8000-00000000000a", "bbbbbbbb-d365-4000-8000-00000000000b"
	tokA := e.token("agent-a")
	page := func(user string) string { return pages.URL + "/webresource.html?user=" + user }

	run(t, ctx, chromedp.Navigate(page(userA)),
		js(fmt.Sprintf(`window.__startStored(%q)`, e.wsURL)),
		poll(`document.getElementById('state').textContent === 'auth'`),
		js(fmt.Sprintf(`window.__signIn(%q)`, tokA)),
		poll(`document.getElementById('state').textContent === 'ready'`))

	t.Run("SameUserReloads", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(page(userA)),
			js(fmt.Sprintf(`window.__startStored(%q)`, e.wsURL)),
			poll(`document.getElementById('state').textContent === 'ready'`))
		if got := eval[string](t, ctx, `ScreenPop.Dynamics.current.client.agentId`); got != "agent-a" {
			t.Fatalf("reloaded page connected as %q, want agent-a", got)
		}
	})

	t.Run("AnotherUserSignsIn", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate("about:blank")) // A signed out
		run(t, ctx, chromedp.Navigate(page(userB)),
			js(fmt.Sprintf(`window.__startStored(%q)`, e.wsURL)),
			poll(`['ready', 'auth'].indexOf(document.getElementById('state').textContent) >= 0`))
		if st := eval[string](t, ctx, `document.getElementById('state').textContent`); st != "auth" {
			p := testPop("agent-a", "conv-a-private")
			e.publishPop(p)
			run(t, ctx, poll(`window.__calls.length >= 1`))
			t.Fatalf("B's page is %s as %s with A's stored token and opened A's pop: %s", st,
				eval[string](t, ctx, `ScreenPop.Dynamics.current.client.agentId`), eval[string](t, ctx, `JSON.stringify(window.__calls)`))
		}
	})
}

// uciApp opens the Unified Interface test page (testdata/uci.html) on a
// first record, signed in as agent, and waits until its page is ready.
func uciApp(t *testing.T, e *env, pages *httptest.Server, query, agent string) context.Context {
	t.Helper()
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html"+query),
		js(fmt.Sprintf(`window.__open(%q, %q)`, e.wsURL, e.token(bridge.AgentID(agent)))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	return ctx
}

// In Unified Interface the form libraries run in a hidden iframe per page
// (ClientApiFrame_<n>), and the app calls OnLoad in each new one: every
// record an agent opens, a pop's included, loads the scripts afresh. The
// tab must still hold one connection: one per page piled up sockets (every
// one receiving and claiming each pop, each asking for its own sign-in).
func TestBrowser_UCIOneConnectionPerTab(t *testing.T) {
	for _, mode := range []struct{ name, query string }{{"PagesKept", ""}, {"PagesDropped", "?drop"}} {
		t.Run(mode.name, func(t *testing.T) {
			e, pages := pageEnv(t)
			ctx := uciApp(t, e, pages, mode.query, "agent-uci")
			for i := range 3 {
				p := testPop("agent-uci", fmt.Sprintf("conv-uci-%d", i))
				p.Target.ID = fmt.Sprintf("cccccccc-0000-4000-8000-%012d", i)
				e.publishPop(p)
				// The pop opens its record: a new page, whose OnLoad runs.
				run(t, ctx, poll(fmt.Sprintf(`window.__frames === %d && document.getElementById('record').textContent === 'contact %s'`, i+2, p.Target.ID)))
			}
			run(t, ctx, poll(`window.__clients().indexOf('ready') >= 0`))
			waitFor(t, 10*time.Second, "one connection", func() bool { return e.srv.Status().(Status).Connections == 1 }, true)
			if n := e.srv.Status().(Status).Connections; n != 1 {
				t.Fatalf("%d connections from one tab after 3 record navigations, want 1 (clients: %s)", n, eval[string](t, ctx, `JSON.stringify(window.__clients())`))
			}
			if n := eval[int](t, ctx, `window.__calls.length`); n != 3 {
				t.Fatalf("%d openForm calls for 3 pops", n)
			}
			// The tab still pops, once.
			e.publish("agent-uci", "conv-uci-last")
			run(t, ctx, poll(`window.__calls.length === 4`))
			if mode.query == "" {
				// The newest page goes (a dialog's form closes): an earlier
				// page still there takes the connection back.
				run(t, ctx, poll(`window.__frames === 5`), js(`document.getElementById('ClientApiFrame_5').remove()`))
				e.publish("agent-uci", "conv-uci-back")
				run(t, ctx, poll(`window.__calls.length === 5`))
			}
		})
	}
}

// A form library runs in the page's hidden ClientApiFrame (its viewport is
// 0x0): a chooser added to that frame's document is never seen, and the
// agent cannot pick the caller's record. It must show in the app.
func TestBrowser_UCIChooserVisible(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", "agent-uci-ch")
	p := testPop("agent-uci-ch", "conv-uci-ch")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	p.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: "dddddddd-0000-4000-8000-000000000001", Name: "Ann One"},
		{Entity: "contact", ID: "dddddddd-0000-4000-8000-000000000002", Name: "Ann Two"},
	}
	e.publishPop(p)
	run(t, ctx, poll(`window.__page().Dynamics.current.handled.length === 1 && window.__page().Dynamics.current.handled[0].done`))
	sel := `button.screenpop-candidate[data-id="dddddddd-0000-4000-8000-000000000002"]`
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS(sel)))
	cancel()
	if err != nil {
		t.Fatalf("no chooser in the app window (%v); in the hidden frame: %v", err,
			eval[bool](t, ctx, `!!document.getElementById('ClientApiFrame_1').contentDocument.querySelector('.screenpop-chooser')`))
	}
	run(t, ctx, chromedp.Click(chromedp.CSS(sel)), poll(`window.__calls.length === 1`))
	if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != "dddddddd-0000-4000-8000-000000000002" {
		t.Fatalf("opened %q after choosing Ann Two", got)
	}
}

// Of two tabs of one agent, the one in front must open the pop: the other
// is out of sight, and a pop opened there is one the agent never sees. Here
// the tab in front hears each pop 50 ms after the one behind, which waits
// hiddenWaitMs (as in the other tests of which tab acts: under -race on a
// loaded machine the tab in front can see its pop more than 300 ms after
// the other, without the 50 ms).
func TestBrowser_TwoTabsVisibleOneOpens(t *testing.T) {
	e, pages := pageEnv(t)
	behind := newBrowser(t)
	front, cancel := chromedp.NewContext(behind)
	defer cancel()
	if err := chromedp.Do(front); err != nil {
		t.Fatal(err)
	}
	tok := e.token("agent-vis")
	run(t, behind, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`Object.defineProperty(document, 'visibilityState', { get: function () { return 'hidden'; } })`),
		js(fmt.Sprintf(`window.__start(%q, %q, %d)`, e.wsURL, tok, hiddenWaitMs)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	run(t, front, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`Object.defineProperty(document, 'visibilityState', { get: function () { return 'visible'; } });
			// Deliver each message 50 ms late.
			Object.defineProperty(WebSocket.prototype, 'onmessage', { set: function (f) {
				this.addEventListener('message', function (ev) { setTimeout(function () { f(ev); }, 50); });
			} }); undefined`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	for i := range 3 {
		e.publish("agent-vis", fmt.Sprintf("conv-vis-%d", i))
	}
	for _, ctx := range []context.Context{front, behind} {
		run(t, ctx, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 3`))
	}
	if n, m := eval[int](t, front, `window.__calls.length`), eval[int](t, behind, `window.__calls.length`); n != 3 || m != 0 {
		t.Fatalf("the tab in front opened %d pops, the one behind %d; want 3 and 0", n, m)
	}
}

package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/memory"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// A whole shift with one page open, compressed: 400 pops of every kind,
// twenty dropped sockets and the replays after them, choosers drawn,
// replaced, dismissed and picked from, some pops acked late. Whatever the
// web resource keeps (DOM, timers, listeners, its own arrays, notifications
// left up) must not grow with the pops: the same after the 400th pop as
// after the 200th (samples after 100, 200 and 400 are logged, with the JS
// heap). And no pop may be acted on twice, however many replays it went
// through.

// shiftProbeJS runs in every frame before its scripts: it counts the
// outstanding timers and the listeners on window and document.
const shiftProbeJS = `(function () {
  var st = window.setTimeout, ct = window.clearTimeout, si = window.setInterval, ci = window.clearInterval;
  var timeouts = new Map(), intervals = new Set(), listeners = [];
  window.setTimeout = function (fn, ms) {
    var args = Array.prototype.slice.call(arguments, 2), id;
    id = st.call(window, function () { timeouts.delete(id); if (typeof fn === 'function') { fn.apply(this, args); } }, ms);
    // chromedp's own polls (evaluated code, <anonymous>) are not counted.
    var where = String(new Error().stack).split('\n').slice(2, 4).join(' |');
    if (where.indexOf('<anonymous>') < 0) { timeouts.set(id, ms + ' ' + where); }
    return id;
  };
  window.clearTimeout = function (id) { timeouts.delete(id); return ct.call(window, id); };
  window.setInterval = function () { var id = si.apply(window, arguments); intervals.add(id); return id; };
  window.clearInterval = function (id) { intervals.delete(id); return ci.call(window, id); };
  var add = EventTarget.prototype.addEventListener, rem = EventTarget.prototype.removeEventListener;
  function cap(o) { return typeof o === 'boolean' ? o : !!(o && o.capture); }
  function find(t, type, fn, c) {
    for (var i = 0; i < listeners.length; i++) {
      var l = listeners[i];
      if (l.t === t && l.type === type && l.fn === fn && l.c === c) { return i; }
    }
    return -1;
  }
  EventTarget.prototype.addEventListener = function (type, fn, o) {
    if ((this === window || this === document) && fn && find(this, type, fn, cap(o)) < 0) {
      listeners.push({ t: this, type: type, fn: fn, c: cap(o) });
    }
    return add.apply(this, arguments);
  };
  EventTarget.prototype.removeEventListener = function (type, fn, o) {
    var i = find(this, type, fn, cap(o));
    if (i >= 0) { listeners.splice(i, 1); }
    return rem.apply(this, arguments);
  };
  window.__probe = function () {
    var by = {};
    listeners.forEach(function (l) { var k = (l.t === window ? 'window ' : 'document ') + l.type; by[k] = (by[k] || 0) + 1; });
    var pend = {}; timeouts.forEach(function (v) { pend[v] = (pend[v] || 0) + 1; });
    return { pending: pend, timeouts: timeouts.size, intervals: intervals.size, listeners: listeners.length, byType: by };
  };
})();`

// shiftSample is what the page holds at one point of the shift.
type shiftSample struct {
	Handled   int            `json:"handled"`   // Controller.handled
	Timeouts  int            `json:"timeouts"`  // outstanding setTimeouts, script's window and app's
	Pending   map[string]int `json:"pending"`   // where they were set
	Intervals int            `json:"intervals"` // outstanding setIntervals
	Listeners int            `json:"listeners"` // on window and document, script's window and app's
	ByType    map[string]int `json:"byType"`
	Elements  int            `json:"elements"` // elements of the app's document
	Choosers  int            `json:"choosers"`
	NotesOpen int            `json:"notesOpen"` // app notifications shown and not cleared
	Storage   int            `json:"storage"`   // localStorage entries
	// After a forced garbage collection:
	Nodes     int64 `json:"-"` // DOM nodes alive in the renderer, attached or not
	JSListen  int64 `json:"-"`
	HeapBytes int64 `json:"-"`
}

func (s shiftSample) String() string {
	return fmt.Sprintf("handled=%d timeouts=%d intervals=%d listeners=%d %v elements=%d choosers=%d openNotifications=%d localStorage=%d | after GC: nodes=%d jsListeners=%d heap=%dKB",
		s.Handled, s.Timeouts, s.Intervals, s.Listeners, s.ByType, s.Elements, s.Choosers, s.NotesOpen, s.Storage, s.Nodes, s.JSListen, s.HeapBytes/1024)
}

// shiftApp is a page for the shift: how to start it and where its script runs.
type shiftApp struct {
	name, file string
	// win is the JavaScript expression of the window the web resource runs in.
	win string
	// openNotes is the number of the app's notifications still shown (JavaScript).
	openNotes string
	// setup loads the page and connects it; hang makes Xrm.WebApi's reads
	// hang (an access check answered late), where the page has it.
	setup func(t *testing.T, ctx context.Context, e *env, tok string)
	hang  string
}

func shiftMeasure(t *testing.T, ctx context.Context, app shiftApp) shiftSample {
	t.Helper()
	// The lock holds of the last pops (lockMs 1500) run out; only the
	// watchdog stays.
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = chromedp.Do(tctx, poll(fmt.Sprintf(`(function (w) { return w.__probe().timeouts + (w === window ? 0 : window.__probe().timeouts) <= 2; })(%s)`, app.win)))
	cancel()
	s := eval[shiftSample](t, ctx, fmt.Sprintf(`(function (w) {
		var d = w.ScreenPop.Dynamics.current, p = w.__probe(), q = w === window ? { timeouts: 0, intervals: 0, listeners: 0, byType: {}, pending: {} } : window.__probe();
		var by = {}; [p.byType, q.byType].forEach(function (b) { Object.keys(b).forEach(function (k) { by[k] = (by[k] || 0) + b[k]; }); });
		return { handled: d.handled.length, timeouts: p.timeouts + q.timeouts, pending: Object.assign({}, q.pending, p.pending), intervals: p.intervals + q.intervals,
			listeners: p.listeners + q.listeners, byType: by, elements: document.getElementsByTagName('*').length,
			choosers: document.querySelectorAll('.screenpop-chooser').length, notesOpen: %s, storage: w.localStorage.length };
	})(%s)`, app.openNotes, app.win))
	tctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for range 3 {
			if _, err := cdp.Call(ctx, tg, heapprofiler.CollectGarbage, cdp.Empty{}); err != nil {
				return err
			}
		}
		h, err := cdp.Call(ctx, tg, runtime.GetHeapUsage, cdp.Empty{})
		if err != nil {
			return err
		}
		c, err := cdp.Call(ctx, tg, memory.GetDOMCounters, cdp.Empty{})
		if err != nil {
			return err
		}
		s.HeapBytes, s.Nodes, s.JSListen = int64(h.UsedSize), c.Nodes, c.JsEventListeners
		return nil
	}))
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	return s
}

// shiftKindPop is pop i of the shift: mostly open, and choose (between two
// or three records), create and search.
func shiftKindPop(agent bridge.AgentID, i int, kind string) *bridge.Pop {
	p := testPop(agent, fmt.Sprintf("conv-long-%d", i))
	p.Customer.Phone = fmt.Sprintf("+1317555%04d", i)
	switch kind {
	case "open":
		p.Target.ID = fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", i)
	case "choose":
		p.Target = bridge.Target{Action: bridge.ActionChoose}
		for k := range 2 + i%2 {
			p.Candidates = append(p.Candidates, bridge.Candidate{Entity: "contact", ID: fmt.Sprintf("bbbbbbbb-%04d-4000-8000-%012d", k, i), Name: fmt.Sprintf("Caller %d/%d", i, k)})
		}
	case "create":
		p.Target = bridge.Target{Action: bridge.ActionCreate, Entity: "contact"}
		p.Prefill = map[string]string{"telephone1": p.Customer.Phone}
	case "search":
		p.Target = bridge.Target{Action: bridge.ActionSearch, Entity: "contact", Query: p.Customer.Phone}
	}
	return p
}

// shiftKind is the kind of pop i (1-based) in batch b of 20: choosers
// replace each other (7, 8), are dropped by the next pop, and every third
// batch ends on one, which the agent dismisses or picks from.
func shiftKind(i, b int) string {
	switch {
	case i%20 == 0 && b%3 == 0:
		return "choose"
	case i%20 == 3 || i%20 == 7 || i%20 == 8 || i%20 == 15:
		return "choose"
	case i%20 == 5 || i%20 == 13:
		return "create"
	case i%20 == 17:
		return "search"
	}
	return "open"
}

func TestBrowser_LongShift(t *testing.T) {
	if testing.Short() {
		t.Skip("a compressed shift of 400 pops")
	}
	apps := []shiftApp{
		{
			// The HTML web resource page (or a dashboard) on its own,
			// with the Xrm of the app.
			name:      "WebResource",
			file:      "/webresource.html",
			win:       `window`,
			openNotes: `window.__notes.length - (window.__cleared || []).length`,
			setup: func(t *testing.T, ctx context.Context, e *env, tok string) {
				run(t, ctx, js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
					poll(`document.getElementById('state').textContent === 'ready'`))
			},
		},
		{
			// The web resource in a pane of the Unified Interface app
			// that stays for the shift (an app side pane): it draws in
			// the app's document, and openForm navigates the main area,
			// not its frame.
			name:      "AppPane",
			file:      "/uci.html",
			win:       `document.getElementById('ClientApiFrame_1').contentWindow`,
			openNotes: `window.__notes.length - (window.__cleared || []).length`,
			hang:      `window.__webApiHang`,
			setup: func(t *testing.T, ctx context.Context, e *env, tok string) {
				run(t, ctx,
					js(`window.Xrm.Navigation.openForm = function (options, params) { window.__calls.push({ options: options, params: params || null }); return new Promise(function () {}); }`),
					js(fmt.Sprintf(`window.__open(%q, %q, { accessWaitMs: 300 })`, e.wsURL, tok)),
					poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
			},
		},
	}
	for _, app := range apps {
		t.Run(app.name, func(t *testing.T) {
			const agent = "agent-long"
			e, pages := pageEnv(t)
			ctx := newBrowser(t)
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: shiftProbeJS})
				return err
			}))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			run(t, ctx, chromedp.Navigate(pages.URL+app.file))
			app.setup(t, ctx, e, e.token(agent))
			// Every act (a claimed pop acted on), logged for the test to
			// drain, so that nothing of the test's grows in the page.
			run(t, ctx, js(fmt.Sprintf(`(function (w) {
				var C = w.ScreenPop.Dynamics.Controller, act = C.prototype.act;
				window.__acts = [];
				C.prototype.act = function (pop) { window.__acts.push(pop.id); return act.apply(this, arguments); };
			})(%s)`, app.win)))

			run(t, ctx, js(fmt.Sprintf(`window.__processed = function (want) {
				var c = (%s).ScreenPop.Dynamics.current;
				return c.client.cursor.lastSeq >= want && c.handled.every(function (h) { return h.done; });
			}`, app.win)))
			acts := map[string]int{}
			var samples = map[int]shiftSample{}
			drops := 0
			const batch, total = 20, 400
			for b := 0; b*batch < total; b++ {
				hang := app.hang != "" && b%4 == 1
				if hang {
					// This batch's access checks are answered late: its
					// choose pops are acked 300 ms after they arrive.
					run(t, ctx, js(app.hang+` = true`))
				}
				var last uint64
				for k := 1; k <= batch; k++ {
					i := b*batch + k
					last = e.publishPop(shiftKindPop(agent, i, shiftKind(i, b)))
					if k == batch/2 && b%2 == 1 {
						// The socket drops with pops in flight: the
						// replay after it repeats those not processed.
						e.srv.closeAll(CloseTooSlow, msgTooSlow)
						drops++
					}
				}
				// One source for every batch (the seq as an argument):
				// each new source evaluated would stay in the page's heap.
				run(t, ctx, chromedp.PollFunction[chromedp.Void](`function (want) { return window.__processed(want); }`,
					chromedp.WithPollingArgs(last), chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
				if hang {
					run(t, ctx, js(app.hang+` = false`))
				}
				if b%2 == 0 {
					e.srv.closeAll(CloseTooSlow, msgTooSlow) // an idle drop
					drops++
				}
				// The agent deals with the batch's last chooser.
				if b%6 == 0 {
					run(t, ctx, js(`(document.querySelector('.screenpop-chooser button:last-child') || { click: function () {} }).click()`))
				} else if b%6 == 3 {
					run(t, ctx, js(`(document.querySelector('.screenpop-chooser .screenpop-candidate') || { click: function () {} }).click()`))
				}
				for _, id := range eval[[]string](t, ctx, `window.__acts.splice(0)`) {
					acts[id]++
				}
				// The stubs' own records of the calls are the test's, not
				// the page's: emptied as read.
				run(t, ctx, js(`window.__calls.length = 0; if (window.__retrieves) { window.__retrieves.length = 0; } if (window.__states) { window.__states.length = 0; }`))
				if n := (b + 1) * batch; n == 100 || n == total/2 || n == total {
					run(t, ctx, poll(`document.getElementById('state') ? document.getElementById('state').textContent === 'ready' : window.__clients()[0] === 'ready'`))
					samples[n] = shiftMeasure(t, ctx, app)
					t.Logf("after %4d pops, %2d drops: %v", n, drops, samples[n])
				}
			}
			// The replays did send pops the page had been sent already.
			live, replayed := testutil.ToFloat64(e.srv.m.popsSent), testutil.ToFloat64(e.srv.m.popsReplay)
			t.Logf("%d pops sent live and %d replayed for %d pops", int(live), int(replayed), total)
			if live+replayed <= total {
				t.Errorf("%v pops sent for %d: none twice, the replays were not put to the test", live+replayed, total)
			}
			for i := 1; i <= total; i++ {
				id := string(shiftKindPop(agent, i, "open").ID)
				if acts[id] != 1 {
					t.Errorf("pop %d (%s) acted on %d times, want once", i, id, acts[id])
				}
			}
			// Bounded means the second half of the shift adds nothing: a
			// list kept to its last few entries may still fill up in the
			// first.
			a, m, z := samples[100], samples[total/2], samples[total]
			grew := func(what string, f func(shiftSample) int64, slack int64) bool {
				if f(z)-f(m) <= slack {
					return false
				}
				t.Errorf("%s: %d after 100 pops, %d after %d, %d after %d (grows with the pops)", what, f(a), f(m), total/2, f(z), total)
				return true
			}
			// The script's own list keeps its last 20 entries (KEEP).
			if z.Handled > 20 {
				t.Errorf("after %d pops Controller.handled has %d entries, want at most 20 (after 100: %d)", total, z.Handled, a.Handled)
			}
			if grew("outstanding timeouts", func(s shiftSample) int64 { return int64(s.Timeouts) }, 1) {
				t.Logf("timeouts outstanding after %d pops: %v", total, z.Pending)
			}
			grew("outstanding intervals", func(s shiftSample) int64 { return int64(s.Intervals) }, 0)
			grew("listeners on window and document", func(s shiftSample) int64 { return int64(s.Listeners) }, 0)
			grew("elements in the app's document", func(s shiftSample) int64 { return int64(s.Elements) }, 10)
			grew("notifications shown and never cleared", func(s shiftSample) int64 { return int64(s.NotesOpen) }, 1)
			grew("DOM nodes alive after GC", func(s shiftSample) int64 { return s.Nodes }, 100)
			// The JS heap is logged, not checked: after a GC it also holds
			// the code V8 compiles as the page warms up and the sources the
			// test evaluates (some 50-100 KB over the shift, when what
			// the script keeps is flat).
		})
	}
}

// A list drawn in the app's document by a page's form library goes with
// that page (its buttons call the page's code), also when the page drew
// others before it: the page's one pagehide listener closes its list.
func TestBrowser_ChooserGoesWithItsPage(t *testing.T) {
	const agent = "agent-pagehide"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?drop", agent)
	for i := range 3 {
		popChoose(t, e, ctx, agent, fmt.Sprintf("conv-pagehide-%d", i))
	}
	run(t, ctx, poll(`document.querySelectorAll('.screenpop-chooser').length === 1`),
		js(`window.__oldList = document.querySelector('.screenpop-chooser'); true`),
		// The app navigates (a record opened elsewhere): the page that drew
		// the list is dropped.
		js(`window.Xrm.Navigation.openForm({ entityName: 'account', entityId: '00000000-0000-4000-8000-0000000000ab' })`),
		poll(`window.__frames === 2 && !document.getElementById('ClientApiFrame_1')`),
		// The next page shows the list again (resumeChoice): its own.
		poll(`!!document.querySelector('.screenpop-chooser')`), sleepJS(300))
	if eval[bool](t, ctx, `window.__oldList.isConnected`) {
		t.Fatal("the list of the page that went is still in the app")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 1 {
		t.Fatalf("%d lists in the app after the page that drew them went, want the one the next page shows again", n)
	}
}

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

// Genesys lets an agent hold a call and several chats, messages and emails
// at once: two of them can alert within milliseconds of each other, and
// their pops reach the page back to back. These tests publish two pops of
// one agent together and check what the web resource makes of them.

// callPop is a call's pop that opens a record of its own (its id ends in n);
// chatChoosePop a chat's whose customer matches two records.
func callPop(agent string, n int) *bridge.Pop {
	p := testPop(bridge.AgentID(agent), fmt.Sprintf("conv-%s-call-%d", agent, n))
	p.Target.ID = fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", n)
	return p
}

func chatChoosePop(agent string, n int) *bridge.Pop {
	p := testPop(bridge.AgentID(agent), fmt.Sprintf("conv-%s-chat-%d", agent, n))
	p.Media = bridge.MediaChat
	p.Customer = bridge.PopCustomer{Email: "ann@example.com", Name: "Ann"}
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	p.Candidates = []bridge.Candidate{
		{Entity: "contact", ID: fmt.Sprintf("cccccccc-0000-4000-8000-%012d", 2*n+1), Name: "Ann One"},
		{Entity: "contact", ID: fmt.Sprintf("cccccccc-0000-4000-8000-%012d", 2*n+2), Name: "Ann Two"},
	}
	return p
}

// settledPages is true once every page of the UCI stand-in has finished
// every pop it was handed.
const handledJS = `JSON.stringify({calls: window.__calls.map(function (c) { return c.options.entityId; }), frames: Array.prototype.map.call(document.querySelectorAll('iframe'), function (f) { var d = f.contentWindow && f.contentWindow.ScreenPop && f.contentWindow.ScreenPop.Dynamics && f.contentWindow.ScreenPop.Dynamics.current; return d ? {id: f.id, state: d.client && d.client.state, handled: d.handled} : f.id; })})`

const settledPages = `Array.prototype.every.call(document.querySelectorAll('iframe'), function (f) {
	var ns = f.contentWindow && f.contentWindow.ScreenPop, d = ns && ns.Dynamics && ns.Dynamics.current;
	return !d || d.handled.every(function (h) { return h.done; });
})`

// pagesSettled waits until every page of the UCI stand-in has finished every
// pop it was handed.
var pagesSettled chromedp.Action[chromedp.Void] = func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, err := chromedp.Evaluate[bool](settledPages)(ctx, tg)
		if err != nil {
			return chromedp.Void{}, err
		}
		if ok {
			return chromedp.Void{}, nil
		}
		if time.Now().After(deadline) {
			return chromedp.Void{}, fmt.Errorf("pages not pagesSettled")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sleepJS waits ms in the page.
func sleepJS(ms int) chromedp.Action[chromedp.Void] {
	return poll(fmt.Sprintf(`new Promise(function (r) { setTimeout(function () { r(true); }, %d); })`, ms))
}

// A call alerts and, a few milliseconds later, a chat whose customer
// matches two records: the call's record opens (a new page in Unified
// Interface, which takes the app a moment) and the chat's chooser must then
// be there for the agent, in the app, and stay there: nothing newer
// replaced it. Both pops are acked. With ?drop the page that claimed the
// chat's pop goes while (Slow: before) it draws the list.
func TestBrowser_UCIConcurrentCallThenChatChooser(t *testing.T) {
	for _, mode := range []struct{ name, query string }{{"PagesKept", ""}, {"PagesDropped", "?drop"}} {
		for _, check := range []struct {
			name string
			ms   int // how long Xrm.WebApi takes to answer the access check
		}{{"", 20}, {"Slow", 400}} {
			t.Run(mode.name+check.name, func(t *testing.T) {
				agent := "agent-cc-" + strings.ToLower(mode.name+check.name)
				e, pages := pageEnv(t)
				ctx := uciApp(t, e, pages, mode.query, agent)
				// The app takes a moment to navigate to the opened record: its
				// page (and, with ?drop, the end of the one before) comes 150 ms
				// after openForm, not in the next task.
				run(t, ctx, js(fmt.Sprintf(`Xrm.Navigation.openForm = function (options, params) {
					window.__calls.push({ options: options, params: params || null });
					setTimeout(function () { loadPage(options.entityName, options.entityId || ''); }, 150);
					return new Promise(function () {});
				};
				Xrm.WebApi.retrieveRecord = function (entity, id) {
					return new Promise(function (resolve) { setTimeout(function () { var r = {}; r[entity + 'id'] = id; resolve(r); }, %d); });
				}`, check.ms)))
				call, chat := callPop(agent, 1), chatChoosePop(agent, 1)
				e.publishPop(call)
				e.publishPop(chat)
				run(t, ctx, poll(`window.__calls.length >= 1 && window.__frames >= 2`))
				waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 }, true)
				run(t, ctx, pagesSettled, sleepJS(1000))
				if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != call.Target.ID {
					t.Fatalf("openForm opened %q, want the call's record %q", got, call.Target.ID)
				}
				if n := eval[int](t, ctx, `window.__calls.length`); n != 1 {
					t.Fatalf("%d openForm calls, want 1 (the call's)", n)
				}
				sel := fmt.Sprintf(`button.screenpop-candidate[data-id=%q]`, chat.Candidates[1].ID)
				if !eval[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('%s')`, sel)) {
					t.Fatalf("the chat's chooser is not in the app after the call's record opened: the agent cannot pick the chat customer's record (%d pops acked; pages: %s)",
						e.srv.nAcked.Load(), eval[string](t, ctx, handledJS))
				}
				if n := e.srv.nAcked.Load(); n != 2 {
					t.Errorf("%d pops acked, want 2", n)
				}
				run(t, ctx, chromedp.Click(chromedp.CSS(sel)), poll(`window.__calls.length === 2`))
				if got := eval[string](t, ctx, `window.__calls[1].options.entityId`); got != chat.Candidates[1].ID {
					t.Fatalf("clicking Ann Two opened %q", got)
				}
			})
		}
	}
}

// Two calls' (or a call's and a chat's) records in a single-session app:
// both open, in the order they came, each acked: the later openForm is the
// one the app navigates to last.
func TestBrowser_UCIConcurrentTwoOpens(t *testing.T) {
	for _, mode := range []struct{ name, query string }{{"PagesKept", ""}, {"PagesDropped", "?drop"}} {
		t.Run(mode.name, func(t *testing.T) {
			agent := "agent-c2-" + strings.ToLower(mode.name)
			e, pages := pageEnv(t)
			ctx := uciApp(t, e, pages, mode.query, agent)
			a, b := callPop(agent, 1), callPop(agent, 2)
			b.Media = bridge.MediaChat
			e.publishPop(a)
			e.publishPop(b)
			run(t, ctx, poll(`window.__calls.length >= 2`), pagesSettled)
			waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 }, true)
			got := eval[[]formCall](t, ctx, `window.__calls`)
			if len(got) != 2 || got[0].Options.EntityID != a.Target.ID || got[1].Options.EntityID != b.Target.ID {
				t.Fatalf("openForm calls %+v, want %s then %s", got, a.Target.ID, b.Target.ID)
			}
			if n := e.srv.nAcked.Load(); n != 2 {
				t.Errorf("%d pops acked, want 2", n)
			}
		})
	}
}

// A chat's chooser, then a call's record a moment later: the record opens
// and (docs/agents.md) the chooser goes; both are acked. Then a second chat
// chooser after a first: the second replaces the first.
func TestBrowser_UCIConcurrentChooserThenOpen(t *testing.T) {
	agent := "agent-c3"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent)
	chat, call := chatChoosePop(agent, 1), callPop(agent, 1)
	e.publishPop(chat)
	e.publishPop(call)
	run(t, ctx, poll(`window.__calls.length >= 1`), pagesSettled)
	waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 })
	if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != call.Target.ID {
		t.Fatalf("opened %q, want the call's record", got)
	}
	run(t, ctx, sleepJS(300))
	if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
		t.Fatalf("%d choosers left over the call's record", n)
	}

	c1, c2 := chatChoosePop(agent, 2), chatChoosePop(agent, 3)
	e.publishPop(c1)
	e.publishPop(c2)
	waitFor(t, 10*time.Second, "four pops acked", func() bool { return e.srv.nAcked.Load() == 4 })
	run(t, ctx, pagesSettled, sleepJS(300))
	ids := eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll('.screenpop-candidate'), function (b) { return b.getAttribute('data-id'); })`)
	if len(ids) != 2 || ids[0] != c2.Candidates[0].ID || ids[1] != c2.Candidates[1].ID {
		t.Fatalf("candidates shown %v, want the second chat's only (%s, %s)", ids, c2.Candidates[0].ID, c2.Candidates[1].ID)
	}
}

// In a multisession app two pops at once open two tabs, in order, and the
// page the agent was on stays.
func TestBrowser_MultisessionConcurrentPops(t *testing.T) {
	agent := "agent-c4"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?apm", agent)
	a, b := callPop(agent, 1), callPop(agent, 2)
	b.Media = bridge.MediaEmail
	e.publishPop(a)
	e.publishPop(b)
	run(t, ctx, poll(`window.__tabs.length >= 2`), pagesSettled)
	waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 })
	tabs := eval[[]appTab](t, ctx, `window.__tabs`)
	if len(tabs) != 2 || tabs[0].AppContext["entityId"] != a.Target.ID || tabs[1].AppContext["entityId"] != b.Target.ID {
		t.Fatalf("createTab calls %+v, want %s then %s", tabs, a.Target.ID, b.Target.ID)
	}
	if n := eval[int](t, ctx, `window.__calls.length`); n != 0 {
		t.Fatalf("%d openForm calls beside createTab", n)
	}
}

// A call's record opens and a chat's list follows it: the agent, on the
// phone, must be able to tell that the list is the chat customer's, not
// the caller's, or a click opens the chat customer's record in place of
// the caller's.
func TestBrowser_UCIConcurrentChooserNamesItsInteraction(t *testing.T) {
	agent := "agent-c5"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent)
	call, chat := callPop(agent, 1), chatChoosePop(agent, 1)
	e.publishPop(call)
	e.publishPop(chat)
	waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 })
	run(t, ctx, poll(`!!document.querySelector('.screenpop-chooser')`))
	label := eval[string](t, ctx, `document.querySelector('.screenpop-chooser').getAttribute('aria-label')`)
	text := eval[string](t, ctx, `document.querySelector('.screenpop-chooser').firstChild.textContent`)
	if strings.Contains(label+text, "caller") || !strings.Contains(label, "chat") || !strings.Contains(text, "chat") || !strings.Contains(text, chat.Customer.Email) {
		t.Fatalf("the chat's list over the call's record reads %q (label %q): it names no chat and no %s, and says the caller's", text, label, chat.Customer.Email)
	}
}

// A chat's list waits for its access check (Xrm.WebApi, up to 1.5 s); a
// call that alerts a moment later must not wait for it too: an open pop is
// not held for an access check (docs/agents.md), not even another pop's.
func TestBrowser_UCIConcurrentCallNotHeldByAChatsAccessCheck(t *testing.T) {
	agent := "agent-c6"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent)
	run(t, ctx, js(`window.__webApiHang = true`))
	chat, call := chatChoosePop(agent, 1), callPop(agent, 1)
	e.publishPop(chat)
	run(t, ctx, poll(`window.__retrieves.length === 2`))
	start := time.Now()
	e.publishPop(call)
	run(t, ctx, poll(`window.__calls.length === 1`))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the call's record opened %v after its pop was stored: it waited for the chat's access check", d.Round(time.Millisecond))
	}
	if got := eval[string](t, ctx, `window.__calls[0].options.entityId`); got != call.Target.ID {
		t.Fatalf("opened %q, want the call's record", got)
	}
	waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 })
	// The chat's check, once it gives up, does not draw its list over the
	// call's record, which came after it (docs/agents.md: a newer pop
	// removes it).
	time.Sleep(2 * time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
		t.Fatalf("%d lists over the call's record", n)
	}
}

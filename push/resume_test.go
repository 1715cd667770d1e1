package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// recreateStream deletes the pop stream and waits until it is there
// again, as a NATS whose JetStream store was lost leaves it: the
// sequences start at 1 again. The daemon makes it again itself (its pop
// consumer went with the stream), as a second instance would. The test
// does not create it too: NATS refuses a second reservation of its bytes,
// and a create racing the delete's clean-up can leave a stream whose
// message files are gone.
func (e *env) recreateStream() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := e.bus.JetStream()
	st, err := js.Stream(ctx, e.bus.StreamName())
	if err != nil {
		e.t.Fatal(err)
	}
	old := st.CachedInfo()
	if err := js.DeleteStream(ctx, old.Config.Name); err != nil {
		e.t.Fatal(err)
	}
	for {
		if st, err := js.Stream(ctx, old.Config.Name); err == nil && st.CachedInfo().Created.After(old.Created) {
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("the daemon did not make the stream again: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// A stream recreated under a running daemon (its sequences start at 1
// again) must not leave agents without pops. The epoch used to be read
// once at bus.Start, FollowPops' ordered consumer resumed at the old
// sequence, and every socket (and every resuming hello, whose epoch still
// matched) dropped pops with a seq at or below the last one it had.
func TestServer_StreamRecreatedUnderARunningDaemon(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	tok := e.token("agent-sr")
	var last uint64
	for i := range 5 {
		last = e.publish("agent-sr", fmt.Sprintf("conv-sr-%d", i))
	}
	live, r := e.connect(tok, &last, "") // up to date: nothing to replay
	e.recreateStream()
	seq := e.publish("agent-sr", "conv-sr-new")
	if seq >= last {
		t.Fatalf("new stream's seq %d not below the old %d: the test did not reset the stream", seq, last)
	}
	// The connected tab gets the new pop within 15 s, or is told to resume
	// (a close) so it can get it from a new hello.
	deadline := time.Now().Add(15 * time.Second)
	got := false
	for time.Now().Before(deadline) && !got {
		m, err := live.read(time.Until(deadline))
		if err != nil {
			break // closed: the tab would reconnect; checked below
		}
		got = m.Type == "pop" && m.ID == string(bridge.PopID("conv-sr-new", "part-1"))
	}
	// A tab reconnecting now with its cursor (seq last, the epoch of its
	// ready frame) must get the new pop too.
	c2, r2 := e.connect(tok, &last, r.Epoch)
	if r2.Epoch == r.Epoch {
		t.Errorf("ready epoch %q unchanged after the stream was recreated: the browser keeps its old cursor", r2.Epoch)
	}
	got2 := false
	for {
		m, err := c2.read(3 * time.Second)
		if err != nil {
			break
		}
		if m.Type == "pop" && m.Seq == seq {
			got2 = true
			break
		}
	}
	if !got && !got2 {
		t.Fatalf("pop seq %d of the recreated stream reached neither the connected tab nor a resuming one", seq)
	}
	if !got2 {
		t.Fatalf("a tab resuming from seq %d (old epoch) never gets pop seq %d of the recreated stream", last, seq)
	}
}

// A second agent signing in on a tab (or a reload after that: the cursor
// is in sessionStorage) must not resume from the first agent's cursor:
// agent B's pops with a seq at or below A's cursor (here the call ringing
// for B right now) were skipped, and older ones replayed.
func TestBrowser_AgentSwitchDoesNotUseTheOtherAgentsCursor(t *testing.T) {
	st := newMemStore()
	e, pages := pageEnvStore(t, st)
	now := time.Now()
	old := testPop("agent-b", "conv-b-old") // B's call of 60 s ago: older than the fresh window
	old.Target.ID = "bbbbbbbb-0000-4000-8000-000000000001"
	st.add(old, now.Add(-60*time.Second), false)
	ringing := testPop("agent-b", "conv-b-ringing") // B's call ringing now
	ringing.Target.ID = "bbbbbbbb-0000-4000-8000-000000000002"
	st.add(ringing, now.Add(-2*time.Second), false)
	a := testPop("agent-a", "conv-a") // A's last pop: a higher seq than both of B's
	a.Target.ID = "aaaaaaaa-0000-4000-8000-000000000001"
	pa := st.add(a, now, false)

	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token("agent-a"), e.wsURL)),
		poll(`window.__calls.length === 1`),
		poll(fmt.Sprintf(`ScreenPop.Dynamics.current.client.cursor.lastSeq === %d`, pa.Seq)))
	// Agent A leaves; agent B signs in on the same tab (what login() does:
	// a new token and reconnect).
	run(t, ctx, js(fmt.Sprintf(`window.__tok = %q; ScreenPop.Dynamics.current.client.reconnect()`, e.token("agent-b"))),
		// B's replay is complete once the heartbeat after it set the base.
		poll(`ScreenPop.Dynamics.current.client.cursor.agentId === 'agent-b' && typeof ScreenPop.Dynamics.current.client.cursor.base === 'number'`),
		// Pops are handled in seq order: once the ringing call's form is
		// opened, an older pop replayed by mistake has been opened before it.
		poll(`window.__calls.length >= 2`))
	var opened []string
	for _, c := range eval[[]formCall](t, ctx, `window.__calls`)[1:] {
		opened = append(opened, c.Options.EntityID)
	}
	if fmt.Sprint(opened) != fmt.Sprint([]string{ringing.Target.ID}) {
		t.Fatalf("agent B's tab opened %v, want only the ringing call's record %s (not the 60 s old %s); replays %+v",
			opened, ringing.Target.ID, old.Target.ID, st.replayCalls())
	}
}

// A pop that arrives before Xrm is usable (a side pane or HTML web
// resource loading before the app shell's Xrm, or a form library's frame
// still initialising) waits for it; it used to be given up at once
// ("could not be opened", acked, the record never opened).
func TestBrowser_PopBeforeXrmIsReady(t *testing.T) {
	st := newMemStore()
	e, pages := pageEnvStore(t, st)
	p := testPop("agent-x", "conv-x")
	st.add(p, time.Now(), false) // in the fresh window: sent right after ready
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`window.__xrm = window.Xrm; delete window.Xrm; setTimeout(function () { window.Xrm = window.__xrm; }, 1000)`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-x"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	tctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__calls.length === 1`)); err != nil {
		t.Fatalf("the pop's record was never opened once Xrm was there; handled %s, banner %q",
			eval[string](t, ctx, `JSON.stringify(ScreenPop.Dynamics.current.handled)`),
			eval[string](t, ctx, `(document.querySelector('.screenpop-note') || {}).textContent || ''`))
	}
}

// The server side of the agent switch: a hello whose cursor is of
// another agent (agentId of its ready frame) gets the fresh window.
func TestServer_HelloWithAnotherAgentsCursor(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, Config{}, st, nil)
	now := time.Now()
	st.add(testPop("agent-b", "conv-b-old"), now.Add(-60*time.Second), false)
	ringing := st.add(testPop("agent-b", "conv-b-ringing"), now.Add(-2*time.Second), false)
	a := st.add(testPop("agent-a", "conv-a"), now, false)
	c := e.rawClient()
	c.send(map[string]any{"type": "hello", "token": e.token("agent-b"), "lastSeq": a.Seq, "epoch": st.Epoch(), "agentId": "agent-a"})
	if m := c.next(); m.Type != "ready" {
		t.Fatalf("first frame %+v", m)
	}
	if m := c.next(); m.Type != "pop" || m.Seq != ringing.Seq {
		t.Fatalf("got %+v, want the ringing pop %d (fresh window, not agent A's cursor)", m, ringing.Seq)
	}
}

// A page where Xrm never comes waits for it once: every later pop fails
// at once instead of holding the next one for another xrmWaitMs.
func TestBrowser_NoXrmIsWaitedForOncePerPage(t *testing.T) {
	st := newMemStore()
	e, pages := pageEnvStore(t, st)
	for i := range 3 {
		st.add(testPop("agent-nx", fmt.Sprintf("conv-nx-%d", i)), time.Now(), false) // fresh: sent after ready
	}
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`delete window.Xrm`),
		js(fmt.Sprintf(`ScreenPop.Dynamics.start({url: %q, token: %q, lockMs: 1500, xrmWaitMs: 1500, onState: onState})`, e.wsURL, e.token("agent-nx"))))
	// One wait of 1.5 s for the three; one each would take 4.5 s.
	tctx, cancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`(function (h) { return h.length === 3 && h.every(function (r) { return r.done && r.error; }); })(ScreenPop.Dynamics.current.handled)`)); err != nil {
		t.Fatalf("three pops without Xrm not all failed within 3.5 s: %s", eval[string](t, ctx, `JSON.stringify(ScreenPop.Dynamics.current.handled)`))
	}
}

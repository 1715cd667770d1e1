package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// replays is how many hellos the store has been asked to replay.
func (m *memStore) nReplays() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.replays)
}

// The daemon cannot replay for a while (JetStream busy or out of consumers
// after a restart, when every agent's page reconnects at once): each hello
// gets ready and then 1013. The page must back off as after any failed
// connect, not start over from the shortest delay because the socket said
// ready; and once replays work again, the pop of the meantime opens once.
func TestBrowser_ReplayUnavailableBacksOff(t *testing.T) {
	st := newMemStore()
	st.failReplay.Store(1 << 20)
	pages, e, _ := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token("agent-b"), e.wsURL)))
	waitFor(t, 10*time.Second, "a first replay", func() bool { return st.nReplays() > 0 })
	st.add(shiftPop("agent-b", 1), time.Now(), true)
	// Capped exponential backoff from 500 ms, with jitter of half: the
	// retries come at least 0.25, 0.5, 1, 2, 4 s apart, so no more than six
	// hellos in the first six seconds.
	start := time.Now()
	waitFor(t, 6*time.Second, "", func() bool { return st.nReplays() > 8 }, true)
	if n := st.nReplays(); n > 8 {
		t.Errorf("%d hellos in %v while replays failed with 1013: the page does not back off (states %s)",
			n, time.Since(start).Round(100*time.Millisecond), eval[string](t, ctx, `JSON.stringify(window.__states.slice(-12))`))
	}
	st.failReplay.Store(0)
	run(t, ctx, poll(`window.__calls.length >= 1`))
	st.add(shiftPop("agent-b", 2), time.Now(), true)
	run(t, ctx, poll(`window.__calls.length >= 2`))
	if got, want := openedIDs(t, ctx), []string{shiftPop("", 1).Target.ID, shiftPop("", 2).Target.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("opened %v, want %v", got, want)
	}
}

// Two tabs of one agent while the daemon restarts: each pop stored while
// it was down opens once across both tabs, and so does the next live one.
func TestBrowser_TwoTabsDaemonRestarts(t *testing.T) {
	st := newMemStore()
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	ctx1 := newBrowser(t)
	ctx2, cancel := chromedp.NewContext(ctx1)
	defer cancel()
	if err := chromedp.Do(ctx2); err != nil {
		t.Fatal(err)
	}
	for _, ctx := range []context.Context{ctx1, ctx2} {
		run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
			js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token("agent-2r"), e.wsURL)),
			poll(`document.getElementById('state').textContent === 'ready'`))
	}
	st.add(shiftPop("agent-2r", 1), time.Now(), true)
	e.stop()
	for _, ctx := range []context.Context{ctx1, ctx2} {
		run(t, ctx, poll(`document.getElementById('state').textContent !== 'ready'`))
	}
	st.add(shiftPop("agent-2r", 2), time.Now(), false)
	st.add(shiftPop("agent-2r", 3), time.Now(), false)
	e2 := startEnvAt(t, cfg, st, nil, e.ln.Addr().String())
	_ = e2
	for _, ctx := range []context.Context{ctx1, ctx2} {
		run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
	}
	st.add(shiftPop("agent-2r", 4), time.Now(), true)
	count := map[string]int{}
	for _, ctx := range []context.Context{ctx1, ctx2} {
		run(t, ctx, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 4`))
	}
	for _, ctx := range []context.Context{ctx1, ctx2} {
		for _, id := range openedIDs(t, ctx) {
			count[id]++
		}
	}
	for n := 1; n <= 4; n++ {
		if id := shiftPop("", n).Target.ID; count[id] != 1 {
			t.Errorf("pop %d opened %d times across the tabs, want once (all %v)", n, count[id], count)
		}
	}
}

// setOnline switches the tab's network state, as Wi-Fi that drops and
// comes back: the page gets the browser's offline and online events.
func setOnline(t *testing.T, ctx context.Context, online bool) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: !online, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
}

// The agent's laptop loses its network (Wi-Fi drops, a VPN reconnects)
// while the page waits out a long backoff: when the browser says it is
// online again the page connects at once, not at the end of the backoff
// (up to 30 s by default, here a minute), and the pop of the meantime
// opens.
func TestBrowser_ReconnectsWhenTheNetworkIsBack(t *testing.T) {
	st := newMemStore()
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__got = []; ScreenPop.connect({url: %q, storage: 'none', minBackoffMs: 60000, maxBackoffMs: 60000,
			onState: function (s) { document.getElementById('state').textContent = s; },
			onPop: function (p) { window.__got.push(p.target.id); },
			token: %q})`, e.wsURL, e.token("agent-net"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	setOnline(t, ctx, false)
	e.stop()
	run(t, ctx, poll(`document.getElementById('state').textContent === 'reconnecting'`))
	st.add(shiftPop("agent-net", 1), time.Now(), false)
	startEnvAt(t, cfg, st, nil, e.ln.Addr().String())
	setOnline(t, ctx, true)
	run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
	run(t, ctx, poll(fmt.Sprintf(`window.__got.length === 1 && window.__got[0] === %q`, shiftPop("", 1).Target.ID)))
}

// The same, for a page whose token function fetches its token (an SSO
// library's refresh in jwt mode, agents.md): offline, it fails, and the
// client waits out its backoff as after a failed connection. When the
// browser is back online it connects at once there too, not at the end
// of the backoff.
func TestBrowser_ReconnectsWhenTheNetworkIsBackAfterATokenFailure(t *testing.T) {
	st := newMemStore()
	pages, e, _ := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"))
	setOnline(t, ctx, false)
	run(t, ctx, js(fmt.Sprintf(`window.__tokenFailures = 0; ScreenPop.connect({url: %q, storage: 'none', minBackoffMs: 60000, maxBackoffMs: 60000,
			onState: function (s) { document.getElementById('state').textContent = s; },
			token: function () {
				if (!navigator.onLine) { window.__tokenFailures++; return Promise.reject(new Error('offline')); }
				return %q;
			}})`, e.wsURL, e.token("agent-net"))),
		poll(`window.__tokenFailures === 1`))
	setOnline(t, ctx, true)
	run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
}

package push

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// chromeTab is a page in headless Chromium.
type chromeTab struct {
	t   *testing.T
	ctx context.Context
}

// slowPageEnv is pageEnv over newSlowEnv with cfg: the test page's origin
// is allowed.
func slowPageEnv(t *testing.T, cfg Config, logs *logBuffer) (*env, *httptest.Server) {
	t.Helper()
	var pushBase string
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	cfg.AllowedOrigins = []string{ts.URL}
	e := newSlowEnv(t, cfg, zerolog.New(logs))
	pushBase = e.base
	tpl := template.Must(template.ParseFiles("testdata/webresource.html"))
	mux.HandleFunc("/webresource.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = tpl.Execute(w, map[string]string{"Push": pushBase})
	})
	return e, ts
}

// screenpop.js behind a slow link, with the daemon's timeouts at a tenth
// (write 1 s, pings and heartbeats 2.5 s) and the page's watchdog too
// (6 s for 60 s). Every pop reaches onPop once and in order, the page
// neither loops reconnecting nor loses or repeats a pop, and a drop it
// recovers from is reported by the server. (Idle stalls, a 100-pop replay
// over 64 kbit/s and a 4008 over a 1.5 s round trip passed before too;
// not kept, for CI's time.)
func TestBrowser_SlowLink(t *testing.T) {
	cfg := Config{WriteTimeout: time.Second, PingInterval: 2500 * time.Millisecond, HeartbeatInterval: 2500 * time.Millisecond}
	start := func(t *testing.T, e *env, pages *httptest.Server, l *slowLink, agent bridge.AgentID) *chromeTab {
		ctx := newBrowser(t)
		run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
			js(fmt.Sprintf(`window.__seen = []; window.__opens = 0; window.__st = [];
				window.__client = ScreenPop.connect({url: %q, token: %q, storage: 'none', watchdogMs: 6000,
					onState: function (s, d) { window.__st.push(s + (d && d.code ? ':' + d.code : '') + (d && d.reason ? ':' + d.reason : '')); if (s === 'connecting') { window.__opens++; } document.getElementById('state').textContent = s; },
					onPop: function (p) { window.__seen.push(p.seq); }})`, "ws://"+l.addr()+"/v1/ws", e.token(agent))),
			poll(`document.getElementById('state').textContent === 'ready'`))
		return &chromeTab{t: t, ctx: ctx}
	}
	check := func(t *testing.T, tab *chromeTab, want []uint64, maxOpens int, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for eval[int](t, tab.ctx, `window.__seen.length`) < len(want) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // no repeat on its way
		got := eval[[]uint64](t, tab.ctx, `window.__seen`)
		states := eval[[]string](t, tab.ctx, `window.__st`)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("onPop got %d pops %v, want %d %v; states %v", len(got), got, len(want), want, states)
		}
		if n := eval[int](t, tab.ctx, `window.__opens`); n > maxOpens {
			t.Fatalf("%d connects, want at most %d; states %v", n, maxOpens, states)
		}
		t.Logf("states %v", states)
	}

	t.Run("HandoverStallDuringABurst", func(t *testing.T) {
		var logs logBuffer
		e, pages := slowPageEnv(t, cfg, &logs)
		l := newSlowLink(t, e.ln.Addr().String(), linkDir{delay: 20 * time.Millisecond}, linkDir{delay: 20 * time.Millisecond})
		const agent = bridge.AgentID("agent-bstall")
		tab := start(t, e, pages, l, agent)
		time.Sleep(300 * time.Millisecond)
		l.stall()
		var want []uint64
		for i := range 150 {
			want = append(want, e.publish(agent, fmt.Sprintf("conv-bstall-%d", i)))
		}
		time.Sleep(2 * time.Second)
		l.resume()
		check(t, tab, want, 2, 20*time.Second)
		if eval[int](t, tab.ctx, `window.__opens`) > 1 {
			if st := e.srv.Status().(Status); st.SlowClosed == 0 {
				t.Errorf("the page reconnected after the server cut its socket during a 2 s stall; slow_closed %d; log:\n%s", st.SlowClosed, logs.String())
			}
		}
	})
}

// Package chromiumtest starts the headless Chromium that browser tests drive.
//
// Chromium now and then crashes while it starts, on a loaded machine (seen
// in CI among the hundreds of starts a run makes: once before it listened,
// its crash handler's lines, then the end of its output; once with a
// segmentation fault during its first navigation, under a second into the
// test). That says nothing of the code under test, so Start makes each
// browser do a first navigation of its own (a page on a loopback server)
// and starts it again if it crashes before or during it, three starts at
// most, logging each crash; a browser that never starts still fails the
// test.
package chromiumtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/internal/testenv"
)

// attempts is how many times Start tries to start Chromium.
const attempts = 3

// Start starts headless Chromium with a fresh profile and returns the
// context of its first tab; the browser stops when the test ends. opts
// follow the defaults (headless, no sandbox, no GPU, no first-run page, no
// background networking), so they can add flags or replace one. Without
// Chromium the test stops as testenv.Missing says: skipped locally, failed
// in CI.
func Start(tb testing.TB, opts ...chromedp.ExecAllocatorOption) context.Context {
	tb.Helper()
	all := append([]chromedp.ExecAllocatorOption{chromedp.ExecPath(testenv.Chromium(tb))}, opts...)
	ctx, err := start(tb, all)
	if err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// errExited is how chromedp reports a browser whose output ended before it
// printed its DevTools address: the process exited.
const errExited = "chrome failed to start"

// warmUpTimeout bounds the first navigation; a browser that neither
// finishes nor crashes within it fails the test.
const warmUpTimeout = 20 * time.Second

// warmUp is a started browser's first navigation: to a page of a loopback
// server, as the tests' pages are, with a script run. A test replaces it to
// crash the browser.
var warmUp = func(ctx context.Context, url string) error {
	_, err := chromedp.Run(ctx, chromedp.Steps(chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("#warm"))))
	return err
}

// crashed says whether err is chromedp's report of a browser process that
// exited while nobody asked it to stop.
func crashed(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit)
}

// start makes up to attempts tries, again only after a browser exited
// before it listened or during its first navigation, and returns the last
// error.
func start(tb testing.TB, opts []chromedp.ExecAllocatorOption) (context.Context, error) {
	tb.Helper()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>warm-up</title><script>document.addEventListener("DOMContentLoaded", () => { const p = document.createElement("p"); p.id = "warm"; document.body.append(p) })</script>`)
	}))
	defer page.Close()
	var errs []error
	for i := 1; i <= attempts; i++ {
		all := append([]chromedp.ExecAllocatorOption{
			chromedp.Headless,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.UserDataDir(tb.TempDir()),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
		}, opts...)
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), all...)
		ctx, cancelB := chromedp.NewContext(actx)
		err := chromedp.Do(ctx)
		when := "before it listened"
		if err == nil {
			wctx, cancelW := context.WithTimeout(ctx, warmUpTimeout)
			err = warmUp(wctx, page.URL)
			cancelW()
			if err == nil {
				tb.Cleanup(func() { cancelB(); cancelA() })
				return ctx, nil
			}
			when = "during its first navigation"
			if !crashed(err) {
				err = fmt.Errorf("first navigation: %w", err)
			}
		}
		cancelB()
		cancelA()
		errs = append(errs, fmt.Errorf("attempt %d: %w", i, err))
		if !strings.HasPrefix(err.Error(), errExited) && !crashed(err) {
			break
		}
		if i < attempts {
			tb.Logf("chromium exited %s (attempt %d of %d), starting it again: %v", when, i, attempts, err)
		}
	}
	return nil, errors.Join(errs...)
}

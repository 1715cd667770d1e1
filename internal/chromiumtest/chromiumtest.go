// Package chromiumtest starts the headless Chromium that browser tests drive.
//
// Chromium now and then crashes while it starts, on a loaded machine (seen
// once in CI among the hundreds of starts a run makes: its crash handler's
// lines, then the end of its output, before it listened). That says nothing
// of the code under test, so Start starts it again, three starts at most,
// and logs each crash; a browser that never starts still fails the test.
package chromiumtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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

// start makes up to attempts tries, again only after a browser exited
// before it listened, and returns the last error.
func start(tb testing.TB, opts []chromedp.ExecAllocatorOption) (context.Context, error) {
	tb.Helper()
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
		if err == nil {
			tb.Cleanup(func() { cancelB(); cancelA() })
			return ctx, nil
		}
		cancelB()
		cancelA()
		errs = append(errs, fmt.Errorf("attempt %d: %w", i, err))
		if !strings.HasPrefix(err.Error(), errExited) {
			break
		}
		if i < attempts {
			tb.Logf("chromium exited before it listened (attempt %d of %d), starting it again: %v", i, attempts, err)
		}
	}
	return nil, errors.Join(errs...)
}

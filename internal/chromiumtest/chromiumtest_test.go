package chromiumtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/internal/testenv"
)

// recordTB records what Start logs; the rest goes to the test.
type recordTB struct {
	testing.TB
	mu   sync.Mutex
	logs []string
}

func (r *recordTB) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// launcher writes a shell script that counts its runs in dir/runs and
// crashes the first crashes of them the way Chromium did in CI (its crash
// handler's line, then exit by SIGSEGV); later runs exec then, when given.
func launcher(t *testing.T, crashes int, then string) (path string, runs func() int) {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := fmt.Sprintf(`#!/bin/sh
echo x >> %[1]q
n=$(wc -l < %[1]q)
if [ "$n" -le %[2]d ] || [ -z %[3]q ]; then
	echo "[1202/163037.006193:ERROR:third_party/crashpad/crashpad/util/file/file_io_posix.cc:145] open /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq: No such file or directory (2)" >&2
	kill -SEGV $$
fi
exec %[3]q "$@"
`, count, crashes, then)
	path = filepath.Join(dir, "chromium")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n")
	}
}

// startsOnTheSecondTry starts the browser at path, which crashes once, and
// checks that it answers after two starts and one logged line holding
// each of logged.
func startsOnTheSecondTry(t *testing.T, path string, runs func() int, logged ...string) {
	t.Helper()
	rec := &recordTB{TB: t}
	ctx, err := start(rec, []chromedp.ExecAllocatorOption{chromedp.ExecPath(path)})
	if err != nil {
		t.Fatalf("chromium did not start after one crash: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`)); err != nil {
		t.Fatalf("the started browser does not answer: %v", err)
	}
	if n := runs(); n != 2 {
		t.Errorf("chromium started %d times, want 2 (one crash, one start)", n)
	}
	if len(rec.logs) != 1 || !containsAll(rec.logs[0], logged) {
		t.Errorf("logged %q, want one line with %q", rec.logs, logged)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestStart_AgainAfterACrashAtStartUp(t *testing.T) {
	path, runs := launcher(t, 1, testenv.Chromium(t))
	// The browser's own output, as CI's log had it.
	startsOnTheSecondTry(t, path, runs, "before it listened (attempt 1 of 3)", "scaling_cur_freq")
}

func TestStart_ABrowserThatNeverStartsFails(t *testing.T) {
	path, runs := launcher(t, 100, "")
	rec := &recordTB{TB: t}
	_, err := start(rec, []chromedp.ExecAllocatorOption{chromedp.ExecPath(path)})
	if err == nil {
		t.Fatal("start succeeded with a browser that always crashes")
	}
	if n := runs(); n != attempts {
		t.Errorf("tried %d times, want %d", n, attempts)
	}
	if !strings.Contains(err.Error(), "attempt 3: chrome failed to start") || !strings.Contains(err.Error(), "scaling_cur_freq") {
		t.Errorf("error %q does not say each attempt crashed and what the browser printed", err)
	}
}

func TestStart_OtherErrorsAreNotRetried(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-chromium-here")
	rec := &recordTB{TB: t}
	_, err := start(rec, []chromedp.ExecAllocatorOption{chromedp.ExecPath(missing)})
	if err == nil {
		t.Fatal("start succeeded with no browser at its path")
	}
	if strings.Contains(err.Error(), "attempt 2") || len(rec.logs) != 0 {
		t.Errorf("a browser that cannot be run was tried again: %v (logged %q)", err, rec.logs)
	}
}

// The browser listens, then crashes during its first navigation, as
// Chromium did once in CI (a segmentation fault under a second into a
// test): Start starts another. The crash here is Chromium's own, asked for
// through the DevTools protocol (Browser.crash).
func TestStart_AgainAfterACrashDuringTheFirstNavigation(t *testing.T) {
	path, runs := launcher(t, 0, testenv.Chromium(t))
	calls := 0
	orig := warmUp
	warmUp = func(ctx context.Context, url string) error {
		if calls++; calls == 1 {
			// The DevTools protocol's Browser.crash: the browser
			// process crashes on its main thread.
			_, err := chromedp.CallBrowser(ctx, browser.Crash, cdp.Empty{})
			return err
		}
		return orig(ctx, url)
	}
	t.Cleanup(func() { warmUp = orig })
	startsOnTheSecondTry(t, path, runs, "during its first navigation (attempt 1 of 3)")
}

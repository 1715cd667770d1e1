package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/screenpop/screenpop/internal/testenv"
)

// recorder is a testing.TB that notes how Missing stopped it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = format }
func (r *recorder) Skipf(format string, a ...any)  { r.skip = format }

func TestMissing_FailsInCISkipsElsewhere(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	testenv.Missing(r, "chromium")
	if r.fatal == "" || r.skip != "" {
		t.Errorf("in CI: fatal %q, skip %q; want a failure", r.fatal, r.skip)
	}
	t.Setenv("CI", "")
	r = &recorder{TB: t}
	testenv.Missing(r, "chromium")
	if r.skip == "" || r.fatal != "" {
		t.Errorf("outside CI: fatal %q, skip %q; want a skip", r.fatal, r.skip)
	}
}

// Chromium is found under the names distributions install it as, or where
// SCREENPOP_CHROMIUM says; without it the test stops as Missing says.
func TestChromium_FoundOnPathOrBySetting(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "chromium-browser") // Ubuntu's and Fedora's name
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCREENPOP_CHROMIUM", "")
	t.Setenv("PATH", dir)
	if got := testenv.Chromium(t); got != fake {
		t.Errorf("on PATH: %q, want %q", got, fake)
	}
	t.Setenv("SCREENPOP_CHROMIUM", fake)
	t.Setenv("PATH", "")
	if got := testenv.Chromium(t); got != fake {
		t.Errorf("by SCREENPOP_CHROMIUM: %q, want %q", got, fake)
	}
	t.Setenv("SCREENPOP_CHROMIUM", "")
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	testenv.Chromium(r)
	if r.fatal == "" {
		t.Error("no chromium in CI: not a failure")
	}
}

// WithMoreRoom stops at the first room the machine keeps to, and fails in
// CI when it keeps to none.
func TestWithMoreRoom(t *testing.T) {
	t.Setenv("CI", "true")
	var tried []int
	r := &recorder{TB: t}
	testenv.WithMoreRoom(r, "time", []int{1, 2, 3}, func(n int) bool { tried = append(tried, n); return n == 2 })
	if fmt.Sprint(tried) != "[1 2]" || r.fatal != "" {
		t.Errorf("tried %v, fatal %q; want [1 2] and no failure", tried, r.fatal)
	}
	r = &recorder{TB: t}
	testenv.WithMoreRoom(r, "time", []int{1, 2}, func(int) bool { return false })
	if r.fatal == "" {
		t.Error("too slow for every room: no failure in CI")
	}
}

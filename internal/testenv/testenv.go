// Package testenv holds the project's rule for a test whose dependency
// (Chromium, systemd-analyze, an old nats-server, a second CPU) is missing:
// skipped on a developer's machine, failed in CI (CI=true), where .ci/run
// and make test provide it, so that nothing goes untested there unseen.
// It decides how a test stops, and finds Chromium for the browser tests.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Missing stops tb for a missing dependency: Fatal when CI=true, Skip
// otherwise. what says what is missing and how to get it.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("missing in CI: %s", what)
		return // Fatalf does not return; a TB that records does
	}
	tb.Skipf("skipped: %s", what)
}

// chromiumNames are the executables Chromium or Chrome installs under,
// by distribution: Debian's chromium, Ubuntu's and Fedora's
// chromium-browser, Google's packages.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the path of the Chromium (or Chrome) the browser tests
// drive: SCREENPOP_CHROMIUM when set, else the first of chromiumNames on
// PATH. Without one it stops tb as Missing does.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SCREENPOP_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Missing(tb, fmt.Sprintf("SCREENPOP_CHROMIUM=%s: %v", p, err))
		}
		return p
	}
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(tb, "chromium not found on PATH (as "+strings.Join(chromiumNames, ", ")+"): apt-get install -y chromium, or set SCREENPOP_CHROMIUM to its path")
	return ""
}

// WithMoreRoom runs try with each of rooms in turn (longer timeouts,
// later deadlines) until it reports that the machine kept to its timing;
// a machine too slow for the last as well stops tb as Missing does (a
// failure in CI), saying what it needed. A timing-bound test so never
// passes as a skip.
func WithMoreRoom[T any](tb testing.TB, need string, rooms []T, try func(T) bool) {
	tb.Helper()
	for _, room := range rooms {
		if try(room) {
			return
		}
		tb.Logf("too slow with %v; trying with more room", room)
	}
	Missing(tb, need)
}

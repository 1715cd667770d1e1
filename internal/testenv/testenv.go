// Package testenv holds the project's rule for a test whose dependency
// (Chromium, systemd-analyze, an old nats-server, a second CPU) is missing:
// skipped on a developer's machine, failed in CI (CI=true), where .ci/run
// and make test provide it, so that nothing goes untested there unseen.
// It only decides how a test stops; finding the dependency is the test's.
package testenv

import (
	"os"
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

package testenv_test

import (
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

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An agents file longer than one instance can watch (10 channels of 1,000
// topics: 10,000 agents) passes `screenpopd check` as "ok": the admin
// learns only after the start, from an error line, that agents get no
// pops. The check must warn before, with what to do.
func TestCheck_WarnsOfMoreAgentsThanTheChannelsHold(t *testing.T) {
	r := newCheckRig(t)
	var b strings.Builder
	b.WriteString(r.agent + "\n")
	for i := 1; i <= 10000; i++ {
		fmt.Fprintf(&b, "00000000-0000-4000-8000-%012d\n", i)
	}
	path := filepath.Join(t.TempDir(), "agents.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	delete(r.vars, "GENESYS_AGENTS")
	r.vars["GENESYS_AGENTS_FILE"] = path
	_, out := r.check(t)
	wantLine(t, out, "warn genesys agents:", "10001", "10000", "OAuth client")
}

package bridge_test

import (
	"testing"

	"github.com/screenpop/screenpop/bridge"
)

// Every spelling an admin or a login may copy a Genesys id in names the id
// Genesys writes in topics and conversation bodies.
func TestGenesysID(t *testing.T) {
	const want = "5e1f0a1c-0000-4000-8000-0000000000ab"
	for _, in := range []string{
		"5e1f0a1c-0000-4000-8000-0000000000ab",
		"5E1F0A1C-0000-4000-8000-0000000000AB",
		"{5E1F0A1C-0000-4000-8000-0000000000AB}",
		"{5e1f0a1c-0000-4000-8000-0000000000ab}",
	} {
		if got := bridge.GenesysID(in); got != want {
			t.Errorf("GenesysID(%q) = %q, want %q", in, got, want)
		}
	}
}

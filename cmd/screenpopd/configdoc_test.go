package main

import (
	"os"
	"strings"
	"testing"
)

// TestConfigDoc keeps docs/configuration.md in step with the settings: every
// variable, its flag and its default must appear there.
func TestConfigDoc(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, s := range settings {
		row := "| `" + s.env + "` | `--" + flagName(s.env) + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/configuration.md lacks the row %q", row)
			continue
		}
		line := doc[strings.Index(doc, row):]
		line = line[:strings.Index(line, "\n")]
		if s.def != "" && !strings.Contains(line, "`"+s.def+"`") {
			t.Errorf("docs/configuration.md: %s does not show its default %q", s.env, s.def)
		}
	}
}

package main

import (
	"io"
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

// TestDataverseDoc_LookupEmailOff: the ways dataverse.md gives to turn
// email lookups off do so. 6c378d9 made an empty --lookup-email= give the
// default lookups (configuration.md says so), while dataverse.md still
// tells admins that the empty flag disables them: a deployment that
// followed it now searches Dataverse by email at every email, chat and
// message, without a word at start.
func TestDataverseDoc_LookupEmailOff(t *testing.T) {
	b, err := os.ReadFile("../../docs/dataverse.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	const tail = ") disables email lookups"
	i := strings.Index(doc, tail)
	if i < 0 {
		t.Fatal("docs/dataverse.md no longer says how to turn email lookups off")
	}
	sentence := doc[max(0, strings.LastIndex(doc[:i], ". ")):i]
	var forms []string
	for j, part := range strings.Split(sentence, "`") {
		if j%2 == 1 && strings.Contains(part, "=") {
			forms = append(forms, part)
		}
	}
	if len(forms) == 0 {
		t.Fatalf("no setting in %q", sentence)
	}
	for _, f := range forms {
		var args []string
		e := good()
		if strings.HasPrefix(f, "--") {
			args = []string{f}
		} else {
			k, v, _ := strings.Cut(f, "=")
			e = with(e, k, v)
		}
		c, _, err := ParseConfig("run", args, env(e), Requirements{Genesys: true, Dataverse: true}, io.Discard)
		if err != nil {
			t.Errorf("%s, which docs/dataverse.md gives to turn email lookups off, is refused: %v", f, err)
			continue
		}
		if len(c.LookupEmail) != 0 {
			t.Errorf("%s, which docs/dataverse.md gives to turn email lookups off, leaves them on: %v", f, c.LookupEmail)
		}
	}
}

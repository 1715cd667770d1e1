package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/screenpop/screenpop/internal/testenv"
)

// TestDeploy_EnvFileReadAlike: /etc/screenpop/screenpop.env is read twice,
// by systemd (the unit's EnvironmentFile=) for the service, and by the
// shell for the documented check command, `(set -a; . screenpop.env; set
// +a …screenpopd check)`. docs/deploy/README.md promises that check "sees
// what the service sees". The two read a value differently where it holds
// a ';' or a space: systemd takes the rest of the line, the shell ends the
// assignment there and runs the rest as a command. SCREENPOP_LOOKUP_PHONE,
// SCREENPOP_LOOKUP_EMAIL and SCREENPOP_ENTITIES are ';'-separated lists, so
// check would validate and probe fewer entities than the service then
// queries. Every VARIABLE=value line the docs give for that file (the
// example's, commented ones included, and the env-file lines of the docs'
// code blocks) must read the same both ways, without a shell error.
func TestDeploy_EnvFileReadAlike(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		testenv.Missing(t, "no sh to source the env file as the documented check command does")
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.env] = true
	}
	type line struct{ where, key, text string }
	var lines []line
	assign := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=`)
	add := func(where, l string) {
		if m := assign.FindStringSubmatch(l); m != nil && known[m[1]] {
			lines = append(lines, line{where, m[1], l})
		}
	}
	example, err := os.ReadFile(filepath.Join(deployDir, "screenpop.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(example), "\n") {
		add("screenpop.env.example", strings.TrimPrefix(l, "#"))
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append(docs, "../../README.md", filepath.Join(deployDir, "README.md"))
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		inBlock := false
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "```") {
				inBlock = !inBlock
				continue
			}
			// Env-file lines start the line; an indented one is a shell
			// command's prefix (VAR=value screenpopd check).
			if inBlock {
				add(filepath.Base(doc), l)
			}
		}
	}
	if len(lines) < 10 {
		t.Fatalf("found %d env-file lines in the docs; update this test", len(lines))
	}

	dir := t.TempDir()
	for i, l := range lines {
		file := filepath.Join(dir, "screenpop.env")
		if err := os.WriteFile(file, []byte(l.text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sh, "-c", `set -a; . "$1"; set +a; eval "v=\${$2-unset}"; printf '%s' "$v"`, "sh", file, l.key)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil && stderr.Len() == 0 {
			t.Fatalf("line %d: sh: %v", i, err)
		}
		want := systemdEnvValue(t, l.text)
		if got := stdout.String(); got != want || stderr.Len() > 0 {
			t.Errorf("%s: %s\n  systemd (the service) reads %s=%q\n  the shell (screenpopd check) reads %s=%q %s\n  quote the value in single quotes: both read that alike",
				l.where, l.text, l.key, want, l.key, got, strings.TrimSpace(stderr.String()))
		}
	}
}

// systemdEnvValue is the value of one KEY=value line as systemd's
// EnvironmentFile= reads it: parse_env_file_internal of src/basic/env-file.c
// (systemd v252 and later), for a single line. Unquoted, the value runs to
// the end of the line (a backslash escapes the next character, trailing
// whitespace is dropped); '…' is taken as written; "…" unescapes \" \\ \`
// and \$ and keeps any other backslash.
func systemdEnvValue(t *testing.T, l string) string {
	t.Helper()
	_, rest, ok := strings.Cut(l, "=")
	if !ok {
		t.Fatalf("%q is not KEY=value", l)
	}
	const (
		preValue = iota
		value
		valueEscape
		single
		double
		doubleEscape
	)
	state := preValue
	var v []byte
	lastSpace := -1
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch state {
		case preValue:
			switch {
			case c == '\'':
				state = single
			case c == '"':
				state = double
			case c == '\\':
				state = valueEscape
			case c != ' ' && c != '\t' && c != '\r':
				state = value
				v = append(v, c)
			}
		case value:
			switch {
			case c == '\\':
				state, lastSpace = valueEscape, -1
			case c == ' ' || c == '\t' || c == '\r':
				if lastSpace < 0 {
					lastSpace = len(v)
				}
				v = append(v, c)
			default:
				lastSpace = -1
				v = append(v, c)
			}
		case valueEscape:
			state = value
			v = append(v, c)
		case single:
			if c == '\'' {
				state = preValue
			} else {
				v = append(v, c)
			}
		case double:
			switch c {
			case '"':
				state = preValue
			case '\\':
				state = doubleEscape
			default:
				v = append(v, c)
			}
		case doubleEscape:
			state = double
			if !strings.ContainsRune("\"\\`$", rune(c)) {
				v = append(v, '\\')
			}
			v = append(v, c)
		}
	}
	if state == value && lastSpace >= 0 {
		v = v[:lastSpace]
	}
	return string(v)
}

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Every line the daemon logs at info or above is in operations.md's log
// tables (section 3), so that on-call can look up what a message means
// and what to do: the message's constant text, or its first 40
// characters where the table shortens it with "…". Debug lines, and
// messages built at run time (Msgf), are not held to it.
func TestLogDoc_EveryInfoWarnErrorMessageIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	seen := map[string]bool{}
	for _, root := range []string{"../../bridge", "../../dataverse", "../../notifications", "../../push", "../../internal", "."} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				// The emulators log for tests and the demo, not as the daemon.
				if name := d.Name(); name == "testdata" || strings.HasSuffix(name, "test") && path != root {
					return filepath.SkipDir
				}
				if path != root && root == "." {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				msg, level, ok := logCall(n)
				if !ok || level == "Debug" || seen[msg] {
					return true
				}
				seen[msg] = true
				key := msg
				if len(key) > 40 {
					key = key[:40]
				}
				if !strings.Contains(string(doc), key) {
					missing = append(missing, level+" "+strconv.Quote(msg)+" ("+path+")")
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) < 50 {
		t.Fatalf("found only %d log messages: the walk missed the sources", len(seen))
	}
	for _, m := range missing {
		t.Errorf("not in docs/operations.md: %s", m)
	}
}

// logCall reads a zerolog chain ending in .Msg("constant"): its message and
// the level method (Debug, Info, Warn, Error) the chain starts from; ok is
// false for anything else, or a chain whose level is not written in it.
func logCall(n ast.Node) (msg, level string, ok bool) {
	call, isCall := n.(*ast.CallExpr)
	if !isCall || len(call.Args) != 1 {
		return "", "", false
	}
	sel, isSel := call.Fun.(*ast.SelectorExpr)
	if !isSel || sel.Sel.Name != "Msg" {
		return "", "", false
	}
	lit, isLit := call.Args[0].(*ast.BasicLit)
	if !isLit || lit.Kind != token.STRING {
		return "", "", false
	}
	msg, err := strconv.Unquote(lit.Value)
	if err != nil {
		return "", "", false
	}
	for x := sel.X; ; {
		c, isCall := x.(*ast.CallExpr)
		if !isCall {
			return "", "", false
		}
		s, isSel := c.Fun.(*ast.SelectorExpr)
		if !isSel {
			return "", "", false
		}
		switch s.Sel.Name {
		case "Debug", "Info", "Warn", "Error":
			if len(c.Args) == 0 {
				return msg, s.Sel.Name, true
			}
		}
		x = s.X
	}
}

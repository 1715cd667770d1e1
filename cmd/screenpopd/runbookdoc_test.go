package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRunbookDoc_WarningsAndErrors keeps docs/operations.md section 3 in
// step with the daemon's log: every warn or error line an on-call engineer
// can meet has its message in the runbook, with what it means and what to
// do. (Lines whose event is built in a variable before Msg are not seen
// here.)
func TestRunbookDoc_WarningsAndErrors(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fset := token.NewFileSet()
	for _, path := range daemonGoFiles(t) {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Msg" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || !chainHas(sel.X, "Warn", "Error") {
				return true
			}
			msg, _ := strconv.Unquote(lit.Value)
			// The runbook may cut a long message with "…".
			key := msg
			if i := strings.IndexAny(key, ":;"); i > 20 {
				key = key[:i]
			}
			if !strings.Contains(doc, "`"+key) {
				t.Errorf("%s: warn/error line %q is not in docs/operations.md", fset.Position(call.Pos()), msg)
			}
			return true
		})
	}
}

// chainHas reports whether the method chain e calls one of names
// (log.Warn().Err(err).Str(...)).
func chainHas(e ast.Expr, names ...string) bool {
	for {
		call, ok := e.(*ast.CallExpr)
		if !ok {
			return false
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		for _, n := range names {
			if sel.Sel.Name == n && len(call.Args) == 0 {
				return true
			}
		}
		e = sel.X
	}
}

// TestRunbookDoc_HeartbeatAlertCanFire: a connected Genesys socket silent
// for HeartbeatTimeout (75 s, notifications.Config's default) is declared
// dead and dropped, and a disconnected one is not counted, so
// screenpop_notifications_heartbeat_age_seconds never passes 75 and saws
// from 0 to 75 while a proxy buffers the frames (operations.md 7.6). The
// suggested ScreenpopGenesysNoHeartbeat alert must be able to fire on it:
// a threshold below 75 s, over the gauge's maximum across the sawtooth
// (the raw gauge is above any threshold for less than the alert's `for`).
func TestRunbookDoc_HeartbeatAlertCanFire(t *testing.T) {
	const heartbeatTimeout = 75.0
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`alert: ScreenpopGenesysNoHeartbeat\n\s+expr: (.*)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("docs/operations.md has no ScreenpopGenesysNoHeartbeat alert")
	}
	expr := m[1]
	th := regexp.MustCompile(`heartbeat_age_seconds(?:\[[0-9a-z]+\]\))? > ([0-9.]+)`).FindStringSubmatch(expr)
	if th == nil {
		t.Fatalf("ScreenpopGenesysNoHeartbeat %q has no heartbeat_age_seconds threshold", expr)
	}
	if v, _ := strconv.ParseFloat(th[1], 64); v >= heartbeatTimeout {
		t.Errorf("ScreenpopGenesysNoHeartbeat fires at heartbeat_age_seconds > %v, which the gauge never reaches (a socket silent %v s is dropped): %s", v, heartbeatTimeout, expr)
	}
	if !strings.Contains(expr, "max_over_time(screenpop_notifications_heartbeat_age_seconds[") {
		t.Errorf("ScreenpopGenesysNoHeartbeat tests the raw gauge, which drops to 0 at every reconnect and so never stays above a threshold for the alert's `for`: %s", expr)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// The daemon's log goes to a log store (Elasticsearch/OpenSearch, Loki,
// Splunk, journald's JSON export) that maps each field name to one type on
// first sight: a field that is a string in one line and a number, object,
// array or bool in another is a mapping conflict there, and Elasticsearch
// drops the whole line. So over every line a day of the demo's traffic
// and the usual failures produce (docs/operations.md 3): each line one
// JSON object with level, time (UTC, ms), component and message; no key
// twice in a line; every key snake_case and fixed (none built from data);
// each field name of one JSON type in every line; one name per thing.
func TestLogSchema_EveryLineIndexesWithoutConflict(t *testing.T) {
	logs := &syncbuf.Buffer{}
	d, stop := runDemoStoppable(t, testEnv(t), NewLogger("debug", "json", logs))
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return d.Main.Ready() })

	// Agents' pages, one of them acking, and pages that misbehave.
	for _, a := range demoAgents {
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(a.ID))
		go func() {
			for {
				var p agentPop
				ws.SetReadDeadline(time.Time{})
				if err := ws.ReadJSON(&p); err != nil {
					return
				}
				if p.Type == "pop" && p.Seq != 0 {
					ws.WriteJSON(map[string]any{"type": "ack", "seq": p.Seq})
				}
			}
		}()
	}
	bad := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(demoAgents[0].ID))
	bad.WriteMessage(websocket.TextMessage, []byte("not json"))
	big := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(demoAgents[1].ID))
	big.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 20<<10))
	if ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(d.Main.AgentURL(), "http", "ws", 1)+"/v1/ws", nil); err == nil {
		ws.WriteJSON(map[string]any{"type": "hello", "token": "not-a-token"})
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		ws.ReadMessage()
		ws.Close()
	}

	// The demo's traffic, with failures of both sides while it runs.
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() { defer close(tdone); d.Traffic.Run(tctx, 100*time.Millisecond) }()
	time.Sleep(3 * time.Second)
	d.Dataverse.FailNext(30, 503)
	d.Dataverse.ThrottleNext(3, time.Second)
	d.Genesys.SendJunk()
	time.Sleep(2 * time.Second)
	d.Genesys.DropConnections()
	time.Sleep(2 * time.Second)
	d.Genesys.SocketClosing()
	d.Genesys.ExpireTokens()
	d.Dataverse.ExpireTokens()
	time.Sleep(3 * time.Second)
	tcancel()
	<-tdone
	time.Sleep(time.Second)
	stop()

	if n := strings.Count(logs.String(), `"message":"pop"`); n < 10 {
		t.Fatalf("only %d pop lines: the traffic did not run", n)
	}
	checkLogSchema(t, logs.String())
}

// logLevels are zerolog's level names, the ones the docs use.
var logLevels = []string{"trace", "debug", "info", "warn", "error", "fatal", "panic"}

// logAliases are other names (left) of a thing the log names otherwise.
var logAliases = map[string]string{
	"agent": "agent_id", "agentId": "agent_id", "user_id": "agent_id",
	"conversation": "conversation_id", "conversationId": "conversation_id",
	"participant": "participant_id", "err": "error", "msg": "message",
}

var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkLogSchema holds every line of out to what a log store needs (see
// TestLogSchema_EveryLineIndexesWithoutConflict).
func checkLogSchema(t *testing.T, out string) {
	t.Helper()
	types := map[string]map[string]string{} // field -> JSON type -> an example line
	lines := 0
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		lines++
		obj, dups, err := decodeLogLine(l)
		if err != nil {
			t.Errorf("not one JSON object: %v: %q", err, l)
			continue
		}
		for _, k := range dups {
			t.Errorf("key %q twice in one line (Elasticsearch refuses the line): %s", k, l)
		}
		for _, f := range []string{"level", "time", "component", "message"} {
			if _, ok := obj[f].(string); !ok {
				t.Errorf("no %s string: %s", f, l)
			}
		}
		if lv, _ := obj["level"].(string); !slices.Contains(logLevels, lv) {
			t.Errorf("level %q is not one of zerolog's: %s", lv, l)
		}
		if tm, _ := obj["time"].(string); tm != "" {
			if at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", tm); err != nil || !strings.HasSuffix(tm, "Z") || at.Format("2006-01-02T15:04:05.000Z07:00") != tm {
				t.Errorf("time %q is not UTC with milliseconds: %s", tm, l)
			}
		}
		walkLogFields("", obj, func(path string, v any) {
			last := strings.TrimSuffix(path[strings.LastIndex(path, ".")+1:], "[]")
			if !snakeKey.MatchString(last) {
				t.Errorf("field name %q is not a fixed snake_case name (built from data?): %s", path, l)
			}
			if to, ok := logAliases[last]; ok {
				t.Errorf("field %q: the docs call it %q: %s", path, to, l)
			}
			ty := jsonType(v)
			if types[path] == nil {
				types[path] = map[string]string{}
			}
			if _, ok := types[path][ty]; !ok {
				types[path][ty] = l
			}
		})
	}
	names := make([]string, 0, len(types))
	for k := range types {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if len(types[k]) < 2 {
			continue
		}
		var ex []string
		for ty, l := range types[k] {
			ex = append(ex, fmt.Sprintf("  %s: %s", ty, l))
		}
		sort.Strings(ex)
		t.Errorf("field %q has %d JSON types across lines (a mapping conflict in a log store):\n%s", k, len(types[k]), strings.Join(ex, "\n"))
	}
	t.Logf("%d lines, %d field names", lines, len(types))
}

// decodeLogLine decodes l as exactly one JSON object, and returns the keys
// that appear twice in one object of it.
func decodeLogLine(l string) (map[string]any, []string, error) {
	dec := json.NewDecoder(strings.NewReader(l))
	dec.UseNumber()
	var dups []string
	var obj map[string]any
	if err := json.Unmarshal([]byte(l), &obj); err != nil {
		return nil, nil, err
	}
	// Walk the tokens for duplicate keys (json.Unmarshal keeps the last).
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, isKey := tok.(string); isKey && top != nil && top.obj && top.key {
			if top.keys[k] {
				dups = append(dups, k)
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
	return obj, dups, nil
}

// walkLogFields calls f for every field of obj, nested ones as a.b, the
// elements of an array under the array's name.
func walkLogFields(prefix string, obj map[string]any, f func(path string, v any)) {
	for k, v := range obj {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		f(p, v)
		switch x := v.(type) {
		case map[string]any:
			walkLogFields(p, x, f)
		case []any:
			for _, e := range x {
				f(p+"[]", e)
				if m, ok := e.(map[string]any); ok {
					walkLogFields(p+"[]", m, f)
				}
			}
		}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64, json.Number:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

package push

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
)

// FuzzNewPopFrame feeds arbitrary stored pops (anything on
// screenpop.pops.<agent> is replayed) to newPopFrame: it must never panic,
// and a frame it makes is valid JSON that starts with the pop's type and
// seq and is for the subject's agent.
func FuzzNewPopFrame(f *testing.F) {
	for _, conv := range []string{"conv-1", `conv-"2"`} {
		p := testPop("agent-1", conv)
		m, err := bridge.EncodePop(p, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		f.Add("agent-1", uint64(42), m.Data)
	}
	for _, s := range []string{`{}`, `{"type":"screenpop.pop.v1","data":[1]}`, `{"type":"other","data":{}}`, `nope`,
		`{"type":"screenpop.pop.v1","data":{"agentId":"a"}}`, `{"type":"screenpop.pop.v1","data":{ "agentId":"a","eventReceivedAt":""} }`,
		`{"type":"screenpop.pop.v1","data":{"agentId":"a","eventReceivedAt":"2025-03-04T15:00:00Z"}}`} {
		f.Add("a", uint64(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, agent string, seq uint64, data []byte) {
		pf, err := newPopFrame(bridge.StoredPop{Seq: seq, Agent: bridge.AgentID(agent), Data: data})
		if err != nil {
			return
		}
		if !json.Valid(pf.data) {
			t.Fatalf("frame %q is not valid JSON (from %q)", pf.data, data)
		}
		head := gjson.GetManyBytes(pf.data, "type", "seq", "agentId")
		if head[0].Str != "pop" || head[1].Uint() != seq || head[2].Str != agent || pf.seq != seq || pf.agent != bridge.AgentID(agent) {
			t.Fatalf("frame %q for agent %q seq %d", pf.data, agent, seq)
		}
	})
}

// FuzzJWTAuthenticator_Authenticate feeds arbitrary hello tokens to the
// jwt mode's authenticator: it must never panic, and what it accepts names
// a usable agent id.
func FuzzJWTAuthenticator_Authenticate(f *testing.F) {
	secret := []byte(strings.Repeat("s", MinJWTSecret))
	a, err := NewJWTAuthenticator(secret, "")
	if err != nil {
		f.Fatal(err)
	}
	good, err := MintToken(secret, "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, good + "x", "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIiLCJleHAiOjF9.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		agent, until, err := a.Authenticate(context.Background(), token)
		if err != nil {
			return
		}
		if !bridge.ValidSubjectToken(string(agent)) || until.IsZero() {
			t.Fatalf("accepted %q as %q until %v", token, agent, until)
		}
	})
}

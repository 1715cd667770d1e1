package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

// docs/dataverse.md 4.2: override attributes naming a record open it
// "without a lookup". With SCREENPOP_POP_ON=connected the alerting event's
// prefetch looked the caller up all the same (the customer's number and
// email sent to Dataverse, two $batch requests against its budget).
func TestResolver_AnOverrideCostsNoLookupBeforeItsPop(t *testing.T) {
	s := startResolverStack(t, bridge.ResolverConfig{PopOn: bridge.StateConnected}, nil)
	defer s.stop()
	before := len(s.dv.Requests())
	e := callEvent("ov", "+13175550123")
	e.Customer.Email = "ann@example.com"
	e.Customer.Attributes = map[string]string{"screenpop.entity": "contact", "screenpop.id": "abcdef01-2345-4678-9abc-def012345678"}
	s.publish(t, e)
	time.Sleep(500 * time.Millisecond) // the prefetch's time, were there one
	c := *e
	c.State = bridge.StateConnected
	c.ReceivedAt = bridge.NewTime(time.Now())
	s.publish(t, &c)
	pops := s.awaitPops(t, 1, 10*time.Second)
	if p := pops["ov"]; p.Target.Action != bridge.ActionOpen || p.Target.ID != "abcdef01-2345-4678-9abc-def012345678" {
		t.Fatalf("pop %+v, want the override's record", p.Target)
	}
	if n := len(s.dv.Requests()) - before; n != 0 {
		t.Errorf("an override pop cost %d Dataverse requests, want none", n)
	}
}

// An override's id in braces or capitals (as some CRMs write a GUID)
// pops the id as Dataverse writes it, the one its URL carries: the web
// resource opens the form by target.id. One brace alone is no GUID, and
// the caller is looked up instead.
func TestResolver_AnOverridesIDIsTheCanonicalOne(t *testing.T) {
	s := startResolverStack(t, bridge.ResolverConfig{}, nil)
	defer s.stop()
	const canonical = "abcdef01-2345-4678-9abc-def012345678"
	for conv, id := range map[string]string{"braces": "{ABCDEF01-2345-4678-9ABC-DEF012345678}", "capitals": "ABCDEF01-2345-4678-9ABC-DEF012345678", "one-brace": "{ABCDEF01-2345-4678-9ABC-DEF012345678"} {
		e := callEvent(conv, "+13175550123")
		e.Customer.Attributes = map[string]string{"screenpop.entity": "contact", "screenpop.id": id}
		s.publish(t, e)
	}
	pops := s.awaitPops(t, 3, 10*time.Second)
	for _, conv := range []string{"braces", "capitals"} {
		if p := pops[bridge.ConversationID(conv)].Target; p.ID != canonical || !strings.HasSuffix(p.URL, "&id="+canonical) {
			t.Errorf("%s: target id %q, url %q; want %s in both", conv, p.ID, p.URL, canonical)
		}
	}
	if p := pops["one-brace"].Target; p.Action == bridge.ActionOpen { // nothing matches the number: create
		t.Errorf("an id with one brace opened as a GUID: %+v", p)
	}
}

// Customer-typed text that cannot be searched (an email over 320
// characters, one with a control character) is no failure of Dataverse:
// it was a search pop counted as lookup_error, throwing away the phone's
// clean "no match". It is skipped, and nothing matching pops create.
func TestResolver_AnUnsearchableEmailIsSkipped(t *testing.T) {
	s := startResolverStack(t, bridge.ResolverConfig{}, nil)
	defer s.stop()
	long := callEvent("long-email", "")
	long.Media = bridge.MediaChat
	long.Customer = bridge.Customer{Email: strings.Repeat("a", 330) + "@example.com", Name: "Ann Smith", Address: "guest"}
	s.publish(t, long)
	ctl := callEvent("phone-then-bad-email", "+13175550177")
	ctl.Customer.Email = "ann@example.com\x01"
	s.publish(t, ctl)
	pops := s.awaitPops(t, 2, 10*time.Second)
	for conv, p := range pops {
		if p.Target.Action != bridge.ActionCreate {
			t.Errorf("%s: action %s (query %.40q), want create: nothing matches", conv, p.Target.Action, p.Target.Query)
		}
	}
	if strings.Contains(s.logs.String(), `"outcome":"lookup_error"`) {
		t.Errorf("an unsearchable email logged as a failed lookup:\n%s", s.logs.String())
	}
}

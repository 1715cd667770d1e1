package bridge_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestResolver_ForbiddenLeadStillPopsContacts: the application user's role
// lost Read on lead (the last entity searched by default). A caller no
// contact or account matches gets a search pop (the lead might have been
// theirs); a caller whose contact or account matches still gets that
// record, also after more unknown callers in a row than the breaker's
// threshold.
func TestResolver_ForbiddenLeadStillPopsContacts(t *testing.T) {
	defer goleak.VerifyNone(t)
	var contact, account string
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: 2 * time.Second}, func(dv *dataversetest.Server) {
		contact = dv.AddContact(dataversetest.Contact{FirstName: "Known", LastName: "Contact", Telephone1: "+13175550400"})
		account = dv.AddAccount("Known Account", "+13175550401", "")
		dv.DenyRead("leads", true)
	})
	defer s.stop()
	for i := range 6 {
		conv := fmt.Sprintf("unknown-%d", i)
		s.publish(t, callEvent(conv, fmt.Sprintf("+1317555041%d", i)))
		p := s.awaitPops(t, 1, 10*time.Second)[bridge.ConversationID(conv)]
		if p == nil || p.Target.Action != bridge.ActionSearch || p.Target.Query == "" {
			t.Fatalf("unknown caller %d: %+v; want search with the number", i, p)
		}
	}
	s.publish(t, callEvent("contact", "+13175550400"))
	s.publish(t, callEvent("account", "+13175550401"))
	pops := s.awaitPops(t, 2, 10*time.Second)
	if p := pops["contact"]; p.Target.Action != bridge.ActionOpen || p.Target.ID != contact {
		t.Errorf("contact caller: %+v; want open of the contact", p.Target)
	}
	if p := pops["account"]; p.Target.Action != bridge.ActionOpen || p.Target.ID != account {
		t.Errorf("account caller: %+v; want open of the account", p.Target)
	}
}

// TestResolver_DataverseFaultsKeepTheDeadline: whatever Dataverse does
// (5xx retried, an HTML gateway page, a request that hangs, a Retry-After
// longer than the deadline), the pop is a search and is published about
// SCREENPOP_POP_DEADLINE after the event was received, not after the
// retries.
func TestResolver_DataverseFaultsKeepTheDeadline(t *testing.T) {
	defer goleak.VerifyNone(t)
	const deadline = 500 * time.Millisecond
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: deadline}, func(dv *dataversetest.Server) {
		dv.AddContact(dataversetest.Contact{FirstName: "Known", LastName: "Contact", Telephone1: "+13175550420"})
	})
	defer s.stop()
	for i, tc := range []struct {
		name  string
		fault func(*dataversetest.Server)
	}{
		{"503", func(dv *dataversetest.Server) { dv.FailNext(1000, http.StatusServiceUnavailable) }},
		{"HTML502", func(dv *dataversetest.Server) { dv.FailNext(0, 0); dv.FailNextHTML(1000, http.StatusBadGateway) }},
		{"Hang", func(dv *dataversetest.Server) { dv.FailNextHTML(0, 0); dv.SetLatency(10 * time.Second) }},
		{"RetryAfter", func(dv *dataversetest.Server) { dv.SetLatency(0); dv.ThrottleNext(1, 30*time.Second) }},
	} {
		tc.fault(s.dv)
		conv := "call-" + tc.name
		start := time.Now()
		s.publish(t, callEvent(conv, fmt.Sprintf("+1317555043%d", i)))
		p := s.awaitPops(t, 1, 10*time.Second)[bridge.ConversationID(conv)]
		took := time.Since(start)
		if p.Target.Action != bridge.ActionSearch || p.Target.Query == "" {
			t.Errorf("%s: %+v; want search", tc.name, p.Target)
		}
		if took > deadline+time.Second {
			t.Errorf("%s: pop after %v; want about the %v deadline", tc.name, took, deadline)
		}
		if tc.name == "RetryAfter" {
			break // the gate now holds every request for 30 s
		}
	}
}

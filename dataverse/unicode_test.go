package dataverse_test

import (
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestLookup_EmailPunctuationStaysOneLiteral: the characters that mean
// something in a URL or an OData literal (' % # & + ;) and non-ASCII text
// in an email reach Dataverse as one literal, intact: the lookup finds the
// one contact holding that exact address and no other, and the record's
// name comes back as stored.
func TestLookup_EmailPunctuationStaysOneLiteral(t *testing.T) {
	srv, c := MustEnv(t, nil)
	const addr = "o'neil%20+a#b&c;d=é@example.com"
	const name = "Zoë 👩🏽‍💻 O'Neil \u202eevil"
	id := srv.AddContact(dataversetest.Contact{FirstName: "Zoë 👩🏽‍💻", LastName: "O'Neil \u202eevil", EMailAddress1: addr})
	// What a query cut at %, # or & (or a '+' read as a space) would match.
	for _, other := range []string{"o'neil", "o'neil ", "o'neil%20", "o'neil%20 a", "o'neil%20+a", "o'neil%20+a#b", "o'neil%20 a#b&c;d=é@example.com"} {
		srv.AddContact(dataversetest.Contact{FirstName: "Not", LastName: "Her", EMailAddress1: other})
	}
	warm(t, srv, c)
	srv.ResetLog()
	recs, err := c.Lookup(ctxT(t, 5*time.Second), email(addr))
	if err != nil || len(recs) != 1 || recs[0].ID != id || recs[0].Name != name {
		t.Fatalf("got %+v, %v; want only %s named %q", recs, err, id, name)
	}
	for _, r := range srv.Requests() {
		if !r.InBatch {
			continue
		}
		for _, lit := range r.Literals {
			if lit != addr {
				t.Fatalf("%s: literal %q, want %q; filter %s", r.EntitySet, lit, addr, r.Filter)
			}
		}
		if strings.Contains(r.Filter, " ne ") || strings.Contains(r.Filter, "contains") {
			t.Fatalf("%s: filter widened: %s", r.EntitySet, r.Filter)
		}
	}
}

// TestLookup_EmailInternationalDomain: an address at an internationalized
// domain is one address whether written in Unicode (as an agent types it
// into Dynamics) or in its ASCII form (xn--, as mail headers carry it).
func TestLookup_EmailInternationalDomain(t *testing.T) {
	srv, c := MustEnv(t, nil)
	uni := srv.AddContact(dataversetest.Contact{FirstName: "Uni", LastName: "Code", EMailAddress1: "ann@münchen.de"})
	asc := srv.AddContact(dataversetest.Contact{FirstName: "Asc", LastName: "Ii", EMailAddress1: "bob@xn--mnchen-3ya.de"})
	warm(t, srv, c)
	for key, want := range map[string]string{
		"ann@münchen.de":        uni,
		"ANN@MÜNCHEN.DE":        uni,
		"ann@xn--mnchen-3ya.de": uni,
		"bob@xn--mnchen-3ya.de": asc,
		"bob@münchen.de":        asc,
	} {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), email(key))
		if err != nil || len(recs) != 1 || recs[0].ID != want {
			t.Errorf("%q: got %+v, %v; want %s", key, recs, err, want)
		}
	}
}

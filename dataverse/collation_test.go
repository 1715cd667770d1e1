package dataverse_test

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestLookup_EmailAccentTwinIsAnotherAddress: Dataverse compares text in
// its environment's collation, _CI_AI for English (US) and most languages
// (learn.microsoft.com/power-platform/admin/language-collations), so
// "emailaddress1 eq 'ann@münchen.de'" also returns ann@munchen.de: another
// domain, another customer. An email lookup pops only the records that
// hold the address itself, as Go compares text, case-insensitively; the
// same address with other letter case, or trailing spaces, still matches.
func TestLookup_EmailAccentTwinIsAnotherAddress(t *testing.T) {
	for _, seq := range []bool{false, true} {
		srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.SequentialLookups = seq })
		stranger := srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "Other", EMailAddress1: "ann@munchen.de"})
		srv.AddContact(dataversetest.Contact{FirstName: "Rene", LastName: "Other", EMailAddress1: "rene@example.com"})
		same := srv.AddContact(dataversetest.Contact{FirstName: "Zoë", LastName: "Same", EMailAddress1: "ZOË@Example.com  ", EMailAddress2: "zoe@example.com"})
		warm(t, srv, c)
		for key, want := range map[string]string{
			"ann@münchen.de":        "",
			"ann@xn--mnchen-3ya.de": "",
			"rené@example.com":      "",
			"zoë@example.com":       same,
			"Zoe@Example.COM":       same,
			"ann@munchen.de":        stranger,
		} {
			recs, err := c.Lookup(ctxT(t, 5*time.Second), email(key))
			switch {
			case err != nil:
				t.Errorf("sequential=%v %q: %v", seq, key, err)
			case want == "" && len(recs) != 0:
				t.Errorf("sequential=%v %q: popped %+v, a record of another address", seq, key, recs)
			case want != "" && (len(recs) != 1 || recs[0].ID != want):
				t.Errorf("sequential=%v %q: got %+v, want only %s", seq, key, recs, want)
			}
		}
	}
}

// TestLookup_EmailDottedCapitalIIsTheSameAddress: a Turkish address typed
// in capitals (İ, U+0130) in Dataverse and in Genesys is the same address.
// The lookup lowers the caller's key (İ to i) and Dataverse's collation
// returns the row, but strings.EqualFold does not fold İ to i (Unicode's
// case folding has no simple mapping for it): the exact check must lower
// the row as the key was lowered.
func TestLookup_EmailDottedCapitalIIsTheSameAddress(t *testing.T) {
	srv, c := MustEnv(t, nil)
	same := srv.AddContact(dataversetest.Contact{FirstName: "Ilker", LastName: "Same", EMailAddress1: "İLKER@EXAMPLE.COM"})
	warm(t, srv, c)
	recs, err := c.Lookup(ctxT(t, 5*time.Second), email("İLKER@EXAMPLE.COM"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != same {
		t.Fatalf("got %+v, want %s: the record holding the caller's own address", recs, same)
	}
}

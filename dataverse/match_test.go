package dataverse_test

import (
	"slices"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestLookup_StoredPhoneFormats is the recall table: a number stored the
// way a Dynamics user typed it, looked up with the caller's E.164 number
// in a deployment of region. Each case runs against its own emulator, so a
// case's answer is that stored value's alone.
func TestLookup_StoredPhoneFormats(t *testing.T) {
	cases := []struct {
		region, caller, stored string
		found                  bool
	}{
		{"US", "+13175550123", "(317) 555-0123", true},
		{"US", "+13175550123", "317-555-0123", true},
		{"US", "+13175550123", "317.555.0123", true},
		{"US", "+13175550123", "+1 317 555 0123", true},
		{"US", "+13175550123", "+13175550123", true},
		{"US", "+13175550123", "13175550123", true},
		{"US", "+13175550123", "3175550123", true},
		{"US", "+13175550123", "+1 (317) 555-0123", true},
		{"US", "+13175550123", "1-317-555-0123", true},
		// Dataverse compares with SQL Server's =, which ignores trailing
		// spaces (KB 316626); leading ones count.
		{"US", "+13175550123", "317-555-0123  ", true},
		{"US", "+13175550123", " 317-555-0123", false},
		// Extensions are documented as not matched.
		{"US", "+13175550123", "317-555-0123 x45", false},
		// A NANP number typed from a country that dials 00 abroad.
		{"GB", "+13175550123", "001 317 555 0123", true},
		{"GB", "+13175550123", "0013175550123", true},
		{"GB", "+13175550123", "+1 317 555 0123", true},
		// UK number, UK deployment.
		{"GB", "+442079460018", "020 7946 0018", true},
		{"GB", "+442079460018", "02079460018", true},
		{"GB", "+442079460018", "+44 20 7946 0018", true},
		{"GB", "+442079460018", "+44 (0)20 7946 0018", true},
		{"GB", "+442079460018", "+44 (0) 20 7946 0018", true},
		{"GB", "+442079460018", "00442079460018", true},
		{"GB", "+442079460018", "0044 20 7946 0018", true},
		{"GB", "+442079460018", "020 7946 0018 ext 22", false},
		// UK number in a US deployment, typed with the US exit code.
		{"US", "+442079460018", "011 44 20 7946 0018", true},
		{"US", "+442079460018", "011442079460018", true},
		{"US", "+442079460018", "+44 (0)20 7946 0018", true},
		{"US", "+442079460018", "020 7946 0018", true},
		// A foreign number whose national digits are a valid domestic
		// number: stored without a country code, that is the domestic
		// number (a Belgian mobile, a Clermont-Ferrand landline).
		{"FR", "+32470123456", "0470123456", false},
		{"FR", "+32470123456", "+32 470 12 34 56", true},
		{"FR", "+33470123456", "0470123456", true},
		// The same for a Chicago number in the UK (07735 550123 is a UK
		// mobile): its forms with the country code still match.
		{"GB", "+17735550123", "7735550123", false},
		{"GB", "+17735550123", "(773) 555-0123", false},
		{"GB", "+17735550123", "(773)555-0123", false},
		{"GB", "+17735550123", "+1 (773) 555-0123", true},
		{"GB", "+17735550123", "1-773-555-0123", true},
		{"GB", "+17735550123", "1 (773) 555-0123", true},
		// A foreign number's country code and digits without the '+' can
		// be ten digits that are a valid US number: stored so in a US
		// deployment, that is a domestic stranger ((475) 512-3456 in
		// Connecticut for Bergen's +47 55 12 34 56). Its other
		// international forms still match.
		{"US", "+4755123456", "4755123456", false},
		{"US", "+3612345678", "3612345678", false},
		{"US", "+4755123456", "+47 55 12 34 56", true},
		{"US", "+4755123456", "011 47 55 12 34 56", true},
		{"US", "+4755123456", "004755123456", true},
		{"US", "+14755123456", "4755123456", true},
		// Twelve digits are no US number: still matched.
		{"US", "+442079460018", "442079460018", true},
		// In Germany a German number is written with its trunk 0, so
		// "4755123456" is no German number as typed: still matched.
		{"DE", "+4755123456", "4755123456", true},
		// In China 13175550123 is a mobile (131 7555 0123), however
		// grouped; the forms with '+' or 00 are the US caller's.
		{"CN", "+13175550123", "13175550123", false},
		{"CN", "+13175550123", "1 317 555 0123", false},
		{"CN", "+13175550123", "1-317-555-0123", false},
		{"CN", "+13175550123", "+1 317 555 0123", true},
		{"CN", "+13175550123", "001 317 555 0123", true},
	}
	for _, tc := range cases {
		t.Run(tc.region+"/"+tc.caller+"/"+tc.stored, func(t *testing.T) {
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.PhoneRegion = tc.region })
			id := srv.AddContact(dataversetest.Contact{FirstName: "Stored", LastName: "As", Telephone1: tc.stored})
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(tc.caller))
			if err != nil {
				t.Fatal(err)
			}
			got := len(recs) == 1 && recs[0].ID == id
			if got != tc.found || (!tc.found && len(recs) != 0) {
				t.Fatalf("caller %s (region %s), stored %q: got %+v, want found=%v", tc.caller, tc.region, tc.stored, recs, tc.found)
			}
		})
	}
}

// TestLookup_NoStrangerForAShortNumber: a caller whose number is short, local-only
// or a placeholder must not pop records of other people that hold the
// same digits without a country or area code. Each caller is what the
// bridge's normalizer makes of an address a customer can present
// (a 7-digit callback number or chat form entry, a PBX extension, a
// carrier's all-zero caller id).
func TestLookup_NoStrangerForAShortNumber(t *testing.T) {
	cases := []struct {
		region, raw, stored string
	}{
		// Numbers stored without their area code are documented as
		// never matched: a 7-digit caller must not find them either.
		{"US", "555-0123", "555-0123"},
		{"US", "tel:5550123", "555 0123"},
		// Placeholder numbers are common in CRM data.
		{"US", "0000000000", "0000000000"},
		{"US", "+10000000000", "000-000-0000"},
		// An internal extension calling in over SIP in a German deployment.
		{"DE", "sip:1234@pbx.example.com", "1234"},
	}
	for _, tc := range cases {
		t.Run(tc.region+"/"+tc.raw+"/"+tc.stored, func(t *testing.T) {
			e164, ok := bridge.ParsePhone(tc.raw, tc.region)
			if !ok {
				return // not looked up at all: no stranger
			}
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.PhoneRegion = tc.region })
			srv.AddContact(dataversetest.Contact{FirstName: "Some", LastName: "Stranger", Telephone1: tc.stored})
			srv.AddContact(dataversetest.Contact{FirstName: "Other", LastName: "Stranger", MobilePhone: tc.stored})
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(e164))
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 0 {
				t.Fatalf("caller %q (%s) matched %d strangers stored as %q: %+v", tc.raw, e164, len(recs), tc.stored, recs)
			}
		})
	}
}

// TestLookup_NearMisses: comparisons are whole-value eq, so a number
// that is a suffix or prefix of another, or another number, never matches.
func TestLookup_NearMisses(t *testing.T) {
	srv, c := MustEnv(t, nil)
	for _, stored := range []string{"5550123", "555-0123", "0123", "+13175550124", "23175550123", "+113175550123", "3175550123 9", "N/A", "unknown"} {
		srv.AddContact(dataversetest.Contact{FirstName: "Near", LastName: stored, Telephone1: stored})
	}
	srv.AddContact(dataversetest.Contact{FirstName: "Blank", LastName: "Phone"})
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550123"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("matched %+v", recs)
	}
}

// TestLookup_EmailForms: case and surrounding spaces do not matter, a
// plus-address is another address, the second contact email column is
// searched.
func TestLookup_EmailForms(t *testing.T) {
	srv, c := MustEnv(t, nil)
	a := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "Lower", EMailAddress1: "ann@example.com"})
	b := srv.AddContact(dataversetest.Contact{FirstName: "B", LastName: "Second", EMailAddress2: "Bob@Example.COM "})
	srv.AddContact(dataversetest.Contact{FirstName: "C", LastName: "Plus", EMailAddress1: "cy+shop@example.com"})
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"ANN@EXAMPLE.COM", []string{a}},
		{"  ann@example.com ", []string{a}},
		{"bob@example.com", []string{b}},
		{"cy@example.com", nil},
		{"ann+news@example.com", nil},
	} {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), email(tc.key))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.key, got, tc.want)
		}
	}
}

// TestLookup_InactiveLeadAndContact: a qualified lead (statecode 1)
// and a deactivated (e.g. merged) contact do not pop; the contact the
// lead was qualified into does.
func TestLookup_InactiveLeadAndContact(t *testing.T) {
	srv, c := MustEnv(t, nil)
	if _, err := srv.AddRecord("leads", map[string]any{"firstname": "Q", "lastname": "Lead", "telephone1": "+13175550150", "statecode": 1}); err != nil {
		t.Fatal(err)
	}
	srv.AddContact(dataversetest.Contact{FirstName: "Merged", LastName: "Away", Telephone1: "317-555-0150", Inactive: true})
	live := srv.AddContact(dataversetest.Contact{FirstName: "Q", LastName: "Contact", MobilePhone: "(317) 555-0150"})
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550150"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != live {
		t.Fatalf("got %+v, want only the active contact %s", recs, live)
	}
}

// The same with contact redefined in SCREENPOP_ENTITIES (another name
// column): the redefinition, without /active, turned the filter off and
// the merged contact popped; a built-in keeps it.
func TestLookup_RedefinedBuiltinKeepsItsActiveFilter(t *testing.T) {
	ents, err := dataverse.ParseEntities("contact=contacts/contactid/lastname")
	if err != nil {
		t.Fatal(err)
	}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Entities = ents })
	srv.AddContact(dataversetest.Contact{FirstName: "Merged", LastName: "Away", Telephone1: "317-555-0150", Inactive: true})
	live := srv.AddContact(dataversetest.Contact{FirstName: "Q", LastName: "Contact", MobilePhone: "(317) 555-0150"})
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550150"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != live || recs[0].Name != "Contact" {
		t.Fatalf("got %+v, want only the active contact %s, named by its lastname", recs, live)
	}
}

// TestLookup_RecordCreatedAfterAMiss: a record created right after a miss
// (the agent's create pop) is hidden for SCREENPOP_NEGATIVE_CACHE_TTL and
// found after it (docs/dataverse.md §3).
func TestLookup_RecordCreatedAfterAMiss(t *testing.T) {
	now := time.Now()
	var clock = func() time.Time { return now }
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = func() time.Time { return clock() } })
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550160")); err != nil || len(recs) != 0 {
		t.Fatalf("first call: %+v, %v", recs, err)
	}
	id := srv.AddContact(dataversetest.Contact{FirstName: "New", LastName: "Caller", Telephone1: "+13175550160"})
	now = now.Add(dataverse.DefaultNegativeCacheTTL - time.Second)
	if recs, _ := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550160")); len(recs) != 0 {
		t.Fatalf("within the negative TTL: %+v (expected the cached miss)", recs)
	}
	now = now.Add(2 * time.Second)
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550160")); err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("after the negative TTL: %+v, %v; want %s", recs, err, id)
	}
}

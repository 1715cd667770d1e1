package dataverse_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestPhoneMatching stores numbers the way people type them and looks the
// caller's E.164 number up through the emulator: ten formats in each of
// three countries, each on its own number.
func TestPhoneMatching(t *testing.T) {
	srv, c := MustEnv(t, nil)
	cases := []struct {
		caller, stored string
		match          bool
	}{
		// United States
		{"+13175550101", "(317) 555-0101", true},
		{"+13175550102", "317.555.0102", true},
		{"+13175550103", "+1 317 555 0103", true},
		{"+13175550104", "317-555-0104", true},
		{"+13175550105", "3175550105", true},
		{"+13175550106", "+13175550106", true},
		{"+13175550107", "1-317-555-0107", true},
		{"+13175550108", "+1 (317) 555-0108", true},
		{"+13175550109", "13175550109", true},
		{"+13175550110", "317 555 0110", true},
		// United Kingdom
		{"+442079460101", "020 7946 0101", true},
		{"+442079460102", "+44 20 7946 0102", true},
		{"+442079460103", "02079460103", true},
		{"+442079460104", "+442079460104", true},
		{"+442079460105", "00442079460105", true},
		{"+442079460106", "+44 (0)20 7946 0106", true},
		{"+442079460107", "020-7946-0107", true},
		{"+442079460108", "442079460108", true},
		{"+447700900109", "07700 900109", true},
		{"+447700900110", "+44 7700 900110", true},
		// Germany
		{"+493012345601", "030 12345601", true},
		{"+493012345602", "+49 30 12345602", true},
		{"+493012345603", "03012345603", true},
		{"+493012345604", "+493012345604", true},
		{"+493012345605", "00493012345605", true},
		{"+493012345606", "030/12345606", true},
		{"+493012345607", "+49 (0)30 12345607", true},
		{"+493012345608", "030-12345608", true},
		{"+4915123456709", "01512 3456709", true},
		{"+4915123456710", "+49 1512 3456710", true},
		// Known gaps and near misses: never a wrong record.
		{"+13175550111", "317-555-0111 ext. 12", false}, // extensions are not split off
		{"+13175550112", "317-555-0113", false},         // a different number
		{"+13175550114", "555-0114", false},             // no area code
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = srv.AddContact(dataversetest.Contact{FirstName: "Case", LastName: tc.stored, Telephone1: tc.stored})
	}
	for i, tc := range cases {
		t.Run(tc.stored, func(t *testing.T) {
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(tc.caller))
			if err != nil {
				t.Fatal(err)
			}
			if tc.match && (len(recs) != 1 || recs[0].ID != ids[i]) {
				t.Fatalf("caller %s: got %+v, want the record stored as %q", tc.caller, recs, tc.stored)
			}
			if !tc.match && len(recs) != 0 {
				t.Fatalf("caller %s matched %+v", tc.caller, recs)
			}
		})
	}
}

// TestPhoneMatching_OneCallerSixFormats: the caller +13175550123 finds all
// records that hold the number in any of six common formats.
func TestPhoneMatching_OneCallerSixFormats(t *testing.T) {
	srv, c := MustEnv(t, nil)
	var want []string
	for _, stored := range []string{"(317) 555-0123", "317.555.0123", "+1 317 555 0123", "317-555-0123", "3175550123", "+13175550123"} {
		want = append(want, srv.AddContact(dataversetest.Contact{FirstName: "Same", LastName: "Number", MobilePhone: stored}))
	}
	srv.AddContact(dataversetest.Contact{FirstName: "Other", LastName: "Number", MobilePhone: "(317) 555-0124"})
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550123"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d records, want the 6 stored variants", len(got))
	}
}

func TestPhoneVariants(t *testing.T) {
	cases := []struct {
		e164    string
		include []string
	}{
		{"+13175550123", []string{"+13175550123", "13175550123", "3175550123", "(317) 555-0123", "317-555-0123", "317.555.0123", "317 555 0123", "+1 317-555-0123", "+1 317 555 0123", "+1 (317) 555-0123", "1-317-555-0123", "+1.317.555.0123"}},
		{"+442079460018", []string{"+442079460018", "02079460018", "020 7946 0018", "+44 20 7946 0018", "00442079460018", "+44 (0)20 7946 0018", "+44.20.7946.0018"}},
		{"+493012345678", []string{"+493012345678", "030 12345678", "030/12345678", "+49 30 12345678", "0049301234567" + "8"}},
	}
	for _, tc := range cases {
		t.Run(tc.e164, func(t *testing.T) {
			v, err := dataverse.PhoneVariants(tc.e164, "US")
			if err != nil {
				t.Fatal(err)
			}
			if len(v) > 20 {
				t.Fatalf("%d variants: too many for one URL per entity", len(v))
			}
			for _, want := range tc.include {
				if !slices.Contains(v, want) {
					t.Errorf("variants of %s lack %q: %q", tc.e164, want, v)
				}
			}
		})
	}
	if _, err := dataverse.PhoneVariants("12", "US"); err == nil {
		t.Fatal("want an error for an impossible number")
	}
}

func TestNormalizePhone(t *testing.T) {
	cases := []struct{ in, region, want string }{
		{"+1 (317) 555-0123", "US", "+13175550123"},
		{"tel:+13175550123", "US", "+13175550123"},
		{"(317) 555-0123", "US", "+13175550123"},
		{"020 7946 0018", "GB", "+442079460018"},
		{"x' or 1 eq 1", "US", ""},
	}
	for _, tc := range cases {
		got, err := dataverse.NormalizePhone(tc.in, tc.region)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("NormalizePhone(%q, %s) = %q, %v; want %q", tc.in, tc.region, got, err, tc.want)
		}
	}
}

func TestParseLookup(t *testing.T) {
	got, err := dataverse.ParseLookup(dataverse.DefaultLookupPhone)
	if err != nil || len(got) != 3 || got[0].Entity != "contact" || !slices.Equal(got[0].Columns, []string{"telephone1", "mobilephone", "telephone2"}) || got[2].Entity != "lead" {
		t.Fatalf("default: %+v, %v", got, err)
	}
	for _, none := range []string{"", "none", " none "} {
		if got, err := dataverse.ParseLookup(none); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("%q: %+v, %v; want an empty list", none, got, err)
		}
	}
	for _, bad := range []string{"contact", "contact:", "Contact:telephone1", "contact:tele phone", "contact:a;contact:b", "contact:a'b", ":a"} {
		if _, err := dataverse.ParseLookup(bad); err == nil {
			t.Errorf("ParseLookup(%q): want an error", bad)
		}
	}
}

func TestParseEntities(t *testing.T) {
	m, err := dataverse.ParseEntities("incident=incidents/incidentid/title; new_caller=new_callers/new_callerid/new_name/active")
	if err != nil {
		t.Fatal(err)
	}
	if m["incident"] != (dataverse.EntityInfo{LogicalName: "incident", EntitySet: "incidents", IDColumn: "incidentid", NameColumn: "title"}) {
		t.Fatalf("incident %+v", m["incident"])
	}
	if !m["new_caller"].ActiveOnly || m["contact"].EntitySet != "contacts" {
		t.Fatalf("entities %+v", m)
	}
	for _, bad := range []string{"incident", "incident=incidents/incidentid", "incident=incidents/incident id/title", "x=a/b/c/d"} {
		if _, err := dataverse.ParseEntities(bad); err == nil {
			t.Errorf("ParseEntities(%q): want an error", bad)
		}
	}
}

// Every region's example numbers, looked up from a few deployments'
// regions and their own, stay within the variants' bound.
func TestPhoneVariants_Bounded(t *testing.T) {
	for r := range phonenumbers.GetSupportedRegions() {
		for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE} {
			n := phonenumbers.GetExampleNumberForType(r, typ)
			if n == nil {
				continue
			}
			e := phonenumbers.Format(n, phonenumbers.E164)
			for _, home := range []string{"US", "GB", "DE", "IN", r} {
				if v, err := dataverse.PhoneVariants(e, home); err == nil && len(v) > 20 {
					t.Errorf("%s in %s: %d variants, want at most 20", e, home, len(v))
				}
			}
		}
	}
}

package dataverse_test

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestLookup_NationalNumberWithoutTrunkPrefix: in a country with a trunk
// prefix, a domestic number stored without it is still "the digits
// without the country code" (docs/dataverse.md §3), and the normalizer
// itself reads it so in SCREENPOP_PHONE_REGION (bridge.ParsePhone
// ("98765 43210", "IN") is +919876543210). In India that is how a mobile
// number is written almost everywhere: ten digits, "98765 43210",
// "9876543210", "98765-43210", never "098765 43210". A caller whose
// contact holds the number so must pop that contact, not a create.
// Abroad the same digits are another country's number (a UK number's
// "2079460018" is Maine's (207) 946-0018 in the US), so they are only
// queried for a domestic caller.
func TestLookup_NationalNumberWithoutTrunkPrefix(t *testing.T) {
	cases := []struct {
		region, caller, stored string
		found                  bool
	}{
		{"IN", "+919876543210", "9876543210", true},
		{"IN", "+919876543210", "98765 43210", true},
		{"IN", "+919876543210", "98765-43210", true},
		{"DE", "+493012345678", "3012345678", true},
		// Never a stranger abroad: read in the US, these digits are
		// (207) 946-0018, so a US deployment does not query them.
		{"US", "+442079460018", "2079460018", false},
		{"US", "+442079460018", "20 7946 0018", false},
	}
	for _, tc := range cases {
		t.Run(tc.region+"/"+tc.caller+"/"+tc.stored, func(t *testing.T) {
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.PhoneRegion = tc.region })
			id := srv.AddContact(dataversetest.Contact{FirstName: "Stored", LastName: "As", MobilePhone: tc.stored})
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

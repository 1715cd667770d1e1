package bridge

import (
	"strings"
	"testing"
)

func TestParsePhone(t *testing.T) {
	for _, tt := range []struct {
		raw, region, want string
	}{
		{"tel:+16175550123", "US", "+16175550123"},
		{"tel:+1-617-555-0123;ext=12", "US", "+16175550123"},
		{"TEL:+16175550123", "US", "+16175550123"},
		{"sip:+16175550123@10.0.0.1;user=phone", "US", "+16175550123"},
		{"sip:6175550123@edge.example.invalid", "US", "+16175550123"},
		{"sips:+442071838750@sbc.example.invalid", "US", "+442071838750"},
		{"+1 (617) 555-0123", "US", "+16175550123"},
		{"(617) 555-0123", "US", "+16175550123"},
		{"617.555.0123", "US", "+16175550123"},
		{"16175550123", "US", "+16175550123"},
		{"6175550123", "", "+16175550123"}, // empty region = US
		{"020 7183 8750", "GB", "+442071838750"},
		{"020 7183 8750", "gb", "+442071838750"},
		{"0044 20 7183 8750", "GB", "+442071838750"},
		{"011 44 20 7183 8750", "US", "+442071838750"},
		{"  tel:+16175550123  ", "US", "+16175550123"},
		{"", "US", ""},
		{"Anonymous", "US", ""},
		{"sip:alice@example.invalid", "US", ""},
		// No user part: the URI names a host, whose IPv4 address would
		// read as (212) 582-4420.
		{"sip:212.58.244.20", "US", ""},
		{"sips:212.58.244.20:5061;transport=tls", "US", ""},
		// A local number with a global phone-context (RFC 3966) is read
		// in that context, not in region.
		{"tel:2079460018;phone-context=+44", "US", "+442079460018"},
		{"tel:555-0123;phone-context=+1-317", "US", "+13175550123"},
		{"sip:2079460018;phone-context=+44@gw.example.invalid;user=phone", "US", "+442079460018"},
		{"tel:+16175550123;phone-context=+44", "US", "+16175550123"},
		// Dialled with an international prefix: not a number of the
		// context, read as dialled.
		{"tel:011442079460018;phone-context=+1", "US", "+442079460018"},
		{"tel:0013175550123;phone-context=+44", "GB", "+13175550123"},
		{"5ee38185000014b95f962c5b@guest.orgspan.com", "US", ""},
		{"jane@example.com", "US", ""},
		{"tel:", "US", ""},
		{"12", "US", ""},
		{"+1234567890123456789012", "US", ""},
		{"555-0123x", "US", ""},
		{strings.Repeat("1", 200), "US", ""},
	} {
		got, ok := ParsePhone(tt.raw, tt.region)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ParsePhone(%q, %q) = %q, %v; want %q", tt.raw, tt.region, got, ok, tt.want)
		}
	}
}

func FuzzParsePhone(f *testing.F) {
	for _, s := range []string{"tel:+16175550123", "sip:+16175550123@h;user=phone", "+1 (617) 555-0123", "020 7183 8750",
		"sip:alice@x", "", "tel:;", "sip:@", "+", "00", "011 44 20 7183 8750", "+4930123456789012"} {
		f.Add(s, "US")
		f.Add(s, "GB")
	}
	f.Fuzz(func(t *testing.T, raw, region string) {
		got, ok := ParsePhone(raw, region)
		if !ok {
			if got != "" {
				t.Fatalf("not ok but %q", got)
			}
			return
		}
		if len(got) < 2 || len(got) > 16 || got[0] != '+' || got[1] == '0' {
			t.Fatalf("ParsePhone(%q) = %q: not E.164", raw, got)
		}
		// E.164 is a fixed point.
		if again, ok := ParsePhone(got, "US"); !ok || again != got {
			t.Fatalf("ParsePhone(%q) = %q, %v; want itself", got, again, ok)
		}
	})
}

package dataverse

import (
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"

	"github.com/screenpop/screenpop/bridge"
)

// ErrInvalidKey is returned by Lookup for an identifier that cannot be
// searched (an unparseable phone number, an empty or oversized email).
var ErrInvalidKey = bridge.ErrUnsearchable

// NormalizePhone parses s (E.164, or a national number of region) and
// returns it in E.164.
func NormalizePhone(s, region string) (string, error) {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "tel:"))
	if s == "" || len(s) > 64 {
		return "", ErrInvalidKey
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return "", ErrInvalidKey
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// PhoneVariants returns the ways people commonly type the number e164 into a
// free-text Dynamics phone column: E.164, with and without the '+', with the
// 00 international prefix, the national format and its digits, the national
// and international groups separated by spaces, dashes, dots (and a slash
// after the area code), "+CC (0)…" where the country has a trunk prefix, and
// the NANP forms with a leading 1. Each one is compared with eq, so the list
// is kept short (at most twenty) to fit one URL per entity.
//
// The grouping comes from libphonenumber's formatting rules for the number's
// own country. Stored values carrying an extension or unusual grouping do not
// match; see docs/dataverse.md.
//
// The forms without the country code (national digits, national format) are
// only queried for a number libphonenumber knows as valid, or that has a
// properly formatted national form with a trunk prefix: a local-only or short
// number (a US 7-digit "555-0123", a German extension "1234") or a placeholder
// ("0000000000") would otherwise match records of other people stored without
// their area code. Nor are they queried for a number of another country whose
// national digits are a valid number of region: stored without a country
// code, they are that domestic number. Likewise a foreign number's country
// code and digits without the '+' are not queried when they are also how a
// valid number of region is written nationally (+47 55 12 34 56 as
// "4755123456" is a Connecticut number in the US). For a number of another
// country than region, the international call prefix of region is queried
// too ("001 317 555 0123" in the UK, "011 44 20 7946 0018" in the US).
func PhoneVariants(e164, region string) ([]string, error) {
	n, err := phonenumbers.Parse(e164, region)
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return nil, ErrInvalidKey
	}
	cc := strconv.Itoa(int(n.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	nat := phonenumbers.Format(n, phonenumbers.NATIONAL)
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	natGroups := digitGroups(nat)
	intlGroups := digitGroups(strings.TrimPrefix(intl, "+"+cc))
	natDigits := strings.Join(natGroups, "")
	nanp := cc == "1"

	// national: the forms without the country code identify this number
	// alone (see the doc comment).
	national := phonenumbers.IsValidNumber(n) ||
		phonenumbers.IsPossibleNumberWithReason(n) == phonenumbers.IS_POSSIBLE && natDigits != nsn
	rcc := phonenumbers.GetCountryCodeForRegion(strings.ToUpper(region))
	foreign := rcc != 0 && strconv.Itoa(rcc) != cc
	// bare: the forms without any country code are queried too.
	bare := national
	if national && foreign {
		// A foreign number's national digits that are also a valid number
		// of region (Belgian 0470 12 34 56, French 04 70 12 34 56) stand,
		// stored without a country code, for the domestic number, as the
		// normalizer reads them: they would pop a stranger. The forms
		// with the country code ("+1 (773) 555-0123") still identify it.
		if d, err := phonenumbers.Parse(natDigits, strings.ToUpper(region)); err == nil && phonenumbers.IsValidNumber(d) {
			bare = false
		}
	}

	// withCC: the country code and digits without the '+' ("4755123456"
	// for Bergen's +47 55 12 34 56) are queried, unless, for a foreign
	// number, they are also how a valid number of region is written
	// nationally (Connecticut's (475) 512-3456): stored so, they are read
	// in region, so they are a domestic stranger, as for the bare forms
	// above. (In Germany "4755123456" would need its trunk 0 to be a
	// German number, so it stays.)
	withCC := true
	if foreign {
		if d, err := phonenumbers.Parse(cc+nsn, strings.ToUpper(region)); err == nil && phonenumbers.IsValidNumber(d) &&
			strings.Join(digitGroups(phonenumbers.Format(d, phonenumbers.NATIONAL)), "") == cc+nsn {
			withCC = false
		}
	}

	seen := make(map[string]bool, 24)
	out := make([]string, 0, 24)
	add := func(v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	add("+" + cc + nsn)
	if withCC {
		add(cc + nsn)
	}
	if !nanp || foreign {
		// "00442079460018", "0044 20 7946 0018", "001 317 555 0123".
		add("00" + cc + nsn)
		add("00" + cc + " " + strings.Join(intlGroups, " "))
	}
	if foreign {
		// The region's own international call prefix when it is not 00:
		// "011 44 20 7946 0018" in the US.
		if o := phonenumbers.FormatOutOfCountryCallingNumber(n, strings.ToUpper(region)); o != "" {
			if idd, _, ok := strings.Cut(o, " "); ok && idd != "00" && allDigits(idd) {
				add(idd + cc + nsn)
				add(idd + " " + cc + " " + strings.Join(intlGroups, " "))
			}
		}
	}
	if bare {
		add(natDigits)
		add(nat)
		for _, sep := range []string{" ", "-", "."} {
			add(strings.Join(natGroups, sep))
		}
		if len(natGroups) > 1 && !nanp {
			add(natGroups[0] + "/" + strings.Join(natGroups[1:], ""))
		}
	}
	if bare && natDigits != nsn && trunkless(n, nsn, region) {
		// A domestic number without its trunk prefix: how India writes
		// a mobile ("98765 43210"), and read in region as this number
		// (bridge.ParsePhone does). Abroad these digits are region's
		// own number (a UK "2079460018" is Maine's in the US): never.
		add(nsn)
		add(strings.Join(intlGroups, " "))
		add(strings.Join(intlGroups, "-"))
	}
	add(intl)
	for _, sep := range []string{" ", "-", "."} {
		add("+" + cc + " " + strings.Join(intlGroups, sep))
	}
	add("+" + cc + "-" + strings.Join(intlGroups, "-"))
	if natDigits == nsn {
		// No trunk prefix (NANP and others): "+1 (317) 555-0123".
		if national {
			add("+" + cc + " " + nat)
		}
	} else if prefix := strings.TrimSuffix(natDigits, nsn); prefix != natDigits && prefix != "" {
		// "+44 (0)20 7946 0018", "+44 (0) 20 7946 0018".
		add("+" + cc + " (" + prefix + ")" + strings.Join(intlGroups, " "))
		add("+" + cc + " (" + prefix + ") " + strings.Join(intlGroups, " "))
	}
	if nanp && national && len(natGroups) == 3 {
		a, b, c := natGroups[0], natGroups[1], natGroups[2]
		if bare {
			add("(" + a + ")" + b + "-" + c)
		}
		// Without the '+', like "13175550123" (withCC): in China both are
		// the mobile 131 7555 0123.
		if withCC {
			add("1-" + a + "-" + b + "-" + c)
			add("1 " + a + " " + b + " " + c)
			add("1 (" + a + ") " + b + "-" + c)
		}
	}
	// "+1.317.555.0123", as domain registrars write it: the least likely,
	// so last, and left out where twenty others are there already.
	if len(out) < maxPhoneVariants {
		add("+" + cc + "." + strings.Join(intlGroups, "."))
	}
	return out, nil
}

// maxPhoneVariants bounds PhoneVariants: with the entity's columns they
// make one query per entity, which must stay a reasonable URL.
const maxPhoneVariants = 20

// digitGroups splits s into its runs of ASCII digits.
func digitGroups(s string) []string {
	var groups []string
	start := -1
	for i := 0; i <= len(s); i++ {
		digit := i < len(s) && s[i] >= '0' && s[i] <= '9'
		if digit && start < 0 {
			start = i
		} else if !digit && start >= 0 {
			groups = append(groups, s[start:i])
			start = -1
		}
	}
	return groups
}

func validRegion(r string) bool { return phonenumbers.GetSupportedRegions()[r] }

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// trunkless reports whether nsn, the national significant number of n,
// written alone (without n's trunk prefix) reads in region as n itself:
// only for a number of region's own country.
func trunkless(n *phonenumbers.PhoneNumber, nsn, region string) bool {
	r := strings.ToUpper(region)
	if phonenumbers.GetCountryCodeForRegion(r) != int(n.GetCountryCode()) {
		return false
	}
	d, err := phonenumbers.Parse(nsn, r)
	return err == nil && phonenumbers.IsValidNumber(d) &&
		phonenumbers.Format(d, phonenumbers.E164) == phonenumbers.Format(n, phonenumbers.E164)
}

package bridge

import (
	"net"
	"net/netip"
	"regexp"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

// maxPhoneInput bounds the work ParsePhone does on untrusted input: no real
// address form of a phone number is longer.
const maxPhoneInput = 128

// ParsePhone turns a phone address as Genesys writes it into E.164 (+13175550123).
// It accepts the forms seen in conversation snapshots and chat context:
//
//	tel:+13175550123            tel URI (parameters such as ;ext= are dropped)
//	tel:2079460018;phone-context=+44   a local number, read in its context (+442079460018)
//	sip:+13175550123@host;user=phone   SIP URI whose user part is a number
//	+1 (317) 555-0123           a number with punctuation
//	3175550123                  a national number, read in region (ISO 3166 alpha-2, e.g. "US")
//	+1 317 555 0123 x12         an extension (x, ext) is dropped
//
// A number typed into a chat form on any keyboard reads as one typed in
// ASCII: digits of any script (Arabic-Indic ٠-٩, Persian ۰-۹, fullwidth
// ０-９), the fullwidth plus, the dashes and spaces libphonenumber counts
// as punctuation (U+2010-U+2015, U+2212, NBSP, ...), and without the
// invisible direction marks a number copied from a right-to-left page
// carries.
//
// It reports ok=false for anything that is not a possible number: a SIP URI
// with a name (sip:alice@example.com), a chat guest address, an email, empty
// or anonymous callers. It never panics on any input.
func ParsePhone(raw, region string) (e164 string, ok bool) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > maxPhoneInput {
		return "", false
	}
	s = strings.TrimSpace(foldPhone(s))
	lower := strings.ToLower(s[:min(len(s), 5)])
	var context string
	switch {
	case strings.HasPrefix(lower, "tel:"):
		s, context = telSubscriber(s[4:])
	case strings.HasPrefix(lower, "sips:"):
		s, context = telSubscriber(sipUser(s[5:]))
	case strings.HasPrefix(lower, "sip:"):
		s, context = telSubscriber(sipUser(s[4:]))
	default:
		if strings.IndexByte(s, '@') >= 0 {
			return "", false // an email or a guest address, not a number
		}
	}
	if context != "" {
		// A local number within its context; one dialled with an
		// international prefix ("011 44 20…" within +1) is not a number
		// of the context, and is read as dialled, below.
		if e164, ok := parseNumber(context+s, region); ok {
			return e164, true
		}
	}
	return parseNumber(s, region)
}

// parseNumber reads s, a number with punctuation at most, as ParsePhone
// does.
func parseNumber(s, region string) (e164 string, ok bool) {
	if m := extension.FindStringIndex(s); m != nil {
		s = s[:m[0]]
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' || c == ' ' || c == '-' || c == '(' || c == ')' || c == '.' || c == '/':
		default:
			return "", false
		}
	}
	// E.164 allows at most 15 digits; a national number with a trunk or
	// international prefix a few more.
	if digits < 3 || digits > 20 {
		return "", false
	}
	if region == "" {
		region = "US"
	}
	num, err := phonenumbers.Parse(s, strings.ToUpper(region))
	// 00 is how most of the world dials abroad, and so how people write a
	// number with its country code ("0049 30 12345678"), also to a
	// deployment whose region dials abroad otherwise (011 in North
	// America, 010 in Japan, 810 in Russia), where it is no national
	// number (or, read as one, junk: +7 00493012345678). Where a carrier
	// code follows the region's 00 (Brazil, Colombia), "0041 44 668 18 00"
	// dialled is carrier 41 to +44 6681800, no valid number: a valid
	// reading with the country code is what was written.
	if t := strings.TrimLeft(s, " (-./"); strings.HasPrefix(t, "00") &&
		(err != nil || !phonenumbers.IsPossibleNumber(num) || !phonenumbers.IsValidNumber(num)) {
		regionBad := err != nil || !phonenumbers.IsPossibleNumber(num) || num.GetItalianLeadingZero()
		if n, err2 := phonenumbers.Parse("+"+strings.TrimLeft(t[2:], " (-./"), "ZZ"); err2 == nil && phonenumbers.IsPossibleNumber(n) &&
			(regionBad || phonenumbers.IsValidNumber(n)) {
			num, err = n, nil
		}
	}
	if err != nil || !phonenumbers.IsPossibleNumber(num) {
		return "", false
	}
	e164 = phonenumbers.Format(num, phonenumbers.E164)
	// libphonenumber calls some longer numbers possible (a German PBX
	// extension dialled in full, +49 30 1234567 89012), but E.164, and so
	// the event schema's customer.phone and dnis, allow 15 digits at most.
	if len(e164) > 1+15 {
		return "", false
	}
	// A real number reads back as itself. Some junk (+49000000, found by
	// FuzzParsePhone) loses a digit to national-prefix rules on every
	// round: refuse it rather than hand the directory a moving target.
	again, err := phonenumbers.Parse(e164, "ZZ")
	if err != nil || phonenumbers.Format(again, phonenumbers.E164) != e164 {
		return "", false
	}
	return e164, true
}

// extension is an extension written after a number: " x12", " ext. 12".
var extension = regexp.MustCompile(`(?i)\s*(?:x|ext\.?|extension)\s*[0-9]{1,7}$`)

// foldPhone writes s, a phone address as typed on any keyboard, in
// ASCII where it can: decimal digits of any script as 0-9, the fullwidth
// forms of + ( ) . / as themselves, dashes as '-', spaces as ' ', and
// without invisible format characters (direction marks and embeddings,
// zero-width spaces, soft hyphens). Anything else is kept, for
// parseNumber to refuse.
func foldPhone(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case unicode.Is(unicode.Nd, r):
			b.WriteByte('0' + byte(digitValue(r)))
		case r >= 0xFF01 && r <= 0xFF5E && strings.ContainsRune("+().-/", r-0xFEE0):
			b.WriteRune(r - 0xFEE0) // fullwidth ASCII
		case r >= 0x2010 && r <= 0x2015, r == 0x2212, r == 0x30FC:
			b.WriteByte('-')
		case unicode.IsSpace(r):
			b.WriteByte(' ')
		case unicode.Is(unicode.Cf, r):
			// invisible: dropped
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// digitValue is the value of r, a decimal digit (Nd): Unicode encodes
// each script's digits as a run 0-9, and unicode.Nd's ranges start at a
// zero.
func digitValue(r rune) int {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return 0
}

// sipUser returns the user part of a SIP URI without its scheme: the text
// before '@', without a password (:pw), with its parameters (;user=phone,
// ;phone-context=, for telSubscriber). A URI without '@' whose host is an
// IP address (sip:212.58.244.20:5060) has no user part: "", not the
// address's digits, which read as a number ((212) 582-4420).
func sipUser(s string) string {
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	} else if host, _, _ := strings.Cut(s, ";"); host != "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return ""
		}
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// telSubscriber splits an RFC 3966 telephone-subscriber (a tel URI without
// its scheme, or a SIP URI's user part) into its number, without its
// parameters (;ext=, ;user=phone), and the global phone-context of a local
// number ("2079460018;phone-context=+44": "2079460018", "+44"), within
// which it is read, as libphonenumber reads it: read in the configured
// region it would be another number ((207) 946-0018 in Maine).
func telSubscriber(s string) (num, context string) {
	num, params, _ := strings.Cut(s, ";")
	if strings.HasPrefix(strings.TrimSpace(num), "+") {
		return num, ""
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		if k, v, _ := strings.Cut(p, "="); strings.EqualFold(strings.TrimSpace(k), "phone-context") && strings.HasPrefix(v, "+") {
			return num, v
		}
	}
	return num, ""
}

// validPhoneRegion reports whether region is one phonenumbers knows.
func validPhoneRegion(region string) bool {
	_, ok := phonenumbers.GetSupportedRegions()[strings.ToUpper(region)]
	return ok
}

package dataversetest

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// SeedInfo tells a seeded data set's callers apart, by E.164 number: the
// first entity (in the default order contact, account, lead) that holds a
// number has it on exactly one record (Unique) or on several (Shared);
// Unknown numbers are on no record. Emails are on exactly one contact.
type SeedInfo struct {
	Unique  []string
	Shared  []string
	Unknown []string
	Emails  []string
}

var (
	firstNames = []string{"Ada", "Bram", "Chloé", "Dmitri", "Eve", "Fatima", "Grace", "Hiro", "Ines", "Jonas", "Kwame", "Lena", "Mateo", "Niamh", "Olu", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara", "Zoe"}
	lastNames  = []string{"O'Brien", "Smith", "Müller", "García", "Nguyen", "Okafor", "Kowalski", "D'Angelo", "Jensen", "Rossi", "Tanaka", "Dubois", "Novak", "Silva", "Ivanova", "MacLeod", "Haddad", "Lund", "Park", "Van der Berg"}
	companies  = []string{"Contoso", "Fabrikam", "Northwind Traders", "Adventure Works", "Tailspin Toys", "Wide World Importers", "Litware", "Proseware", "Woodgrove Bank", "Alpine Ski House"}
	usAreas    = []string{"317", "212", "415", "312", "206", "617", "303", "512", "404", "702"}
)

// Seed adds n synthetic records (about 60% contacts, 20% accounts, 20%
// leads) whose phone numbers are US, UK and German numbers typed in many
// formats, some shared by two contacts, and returns which numbers are
// unique, shared or unknown. The same r gives the same data set.
func (s *Server) Seed(n int, r *rand.Rand) SeedInfo {
	type holder struct{ contact, account, lead int }
	held := map[string]*holder{}
	var order []string
	newNumber := func() string {
		for {
			e := randomNumber(r)
			if held[e] == nil {
				held[e] = &holder{}
				order = append(order, e)
				return e
			}
		}
	}
	var contactNumbers []string
	emailCount := map[string]int{}
	var emails []string
	for i := 0; i < n; i++ {
		first := firstNames[r.IntN(len(firstNames))]
		last := lastNames[r.IntN(len(lastNames))]
		switch k := i % 5; {
		case k < 3: // contact
			var e string
			if len(contactNumbers) > 4 && r.IntN(12) == 0 {
				e = contactNumbers[r.IntN(len(contactNumbers))] // a shared (family, switchboard) number
			} else {
				e = newNumber()
			}
			contactNumbers = append(contactNumbers, e)
			held[e].contact++
			email := strings.ToLower(strings.NewReplacer(" ", "", "é", "e", "ü", "u", "í", "i").Replace(first+"."+last)) + strconv.Itoa(i) + "@example.com"
			emailCount[email]++
			emails = append(emails, email)
			c := Contact{FirstName: first, LastName: last, EMailAddress1: email}
			if r.IntN(3) == 0 {
				c.MobilePhone = typed(e, r)
			} else {
				c.Telephone1 = typed(e, r)
			}
			s.AddContact(c)
		case k == 3: // account
			e := newNumber()
			held[e].account++
			s.AddAccount(companies[r.IntN(len(companies))]+" "+strconv.Itoa(i), typed(e, r), "info"+strconv.Itoa(i)+"@example.org")
		default: // lead
			e := newNumber()
			held[e].lead++
			s.AddLead(first, last, companies[r.IntN(len(companies))], typed(e, r), "")
		}
	}
	var info SeedInfo
	for _, e := range order {
		h := held[e]
		first := h.contact
		if first == 0 {
			first = h.account
		}
		if first == 0 {
			first = h.lead
		}
		if first == 1 {
			info.Unique = append(info.Unique, e)
		} else if first > 1 {
			info.Shared = append(info.Shared, e)
		}
	}
	for len(info.Unknown) < max(n/10, 3) {
		e := randomNumber(r)
		if held[e] == nil {
			held[e] = &holder{}
			info.Unknown = append(info.Unknown, e)
		}
	}
	for _, e := range emails {
		if emailCount[e] == 1 {
			info.Emails = append(info.Emails, e)
		}
	}
	return info
}

// randomNumber returns a random possible US (70%), UK or German number in
// E.164.
func randomNumber(r *rand.Rand) string {
	digits := func(k int) string {
		var b strings.Builder
		for range k {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	}
	switch x := r.IntN(10); {
	case x < 7:
		return "+1" + usAreas[r.IntN(len(usAreas))] + strconv.Itoa(2+r.IntN(8)) + digits(2) + digits(4)
	case x < 8:
		return "+44207946" + digits(4) // London, a range set aside for drama
	case x < 9:
		return "+447700900" + digits(3) // UK mobile drama range
	default:
		return "+4930" + strconv.Itoa(1+r.IntN(9)) + digits(6) // Berlin
	}
}

// typed writes e164 the way a person might have typed it into Dynamics.
func typed(e164 string, r *rand.Rand) string {
	num, err := phonenumbers.Parse(e164, "US")
	if err != nil {
		return e164
	}
	cc := strconv.Itoa(int(num.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	nat := phonenumbers.Format(num, phonenumbers.NATIONAL)
	intl := phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
	groups := splitDigits(nat)
	igroups := splitDigits(strings.TrimPrefix(intl, "+"+cc))
	forms := []string{
		"+" + cc + nsn,
		nat,
		intl,
		strings.Join(groups, ""),
		strings.Join(groups, "-"),
		strings.Join(groups, "."),
		strings.Join(groups, " "),
		"+" + cc + " " + strings.Join(igroups, " "),
		cc + nsn,
	}
	if cc == "1" && len(groups) == 3 {
		forms = append(forms, "+1 ("+groups[0]+") "+groups[1]+"-"+groups[2], "1-"+strings.Join(groups, "-"))
	} else {
		forms = append(forms, "00"+cc+nsn, "+"+cc+" (0)"+strings.Join(igroups, " "))
	}
	return forms[r.IntN(len(forms))]
}

func splitDigits(s string) []string {
	return strings.FieldsFunc(s, func(c rune) bool { return c < '0' || c > '9' })
}

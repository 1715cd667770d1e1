package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// webChat is the web_chat fixture with the customer's chat form answers
// (context.phoneNumber, context.email) replaced.
func webChat(t *testing.T, phone, email string) bridge.Snapshot {
	t.Helper()
	return fixtureSnapshot(t, "web_chat", func(parts []any) {
		attrs := byPurpose(t, parts, "customer")["attributes"].(map[string]any)
		attrs["context.phoneNumber"], attrs["context.email"] = phone, email
	})
}

// TestResolver_ChatPhoneInAnyScript: a chat customer types the number into
// the form on their own keyboard. Arabic and Persian keyboards write
// native digits, East Asian ones fullwidth digits and plus, word
// processors and phones non-breaking spaces and hyphens, numbers copied
// from a right-to-left page carry direction marks, and people add an
// extension. libphonenumber reads all of these as the same number; the
// pop must open the contact holding it, not offer a new one.
func TestResolver_ChatPhoneInAnyScript(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	fahad := dv.AddContact(dataversetest.Contact{FirstName: "فهد", LastName: "العتيبي", MobilePhone: "+966 50 123 4567"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for name, typed := range map[string]string{
		"ascii":                "+966 50 123 4567", // the control
		"arabic-indic":         "+٩٦٦ ٥٠ ١٢٣ ٤٥٦٧",
		"persian":              "+۹۶۶۵۰۱۲۳۴۵۶۷",
		"fullwidth":            "＋９６６ ５０ １２３ ４５６７",
		"fullwidth-plus":       "＋966501234567",
		"nbsp":                 "+966\u00a050\u00a0123\u00a04567",
		"non-breaking-hyphen":  "+966\u201150\u2011123\u20114567",
		"en-dash":              "+966\u201350\u2013123\u20134567",
		"left-to-right-mark":   "\u200e+966501234567",
		"ltr-embedding":        "\u202a+966 50 123 4567\u202c",
		"extension-x":          "+966 50 123 4567 x123",
		"extension-ext":        "+966 50 123 4567 ext. 12",
		"tel-uri-extension":    "tel:+966501234567;ext=12",
		"arabic-tel-extension": "tel:+٩٦٦٥٠١٢٣٤٥٦٧;ext=١٢",
	} {
		t.Run(name, func(t *testing.T) {
			e, p := channelPop(t, dv, "US", webChat(t, typed, ""))
			if e.Customer.Phone != "+966501234567" {
				t.Errorf("customer phone %q, want +966501234567", e.Customer.Phone)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != fahad {
				t.Errorf("pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, fahad)
			}
		})
	}
}

// TestResolver_ChatEmailForms: the email a chat customer gives, or a flow
// sets, in any of its usual forms opens the contact holding it.
func TestResolver_ChatEmailForms(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	ann := dv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "Lee", EMailAddress1: "ann.lee+shop@example.com"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, typed := range []string{
		"ann.lee+shop@example.com",
		"ANN.LEE+SHOP@EXAMPLE.COM",
		" ann.lee+shop@example.com ",
		"mailto:ann.lee+shop@example.com",
		"Ann Lee <ann.lee+shop@example.com>",
		`"Lee, Ann" <ann.lee+shop@example.com>`,
	} {
		t.Run(typed, func(t *testing.T) {
			e, p := channelPop(t, dv, "US", webChat(t, "", typed))
			if e.Customer.Email != "ann.lee+shop@example.com" && e.Customer.Email != "ANN.LEE+SHOP@EXAMPLE.COM" && e.Customer.Email != " ann.lee+shop@example.com " {
				t.Errorf("customer email %q, want the address alone", e.Customer.Email)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != ann {
				t.Errorf("pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, ann)
			}
		})
	}
}

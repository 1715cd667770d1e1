package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestResolver_ChatFormNamePrefillsItsOwnFields: a web chat customer types
// the first and the last name into fields of their own
// (context.firstName, context.lastName). Where a first name has two words
// (Ana Paula and Maria José in Brazil, Anna Maria and Hans Peter in
// Germany, Mary Ann) the create pop's prefill must keep the customer's
// own split, not re-split the joined name at its first space ("Ana" and
// "Paula Souza"): the agent would save a contact under a wrong last name,
// which the next lookup by name, dedup rule or letter then uses.
func TestResolver_ChatFormNamePrefillsItsOwnFields(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, tc := range []struct{ region, phone, first, last string }{
		{"BR", "(11) 91234-5678", "Ana Paula", "de Souza"},
		{"BR", "(11) 91234-5679", "Maria José", "Conceição"},
		{"DE", "030 12345678", "Anna Maria", "Müller"},
		{"JP", "03-1234-5678", "太郎", "山田"},
	} {
		t.Run(tc.first+" "+tc.last, func(t *testing.T) {
			s := fixtureSnapshot(t, "web_chat", func(parts []any) {
				attrs := byPurpose(t, parts, "customer")["attributes"].(map[string]any)
				attrs["context.phoneNumber"], attrs["context.email"] = tc.phone, ""
				attrs["context.firstName"], attrs["context.lastName"] = tc.first, tc.last
			})
			_, p := channelPop(t, dv, tc.region, s)
			if p.Target.Action != bridge.ActionCreate {
				t.Fatalf("pop %s, want create", p.Target.Action)
			}
			if p.Prefill["firstname"] != tc.first || p.Prefill["lastname"] != tc.last {
				t.Errorf("prefill firstname %q lastname %q, want the chat form's %q and %q", p.Prefill["firstname"], p.Prefill["lastname"], tc.first, tc.last)
			}
		})
	}
}

// TestResolver_ChatEmailTypedFullwidth: a Japanese (or Chinese, Korean)
// customer whose input method is in full-width mode types the email into
// the chat form as ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ, or only the ＠ and ．
// full-width. It is their address all the same (full-width forms are the
// ASCII characters at another width; ParsePhone folds them in a number
// typed the same way): the pop must open the contact holding
// taro@example.jp, not offer to create a duplicate with an address no
// mail server accepts.
func TestResolver_ChatEmailTypedFullwidth(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	taro := dv.AddContact(dataversetest.Contact{FirstName: "太郎", LastName: "山田", EMailAddress1: "taro.yamada@example.jp"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, typed := range []string{
		"taro.yamada@example.jp", // the control
		"ｔａｒｏ．ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｊｐ",
		"taro.yamada＠example.jp",
		"ＴＡＲＯ.ＹＡＭＡＤＡ@ＥＸＡＭＰＬＥ.ＪＰ",
	} {
		t.Run(typed, func(t *testing.T) {
			e, p := channelPop(t, dv, "JP", webChat(t, "", typed))
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != taro {
				t.Errorf("customer email %q: pop %s %s (prefill %v), want open %s", e.Customer.Email, p.Target.Action, p.Target.ID, p.Prefill, taro)
			}
		})
	}
}

// TestResolver_ChatPhoneWithThe00Prefix: most of the world dials abroad
// with 00, and the directory looks stored numbers up in that form in
// every region ("0049 30 12345678", docs/dataverse.md §3). A customer
// who types their number so into the chat form of a deployment whose
// region dials abroad otherwise (011 in North America, 010 in Japan,
// 810 in Russia) gave their number with its country code all the same:
// the pop opens their contact. Read as a national number of the region
// instead, it is no number (US) or a junk one (+7 00493012345678 in
// Russia, which goes into the event, the lookup and a create pop's
// prefill).
func TestResolver_ChatPhoneWithThe00Prefix(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jonas := dv.AddContact(dataversetest.Contact{FirstName: "Jonas", LastName: "Weiß", MobilePhone: "+49 30 12345678"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, region := range []string{"DE", "US", "CA", "JP", "RU", "AU"} {
		t.Run(region, func(t *testing.T) {
			e, p := channelPop(t, dv, region, webChat(t, "0049 30 12345678", ""))
			if e.Customer.Phone != "+493012345678" {
				t.Errorf("customer phone %q, want +493012345678", e.Customer.Phone)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jonas {
				t.Errorf("pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, jonas)
			}
		})
	}
}

// TestResolver_ChatFormLastNameAlone: the twin of
// TestResolver_ChatFormNamePrefillsItsOwnFields with one field filled. A
// customer who types only the last name into the chat form ("de Souza",
// "van den Berg": the first name is optional on many forms) has typed a
// last name: the prefill must not split it into firstname "de" and
// lastname "Souza" (docs/dataverse.md: the form's fields fill firstname
// and lastname as the customer typed them).
func TestResolver_ChatFormLastNameAlone(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, tc := range []struct{ region, phone, last string }{
		{"BR", "(11) 91234-5678", "de Souza"},
		{"NL", "020 123 4567", "van den Berg"},
	} {
		t.Run(tc.last, func(t *testing.T) {
			s := fixtureSnapshot(t, "web_chat", func(parts []any) {
				attrs := byPurpose(t, parts, "customer")["attributes"].(map[string]any)
				attrs["context.phoneNumber"], attrs["context.email"] = tc.phone, ""
				attrs["context.firstName"], attrs["context.lastName"] = "", tc.last
			})
			_, p := channelPop(t, dv, tc.region, s)
			if p.Target.Action != bridge.ActionCreate {
				t.Fatalf("pop %s, want create", p.Target.Action)
			}
			if p.Prefill["firstname"] != "" || p.Prefill["lastname"] != tc.last {
				t.Errorf("prefill firstname %q lastname %q, want no firstname and the chat form's lastname %q", p.Prefill["firstname"], p.Prefill["lastname"], tc.last)
			}
		})
	}
}

// TestResolver_ChatPhoneWithThe00PrefixWhereCarriersFollowIt: the twin of
// TestResolver_ChatPhoneWithThe00Prefix in the regions whose international
// prefix takes a carrier code after its 00 (Brazil: 0014, 0021, 0041,
// 0043, 0055, ...; Colombia: 005, 007, 009, 00414, ...). There, a number
// written with the 00 prefix whose country code is also a carrier code
// ("0041 44 668 18 00", Zurich; "0055 11 98765 4321", São Paulo, as a
// Brazilian writes their own number in international form) read as a
// dialled string lost its country code: +44 6681800, +1 1987654321, no
// valid number of anywhere, which went into the event, the lookup (no
// match: a create pop for a customer on file) and the create pop's
// prefill. docs/events.md: a number written with the 00 international
// prefix is read with its country code in every region.
func TestResolver_ChatPhoneWithThe00PrefixWhereCarriersFollowIt(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	anna := dv.AddContact(dataversetest.Contact{FirstName: "Anna", LastName: "Keller", MobilePhone: "+41 44 668 18 00"})
	ana := dv.AddContact(dataversetest.Contact{FirstName: "Ana Paula", LastName: "de Souza", MobilePhone: "+55 11 98765-4321"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, tc := range []struct{ region, typed, want, id string }{
		{"BR", "0041 44 668 18 00", "+41446681800", anna},
		{"BR", "0055 11 98765 4321", "+5511987654321", ana},
		{"CO", "0041 44 668 18 00", "+41446681800", anna},
	} {
		t.Run(tc.region+" "+tc.typed, func(t *testing.T) {
			e, p := channelPop(t, dv, tc.region, webChat(t, tc.typed, ""))
			if e.Customer.Phone != tc.want {
				t.Errorf("customer phone %q, want %s", e.Customer.Phone, tc.want)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != tc.id {
				t.Errorf("pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, tc.id)
			}
		})
	}
}

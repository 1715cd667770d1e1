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

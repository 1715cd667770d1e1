package dataversetest

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// scan is the definition match must keep: every row on which the filter
// evaluates to true, in table order.
func scan(t *testing.T, tab *Table, f *Filter) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, row := range tab.rows {
		v, err := f.Root.eval(row)
		if err != nil {
			t.Fatalf("%s: %v", f.Root, err)
		}
		if b, _ := v.(bool); b {
			rows = append(rows, row)
		}
	}
	return rows
}

func ids(rows []map[string]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r["contactid"].(string))
	}
	return out
}

func TestTable_MatchAnswersAsAFullScan(t *testing.T) {
	s := New(Config{})
	s.Seed(300, rand.New(rand.NewPCG(7, 8)))
	shared := s.AddContact(Contact{FirstName: "Ana", LastName: "Shared", Telephone1: "(317) 555-0199", MobilePhone: "+1 317 555 0100"})
	s.AddContact(Contact{FirstName: "Bo", LastName: "Shared", Telephone2: "(317) 555-0199", EMailAddress1: "Bo.Shared@Example.com"})
	s.AddContact(Contact{FirstName: "Cy", LastName: "Müller", EMailAddress1: "CY@EXAMPLE.COM", Inactive: true})
	s.AddContact(Contact{FirstName: "Di", LastName: "Padded", Telephone1: "317-555-0177  ", MobilePhone: " 317-555-0178"})
	tab := s.tables["contacts"]

	// Numbers and emails the seed stored, as the client would ask for them.
	var typed []string
	for _, r := range tab.rows[:40] {
		for _, c := range []string{"telephone1", "mobilephone", "emailaddress1"} {
			if v, _ := r[c].(string); v != "" {
				typed = append(typed, v)
			}
		}
	}
	filters := []string{
		lookupFilter(),
		"statecode eq 0 and (" + lookupFilter() + ")",
		"telephone1 eq '(317) 555-0199' or telephone2 eq '(317) 555-0199' or mobilephone eq '(317) 555-0199'",
		"statecode eq 0 and (telephone1 eq '(317) 555-0199' or telephone2 eq '(317) 555-0199')",
		"emailaddress1 eq 'bo.shared@example.com' or emailaddress1 eq 'cy@example.com'", // case-insensitive
		"emailaddress1 eq 'cy@example.com' and statecode eq 0",                          // inactive
		"lastname eq 'MÜLLER'",
		"lastname eq 'Shared' and firstname ne 'Ana'",
		"telephone1 eq '(317) 555-0199' or startswith(lastname,'Mü')", // cannot narrow: a full scan
		"contactid eq '" + shared + "'",
		"telephone3 eq 'nobody'",
		"telephone1 eq ''",                                              // an empty literal is not indexed
		"telephone1 eq '317-555-0177' or mobilephone eq '317-555-0178'", // trailing spaces do not count, leading ones do
		"telephone1 eq '317-555-0177   '",
	}
	for _, v := range typed {
		q := "'" + strings.ReplaceAll(v, "'", "''") + "'"
		filters = append(filters, "statecode eq 0 and (telephone1 eq "+q+" or mobilephone eq "+q+" or emailaddress1 eq "+q+")")
	}
	matched := 0
	for _, expr := range filters {
		f, err := ParseFilter(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		got, err := tab.match(f)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		want := scan(t, tab, f)
		if !slices.Equal(ids(got), ids(want)) {
			t.Errorf("%s:\n got %q\nwant %q", expr, ids(got), ids(want))
		}
		if len(want) > 0 {
			matched++
		}
	}
	if matched < len(typed) {
		t.Errorf("only %d filters matched a row, fewer than the %d built from stored values: the filters do not exercise the index", matched, len(typed))
	}

	// A row added after the index was built is found.
	f, _ := ParseFilter("telephone1 eq '+44 20 7946 0018'")
	if rows, _ := tab.match(f); len(rows) != 0 {
		t.Fatalf("found %q before it was added", ids(rows))
	}
	id := s.AddContact(Contact{FirstName: "Late", LastName: "Comer", Telephone1: "+44 20 7946 0018"})
	if rows, _ := tab.match(f); !slices.Equal(ids(rows), []string{id}) {
		t.Errorf("after AddContact: %q, want [%s]", ids(rows), id)
	}
}

// A filter that is not Boolean fails on Dataverse whatever the rows; the
// index must not turn it into an empty answer.
func TestServer_QueryNotBooleanIsRejected(t *testing.T) {
	s := New(Config{})
	s.AddContact(Contact{FirstName: "A", LastName: "B", Telephone1: "1"})
	for _, f := range []string{
		"telephone1 eq 'nobody' and telephone2",
		"telephone1 eq 'nobody' and ((telephone1 and telephone2) eq true)",
		"telephone1 eq 'nobody' and not telephone2",
	} {
		q := url.Values{"$filter": {f}}.Encode()
		if status, body, _ := s.query(&Request{}, "contacts", q, ""); status != http.StatusBadRequest {
			t.Errorf("%s: status %d %s, want 400", f, status, body)
		}
	}
}

package dataverse

import (
	"strconv"
	"strings"
	"testing"
)

// TestEntityQuery_IsTheEscapedFilter: the one-buffer builder writes exactly
// the query its definition gives: $select of the id and name columns, and
// the $filter "c1 eq 'v1' or c1 eq 'v2' or c2 eq 'v1' …" (inside
// "statecode eq 0 and (…)" for active-only entities), percent-encoded as a
// whole.
func TestEntityQuery_IsTheEscapedFilter(t *testing.T) {
	values, err := PhoneVariants("+442079460018", "GB")
	if err != nil {
		t.Fatal(err)
	}
	values = append(values, "x' or 1 eq 1", "o'brien+1 ünï")
	for name, e := range BuiltinEntities() {
		for _, active := range []bool{false, true} {
			e.ActiveOnly = active
			cols := []string{"telephone1", "mobilephone", "new_phone"}
			var f []string
			for _, c := range cols {
				for _, v := range values {
					f = append(f, c+" eq "+quoteLiteral(v))
				}
			}
			filter := strings.Join(f, " or ")
			if active {
				filter = "statecode eq 0 and (" + filter + ")"
			}
			sel := e.IDColumn
			if e.NameColumn != "" && e.NameColumn != e.IDColumn {
				sel += "," + e.NameColumn
			}
			want := "https://x/api/data/v9.2/" + e.EntitySet + "?$select=" + sel + "&$filter=" + queryEscape(filter) + "&$top=" + strconv.Itoa(MaxRecords)
			if got := entityQuery("https://x/api/data/v9.2/", e, cols, values, false); got != want {
				t.Errorf("%s active=%v:\n got %s\nwant %s", name, active, got, want)
			}
		}
	}
}

// TestEntityQuery_SelectsComparedColumns: an email lookup's query also
// selects the columns it compares, once each, so the answer can be checked
// for the address itself (see exact).
func TestEntityQuery_SelectsComparedColumns(t *testing.T) {
	e := BuiltinEntities()["contact"]
	got := entityQuery("https://x/api/data/v9.2/", e, []string{"emailaddress1", "fullname", "emailaddress2"}, []string{"a@b.c"}, true)
	if !strings.HasPrefix(got, "https://x/api/data/v9.2/contacts?$select=contactid,fullname,emailaddress1,emailaddress2&$filter=") {
		t.Fatalf("got %s", got)
	}
}

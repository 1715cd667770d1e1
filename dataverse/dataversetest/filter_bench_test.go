package dataversetest

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// The emulator serves every lookup of the load tool (cmd/screenpop-bench)
// in the same process as 10,000 agent clients, on the daemon's cores: its
// cost per query is part of what the benchmark machine has to spare.

// lookupFilter is shaped like the dataverse client's phone lookup: every
// phone column of the entity against every typed variant of the number.
func lookupFilter() string {
	cols := []string{"telephone1", "mobilephone", "telephone2"}
	vals := []string{"+13175550123", "13175550123", "3175550123", "(317) 555-0123", "317-555-0123", "317 555 0123", "317.555.0123", "+1 317-555-0123", "+1 (317) 555-0123"}
	var terms []string
	for _, c := range cols {
		for _, v := range vals {
			terms = append(terms, c+" eq '"+v+"'")
		}
	}
	return strings.Join(terms, " or ")
}

func BenchmarkParseFilter(b *testing.B) {
	s := lookupFilter()
	b.ReportAllocs()
	for b.Loop() {
		f, err := ParseFilter(s)
		if err != nil {
			b.Fatal(err)
		}
		_ = f.Root.String() // the canonical form every logged request keeps
	}
}

func BenchmarkFilterEval(b *testing.B) {
	srv := New(Config{})
	srv.Seed(100, rand.New(rand.NewPCG(1, 2)))
	f, err := ParseFilter(lookupFilter())
	if err != nil {
		b.Fatal(err)
	}
	rows := srv.tables["contacts"].rows
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, r := range rows {
			if _, err := f.Root.eval(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(rows)), "rows")
}

// TestCompareFold holds compareFold to the definition it replaces.
func TestCompareFold(t *testing.T) {
	words := []string{"", "a", "A", "ab", "aB", "abc", "b", "+13175550123", "+13175550124", "O'Brien", "o'brien", "Müller", "MÜLLER", "müller", "Mull", "ß", "SS", "İ", "i", "K", "k", "zz", "Z"}
	for _, a := range words {
		for _, b := range words {
			if got, want := compareFold(a, b), strings.Compare(strings.ToLower(a), strings.ToLower(b)); got != want {
				t.Errorf("compareFold(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

// BenchmarkQuery_Lookup is the emulator's whole answer to one entity query
// of a cache miss, as the load tool's seed holds it.
func BenchmarkQuery_Lookup(b *testing.B) {
	srv := New(Config{})
	srv.Seed(200, rand.New(rand.NewPCG(1, 2)))
	q := url.Values{
		"$select": {"contactid,fullname"},
		"$filter": {"statecode eq 0 and (" + lookupFilter() + ")"},
		"$top":    {"10"},
	}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		if status, body, _ := srv.query(&Request{}, "contacts", q, ""); status != 200 {
			b.Fatalf("%d %s", status, body)
		}
	}
}

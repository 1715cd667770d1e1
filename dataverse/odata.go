package dataverse

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"golang.org/x/text/unicode/norm"
)

// quoteLiteral returns v as an OData string literal: in single quotes, each
// apostrophe doubled. It is the only way a caller-supplied value enters a
// $filter, so a value such as x' or 1 eq 1 stays one literal.
func quoteLiteral(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// queryEscape percent-encodes s for a query-string value: everything but
// the RFC 3986 unreserved characters and the OData punctuation that is safe
// there ('(),) is escaped, spaces as %20 (never '+', which Dataverse would
// read as a literal plus after decoding only if it is encoded: '+' itself
// becomes %2B).
func queryEscape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	escapeTo(&b, s)
	return b.String()
}

// escapeTo writes s to b as queryEscape does.
func escapeTo(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '\'', c == '(', c == ')', c == ',':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
}

// entityQuery is the Web API URL, prefix (the API root) followed by the
// query that looks up values in columns of entity e; with selectColumns,
// the $select names the columns too, so that the answer can be checked
// (see exact). It is built in one buffer: a cache miss builds one per
// entity, each with some fifty comparisons, and the intermediate strings
// were most of its cost.
func entityQuery(prefix string, e EntityInfo, columns, values []string, selectColumns bool) string {
	const (
		or = "%20or%20"
		eq = "%20eq%20"
	)
	n := len(prefix) + len(e.EntitySet) + len(e.IDColumn) + len(e.NameColumn) + 80
	for _, v := range values {
		n += len(columns) * (len(or) + len(eq) + 2 + 3*len(v))
	}
	for _, c := range columns {
		n += len(values)*len(c) + len(c) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(prefix)
	b.WriteString(e.EntitySet)
	b.WriteString("?$select=")
	b.WriteString(e.IDColumn)
	if e.NameColumn != "" && e.NameColumn != e.IDColumn {
		b.WriteByte(',')
		b.WriteString(e.NameColumn)
	}
	if selectColumns {
		for _, c := range columns {
			if c != e.IDColumn && c != e.NameColumn {
				b.WriteByte(',')
				escapeTo(&b, c)
			}
		}
	}
	b.WriteString("&$filter=")
	if e.ActiveOnly {
		b.WriteString("statecode" + eq + "0%20and%20(")
	}
	first := true
	for _, c := range columns {
		for _, v := range values {
			if !first {
				b.WriteString(or)
			}
			first = false
			escapeTo(&b, c)
			b.WriteString(eq)
			escapeTo(&b, quoteLiteral(v))
		}
	}
	if e.ActiveOnly {
		b.WriteByte(')')
	}
	b.WriteString("&$top=")
	b.WriteString(strconv.Itoa(MaxRecords))
	return b.String()
}

// exact is what an email lookup's rows must hold: one of the values in one
// of the columns, as Go compares text. Dataverse compares in its
// environment's collation, accent-insensitive for English (US) and most
// languages (_CI_AI: learn.microsoft.com/power-platform/admin/
// language-collations), so "emailaddress1 eq 'ann@münchen.de'" also
// returns ann@munchen.de, another domain's mailbox: another customer. The
// collation's case-insensitivity and its disregard of trailing spaces are
// kept.
type exact struct {
	columns []string
	values  []string // NFC
}

func newExact(columns, values []string) *exact {
	x := &exact{columns: columns, values: make([]string, len(values))}
	for i, v := range values {
		x.values[i] = norm.NFC.String(strings.ToLower(v))
	}
	return x
}

// holds reports whether row holds one of the values in one of the columns.
func (x *exact) holds(row gjson.Result) bool {
	for _, c := range x.columns {
		v := row.Get(gjson.Escape(c))
		if v.Type != gjson.String {
			continue
		}
		// Lowered as the key was (cacheKey): EqualFold alone does not
		// fold İ (U+0130) to the i that strings.ToLower makes of it.
		s := norm.NFC.String(strings.ToLower(strings.TrimRight(v.Str, " ")))
		for _, want := range x.values {
			if strings.EqualFold(s, want) {
				return true
			}
		}
	}
	return false
}

package dataverse

import (
	"strconv"
	"strings"
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
// query that looks up values in columns of entity e. It is built in one
// buffer: a cache miss builds one per entity, each with some fifty
// comparisons, and the intermediate strings were most of its cost.
func entityQuery(prefix string, e EntityInfo, columns, values []string) string {
	const (
		or = "%20or%20"
		eq = "%20eq%20"
	)
	n := len(prefix) + len(e.EntitySet) + len(e.IDColumn) + len(e.NameColumn) + 80
	for _, v := range values {
		n += len(columns) * (len(or) + len(eq) + 2 + 3*len(v))
	}
	for _, c := range columns {
		n += len(values) * len(c)
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

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

// eqFilter builds "(c1 eq 'v1' or c1 eq 'v2' or c2 eq 'v1' …)": indexed eq
// comparisons only, no string functions.
func eqFilter(columns, values []string) string {
	var b strings.Builder
	for _, c := range columns {
		for _, v := range values {
			if b.Len() > 0 {
				b.WriteString(" or ")
			}
			b.WriteString(c)
			b.WriteString(" eq ")
			b.WriteString(quoteLiteral(v))
		}
	}
	return b.String()
}

// queryEscape percent-encodes s for a query-string value: everything but
// the RFC 3986 unreserved characters and the OData punctuation that is safe
// there ('(),) is escaped, spaces as %20 (never '+', which Dataverse would
// read as a literal plus after decoding only if it is encoded: '+' itself
// becomes %2B).
func queryEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
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
	return b.String()
}

// entityQuery is the relative Web API URL (after /api/data/v9.2/) that
// looks up values in columns of entity e.
func entityQuery(e EntityInfo, columns, values []string) string {
	sel := e.IDColumn
	if e.NameColumn != "" && e.NameColumn != e.IDColumn {
		sel += "," + e.NameColumn
	}
	filter := eqFilter(columns, values)
	if e.ActiveOnly {
		filter = "statecode eq 0 and (" + filter + ")"
	}
	return e.EntitySet + "?$select=" + sel +
		"&$filter=" + queryEscape(filter) +
		"&$top=" + strconv.Itoa(MaxRecords)
}

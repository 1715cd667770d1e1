package dataverse

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// FuzzLookupQuery feeds arbitrary phone numbers and email addresses (as
// the normalizer takes them from Genesys participants: ANI, DNIS, chat and
// email addresses a customer typed) through the lookup's own steps:
// cacheKey, the variants, entityQuery and the $batch body. A key it
// accepts must give, for every entity, a URL whose $filter is well-formed
// OData (the emulator's parser) made of exactly the "column eq 'value'"
// comparisons of the configured columns and the variants, each value one
// literal, in valid UTF-8 (OData's percent-encoding is of UTF-8: other
// bytes are a 400, a lost pop), and a $batch body that takes it.
func FuzzLookupQuery(f *testing.F) {
	for _, s := range []string{"+13175550123", "3175550123", "tel:+44 20 7946 0018", "+4755123456", "sip:+13175550123@x", "0",
		"jane.doe@example.com", "O'Brien@Example.COM", "ann@münchen.de", "ann@xn--mnchen-3ya.de", "x' or 1 eq 1 or 'a@b",
		"a\u0085b@c.d", "a@b.c\u2028", "%27@%00", "a@b\xff", "a@\xed\xa0\x80.de", "  spaced@x.y  ", strings.Repeat("a", 320)} {
		f.Add(strings.HasPrefix(s, "+") || strings.HasPrefix(s, "tel:") || strings.HasPrefix(s, "sip:") || s == "0" || s == "3175550123", s)
	}
	c := answerClient(f, &answerTransport{status: http.StatusOK})
	e164 := regexp.MustCompile(`^\+[1-9][0-9]+$`) // libphonenumber allows a few 16-digit numbers
	f.Fuzz(func(t *testing.T, phone bool, value string) {
		kind := bridge.KeyEmail
		if phone {
			kind = bridge.KeyPhone
		}
		_, v, list, err := c.cacheKey(bridge.Key{Kind: kind, Value: value})
		if err != nil {
			return
		}
		var values []string
		if phone {
			if !e164.MatchString(v) {
				t.Fatalf("phone key %q from %q is not E.164", v, value)
			}
			if values, err = PhoneVariants(v, c.cfg.PhoneRegion); err != nil {
				return
			}
		} else {
			values = emailVariants(v)
		}
		if len(values) == 0 {
			t.Fatalf("no values for %q", value)
		}
		urls := make([]string, len(list))
		for i, ec := range list {
			info := c.cfg.Entities[ec.Entity]
			u := entityQuery(c.api, info, ec.Columns, values, !phone)
			urls[i] = u
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatalf("query URL %q: %v", u, err)
			}
			q, err := url.ParseQuery(pu.RawQuery)
			if err != nil {
				t.Fatalf("query string %q: %v", pu.RawQuery, err)
			}
			if len(q["$filter"]) != 1 || len(q["$select"]) != 1 || len(q["$top"]) != 1 || len(q) != 3 {
				t.Fatalf("query options %v from %q", q, value)
			}
			filter := q.Get("$filter")
			if !utf8.ValidString(filter) {
				t.Fatalf("$filter for %q is not valid UTF-8: %q", value, filter)
			}
			parsed, err := dataversetest.ParseFilter(filter)
			if err != nil {
				t.Fatalf("$filter for %q is not valid OData: %v", value, err)
			}
			var want, wantProps []string
			for _, col := range ec.Columns {
				for _, val := range values {
					want = append(want, val)
					wantProps = append(wantProps, col)
				}
			}
			if info.ActiveOnly {
				wantProps = append([]string{"statecode"}, wantProps...)
			}
			if !slices.Equal(parsed.Literals, want) {
				t.Fatalf("$filter %q for %q: literals %q, want %q", filter, value, parsed.Literals, want)
			}
			if !slices.Equal(parsed.Props, wantProps) {
				t.Fatalf("$filter %q for %q: properties %q, want %q", filter, value, parsed.Props, wantProps)
			}
			for _, op := range parsed.Operators {
				if op != "eq" && op != "or" && op != "and" {
					t.Fatalf("$filter %q for %q: operator %q", filter, value, op)
				}
			}
		}
		if _, _, err := buildBatch(urls); err != nil {
			t.Fatalf("batch for %q: %v", value, err)
		}
	})
}

// FuzzParseBatch feeds arbitrary $batch answers to parseBatch: it must
// never panic, and it answers parts or an error, never both, each part with
// a status of three digits. A part announcing a body longer than it has is
// an error, not a buffer of the announced size.
func FuzzParseBatch(f *testing.F) {
	const bd = "batchresponse_0123456789abcdef"
	f.Add("multipart/mixed; boundary="+bd, batchAnswer(bd, part(200, `{"value":[]}`), part(404, `{"error":{"code":"0x80060888"}}`)))
	f.Add("multipart/mixed; boundary="+bd, batchAnswer(bd, "HTTP/1.1 200 OK\r\nContent-Length: 16000000\r\n\r\n{}"))
	f.Add("multipart/mixed; boundary="+bd, batchAnswer(bd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
	f.Add("multipart/mixed; boundary=x", []byte("--x\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 99 X\r\n\r\n--x--"))
	f.Add("multipart/mixed; boundary=\"a b\"", []byte("--a b\r\n\r\n--a b--"))
	f.Add("text/html", []byte("<html></html>"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		ps, err := parseBatch(contentType, body)
		if err != nil {
			if ps != nil {
				t.Fatalf("parts and an error: %v", err)
			}
			return
		}
		for _, p := range ps {
			if p.Status < 100 || p.Status > 999 {
				t.Fatalf("part status %d", p.Status)
			}
			if len(p.Body) > len(body) {
				t.Fatalf("a part body of %d bytes from an answer of %d", len(p.Body), len(body))
			}
		}
	})
}

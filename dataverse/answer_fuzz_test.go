package dataverse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// answerTransport answers every request with the same status, headers and
// body, and counts the requests.
type answerTransport struct {
	status int
	header http.Header
	body   []byte
	n      atomic.Int32
}

func (a *answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a.n.Add(1)
	return &http.Response{StatusCode: a.status, Status: fmt.Sprint(a.status), Header: a.header.Clone(),
		Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)), Request: req}, nil
}

// answerClient is a client whose every request gets tr's answer, holding a
// token so that lookups go straight to the $batch.
func answerClient(tb testing.TB, tr *answerTransport) *Client {
	tb.Helper()
	c, err := New(Config{URL: "https://org.example", TenantID: "t", ClientID: "id", ClientSecret: "secret", AppID: "app",
		MaxAttempts: 1, HTTPClient: &http.Client{Transport: tr}}, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	c.tokens.token, c.tokens.expires, c.tokens.usable, c.tokens.refreshAt = "tok", now.Add(time.Hour), now.Add(time.Hour), now.Add(time.Hour)
	tb.Cleanup(func() { c.Close() })
	return c
}

// batchAnswer is a $batch answer as Dataverse (and dataversetest) writes
// it: one application/http part per query.
func batchAnswer(boundary string, parts ...string) []byte {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n%s\r\n", boundary, p)
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return []byte(b.String())
}

func part(status int, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n%s", status, http.StatusText(status), body)
}

// FuzzClient_BatchAnswer feeds arbitrary $batch answers (status,
// Retry-After, content type, body) to a phone lookup: it must never panic
// or hang, and what it finds must be known entities with GUID ids.
func FuzzClient_BatchAnswer(f *testing.F) {
	const bd = "batchresponse_0123456789abcdef"
	ct := "multipart/mixed; boundary=" + bd
	row := `{"@odata.context":"https://org.example/api/data/v9.2/$metadata#contacts(contactid,fullname)","value":[{"@odata.etag":"W/\"1\"","contactid":"aaaaaaaa-0000-0000-0000-000000000001","fullname":"Jane Doe"}]}`
	none := `{"@odata.context":"https://org.example/api/data/v9.2/$metadata#accounts(accountid,name)","value":[]}`
	two := `{"value":[{"contactid":"aaaaaaaa-0000-0000-0000-000000000001","fullname":"A"},{"contactid":"{AAAAAAAA-0000-0000-0000-000000000002}","fullname":null}]}`
	errBody := func(code string) string { return `{"error":{"code":"` + code + `","message":"m"}}` }
	f.Add(200, "", ct, batchAnswer(bd, part(200, row), part(200, none), part(200, none)))
	f.Add(200, "", ct, batchAnswer(bd, part(200, none), part(200, two), part(200, none)))
	f.Add(200, "", ct, batchAnswer(bd, part(200, none), part(200, none), part(200, none)))
	f.Add(200, "", ct, batchAnswer(bd, part(200, none)))
	f.Add(400, "", ct, batchAnswer(bd, part(200, none), part(400, errBody("0x0"))))
	f.Add(200, "", ct, batchAnswer(bd, part(403, errBody("0x80040220")), part(200, row), part(200, none)))
	f.Add(200, "", ct, batchAnswer(bd, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\r\n"))
	f.Add(200, "", ct, batchAnswer(bd, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add(429, "3", "application/json", []byte(errBody("0x80072322")))
	f.Add(503, "", "text/html", []byte("<html>Service Unavailable</html>"))
	f.Add(200, "", "multipart/mixed; boundary=x", []byte("--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y--\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, status int, retryAfter, contentType string, body []byte) {
		if status < 100 || status > 999 {
			status = 200
		}
		tr := &answerTransport{status: status, header: http.Header{"Content-Type": {contentType}, "Retry-After": {retryAfter}}, body: body}
		c := answerClient(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		recs, err := c.batch(ctx, c.cfg.Phone, []string{"+13175550123", "3175550123"}, false)
		if n := tr.n.Load(); n > 3 {
			t.Fatalf("%d requests for one lookup with MaxAttempts 1 (Retry-After %q)", n, retryAfter)
		}
		if err != nil && recs != nil {
			t.Fatalf("records and an error: %v", err)
		}
		if len(recs) > MaxRecords {
			t.Fatalf("%d records", len(recs))
		}
		for _, r := range recs {
			if _, ok := c.cfg.Entities[r.Entity]; !ok || !IsGUID(r.ID) || r.URL == "" {
				t.Fatalf("record %+v", r)
			}
		}
	})
}

// FuzzTokenSource_Request feeds arbitrary token endpoint answers to the
// token request: it must never panic, and a token it accepts has a
// lifetime in the future.
func FuzzTokenSource_Request(f *testing.F) {
	f.Add(200, []byte(`{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QifQ.e30.sig"}`))
	f.Add(200, []byte(`{"token_type":"Bearer","expires_in":"3599","access_token":"t"}`))
	f.Add(200, []byte(`{"token_type":"Bearer","expires_in":0,"access_token":"t"}`))
	f.Add(400, []byte(`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"timestamp":"2025-03-04 15:00:00Z","trace_id":"x","correlation_id":"y"}`))
	f.Add(400, []byte(`{"error":"invalid_request","error_codes":[90002]}`))
	f.Add(429, []byte(``))
	f.Add(503, []byte(`<html></html>`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			status = 200
		}
		tr := &answerTransport{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: body}
		c := answerClient(t, tr)
		tok, life, err := c.tokens.request(context.Background())
		if err != nil {
			if tok != "" {
				t.Fatal("a token and an error")
			}
			return
		}
		if tok == "" || life <= 0 {
			t.Fatalf("token %q with lifetime %v from %s", tok, life, body)
		}
	})
}

// TestClient_RetryAfterIsWholeSeconds: Retry-After is whole seconds (RFC
// 9110 delay-seconds). A fractional or exponent value, from a proxy or a
// broken gateway, must not make a 429 that costs no attempt repeat at
// once: each answer would buy another request at once, hundreds a second
// against a Dataverse that is already throttling, for the whole flight.
func TestClient_RetryAfterIsWholeSeconds(t *testing.T) {
	for _, ra := range []string{"0.001", "1e-9", "0x1p-30"} {
		t.Run(ra, func(t *testing.T) {
			tr := &answerTransport{status: http.StatusTooManyRequests, header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {ra}},
				body: []byte(`{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}`)}
			c := answerClient(t, tr) // one attempt
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := c.batch(ctx, c.cfg.Phone, []string{"+13175550123"}, false); err == nil {
				t.Fatal("a 429 answered no error")
			}
			if n := tr.n.Load(); n != 1 {
				t.Fatalf("%d requests for one attempt answered 429 with Retry-After %q", n, ra)
			}
		})
	}
}

// TestTokenSource_HugeExpiresIn: an expires_in too large for a
// time.Duration must not wrap into a token that is already expired: every
// lookup would then ask Entra ID for a new token.
func TestTokenSource_HugeExpiresIn(t *testing.T) {
	tr := &answerTransport{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json"}},
		body: []byte(`{"token_type":"Bearer","expires_in":9999999999,"access_token":"t"}`)}
	c := answerClient(t, tr)
	c.tokens.invalidate("tok")
	for range 3 {
		if _, err := c.tokens.get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.n.Load(); n != 1 {
		t.Fatalf("%d token requests for three lookups (token expires %v)", n, c.tokens.expiry())
	}
}

// TestParseRetryAfter: whole seconds or an HTTP date, never more than
// Dataverse's 5-minute window: the wait holds every lookup of the client,
// and a huge value from a broken proxy would stop them until a restart.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"0.5":                           0,
		"1.5":                           0,
		"4294967295":                    maxRetryAfter,
		"Sun, 29 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Fri, 01 Jan 2100 00:00:00 GMT": maxRetryAfter,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

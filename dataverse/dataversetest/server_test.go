package dataversetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFilter(t *testing.T) {
	cases := []struct {
		in, want string
		lits     []string
	}{
		{"telephone1 eq '+13175550123'", "(telephone1 eq '+13175550123')", []string{"+13175550123"}},
		{"lastname eq 'O''Brien'", "(lastname eq 'O''Brien')", []string{"O'Brien"}},
		{"emailaddress1 eq 'x'' or 1 eq 1'", "(emailaddress1 eq 'x'' or 1 eq 1')", []string{"x' or 1 eq 1"}},
		{"a eq 'x' or b eq 'y' and c ne 'z'", "((a eq 'x') or ((b eq 'y') and (c ne 'z')))", []string{"x", "y", "z"}},
		{"(a eq 'x' or b eq 'y') and statecode eq 0", "(((a eq 'x') or (b eq 'y')) and (statecode eq 0))", []string{"x", "y"}},
		{"not contains(fullname,'smith')", "(not contains(fullname,'smith'))", []string{"smith"}},
		{"startswith(a,'1') and endswith(b,'2')", "(startswith(a,'1') and endswith(b,'2'))", []string{"1", "2"}},
		{"contactid eq 8d4b3c2a-0000-4000-8000-00000000abcd", "(contactid eq 8d4b3c2a-0000-4000-8000-00000000abcd)", nil},
		{"a eq null", "(a eq null)", nil},
	}
	for _, tc := range cases {
		f, err := ParseFilter(tc.in)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.in, err)
			continue
		}
		if got := f.Root.String(); got != tc.want || !slices.Equal(f.Literals, tc.lits) {
			t.Errorf("ParseFilter(%q) = %s %q, want %s %q", tc.in, got, f.Literals, tc.want, tc.lits)
		}
	}
	for _, bad := range []string{"", "a eq", "a eq 'x", "a eq 'x' or", "(a eq 'x'", "a eq 'x')", "a ~ 1", "foo(a,'x')", "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=[\"1\"])", "contains(a)", "a eq 'x' b eq 'y'", "and eq 1"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q): want an error", bad)
		}
	}
}

func TestFilterEval(t *testing.T) {
	row := map[string]any{"lastname": "O'Brien", "telephone1": "(317) 555-0123", "statecode": float64(0), "empty": "", "mobilephone": "317-555-0123  ", "telephone2": " 3175550123"}
	cases := map[string]bool{
		// SQL Server pads the shorter string with spaces before =
		// (https://support.microsoft.com/kb/316626): trailing spaces
		// do not count, on either side; leading ones do.
		"mobilephone eq '317-555-0123'":                     true,
		"telephone1 eq '(317) 555-0123 '":                   true,
		"telephone2 eq '3175550123'":                        false,
		"mobilephone ne '317-555-0123'":                     false,
		"lastname eq 'o''brien'":                            true, // case-insensitive
		"lastname eq 'O''Brien' and statecode eq 0":         true,
		"lastname eq 'x' or telephone1 eq '(317) 555-0123'": true,
		"not (statecode eq 0)":                              false,
		"statecode ne 1":                                    true,
		"contains(telephone1,'555')":                        true,
		"endswith(telephone1,'0124')":                       false,
		"empty eq null":                                     true,
		"missing eq null":                                   true,
		"statecode gt 0":                                    false,
	}
	evalCases(t, row, cases)
}

// TestFilterEval_Collation: text compares as in an English (US)
// environment, whose collation is _CI_AI (learn.microsoft.com/
// power-platform/admin/language-collations): case- and accent-insensitive,
// in eq as in the string functions, and an index lookup agrees with a scan.
// The string functions are SQL LIKE, so %, _, [] and [^] in their text are
// wildcards (learn.microsoft.com/power-apps/developer/data-platform/
// wildcard-characters); eq takes them as text.
func TestFilterEval_Collation(t *testing.T) {
	row := map[string]any{"emailaddress1": "Ann@Munchen.de", "lastname": "Müller", "telephone1": "+1 317 555 0123"}
	cases := map[string]bool{
		"emailaddress1 eq 'ann@münchen.de'":  true,
		"emailaddress1 eq 'ANN@MÜNCHEN.DE '": true,
		"lastname eq 'muller'":               true,
		"lastname eq 'mueller'":              false,
		"contains(lastname,'ULL')":           true,
		"startswith(emailaddress1,'ann@mü')": true,
		"contains(telephone1,'555%0123')":    true,
		"contains(telephone1,'3_7')":         true,
		"contains(telephone1,'[0-9]55 ')":    true,
		"startswith(telephone1,'[^+]')":      false,
		"endswith(telephone1,'[5]')":         false,
		"contains(telephone1,'555[ ]0123')":  true,
		"telephone1 eq '+1 317 555 0123'":    true,
		"telephone1 eq '+1 317 555 %'":       false,
		"telephone1 eq '+1 317 555 0_23'":    false,
		"emailaddress1 eq 'ann@munchen.de.'": false,
	}
	evalCases(t, row, cases)
	tb := newTable("contacts", "contact", "contactid", "fullname", "emailaddress1")
	tb.rows = []map[string]any{{"emailaddress1": "ann@munchen.de"}, {"emailaddress1": "ann@münchen.de"}, {"emailaddress1": "bob@munchen.de"}}
	f, err := ParseFilter("emailaddress1 eq 'ANN@MÜNCHEN.DE'")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tb.match(f)
	if err != nil || len(rows) != 2 {
		t.Fatalf("indexed eq matched %v, %v; want the two ann@ rows", rows, err)
	}
}

// emu starts a server and returns it with a token.
func emu(t *testing.T) (*Server, string) {
	t.Helper()
	s := New(Config{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	resp, err := http.PostForm(s.TokenURL(), url.Values{"client_id": {s.cfg.ClientID}, "client_secret": {s.cfg.ClientSecret}, "grant_type": {"client_credentials"}, "scope": {s.URL() + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" || tr.ExpiresIn != 3600 || tr.TokenType != "Bearer" {
		t.Fatalf("token: %+v %v", tr, err)
	}
	return s, tr.AccessToken
}

func get(t *testing.T, s *Server, tok, rel string, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+apiPrefix+rel, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header, body
}

func TestServer_Query(t *testing.T) {
	s, tok := emu(t)
	for i := range 7 {
		s.AddContact(Contact{FirstName: "F", LastName: string(rune('G' - i)), Telephone1: "317-555-010" + string(rune('0'+i))})
	}
	t.Run("SelectFilterTopOrderby", func(t *testing.T) {
		q := "contacts?$select=contactid,fullname&$filter=" + url.QueryEscape("telephone1 eq '317-555-0100' or telephone1 eq '317-555-0101'") + "&$top=5&$orderby=fullname%20asc"
		status, _, body := get(t, s, tok, q)
		rows, _ := body["value"].([]any)
		if status != 200 || len(rows) != 2 || !strings.HasSuffix(body["@odata.context"].(string), "$metadata#contacts(contactid,fullname)") {
			t.Fatalf("%d %v", status, body)
		}
		first := rows[0].(map[string]any)
		if first["fullname"] != "F F" || first["telephone1"] != nil || first["@odata.etag"] == nil {
			t.Fatalf("row %v", first)
		}
	})
	t.Run("Paging", func(t *testing.T) {
		status, _, body := get(t, s, tok, "contacts?$select=contactid&$orderby=lastname", "Prefer", "odata.maxpagesize=3")
		seen := 0
		for status == 200 {
			seen += len(body["value"].([]any))
			next, _ := body["@odata.nextLink"].(string)
			if next == "" {
				break
			}
			status, _, body = get(t, s, tok, strings.TrimPrefix(next, s.URL()+apiPrefix), "Prefer", "odata.maxpagesize=3")
		}
		if status != 200 || seen != 7 {
			t.Fatalf("paged %d rows, status %d", seen, status)
		}
	})
	t.Run("Rejections", func(t *testing.T) {
		for q, code := range map[string]int{
			"contacts?$filter=" + url.QueryEscape("telephone1 eq '1"): 400,
			"contacts?$filter=" + url.QueryEscape("nosuchcol eq '1'"): 400,
			"contacts?$select=nosuchcol":                              400,
			"contacts?$skip=1":                                        400,
			"contacts?$expand=parentcustomerid":                       400,
			"nosuchset?$top=1":                                        404,
		} {
			status, _, body := get(t, s, tok, q)
			e, _ := body["error"].(map[string]any)
			if status != code || e["code"] == nil || e["message"] == nil {
				t.Errorf("%s: %d %v, want %d with an OData error", q, status, body, code)
			}
		}
		// The codes Dataverse answers (learn.microsoft.com, "Troubleshoot
		// Dataverse Web API client errors"): a property the OData parser
		// does not find is 0x0, an unknown entity set 0x8006088a.
		for q, want := range map[string]string{
			"accounts?$select=Name": "0x0 Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
			"contacts?$filter=" + url.QueryEscape("mobilefone eq '1'"): "0x0 Could not find a property named 'mobilefone' on type 'Microsoft.Dynamics.CRM.contact'.",
			"Account?$top=1": "0x8006088a Resource not found for the segment 'Account'.",
			// A column that is not text compared with a string literal.
			"contacts?$filter=" + url.QueryEscape("telephone1 eq '1' or statecode eq '0'"): "0x0 A binary operator with incompatible types was detected. Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'Equal'.",
			"contacts?$filter=" + url.QueryEscape("contains(createdon,'1')"):               "0x0 No function signature for the function with name 'contains' matches the specified arguments. The function signatures considered are: contains(Edm.String Nullable=true, Edm.String Nullable=true).",
		} {
			_, _, body := get(t, s, tok, q)
			e, _ := body["error"].(map[string]any)
			if got := fmt.Sprint(e["code"], " ", e["message"]); got != want {
				t.Errorf("%s: error %q, want %q", q, got, want)
			}
		}
		status, hdr, _ := get(t, s, "bogus", "contacts")
		if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("bad token: %d", status)
		}
	})
	t.Run("Throttle", func(t *testing.T) {
		s.ThrottleNext(1, 2*time.Second)
		status, hdr, body := get(t, s, tok, "contacts?$top=1")
		e, _ := body["error"].(map[string]any)
		if status != 429 || hdr.Get("Retry-After") != "2" || e["code"] != "0x80072322" {
			t.Fatalf("%d %v %v", status, hdr, body)
		}
		// A client that ignores Retry-After keeps landing inside the
		// window; past the in-flight grace that is a violation.
		given := time.Now()
		for len(s.Violations()) == 0 && time.Since(given) < 1500*time.Millisecond {
			if status, _, _ := get(t, s, tok, "contacts?$top=1"); status != 429 {
				t.Fatalf("a request inside the window got %d", status)
			}
		}
		if len(s.Violations()) == 0 {
			t.Fatal("requests ignoring Retry-After were not recorded as violations")
		}
	})
}

func TestServer_Batch(t *testing.T) {
	s, tok := emu(t)
	s.AddAccount("Contoso", "+1 317 555 0100", "")
	body := "--batch_AAA\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"GET " + s.URL() + "/api/data/v9.2/accounts?$select=accountid,name&$filter=" + url.QueryEscape("telephone1 eq '+1 317 555 0100'") + " HTTP/1.1\r\nAccept: application/json\r\n\r\n" +
		"--batch_AAA\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"GET /api/data/v9.2/leads?$select=leadid&$filter=" + url.QueryEscape("telephone1 eq 'x") + " HTTP/1.1\r\nAccept: application/json\r\n\r\n" +
		"--batch_AAA--\r\n"
	req, _ := http.NewRequest(http.MethodPost, s.URL()+apiPrefix+"$batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_AAA")
	req.Header.Set("Prefer", "odata.continue-on-error") // answer the failed second request too
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 200 || mt != "multipart/mixed" || !strings.HasPrefix(params["boundary"], "batchresponse_") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	statuses, bodies := batchParts(t, resp.Body, params["boundary"])
	var first map[string]any
	if len(bodies) > 0 {
		_ = json.Unmarshal(bodies[0], &first)
	}
	if !slices.Equal(statuses, []int{200, 400}) || len(first["value"].([]any)) != 1 {
		t.Fatalf("statuses %v, first %v", statuses, first)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].Path != "$batch" || !reqs[1].InBatch || reqs[1].Literals[0] != "+1 317 555 0100" || s.HTTPRequests() != 1 {
		t.Fatalf("log %+v", reqs)
	}
}

// postBatch sends a $batch of GET requests for the relative URLs, with
// the Prefer header if prefer is not empty, and returns the batch's status
// and its parts' statuses.
func postBatch(t *testing.T, s *Server, tok, prefer string, rels ...string) (int, []int) {
	t.Helper()
	var b strings.Builder
	for _, rel := range rels {
		b.WriteString("--batch_BBB\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n")
		b.WriteString("GET " + apiPrefix + rel + " HTTP/1.1\r\nAccept: application/json\r\n\r\n")
	}
	b.WriteString("--batch_BBB--\r\n")
	req, _ := http.NewRequest(http.MethodPost, s.URL()+apiPrefix+"$batch", strings.NewReader(b.String()))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_BBB")
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("batch answered %d with content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	statuses, _ := batchParts(t, resp.Body, params["boundary"])
	return resp.StatusCode, statuses
}

// batchParts reads the parts of a $batch answer: each one an HTTP answer
// (application/http), its status and body.
func batchParts(t *testing.T, body io.Reader, boundary string) (statuses []int, bodies [][]byte) {
	t.Helper()
	mr := multipart.NewReader(body, boundary)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return statuses, bodies
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Type") != "application/http" {
			t.Fatalf("part type %q", p.Header.Get("Content-Type"))
		}
		inner, err := http.ReadResponse(bufio.NewReader(p), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(inner.Body)
		inner.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, inner.StatusCode)
		bodies = append(bodies, b)
	}
}

func TestServer_BatchFailure(t *testing.T) {
	queries := []string{"contacts?$select=contactid&$top=1", "accounts?$select=accountid&$top=1", "leads?$select=leadid&$top=1"}
	t.Run("StopsAtFirstFailure", func(t *testing.T) {
		s, tok := emu(t)
		s.DenyRead("contacts", true)
		status, parts := postBatch(t, s, tok, "", queries...)
		if status != http.StatusForbidden || !slices.Equal(parts, []int{403}) {
			t.Fatalf("batch %d, parts %v; want 403 with the failed request only", status, parts)
		}
		reqs := s.Requests()
		if len(reqs) != 2 || reqs[0].Status != http.StatusForbidden || reqs[1].EntitySet != "contacts" {
			t.Fatalf("log %+v; want the batch and its first request only", reqs)
		}
	})
	t.Run("AnswersUpToTheFailure", func(t *testing.T) {
		s, tok := emu(t)
		s.FailNextIn("accounts", 1, http.StatusServiceUnavailable)
		status, parts := postBatch(t, s, tok, "", queries...)
		if status != http.StatusServiceUnavailable || !slices.Equal(parts, []int{200, 503}) {
			t.Fatalf("batch %d, parts %v; want 503 with [200 503]", status, parts)
		}
	})
	t.Run("ContinueOnError", func(t *testing.T) {
		s, tok := emu(t)
		for _, prefer := range []string{"odata.continue-on-error", "odata.maxpagesize=10, odata.continue-on-error=true"} {
			s.FailNextIn("contacts", 1, http.StatusUnauthorized)
			status, parts := postBatch(t, s, tok, prefer, queries...)
			if status != http.StatusOK || !slices.Equal(parts, []int{401, 200, 200}) {
				t.Fatalf("Prefer %q: batch %d, parts %v; want 200 with [401 200 200]", prefer, status, parts)
			}
		}
		s.FailNextIn("contacts", 1, http.StatusUnauthorized)
		if status, parts := postBatch(t, s, tok, "odata.continue-on-error=false", queries...); status != http.StatusUnauthorized || len(parts) != 1 {
			t.Fatalf("continue-on-error=false: batch %d, parts %v; want it to stop", status, parts)
		}
		s.IgnoreContinueOnError(true)
		s.FailNextIn("contacts", 1, http.StatusUnauthorized)
		if status, parts := postBatch(t, s, tok, "odata.continue-on-error", queries...); status != http.StatusUnauthorized || len(parts) != 1 {
			t.Fatalf("preference ignored: batch %d, parts %v; want it to stop", status, parts)
		}
	})
}

func TestServer_TokenErrors(t *testing.T) {
	s, _ := emu(t)
	cases := []struct {
		tenant, id, secret, scope string
		status, aadsts            int
	}{
		{"wrong", s.cfg.ClientID, s.cfg.ClientSecret, s.URL() + "/.default", 400, 90002},
		{s.cfg.TenantID, "wrong", s.cfg.ClientSecret, s.URL() + "/.default", 400, 700016},
		{s.cfg.TenantID, s.cfg.ClientID, "wrong", s.URL() + "/.default", 401, 7000215},
		{s.cfg.TenantID, s.cfg.ClientID, s.cfg.ClientSecret, "https://other/.default", 400, 500011},
	}
	// Entra ID's error for each: AADSTS500011 is invalid_resource, not
	// invalid_scope (that one is for a malformed scope).
	wantError := map[int]string{90002: "invalid_request", 700016: "unauthorized_client", 7000215: "invalid_client", 500011: "invalid_resource"}
	for _, tc := range cases {
		resp, err := http.PostForm(s.URL()+"/"+tc.tenant+"/oauth2/v2.0/token", url.Values{"client_id": {tc.id}, "client_secret": {tc.secret}, "grant_type": {"client_credentials"}, "scope": {tc.scope}})
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error      string `json:"error"`
			ErrorCodes []int  `json:"error_codes"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || len(body.ErrorCodes) != 1 || body.ErrorCodes[0] != tc.aadsts || body.Error != wantError[tc.aadsts] {
			t.Errorf("%+v: %d %+v", tc, resp.StatusCode, body)
		}
	}
}

func TestServer_Seed(t *testing.T) {
	s := New(Config{})
	info := s.Seed(300, rand.New(rand.NewPCG(1, 1)))
	if n := s.Count("contacts") + s.Count("accounts") + s.Count("leads"); n != 300 || s.Count("contacts") < 150 {
		t.Fatalf("%d records (%d contacts)", n, s.Count("contacts"))
	}
	if len(info.Unique) < 100 || len(info.Shared) == 0 || len(info.Unknown) < 3 || len(info.Emails) == 0 {
		t.Fatalf("unique %d shared %d unknown %d emails %d", len(info.Unique), len(info.Shared), len(info.Unknown), len(info.Emails))
	}
	again := New(Config{}).Seed(300, rand.New(rand.NewPCG(1, 1)))
	if !slices.Equal(info.Unique, again.Unique) || !slices.Equal(info.Shared, again.Shared) {
		t.Fatal("the same seed gave another data set")
	}
	// Numbers are typed in several formats, not all E.164.
	formats := map[bool]int{}
	for _, row := range s.tables["contacts"].rows {
		for _, c := range []string{"telephone1", "mobilephone"} {
			if v, ok := row[c].(string); ok {
				formats[strings.HasPrefix(v, "+") && !strings.Contains(v, " ")]++
			}
		}
	}
	if formats[true] == 0 || formats[false] == 0 {
		t.Fatalf("formats %v", formats)
	}
}

// TestServer_RecordPage: the record URL a pop carries (main.aspx, the
// demo page's "open in Dynamics" link) shows the record, or a new form,
// instead of an OData 404.
func TestServer_RecordPage(t *testing.T) {
	s := New(Config{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := s.AddContact(Contact{FirstName: "Pat", LastName: "O'Brien", Telephone1: "(317) 555-0123"})
	for _, tc := range []struct{ query, want string }{
		{"appid=a&pagetype=entityrecord&etn=contact&id=" + id, "Pat O&#39;Brien"},
		{"appid=a&pagetype=entityrecord&etn=contact", "new contact"},
	} {
		resp, err := http.Get(s.URL() + "/main.aspx?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET main.aspx?%s: HTTP %d %s %q, want a page with %q", tc.query, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.want)
		}
	}
}

// evalCases checks each filter expression of cases against row.
func evalCases(t *testing.T, row map[string]any, cases map[string]bool) {
	t.Helper()
	for expr, want := range cases {
		f, err := ParseFilter(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		v, err := f.Root.eval(row)
		if err != nil || v != want {
			t.Errorf("%s = %v, %v; want %v", expr, v, err, want)
		}
	}
}

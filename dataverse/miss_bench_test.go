package dataverse

import (
	"strings"
	"testing"
)

// BenchmarkMissRequest is the CPU the client spends on a cache miss
// besides the HTTP exchange itself: the phone variants, one OData query
// per default entity and the $batch body around them.
func BenchmarkMissRequest(b *testing.B) {
	c0 := Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c", ClientSecret: "s"}
	cfg, err := c0.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		values, err := PhoneVariants("+13175550123", "US")
		if err != nil {
			b.Fatal(err)
		}
		urls := make([]string, len(cfg.Phone))
		for i, ec := range cfg.Phone {
			urls[i] = entityQuery("https://contoso.crm.dynamics.com/api/data/v9.2/", cfg.Entities[ec.Entity], ec.Columns, values, false)
		}
		if _, _, err := buildBatch(urls); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMissResponse decodes a three-part $batch answer with one match.
func BenchmarkMissResponse(b *testing.B) {
	const boundary = "batchresponse_1d2b"
	part := func(body string) string {
		return "--" + boundary + "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n" + body + "\r\n"
	}
	body := []byte(part(`{"@odata.context":"https://x/api/data/v9.2/$metadata#contacts(contactid,fullname)","value":[{"@odata.etag":"W/\"1\"","contactid":"5f1f3c0e-2b7a-4c6e-9a51-0d1b2c3d4e5f","fullname":"Jane Doe"}]}`) +
		part(`{"@odata.context":"https://x/api/data/v9.2/$metadata#accounts(accountid,name)","value":[]}`) +
		part(`{"@odata.context":"https://x/api/data/v9.2/$metadata#leads(leadid,fullname)","value":[]}`) +
		"--" + boundary + "--\r\n")
	c := &Client{cfg: Config{URL: "https://contoso.crm.dynamics.com"}}
	info := BuiltinEntities()["contact"]
	b.ReportAllocs()
	for b.Loop() {
		ps, err := parseBatch("multipart/mixed; boundary="+boundary, body)
		if err != nil || len(ps) != 3 {
			b.Fatal(len(ps), err)
		}
		recs, err := c.records(info, ps[0].Body, nil)
		if err != nil || len(recs) != 1 || !strings.HasPrefix(recs[0].ID, "5f1f") {
			b.Fatal(recs, err)
		}
	}
}

package dataverse_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// TestClient_TimeoutsCarryNoPII: a request that times out fails with Go's
// *url.Error, whose text quotes the URL and so the $filter with the
// caller's number. Neither the error nor any log line may carry it.
func TestClient_TimeoutsCarryNoPII(t *testing.T) {
	srv, c, logs := loggedEnv(t, zerolog.DebugLevel, func(cfg *dataverse.Config) {
		cfg.SequentialLookups, cfg.RequestTimeout, cfg.MaxAttempts, cfg.FlightTimeout = true, 50*time.Millisecond, 2, 2*time.Second
	})
	srv.SetLatency(500 * time.Millisecond)
	_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550166"))
	if err == nil {
		t.Fatal("lookup against a server slower than the request timeout succeeded")
	}
	for _, where := range []string{err.Error(), logs.String()} {
		for _, pii := range []string{"5550166", "555-0166", "555.0166", "555%200166", "555+0166"} {
			if strings.Contains(where, pii) {
				t.Errorf("%q appears in %q", pii, where)
			}
		}
	}
	if !strings.Contains(logs.String(), "timeout") && !strings.Contains(err.Error(), "deadline") && !strings.Contains(err.Error(), "timeout") {
		t.Errorf("the failure does not say it timed out: %v", err)
	}
}

// loggedEnv is a client of a fresh emulator, warmed (its token fetched),
// configured by mod and logging at level to the returned buffer.
func loggedEnv(t *testing.T, level zerolog.Level, mod func(*dataverse.Config)) (*dataversetest.Server, *dataverse.Client, *syncbuf.Buffer) {
	t.Helper()
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ec := srv.Config()
	cfg := dataverse.Config{URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: srv.TokenURL()}
	mod(&cfg)
	logs := &syncbuf.Buffer{}
	c, err := dataverse.New(cfg, zerolog.New(logs).Level(level))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	warm(t, srv, c)
	return srv, c, logs
}

// TestClient_LookupValuesNeverInARequestURL: the caller's number or email
// travels in the body of a $batch POST, never in a request URL (which
// proxies, gateways and request telemetry record), also when a lookup list
// names a single entity (SCREENPOP_LOOKUP_EMAIL=contact:emailaddress1).
func TestClient_LookupValuesNeverInARequestURL(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Phone = []dataverse.EntityColumns{{Entity: "contact", Columns: []string{"telephone1", "mobilephone"}}}
		cfg.Email = []dataverse.EntityColumns{{Entity: "contact", Columns: []string{"emailaddress1"}}}
	})
	id := srv.AddContact(dataversetest.Contact{FirstName: "Zed", LastName: "Quux", Telephone1: "(317) 555-0177", EMailAddress1: "zed.quux@example.org"})
	warm(t, srv, c)
	for _, k := range []bridge.Key{phone("+13175550177"), email("zed.quux@example.org"), phone("+13175550178")} {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), k)
		if err != nil {
			t.Fatal(err)
		}
		if found := len(recs) == 1 && recs[0].ID == id; found != (k.Value != "+13175550178") {
			t.Fatalf("lookup %s: %+v", k.Kind, recs)
		}
	}
	for _, r := range srv.Requests() {
		if !r.InBatch && len(r.Literals) > 0 {
			t.Errorf("%s %s carries %q (and %d more values) in its URL", r.Method, r.Path, r.Literals[0], len(r.Literals)-1)
		}
	}
}

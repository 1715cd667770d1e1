package dataverse_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestClient_RefusedEntityDoesNotOpenTheBreaker: an application user whose
// role lacks Read on lead (the last entity searched), a custom entity whose
// set name is wrong, or a column that does not exist on it, makes every
// lookup of a caller that no earlier entity matches fail: Dataverse answers
// that query's refusal at once. Those failures are not an outage, and must
// not open the circuit breaker: once open it fails every lookup, so callers
// whose contact or account matches get a search pop instead of their record
// for the cooldown, again and again as unknown callers keep coming.
func TestClient_RefusedEntityDoesNotOpenTheBreaker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		phone string
		fault func(*dataversetest.Server)
	}{
		{"ForbiddenLead", "contact:telephone1;account:telephone1;lead:telephone1", func(s *dataversetest.Server) { s.DenyRead("leads", true) }},
		{"UnknownEntitySet", "contact:telephone1;new_caller:new_phone", nil},
		{"UnknownColumn", "contact:telephone1;new_caller:new_phonee", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup, err := dataverse.ParseLookup(tc.phone)
			if err != nil {
				t.Fatal(err)
			}
			set := "new_callers"
			if tc.name == "UnknownEntitySet" {
				set = "new_callerz"
			}
			ents, err := dataverse.ParseEntities("new_caller=" + set + "/new_callerid/new_name")
			if err != nil {
				t.Fatal(err)
			}
			srv, c := MustEnv(t, func(cfg *dataverse.Config) {
				cfg.Phone, cfg.Email, cfg.Entities = lookup, []dataverse.EntityColumns{}, ents
				cfg.BreakerCooldown = time.Minute
			})
			srv.AddEntitySet("new_callers", "new_caller", "new_callerid", "new_name", "new_phone")
			id := srv.AddContact(dataversetest.Contact{FirstName: "Known", LastName: "Caller", Telephone1: "+13175550300"})
			if tc.fault != nil {
				tc.fault(srv)
			}
			// As many unknown callers in a row as the breaker's threshold
			// (5): each lookup fails with the refusal, naming the entity.
			for i := range 5 {
				_, err := c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555031%d", i)))
				if err == nil || errors.Is(err, dataverse.ErrCircuitOpen) {
					t.Fatalf("unknown caller %d: err %v, want the refusal of the last entity", i, err)
				}
			}
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550300"))
			if err != nil || len(recs) != 1 || recs[0].ID != id {
				t.Fatalf("known contact after unknown callers: %+v, %v (breaker %s); want the contact: a refused lead or custom-entity query must not stop contact pops",
					recs, err, c.Status().(dataverse.Status).Breaker)
			}
		})
	}
}

// TestClient_BreakerStillOpensOnOutage: the fix above keeps the breaker for
// what it is for: Dataverse failing (5xx after retries).
func TestClient_BreakerStillOpensOnOutage(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.BreakerFailures, cfg.BreakerCooldown, cfg.MaxAttempts = 2, time.Minute, 1
	})
	warm(t, srv, c)
	srv.FailNext(2, http.StatusBadGateway)
	for i := range 2 {
		if _, err := c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555032%d", i))); err == nil {
			t.Fatal("lookup against a failing gateway succeeded")
		}
	}
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550329")); !errors.Is(err, dataverse.ErrCircuitOpen) {
		t.Fatalf("err %v, want the breaker open after an outage", err)
	}
}

// TestClient_ThrottlingIsLoggedOnceWithItsLimit: a 429 turns the pops of
// callers whose deadline falls inside Retry-After into search pops whose
// line says only lookup_error, and the lookups that waited succeed, so
// nothing else is logged. On-call needs one warning per throttling
// episode naming the limit Dataverse reported (its error code: requests,
// execution time or concurrency, each with its own fix) and the
// x-ms-ratelimit headers, which Microsoft provides for debugging.
func TestClient_ThrottlingIsLoggedOnceWithItsLimit(t *testing.T) {
	srv, c, logs := loggedEnv(t, zerolog.InfoLevel, func(*dataverse.Config) {})
	srv.ThrottleLimit(dataversetest.LimitConcurrency)
	srv.ThrottleNext(1, time.Second)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if _, err := c.Lookup(ctxT(t, 10*time.Second), phone(fmt.Sprintf("+1317555033%d", i))); err != nil {
				t.Errorf("lookup after Retry-After: %v", err)
			}
		})
	}
	wg.Wait()
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "dataverse throttled") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d throttling lines, want 1 per episode; log:\n%s", len(lines), logs.String())
	}
	for _, want := range []string{`"level":"warn"`, `"code":"0x80072326"`, "52 concurrent requests", "SCREENPOP_DATAVERSE_CONCURRENCY", `"burst_remaining":"`, `"retry_after":`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("throttling line lacks %s: %s", want, lines[0])
		}
	}
	if strings.Contains(logs.String(), "555033") {
		t.Errorf("a log line carries a caller number:\n%s", logs.String())
	}
}

// TestClient_ExpiredSecret: Entra ID answers an expired client secret with
// 401 invalid_client AADSTS7000222 (the emulator's ExpireSecret): check and
// /status name the fix, and a lookup fails at once (a search pop), without
// the secret in any error.
func TestClient_ExpiredSecret(t *testing.T) {
	srv, c := MustEnv(t, nil)
	srv.ExpireSecret(true)
	err := c.Check(ctxT(t, 5*time.Second))
	var ae *dataverse.AuthError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Code, "AADSTS7000222") ||
		!strings.Contains(err.Error(), "client secret has expired") || !strings.Contains(err.Error(), "DATAVERSE_CLIENT_SECRET") {
		t.Fatalf("check: %v; want the expired secret and its fix", err)
	}
	start := time.Now()
	if _, err := c.Lookup(ctxT(t, 2*time.Second), phone("+13175550340")); !errors.As(err, &ae) {
		t.Fatalf("lookup: %v, want the AuthError", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("lookup took %v with no token to be had", d)
	}
	if strings.Contains(err.Error(), srv.Config().ClientSecret) {
		t.Fatal("the error carries the secret")
	}
}

// TestClient_GatewayHTMLPage: a gateway in front of the Web API answers
// 502/503 with an HTML page, not an OData body: retried like any 5xx, and
// the error, once retries are spent, neither quotes the page nor
// mistakes it for a refusal.
func TestClient_GatewayHTMLPage(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv, c := MustEnv(t, nil)
			id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550350"})
			warm(t, srv, c)
			srv.FailNextHTML(2, status)
			recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550350"))
			if err != nil || len(recs) != 1 || recs[0].ID != id {
				t.Fatalf("got %+v, %v; want the contact after retries", recs, err)
			}
			srv.FailNextHTML(100, status)
			_, err = c.Lookup(ctxT(t, 10*time.Second), phone("+13175550351"))
			var pe *dataverse.APIError
			if !errors.As(err, &pe) || pe.Status != status || strings.Contains(err.Error(), "<") {
				t.Fatalf("err %v; want the %d, without the page", err, status)
			}
		})
	}
}

// TestCheck_HTMLInsteadOfJSON: something that is not the Web API answers
// 200 with an HTML page (a proxy's block or sign-in page): every lookup
// fails on it, so screenpopd check must not report the token and tables
// as fine.
func TestCheck_HTMLInsteadOfJSON(t *testing.T) {
	srv, c := MustEnv(t, nil)
	if _, err := c.CheckAuth(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	srv.FailNextHTML(100, http.StatusOK)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550360")); err == nil || !strings.Contains(err.Error(), "DATAVERSE_URL") {
		t.Errorf("lookup answered with an HTML page: %v; want an error naming the setting to check", err)
	}
	user, err := c.CheckAuth(ctxT(t, 5*time.Second))
	if err == nil {
		t.Errorf("check WhoAmI answered with an HTML page passed (application user %q)", user)
	}
	for _, target := range c.CheckTargets() {
		if err := c.CheckEntity(ctxT(t, 5*time.Second), target); err == nil {
			t.Errorf("check %s answered with an HTML page passed", target.Entity)
		}
	}
}

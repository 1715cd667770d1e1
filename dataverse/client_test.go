package dataverse_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

const appID = "11111111-2222-3333-4444-555555555555"

// MustEnv starts an emulator and a client for it; mod adjusts the client
// config.
func MustEnv(tb testing.TB, mod func(*dataverse.Config)) (*dataversetest.Server, *dataverse.Client) {
	tb.Helper()
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	ec := srv.Config()
	cfg := dataverse.Config{
		URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: srv.TokenURL(), AppID: appID,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := dataverse.New(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return srv, c
}

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func phone(v string) bridge.Key { return bridge.Key{Kind: bridge.KeyPhone, Value: v} }
func email(v string) bridge.Key { return bridge.Key{Kind: bridge.KeyEmail, Value: v} }

// warm obtains the token, so that request counts below are API requests only.
func warm(tb testing.TB, srv *dataversetest.Server, c *dataverse.Client) {
	tb.Helper()
	if err := c.Check(ctxT(tb, 5*time.Second)); err != nil {
		tb.Fatal(err)
	}
	srv.ResetLog()
}

func TestClient_Lookup(t *testing.T) {
	srv, c := MustEnv(t, nil)
	alice := srv.AddContact(dataversetest.Contact{FirstName: "Alice", LastName: "Liddell", Telephone1: "(317) 555-0123", EMailAddress1: "alice@example.com"})
	srv.AddAccount("Contoso", "+1 317 555 0123", "") // same number, but contact comes first
	s1 := srv.AddContact(dataversetest.Contact{FirstName: "Sam", LastName: "One", MobilePhone: "212-555-0199"})
	s2 := srv.AddContact(dataversetest.Contact{FirstName: "Sam", LastName: "Two", Telephone2: "2125550199"})
	acc := srv.AddAccount("Fabrikam", "415.555.0100", "")
	srv.AddContact(dataversetest.Contact{FirstName: "Old", LastName: "Gone", Telephone1: "+14045550111", Inactive: true})
	lead := srv.AddLead("Lee", "Lead", "Litware", "", "lee@example.net")

	t.Run("OneMatch", func(t *testing.T) {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550123"))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].ID != alice || recs[0].Entity != "contact" || recs[0].Name != "Alice Liddell" {
			t.Fatalf("got %+v, want contact %s", recs, alice)
		}
		want := srv.URL() + "/main.aspx?appid=" + appID + "&pagetype=entityrecord&etn=contact&id=" + alice
		if recs[0].URL != want {
			t.Fatalf("url %q, want %q", recs[0].URL, want)
		}
	})
	t.Run("Shared", func(t *testing.T) {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+12125550199"))
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{recs[0].ID, recs[1].ID}
		slices.Sort(ids)
		want := []string{s1, s2}
		slices.Sort(want)
		if len(recs) != 2 || !slices.Equal(ids, want) {
			t.Fatalf("got %+v", recs)
		}
	})
	t.Run("SecondEntity", func(t *testing.T) {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+14155550100"))
		if err != nil || len(recs) != 1 || recs[0].ID != acc || recs[0].Entity != "account" {
			t.Fatalf("got %+v, %v", recs, err)
		}
	})
	t.Run("InactiveIgnored", func(t *testing.T) {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+14045550111"))
		if err != nil || len(recs) != 0 {
			t.Fatalf("got %+v, %v", recs, err)
		}
	})
	t.Run("Email", func(t *testing.T) {
		recs, err := c.Lookup(ctxT(t, 5*time.Second), email("Lee@Example.NET"))
		if err != nil || len(recs) != 1 || recs[0].ID != lead || recs[0].Entity != "lead" {
			t.Fatalf("got %+v, %v", recs, err)
		}
	})
	t.Run("NegativeCached", func(t *testing.T) {
		srv.ResetLog()
		for range 3 {
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+16175550000"))
			if err != nil || len(recs) != 0 {
				t.Fatalf("got %+v, %v", recs, err)
			}
		}
		if n := srv.HTTPRequests(); n != 1 {
			t.Fatalf("%d requests for three lookups of an unknown number, want 1", n)
		}
	})
	t.Run("InvalidKey", func(t *testing.T) {
		if _, err := c.Lookup(ctxT(t, time.Second), phone("not a number")); !errors.Is(err, dataverse.ErrInvalidKey) {
			t.Fatalf("err %v, want ErrInvalidKey", err)
		}
	})
}

func TestClient_Escaping(t *testing.T) {
	srv, c := MustEnv(t, nil)
	obrien := srv.AddContact(dataversetest.Contact{FirstName: "Niamh", LastName: "O'Brien", EMailAddress1: "niamh.o'brien@example.com"})
	// Would match if the crafted value below could widen the query.
	srv.AddContact(dataversetest.Contact{FirstName: "X", LastName: "Ray", EMailAddress1: "x"})
	warm(t, srv, c)

	recs, err := c.Lookup(ctxT(t, 5*time.Second), email("niamh.o'brien@example.com"))
	if err != nil || len(recs) != 1 || recs[0].ID != obrien || recs[0].Name != "Niamh O'Brien" {
		t.Fatalf("O'Brien: got %+v, %v", recs, err)
	}
	crafted := "x' or 1 eq 1"
	recs, err = c.Lookup(ctxT(t, 5*time.Second), email(crafted))
	if err != nil || len(recs) != 0 {
		t.Fatalf("crafted: got %+v, %v (the literal must not change the query)", recs, err)
	}
	var parts []dataversetest.Request
	for _, r := range srv.Requests() {
		if r.InBatch {
			parts = append(parts, r)
		}
	}
	if len(parts) != 6 {
		t.Fatalf("%d batch parts, want 6 (two lookups over three entities)", len(parts))
	}
	for _, p := range parts {
		if p.Status != http.StatusOK {
			t.Fatalf("part %s answered %d", p.EntitySet, p.Status)
		}
		want := "niamh.o'brien@example.com"
		if strings.Contains(p.RawFilter, "1 eq 1") {
			want = crafted
		}
		for _, lit := range p.Literals {
			if lit != want {
				t.Fatalf("%s: literal %q, want %q intact; filter %s", p.EntitySet, lit, want, p.Filter)
			}
		}
		for _, op := range p.Operators {
			if op != "eq" && op != "or" && op != "and" {
				t.Fatalf("%s: operator %q on the hot path; filter %s", p.EntitySet, op, p.Filter)
			}
		}
	}
	// The contact query of the crafted lookup, as the emulator parsed it.
	want := "((statecode eq 0) and ((emailaddress1 eq 'x'' or 1 eq 1') or (emailaddress2 eq 'x'' or 1 eq 1')))"
	if parts[3].EntitySet != "contacts" || parts[3].Filter != want {
		t.Fatalf("parsed filter\n %s\nwant\n %s", parts[3].Filter, want)
	}
}

func TestClient_Cost(t *testing.T) {
	srv, c := MustEnv(t, nil)
	id := srv.AddLead("Lee", "Lead", "Litware", "+1 317 555 0142", "")
	warm(t, srv, c)
	srv.SetLatency(50 * time.Millisecond) // keep the flight open while callers pile up

	t.Run("SingleFlight", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			wg.Go(func() {
				recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550142"))
				if err == nil && (len(recs) != 1 || recs[0].ID != id) {
					err = errors.New("wrong records")
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.HTTPRequests(); n != 1 {
			t.Fatalf("100 concurrent lookups cost %d requests, want 1", n)
		}
	})
	t.Run("OneBatchForThreeEntities", func(t *testing.T) {
		reqs := srv.Requests()
		if len(reqs) != 4 || reqs[0].Path != "$batch" {
			t.Fatalf("log %+v, want one $batch with three parts", reqs)
		}
		var sets []string
		for _, r := range reqs[1:] {
			sets = append(sets, r.EntitySet)
			if !r.InBatch || r.Top != dataverse.MaxRecords || len(r.Select) != 2 {
				t.Fatalf("part %+v: want in batch, $top=%d, minimal $select", r, dataverse.MaxRecords)
			}
		}
		if !slices.Equal(sets, []string{"contacts", "accounts", "leads"}) {
			t.Fatalf("entity order %v", sets)
		}
	})
}

func TestClient_Sequential(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.SequentialLookups = true })
	id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "3175550150"})
	warm(t, srv, c)
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550150"))
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("got %+v, %v", recs, err)
	}
	if n := srv.HTTPRequests(); n != 1 {
		t.Fatalf("%d requests, want 1 (stop at the first entity with a match)", n)
	}
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550151")); err != nil {
		t.Fatal(err)
	}
	if n := srv.HTTPRequests(); n != 4 {
		t.Fatalf("%d requests, want 4 (three entities for the unknown number)", n)
	}
}

func TestClient_Throttling(t *testing.T) {
	t.Run("RetryAfterHonoured", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550160"})
		warm(t, srv, c)
		srv.ThrottleNext(1, time.Second)
		recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550160"))
		if err != nil || len(recs) != 1 || recs[0].ID != id {
			t.Fatalf("got %+v, %v", recs, err)
		}
		var outer []dataversetest.Request
		for _, r := range srv.Requests() {
			if !r.InBatch {
				outer = append(outer, r)
			}
		}
		if len(outer) != 2 || outer[0].Status != http.StatusTooManyRequests || outer[1].Status != http.StatusOK {
			t.Fatalf("requests %+v, want a 429 then a 200", outer)
		}
		if gap := outer[1].Time.Sub(outer[0].Time); gap < time.Second {
			t.Fatalf("retried %v after a Retry-After of 1s", gap)
		}
		if v := srv.Violations(); len(v) != 0 {
			t.Fatalf("violations %+v", v)
		}
	})
	t.Run("GateIsClientWide", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		warm(t, srv, c)
		srv.ThrottleEvery(2, time.Second)
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				_, err := c.Lookup(ctxT(t, 20*time.Second), phone(fmt.Sprintf("+1317555%04d", 300+i)))
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if v := srv.Violations(); len(v) != 0 {
			t.Fatalf("%d requests arrived before a Retry-After they were given elapsed: %+v", len(v), v)
		}
		throttled := 0
		for _, r := range srv.Requests() {
			if r.Status == http.StatusTooManyRequests {
				throttled++
			}
		}
		if throttled == 0 {
			t.Fatal("no request was throttled; the test proves nothing")
		}
	})
	t.Run("DeadlineBeforeRetryAfter", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550170"})
		warm(t, srv, c)
		srv.ThrottleNext(1, 2*time.Second)
		// The pop deadline ends inside the Retry-After: the caller hears
		// so at once instead of waiting its deadline out.
		const deadline = 1500 * time.Millisecond
		start := time.Now()
		_, err := c.Lookup(ctxT(t, deadline), phone("+13175550170"))
		took := time.Since(start)
		var te *dataverse.ThrottledError
		if !errors.As(err, &te) || !te.Until.After(start.Add(deadline)) {
			t.Fatalf("err %v, want a ThrottledError past the deadline", err)
		}
		if took > deadline/3 {
			t.Fatalf("gave up after %v with a deadline of %v, want at once", took, deadline)
		}
		if st := c.Status().(dataverse.Status); st.ThrottledUntil == nil {
			t.Fatal("status does not show throttled_until")
		}
		// The flight waits the Retry-After out for a caller with more
		// time, and sends no second request.
		recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550170"))
		if err != nil || len(recs) != 1 || recs[0].ID != id {
			t.Fatalf("patient caller: got %+v, %v", recs, err)
		}
		if n := srv.HTTPRequests(); n != 2 {
			t.Fatalf("%d requests, want 2 (the 429 and one after the wait)", n)
		}
		if v := srv.Violations(); len(v) != 0 {
			t.Fatalf("violations %+v", v)
		}
	})
}

func TestClient_Faults(t *testing.T) {
	t.Run("RetriesServerErrors", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550180"})
		warm(t, srv, c)
		srv.FailNext(2, http.StatusServiceUnavailable)
		recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550180"))
		if err != nil || len(recs) != 1 || recs[0].ID != id {
			t.Fatalf("got %+v, %v", recs, err)
		}
		if n := srv.HTTPRequests(); n != 3 {
			t.Fatalf("%d requests, want 3", n)
		}
	})
	t.Run("Breaker", func(t *testing.T) {
		srv, c := MustEnv(t, func(cfg *dataverse.Config) {
			cfg.BreakerFailures, cfg.BreakerCooldown, cfg.MaxAttempts = 2, 200*time.Millisecond, 1
		})
		srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550190"})
		warm(t, srv, c)
		srv.FailNext(2, http.StatusInternalServerError)
		for i := range 2 {
			if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+1317555019"+string(rune('1'+i)))); err == nil {
				t.Fatal("want an error")
			}
		}
		_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550190"))
		if !errors.Is(err, dataverse.ErrCircuitOpen) {
			t.Fatalf("err %v, want circuit open", err)
		}
		if st := c.Status().(dataverse.Status); st.Breaker != "open" {
			t.Fatalf("status %+v", st)
		}
		n := srv.HTTPRequests()
		// After the cooldown one probe goes through and closes it.
		deadline := time.Now().Add(5 * time.Second)
		for {
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550190"))
			if err == nil && len(recs) == 1 {
				break
			}
			if !errors.Is(err, dataverse.ErrCircuitOpen) || time.Now().After(deadline) {
				t.Fatalf("after cooldown: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // poll interval while the breaker cools down
		}
		if srv.HTTPRequests() != n+1 {
			t.Fatalf("requests while open: %d", srv.HTTPRequests()-n-1)
		}
	})
	t.Run("ConcurrencyLimit", func(t *testing.T) {
		srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Concurrency = 2 })
		warm(t, srv, c)
		srv.SetLatency(30 * time.Millisecond)
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				if _, err := c.Lookup(ctxT(t, 10*time.Second), phone("+1212555010"+string(rune('0'+i)))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if m := srv.MaxConcurrent(); m > 2 || m == 0 {
			t.Fatalf("max concurrent %d, want 1..2", m)
		}
	})
	t.Run("LateAnswerFillsCache", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550200"})
		warm(t, srv, c)
		srv.SetLatency(300 * time.Millisecond)
		_, err := c.Lookup(ctxT(t, 20*time.Millisecond), phone("+13175550200"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want deadline exceeded", err)
		}
		if err := srv.AwaitRequests(ctxT(t, 5*time.Second), 1); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if st := c.Status().(dataverse.Status); st.CachePositive == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the late answer never reached the cache")
			}
			time.Sleep(10 * time.Millisecond) // poll
		}
		recs, err := c.Lookup(ctxT(t, 20*time.Millisecond), phone("+13175550200"))
		if err != nil || len(recs) != 1 || recs[0].ID != id || srv.HTTPRequests() != 1 {
			t.Fatalf("got %+v, %v after %d requests", recs, err, srv.HTTPRequests())
		}
	})
}

// A failed request in a $batch is classified by its own status, whichever
// entity it queried: with Prefer: odata.continue-on-error, which the client
// sends, Dataverse answers every request; a service that ignores it stops the
// batch at the failure, with that status.
func TestClient_BatchPartFailure(t *testing.T) {
	for _, mode := range []struct {
		name   string
		ignore bool // the emulator stops at the failure despite the Prefer header
		parts  int  // parts answered in the failed batch
	}{{"ContinueOnError", false, 3}, {"StoppedBatch", true, 1}} {
		t.Run(mode.name, func(t *testing.T) {
			// env has a contact and an account with the same number, so the
			// contact query failing cannot be mistaken for no match.
			env := func(t *testing.T) (*dataversetest.Server, *dataverse.Client, string) {
				srv, c := MustEnv(t, nil)
				id := srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550230"})
				srv.AddAccount("Contoso", "+13175550230", "")
				warm(t, srv, c)
				srv.IgnoreContinueOnError(mode.ignore)
				return srv, c, id
			}
			// firstBatch checks the first $batch: its status and how many of
			// its requests were answered.
			firstBatch := func(t *testing.T, srv *dataversetest.Server, status int) {
				t.Helper()
				reqs := srv.Requests()
				parts := 0
				for _, r := range reqs[1:] {
					if !r.InBatch {
						break
					}
					parts++
				}
				if reqs[0].Path != "$batch" || parts != mode.parts || reqs[1].EntitySet != "contacts" || reqs[1].Status != status {
					t.Fatalf("first batch %+v with %d parts; want %d parts, the contact query answered %d", reqs[0], parts, mode.parts, status)
				}
			}
			t.Run("Forbidden", func(t *testing.T) {
				srv, c, _ := env(t)
				srv.DenyRead("contacts", true)
				_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550230"))
				var ae *dataverse.AuthError
				if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != "0x80040220" || !strings.Contains(err.Error(), "missing a read privilege on contact") {
					t.Fatalf("err %v; want the 403 naming the contact read privilege", err)
				}
				if n := srv.HTTPRequests(); n != 1 {
					t.Fatalf("%d requests, want 1 (a missing privilege is not retried)", n)
				}
				firstBatch(t, srv, http.StatusForbidden)
			})
			t.Run("LaterEntityFailsAfterAMatch", func(t *testing.T) {
				// The contact, first in order, decides: the account query's
				// failure does not matter (it is not even answered when
				// the batch stops at it).
				srv, c, id := env(t)
				srv.FailNextIn("accounts", 1, http.StatusServiceUnavailable)
				recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550230"))
				if err != nil || len(recs) != 1 || recs[0].ID != id {
					t.Fatalf("got %+v, %v; want the contact", recs, err)
				}
				want := 1 // one batch, no retry
				if mode.ignore {
					want = 2 // a stopped batch answers with the account's 503: retried
				}
				if n := srv.HTTPRequests(); n != want {
					t.Fatalf("%d requests, want %d", n, want)
				}
			})
			t.Run("Unavailable", func(t *testing.T) {
				srv, c, id := env(t)
				srv.FailNextIn("contacts", 1, http.StatusServiceUnavailable)
				recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550230"))
				if err != nil || len(recs) != 1 || recs[0].ID != id {
					t.Fatalf("got %+v, %v; want the contact after a retry", recs, err)
				}
				if n := srv.HTTPRequests(); n != 2 {
					t.Fatalf("%d requests, want 2 (the 503 retried)", n)
				}
				firstBatch(t, srv, http.StatusServiceUnavailable)
			})
			t.Run("Unauthorized", func(t *testing.T) {
				srv, c, id := env(t)
				srv.FailNextIn("contacts", 1, http.StatusUnauthorized)
				recs, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550230"))
				if err != nil || len(recs) != 1 || recs[0].ID != id {
					t.Fatalf("got %+v, %v; want the contact with a fresh token", recs, err)
				}
				if n := srv.TokenRequests(); n != 2 {
					t.Fatalf("%d token requests, want 2 (a 401 gets a fresh token)", n)
				}
				if n := srv.HTTPRequests(); n != 2 {
					t.Fatalf("%d requests, want 2", n)
				}
				firstBatch(t, srv, http.StatusUnauthorized)
			})
		})
	}
}

func TestClient_Auth(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*dataverse.Config)
		srv  func(*dataversetest.Server)
		hint string
	}{
		{"WrongSecret", func(c *dataverse.Config) { c.ClientSecret = "nope" }, nil, "DATAVERSE_CLIENT_SECRET"},
		{"WrongClient", func(c *dataverse.Config) { c.ClientID = "00000000-0000-0000-0000-000000000999" }, nil, "DATAVERSE_CLIENT_ID"},
		{"WrongTenant", func(c *dataverse.Config) {
			c.TokenURL = strings.Replace(c.TokenURL, c.TenantID, "contoso.onmicrosoft.com", 1)
		}, nil, "DATAVERSE_TENANT_ID"},
		{"WrongURL", func(c *dataverse.Config) { c.URL = "https://other.crm.dynamics.com" }, nil, "DATAVERSE_URL"},
		{"NoAppUser", nil, func(s *dataversetest.Server) { s.DisableAppUser(true) }, "Application users"},
		{"NoReadPrivilege", nil, func(s *dataversetest.Server) { s.DenyRead("accounts", true) }, "read privilege on account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := MustEnv(t, tc.mod)
			if tc.srv != nil {
				tc.srv(srv)
			}
			err := c.Check(ctxT(t, 5*time.Second))
			var ae *dataverse.AuthError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("err %v, want an AuthError naming %q", err, tc.hint)
			}
			if strings.Contains(err.Error(), "nope") || strings.Contains(err.Error(), srv.Config().ClientSecret) {
				t.Fatal("the error carries a secret")
			}
			_, err = c.Lookup(ctxT(t, 5*time.Second), phone("+13175550123"))
			if !errors.As(err, &ae) {
				t.Fatalf("lookup err %v, want an AuthError", err)
			}
		})
	}
}

func TestClient_Token(t *testing.T) {
	t.Run("CachedAndRenewedAfter401", func(t *testing.T) {
		srv, c := MustEnv(t, nil)
		srv.AddContact(dataversetest.Contact{FirstName: "A", LastName: "B", Telephone1: "+13175550210"})
		for i := range 3 {
			if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+1317555021"+string(rune('0'+i)))); err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.TokenRequests(); n != 1 {
			t.Fatalf("%d token requests, want 1", n)
		}
		if !c.Ready() {
			t.Fatal("not ready after a token")
		}
		srv.ExpireTokens()
		if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550219")); err != nil {
			t.Fatal(err)
		}
		if n := srv.TokenRequests(); n != 2 {
			t.Fatalf("%d token requests, want 2", n)
		}
	})
	t.Run("RunRefreshesAhead", func(t *testing.T) {
		srv := dataversetest.New(dataversetest.Config{TokenLifetime: 2 * time.Second})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ec := srv.Config()
		c, err := dataverse.New(dataverse.Config{URL: srv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: srv.TokenURL()}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for srv.TokenRequests() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%d token requests in 10s with a 2s lifetime", srv.TokenRequests())
			}
			time.Sleep(20 * time.Millisecond) // poll
		}
		if !c.Ready() {
			t.Fatal("not ready")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestNew_Config(t *testing.T) {
	base := dataverse.Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c", ClientSecret: "s"}
	cases := []struct {
		name string
		mod  func(*dataverse.Config)
		want string
	}{
		{"NoURL", func(c *dataverse.Config) { c.URL = "" }, "DATAVERSE_URL is required"},
		{"URLWithPath", func(c *dataverse.Config) { c.URL += "/api/data/v9.2" }, "without a path"},
		{"NoSecret", func(c *dataverse.Config) { c.ClientSecret = "" }, "DATAVERSE_CLIENT_SECRET"},
		{"NoTenant", func(c *dataverse.Config) { c.TenantID = "" }, "DATAVERSE_TENANT_ID"},
		{"UnknownEntity", func(c *dataverse.Config) {
			c.Phone = []dataverse.EntityColumns{{Entity: "incident", Columns: []string{"x"}}}
		}, "SCREENPOP_ENTITIES"},
		{"BadRegion", func(c *dataverse.Config) { c.PhoneRegion = "XX" }, "SCREENPOP_PHONE_REGION"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			_, err := dataverse.New(cfg, zerolog.Nop())
			if !errors.Is(err, dataverse.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestClient_RecordURL(t *testing.T) {
	c, err := dataverse.New(dataverse.Config{URL: "https://contoso.crm.dynamics.com/", TenantID: "t", ClientID: "c", ClientSecret: "s", AppID: appID}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct{ entity, id, want string }{
		{"contact", "{AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE}", "https://contoso.crm.dynamics.com/main.aspx?appid=" + appID + "&pagetype=entityrecord&etn=contact&id=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"},
		{"contact", "", "https://contoso.crm.dynamics.com/main.aspx?appid=" + appID + "&pagetype=entityrecord&etn=contact"},
		{"contact", "+13175550123", ""},
		{"contact&x=1", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ""},
		{"lead", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "https://contoso.crm.dynamics.com/main.aspx?appid=" + appID + "&pagetype=entityrecord&etn=lead&id=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"},
		// Only the entities screenpop knows (built-in and SCREENPOP_ENTITIES):
		// an override from participant data a customer may write cannot
		// open a user, a case or any other table.
		{"systemuser", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ""},
		{"incident", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ""},
	}
	for _, tc := range cases {
		if got := c.RecordURL(tc.entity, tc.id); got != tc.want {
			t.Errorf("RecordURL(%q, %q) = %q, want %q", tc.entity, tc.id, got, tc.want)
		}
	}
}

func TestClient_CustomEntity(t *testing.T) {
	ents, err := dataverse.ParseEntities("new_caller=new_callers/new_callerid/new_name")
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := dataverse.ParseLookup("new_caller:new_phone;contact:telephone1")
	if err != nil {
		t.Fatal(err)
	}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Entities, cfg.Phone = ents, lookup })
	srv.AddEntitySet("new_callers", "new_caller", "new_callerid", "new_name", "new_phone")
	id, err := srv.AddRecord("new_callers", map[string]any{"new_name": "Caller One", "new_phone": "+44 20 7946 0018"})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddContact(dataversetest.Contact{FirstName: "Not", LastName: "Me", Telephone1: "020 7946 0018"})
	warm(t, srv, c)
	recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+442079460018"))
	if err != nil || len(recs) != 1 || recs[0].Entity != "new_caller" || recs[0].ID != id || recs[0].Name != "Caller One" {
		t.Fatalf("got %+v, %v", recs, err)
	}
	if !strings.HasSuffix(recs[0].URL, "etn=new_caller&id="+id) {
		t.Fatalf("url %s", recs[0].URL)
	}
	for _, r := range srv.Requests() {
		if r.EntitySet == "new_callers" && strings.Contains(r.Filter, "statecode") {
			t.Fatalf("custom entity without /active filtered on statecode: %s", r.Filter)
		}
	}
}

// TestClient_CheckNamesALookupColumnThatIsNotText: a lookup column that
// exists but is a number (a whole-number "phone" column, a choice) passes
// a $select, yet Dataverse refuses every lookup that compares it with the
// caller's number as text, and every pop becomes a search. screenpopd
// check must name the column and its entity, not report ok.
func TestClient_CheckNamesALookupColumnThatIsNotText(t *testing.T) {
	ents, err := dataverse.ParseEntities("new_caller=new_callers/new_callerid/new_name")
	if err != nil {
		t.Fatal(err)
	}
	phones, err := dataverse.ParseLookup("new_caller:new_phone,new_extension;contact:telephone1")
	if err != nil {
		t.Fatal(err)
	}
	emails, err := dataverse.ParseLookup("new_caller:new_email")
	if err != nil {
		t.Fatal(err)
	}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Entities, cfg.Phone, cfg.Email = ents, phones, emails })
	srv.AddEntitySet("new_callers", "new_caller", "new_callerid", "new_name", "new_phone", "new_extension", "new_email")
	srv.SetColumnType("new_callers", "new_extension", "Edm.Int32")
	if _, err := c.CheckAuth(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	targets := c.CheckTargets()
	err = c.CheckEntity(ctxT(t, 5*time.Second), targets[0])
	var ce *dataverse.ColumnError
	if !errors.As(err, &ce) || !ce.NotText || ce.Entity != "new_caller" || !slices.Equal(ce.Columns, []string{"new_extension"}) {
		t.Fatalf("check new_caller: %v; want new_extension named as not text", err)
	}
	if !strings.Contains(err.Error(), "new_extension of new_caller is not a text column") {
		t.Fatalf("message %q", err)
	}
	if err := c.CheckEntity(ctxT(t, 5*time.Second), targets[1]); err != nil {
		t.Fatalf("check contact: %v", err)
	}
	// With text columns only, the check passes and has run each lookup.
	srv.SetColumnType("new_callers", "new_extension", "")
	srv.ResetLog()
	if err := c.CheckEntity(ctxT(t, 5*time.Second), targets[0]); err != nil {
		t.Fatalf("check new_caller with text columns: %v", err)
	}
	var filters []string
	for _, r := range srv.Requests() {
		filters = append(filters, r.Filter)
	}
	if len(filters) != 3 || !strings.Contains(filters[1], "new_extension") || !strings.Contains(filters[2], "new_email") {
		t.Fatalf("check ran %q; want the read, the phone lookup and the email lookup", filters)
	}
}

// TestClient_MissingColumn: Dataverse answers a column that does not exist
// with 400 and the OData parser's code 0x0 ("Could not find a property
// named …"), not 0x80060888. screenpopd check must still name the column,
// and a lookup must say which setting to fix, and not retry.
func TestClient_MissingColumn(t *testing.T) {
	lookup, err := dataverse.ParseLookup("contact:telephone1,mobilefone;account:telephone1")
	if err != nil {
		t.Fatal(err)
	}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Phone, cfg.Email = lookup, []dataverse.EntityColumns{} })
	if _, err := c.CheckAuth(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	targets := c.CheckTargets()
	err = c.CheckEntity(ctxT(t, 5*time.Second), targets[0])
	var ce *dataverse.ColumnError
	if !errors.As(err, &ce) || !slices.Equal(ce.Columns, []string{"mobilefone"}) {
		t.Fatalf("check contact: %v; want column mobilefone named", err)
	}
	if err := c.CheckEntity(ctxT(t, 5*time.Second), targets[1]); err != nil {
		t.Fatalf("check account: %v", err)
	}
	srv.ResetLog()
	_, err = c.Lookup(ctxT(t, 5*time.Second), phone("+13175550240"))
	var ae *dataverse.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "0x0" || ae.Entity != "contact" || !strings.Contains(err.Error(), "SCREENPOP_LOOKUP_PHONE") {
		t.Fatalf("lookup: %v; want the 400 naming the lookup setting to check", err)
	}
	if n := srv.HTTPRequests(); n != 1 {
		t.Fatalf("%d requests, want 1 (a missing column is not retried)", n)
	}
}

package dataverse_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// counterValue is the value of the series of the counter name with labels
// (0 if absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestClient_FoundAnswerReplacesTheCachedMiss: a lookup that passed over a
// cached not-found (Key.Since: the caller was created since) and found the
// record replaces the miss. Once the found answer's TTL is over, the next
// lookup reads Dynamics again; the older miss, whose TTL may be the longer
// one (SCREENPOP_NEGATIVE_CACHE_TTL > SCREENPOP_CACHE_TTL is a valid
// setting), must not come back and pop a create form for a caller who has a
// record.
func TestClient_FoundAnswerReplacesTheCachedMiss(t *testing.T) {
	const num = "+13175550871"
	clk := &fakeClock{t: time.Now()}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Now = clk.Now
		cfg.CacheTTL, cfg.NegativeCacheTTL = 10*time.Second, time.Minute
	})
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(num)); err != nil || len(recs) != 0 {
		t.Fatalf("before the record: %+v, %v", recs, err)
	}
	id := srv.AddContact(dataversetest.Contact{FirstName: "New", LastName: "Caller", Telephone1: num})
	clk.Add(2 * time.Second)
	since := clk.Now().Add(-time.Second)
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), bridge.Key{Kind: bridge.KeyPhone, Value: num, Since: since}); err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("lookup since the record was saved: %+v, %v; want %s", recs, err, id)
	}
	clk.Add(11 * time.Second) // the found answer expired, the older miss would not have
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(num)); err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("after the found answer's TTL: %+v, %v; want %s (the replaced miss came back)", recs, err, id)
	}
}

// TestClient_AnswerIsAsOldAsItsRequest: an answer is stored as read when
// its lookup began (client.go, fly), so a lookup that outlived its first
// caller's deadline is no answer for a later leg whose Key.Since falls
// while it was on its way: that leg asks Dynamics again.
func TestClient_AnswerIsAsOldAsItsRequest(t *testing.T) {
	for _, found := range []bool{true, false} {
		t.Run(fmt.Sprintf("found=%v", found), func(t *testing.T) {
			num := "+13175550872"
			clk := &fakeClock{t: time.Now()}
			srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = clk.Now })
			if found {
				srv.AddContact(dataversetest.Contact{FirstName: "Slow", LastName: "Answer", Telephone1: num})
			}
			warm(t, srv, c)
			start := clk.Now()
			srv.SetLatency(300 * time.Millisecond)
			if _, err := c.Lookup(ctxT(t, 50*time.Millisecond), phone(num)); err == nil {
				t.Fatal("lookup answered before its 50 ms deadline despite 300 ms latency")
			}
			clk.Add(10 * time.Second) // the answer arrives 10 s (on the client's clock) after it was asked for
			deadline := time.Now().Add(3 * time.Second)
			for c.Status().(dataverse.Status).LookupsInFlight > 0 {
				if time.Now().After(deadline) {
					t.Fatal("background lookup never finished")
				}
				time.Sleep(10 * time.Millisecond)
			}
			srv.SetLatency(0)
			srv.ResetLog()
			key := bridge.Key{Kind: bridge.KeyPhone, Value: num, Since: start.Add(5 * time.Second)}
			if _, err := c.Lookup(ctxT(t, 5*time.Second), key); err != nil {
				t.Fatal(err)
			}
			if n := srv.HTTPRequests(); n == 0 {
				t.Fatalf("a lookup since %v answered from an answer asked for at %v (stored as if read when it arrived)", key.Since.Sub(start), time.Duration(0))
			}
		})
	}
}

// TestClient_StaleRecordsWhenTheFreshLookupFails: docs on Lookup: records
// found before Key.Since are the answer should the fresh lookup fail, rather
// than the search fallback.
func TestClient_StaleRecordsWhenTheFreshLookupFails(t *testing.T) {
	const num = "+13175550873"
	clk := &fakeClock{t: time.Now()}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Now = clk.Now })
	id := srv.AddContact(dataversetest.Contact{FirstName: "Known", LastName: "Caller", Telephone1: num})
	if recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(num)); err != nil || len(recs) != 1 {
		t.Fatalf("first lookup: %+v, %v", recs, err)
	}
	clk.Add(2 * time.Second)
	srv.FailNext(1, 400) // a definite failure: not retried
	key := bridge.Key{Kind: bridge.KeyPhone, Value: num, Since: clk.Now().Add(-time.Second)}
	recs, err := c.Lookup(ctxT(t, 5*time.Second), key)
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("fresh lookup failed: got %+v, %v; want the records found before (%s)", recs, err, id)
	}
	if srv.HTTPRequests() == 0 {
		t.Fatal("no fresh lookup was sent")
	}
}

// TestClient_MissingAppUserOpensTheBreaker: docs/operations.md 7.2: a
// missing privilege on one table does not open the breaker; "a missing
// application user does" (403 0x80072560: every request is refused).
func TestClient_MissingAppUserOpensTheBreaker(t *testing.T) {
	const failures = 5
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.BreakerFailures = failures })
	warm(t, srv, c)
	srv.DisableAppUser(true)
	for i := range failures {
		_, _ = c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555%04d", 3200+i)))
	}
	if st := c.Status().(dataverse.Status); st.Breaker != "open" {
		t.Fatalf("breaker %q after %d lookups refused for a missing application user; want open", st.Breaker, failures)
	}
}

// TestClient_RetriesAreCountedOnce: retries_total counts the retries made:
// a lookup failing 503 on each of its MaxAttempts attempts made
// MaxAttempts-1 retries (no backoff after the last attempt).
func TestClient_RetriesAreCountedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Registerer = reg
		cfg.MaxAttempts = 3
	})
	warm(t, srv, c)
	srv.FailNext(3, 503)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550874")); err == nil {
		t.Fatal("lookup succeeded through three 503s")
	}
	if got := counterValue(t, reg, "screenpop_dataverse_retries_total", map[string]string{"reason": "server"}); got != 2 {
		t.Fatalf("retries_total{reason=server} = %v after 3 attempts; want 2", got)
	}
}

// TestClient_RetriesEvery5xxAnd408: docs/dataverse.md: "retries 5xx, 408".
func TestClient_RetriesEvery5xxAnd408(t *testing.T) {
	for _, status := range []int{500, 502, 408} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv, c := MustEnv(t, nil)
			id := srv.AddContact(dataversetest.Contact{FirstName: "Re", LastName: "Try", Telephone1: "+13175550875"})
			warm(t, srv, c)
			srv.FailNext(1, status)
			recs, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550875"))
			if err != nil || len(recs) != 1 || recs[0].ID != id {
				t.Fatalf("after one %d: %+v, %v; want %s (retried)", status, recs, err, id)
			}
		})
	}
}

// TestClient_RefusedBatchPartIsCounted: a query refused inside a batch
// answered 200 shows in requests_total by its own code (docs/operations.md
// 7.2: screenpop_dataverse_requests_total{code="403"}).
func TestClient_RefusedBatchPartIsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Registerer = reg })
	warm(t, srv, c)
	srv.DenyRead("contacts", true)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550876")); err == nil {
		t.Fatal("lookup succeeded without read on contacts")
	}
	if got := counterValue(t, reg, "screenpop_dataverse_requests_total", map[string]string{"op": "batch_part", "code": "403"}); got != 1 {
		t.Fatalf("requests_total{op=batch_part,code=403} = %v; want 1", got)
	}
}

// TestClient_OneFreshTokenPer401: docs/dataverse.md: "a 401 triggers one
// fresh token": a Dataverse that keeps refusing is not asked for a token
// on every attempt.
func TestClient_OneFreshTokenPer401(t *testing.T) {
	srv, c := MustEnv(t, nil)
	warm(t, srv, c)
	tokens := srv.TokenRequests()
	srv.FailNext(10, 401)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550877")); err == nil {
		t.Fatal("lookup succeeded through 401s")
	}
	if got := srv.TokenRequests() - tokens; got != 1 {
		t.Fatalf("%d token requests after repeated 401s; want 1", got)
	}
	if got := srv.HTTPRequests(); got != 2 {
		t.Fatalf("%d API requests; want 2 (the first and one with a fresh token)", got)
	}
}

// TestClient_RecordURLEscapesTheAppID: DATAVERSE_APP_ID is not checked to
// be a GUID (cmd/screenpopd only lower-cases it); an admin who gives the
// app's unique name or pastes a URL fragment must not add query parameters
// (etn, id) to every record URL.
func TestClient_RecordURLEscapesTheAppID(t *testing.T) {
	c, err := dataverse.New(dataverse.Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c", ClientSecret: "s", AppID: "sales hub&etn=systemuser"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const want = "https://contoso.crm.dynamics.com/main.aspx?appid=sales%20hub%26etn%3Dsystemuser&pagetype=entityrecord&etn=contact&id=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	if got := c.RecordURL("contact", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"); got != want {
		t.Fatalf("RecordURL = %q, want %q", got, want)
	}
}

// TestClient_PlusZeroIsNotE164: "+0…" is no E.164 number (no country code
// starts with 0): it is an invalid identifier at once (lookups_total
// {result="invalid"}), not a lookup that fails in the background.
func TestClient_PlusZeroIsNotE164(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Registerer = reg })
	_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+01234567890"))
	if !errors.Is(err, dataverse.ErrInvalidKey) {
		t.Fatalf("err %v, want ErrInvalidKey", err)
	}
	// The longest address SMTP allows is 320 characters; beyond, not an
	// email (and not a 4 KB $filter).
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 252) + ".com"
	if _, err := c.Lookup(ctxT(t, 5*time.Second), email(long)); !errors.Is(err, dataverse.ErrInvalidKey) {
		t.Fatalf("email of %d characters: err %v, want ErrInvalidKey", len(long), err)
	}
	if got := counterValue(t, reg, "screenpop_dataverse_lookups_total", map[string]string{"kind": "phone", "result": "invalid"}); got != 1 {
		t.Fatalf("lookups_total{result=invalid} = %v, want 1", got)
	}
}

// TestClient_AttemptsCountedAreAttemptsMade: a lookup let through before
// the breaker opened sends nothing more (docs/dataverse.md), and its error
// is the failure of the one attempt it made: it must not read "after 5
// attempts" to the on-call engineer when a single request was sent.
func TestClient_AttemptsCountedAreAttemptsMade(t *testing.T) {
	// The second lookup must open the breaker within the first one's
	// backoff (50 to 100 ms): on a loaded machine it may not, and the
	// first one's retry goes out. Such a round proves nothing either
	// way and is run again.
	for round := 1; ; round++ {
		sent, err := attemptsRound(t)
		if sent == 3 && round < 5 {
			continue
		}
		if sent != 2 {
			t.Fatalf("%d batches sent, want 2 (one per lookup)", sent)
		}
		if err == nil {
			t.Fatal("first lookup succeeded")
		}
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("first lookup's error %q: want its attempt's failure (503), not what stopped its retries", err)
		}
		if !strings.Contains(err.Error(), "after 1 attempt:") {
			t.Errorf("first lookup's error %q: want after 1 attempt, the one it made", err)
		}
		return
	}
}

// attemptsRound is one round of TestClient_AttemptsCountedAreAttemptsMade:
// the batches sent and the first lookup's error.
func attemptsRound(t *testing.T) (int, error) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.BreakerFailures, cfg.BreakerCooldown = 1, time.Minute
		cfg.MaxAttempts = 5
	})
	warm(t, srv, c)
	srv.FailNext(1, 503)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550878"))
		errc <- err
	}()
	if err := srv.AwaitRequests(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	// While the first lookup backs off (at least 50 ms), another fails for
	// good and opens the breaker.
	srv.DisableAppUser(true)
	_, _ = c.Lookup(ctxT(t, 5*time.Second), phone("+13175550879"))
	if st := c.Status().(dataverse.Status); st.Breaker != "open" {
		t.Fatalf("breaker %s, want open", st.Breaker)
	}
	err := <-errc
	sent := 0
	for _, r := range srv.Requests() {
		if r.Path == "$batch" {
			sent++
		}
	}
	return sent, err
}

// TestClient_HalfOpenBreakerLetsOneProbeThrough: docs/dataverse.md: after
// the cooldown "one probe is let through": the lookups arriving while it
// is out fail at once (search pops) instead of all going to a Dataverse
// that may still be down.
func TestClient_HalfOpenBreakerLetsOneProbeThrough(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	srv, c := MustEnv(t, func(cfg *dataverse.Config) {
		cfg.Now = clk.Now
		cfg.BreakerFailures, cfg.BreakerCooldown = 1, time.Second
	})
	warm(t, srv, c)
	srv.DisableAppUser(true)
	_, _ = c.Lookup(ctxT(t, 5*time.Second), phone("+13175550880"))
	if st := c.Status().(dataverse.Status); st.Breaker != "open" {
		t.Fatalf("breaker %s, want open", st.Breaker)
	}
	clk.Add(2 * time.Second) // the cooldown is over
	srv.SetLatency(200 * time.Millisecond)
	srv.ResetLog()
	lookupsAtOnce(t, c, 5, 881)
	if n := srv.Arrived(); n != 1 {
		t.Fatalf("%d requests reached Dataverse from 5 lookups while the breaker was half-open; want 1 (the probe)", n)
	}
}

// TestClient_AfterRetryAfterOneRequestGoesFirst: docs/dataverse.md: once
// the Retry-After has elapsed "one request goes first, and the rest follow
// once it is not throttled again".
func TestClient_AfterRetryAfterOneRequestGoesFirst(t *testing.T) {
	srv, c := MustEnv(t, nil)
	warm(t, srv, c)
	srv.ThrottleNext(1, time.Second)
	c.Prefetch(phone("+13175550890"))
	for deadline := time.Now().Add(2 * time.Second); c.Status().(dataverse.Status).ThrottledUntil == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no Retry-After in effect after a 429")
		}
	}
	srv.SetLatency(200 * time.Millisecond)
	lookupsAtOnce(t, c, 4, 891)
	var after []time.Time
	for _, r := range srv.Requests() {
		if r.Path == "$batch" && r.Status == 200 {
			after = append(after, r.Time)
		}
	}
	if len(after) < 2 {
		t.Fatalf("%d batches answered after the Retry-After, want at least 2: %+v", len(after), srv.Requests())
	}
	slices.SortFunc(after, func(a, b time.Time) int { return a.Compare(b) })
	if gap := after[1].Sub(after[0]); gap < 150*time.Millisecond {
		t.Fatalf("second request %v after the first, which took 200 ms: the backlog did not wait for the probe", gap)
	}
}

// TestClient_SendsTheWebAPIHeaders: each Web API request carries the
// headers Microsoft documents for it (reference/dataverse.md §2: Accept,
// OData-MaxVersion, OData-Version, If-None-Match: null), and a lookup's
// $batch asks for odata.continue-on-error. The emulator does not insist on
// them, so the test reads them on the wire in front of it.
func TestClient_SendsTheWebAPIHeaders(t *testing.T) {
	srv := dataversetest.New(dataversetest.Config{})
	defer srv.Close()
	var mu sync.Mutex
	var seen []http.Header
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/data/") {
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
		}
		srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	srv.SetURL(hs.URL)
	ec := srv.Config()
	c, err := dataverse.New(dataverse.Config{
		URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: srv.TokenURL(), AppID: appID,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550895")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("%d API requests, want 1", len(seen))
	}
	for k, want := range map[string]string{
		"Accept": "application/json", "Odata-Maxversion": "4.0", "Odata-Version": "4.0",
		"If-None-Match": "null", "Prefer": "odata.continue-on-error",
	} {
		if got := seen[0].Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

// TestClient_RedirectErrorCarriesNoQuery: a redirected query names only
// the redirect's host: its Location echoes the request URI, whose $filter
// holds the caller's number (SCREENPOP_SEQUENTIAL_LOOKUPS sends the
// queries as GETs), and the error is logged.
func TestClient_RedirectErrorCarriesNoQuery(t *testing.T) {
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.SequentialLookups = true })
	warm(t, srv, c)
	srv.RedirectAPI(http.StatusFound, "http://localhost:1")
	_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550896"))
	if err == nil {
		t.Fatal("a redirected lookup succeeded")
	}
	if strings.Contains(err.Error(), "3175550896") || strings.Contains(err.Error(), "filter") {
		t.Fatalf("error %q quotes the redirected query", err)
	}
	if !strings.Contains(err.Error(), "http://localhost:1") {
		t.Fatalf("error %q does not name the redirect's host", err)
	}
}

// TestClient_LookupsAreCountedByResult: docs/operations.md:
// lookups_total{kind,result}: hit/negative_hit (cache), match, none.
func TestClient_LookupsAreCountedByResult(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.Registerer = reg })
	srv.AddContact(dataversetest.Contact{FirstName: "Count", LastName: "Ed", Telephone1: "+13175550897"})
	for _, num := range []string{"+13175550897", "+13175550897", "+13175550898", "+13175550898"} {
		if _, err := c.Lookup(ctxT(t, 5*time.Second), phone(num)); err != nil {
			t.Fatal(err)
		}
	}
	for result, want := range map[string]float64{"match": 1, "hit": 1, "none": 1, "negative_hit": 1} {
		if got := counterValue(t, reg, "screenpop_dataverse_lookups_total", map[string]string{"kind": "phone", "result": result}); got != want {
			t.Errorf("lookups_total{kind=phone,result=%s} = %v, want %v", result, got, want)
		}
	}
}

// TestClient_OneCauseOneWarningEvery10s: docs/operations.md, "dataverse
// lookup finished": a failed lookup is "logged once every 10 s per cause".
// The cause is the same 503 whether the lookup made both its attempts or
// found no request slot for its retry; the count of attempts in the error
// must not make it two causes, two warnings within 10 s.
func TestClient_OneCauseOneWarningEvery10s(t *testing.T) {
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	logs := &syncbuf.Buffer{}
	ec := srv.Config()
	c, err := dataverse.New(dataverse.Config{
		URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: srv.TokenURL(), AppID: appID,
		MaxAttempts: 2, Concurrency: 1, QueueTimeout: time.Second,
	}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	warm(t, srv, c)
	// Both attempts answered 503.
	srv.FailNext(2, 503)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550901")); err == nil {
		t.Fatal("lookup succeeded through two 503s")
	}
	// The first attempt answered 503 after 300 ms; meanwhile another
	// lookup waits for the one slot and holds it 3 s, so the retry finds
	// no slot within the 1 s queue timeout.
	srv.ResetLog()
	srv.SetLatency(300 * time.Millisecond)
	srv.FailNext(1, 503)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550902"))
		errc <- err
	}()
	if err := srv.AwaitRequests(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	go func() {
		defer close(held)
		_, _ = c.Lookup(ctxT(t, 10*time.Second), phone("+13175550903"))
	}()
	srv.SetLatency(3 * time.Second)
	err = <-errc
	<-held
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("second lookup: %v, want its 503", err)
	}
	var warnings []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, "dataverse lookup finished") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 {
		t.Errorf("%d warnings for one cause (HTTP 503) within 10 s, want 1:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
}

// lookupsAtOnce runs n lookups at once, of the numbers +1317555<first>
// and up, and waits for them all.
func lookupsAtOnce(t *testing.T, c *dataverse.Client, n, first int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _ = c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+1317555%04d", first+i)))
		})
	}
	wg.Wait()
}

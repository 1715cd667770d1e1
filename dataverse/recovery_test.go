package dataverse_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// failLookups looks up n callers unknown to Dataverse, as calls ringing
// during an outage do, each under the pop deadline; they must all fail.
func failLookups(t *testing.T, c *dataverse.Client, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Lookup(ctxT(t, popDeadline), phone(fmt.Sprintf("+1317555%04d", 3000+i))); err == nil {
			t.Fatal("a lookup during the outage succeeded")
		}
	}
}

// recoveredIn rings calls from the caller whose contact is id, one every
// 50 ms from the moment the outage ended (back), each looked up under the
// pop deadline, and returns how long after back the first one got the
// record (the others popped `search`).
func recoveredIn(t *testing.T, c *dataverse.Client, caller, id string, back time.Time) time.Duration {
	t.Helper()
	var last error
	for time.Since(back) < 45*time.Second {
		recs, err := c.Lookup(ctxT(t, popDeadline), phone(caller))
		if err == nil && len(recs) == 1 && recs[0].ID == id {
			return time.Since(back)
		}
		last = err
		time.Sleep(50 * time.Millisecond) // the next call
	}
	t.Fatalf("no lookup found the record within 45 s of the outage's end; last error: %v", last)
	return 0
}

// TestClient_RecoversWithinThePopDeadline: once Dataverse (or the Entra
// ID token endpoint) is back, a call that rings pops its caller's record,
// not `search`: what holds its lookup back then is no longer the outage
// but the client's own memory of it. An agent expects the pops to be
// right again within the pop deadline of the service coming back. With
// the defaults (breaker: 5 failures, then 30 s open), every lookup for 30
// s after the breaker opened is refused without a request, so calls
// ringing for up to 30 s after the end of an outage pop `search`.
func TestClient_RecoversWithinThePopDeadline(t *testing.T) {
	t.Run("DataverseOutage", func(t *testing.T) {
		srv, c := MustEnv(t, nil) // the defaults: breaker, retries, timeouts
		id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Back", Telephone1: "+13175550400"})
		warm(t, srv, c)
		srv.FailNext(1<<30, http.StatusServiceUnavailable)
		failLookups(t, c, 6)
		if st := c.Status().(dataverse.Status); st.Breaker != "open" {
			t.Fatalf("breaker %q after an outage, want open", st.Breaker)
		}
		srv.FailNext(0, 0)
		back := time.Now()
		took := recoveredIn(t, c, "+13175550400", id, back)
		t.Logf("the record popped again %v after Dataverse came back", took.Round(time.Millisecond))
		if took > popDeadline {
			t.Errorf("calls popped `search` for %v after Dataverse came back (the breaker's open period), want the record within the pop deadline (%v)", took.Round(10*time.Millisecond), popDeadline)
		}
	})
	t.Run("TokenEndpointOutage", func(t *testing.T) {
		// The token expires while Entra ID cannot issue one: lookups fail
		// until it can again.
		srv, c := shortTokens(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			c.Close()
		})
		id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Token", Telephone1: "+13175550401"})
		warm(t, srv, c)
		srv.FailTokenNext(1<<30, http.StatusServiceUnavailable)
		time.Sleep(3 * time.Second) // the token in hand expires
		failLookups(t, c, 6)
		srv.FailTokenNext(0, 0)
		back := time.Now()
		took := recoveredIn(t, c, "+13175550401", id, back)
		t.Logf("the record popped again %v after Entra ID came back", took.Round(time.Millisecond))
		if took > popDeadline {
			t.Errorf("calls popped `search` for %v after Entra ID came back (a failure remembered, the breaker's open period), want the record within the pop deadline (%v)", took.Round(10*time.Millisecond), popDeadline)
		}
	})
	t.Run("TokenEndpointBackRightAfterAProbe", func(t *testing.T) {
		// As above, the outage long enough that Run's own retries are a
		// minute apart: what asks Entra ID is the breaker's probe. The
		// endpoint comes back just after one was refused.
		srv, c := shortTokens(t)
		t.Cleanup(func() { c.Close() })
		id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Probe", Telephone1: "+13175550403"})
		warm(t, srv, c)
		srv.FailTokenNext(1<<30, http.StatusServiceUnavailable)
		time.Sleep(3 * time.Second) // the token in hand expires
		failLookups(t, c, 6)
		asked := srv.TokenRequests()
		for srv.TokenRequests() == asked {
			_, _ = c.Lookup(ctxT(t, popDeadline), phone("+13175550498"))
			time.Sleep(50 * time.Millisecond) // the next call
		}
		srv.FailTokenNext(0, 0)
		back := time.Now()
		took := recoveredIn(t, c, "+13175550403", id, back)
		t.Logf("the record popped again %v after Entra ID came back", took.Round(time.Millisecond))
		if took > popDeadline {
			t.Errorf("calls popped `search` for %v after Entra ID came back (the token failure remembered), want the record within the pop deadline (%v)", took.Round(10*time.Millisecond), popDeadline)
		}
	})
	t.Run("LongThrottle", func(t *testing.T) {
		// Dataverse's service protection asks for a wait longer than a
		// lookup's FlightTimeout (60 s; it may ask for up to 5 minutes):
		// each lookup meanwhile fails at once. Once the wait is over, a
		// call must pop its record.
		srv, c := MustEnv(t, func(cfg *dataverse.Config) { cfg.FlightTimeout = time.Second })
		id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Throttle", Telephone1: "+13175550402"})
		warm(t, srv, c)
		srv.ThrottleNext(1, 3*time.Second)
		if _, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550499")); err == nil {
			t.Fatal("a throttled lookup succeeded")
		}
		failLookups(t, c, 6)
		until := c.Status().(dataverse.Status).ThrottledUntil
		if until == nil {
			t.Fatal("no Retry-After held")
		}
		time.Sleep(time.Until(*until))
		back := time.Now()
		took := recoveredIn(t, c, "+13175550402", id, back)
		t.Logf("the record popped again %v after the Retry-After ended", took.Round(time.Millisecond))
		if took > popDeadline {
			t.Errorf("calls popped `search` for %v after Dataverse's Retry-After ended, want the record within the pop deadline (%v)", took.Round(10*time.Millisecond), popDeadline)
		}
	})
}

// shortTokens is an emulator whose tokens live 3 s and a client of it
// with the defaults (the caller closes it, or runs it).
func shortTokens(t *testing.T) (*dataversetest.Server, *dataverse.Client) {
	t.Helper()
	srv := dataversetest.New(dataversetest.Config{TokenLifetime: 3 * time.Second})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ec := srv.Config()
	c, err := dataverse.New(dataverse.Config{URL: srv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: srv.TokenURL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

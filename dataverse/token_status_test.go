package dataverse_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// /status's dataverse.token_error is documented as "empty once a token is
// obtained". A token is also obtained by a lookup (the first one after an
// Entra ID outage, while Run waits out its backoff): /status then says
// ready, with a token, and still gives the outage as why there is none,
// until Run's next attempt (up to a minute later).
func TestClient_StatusTokenErrorClearedByALookupsToken(t *testing.T) {
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.FailTokenNext(3, 503)
	var skew atomic.Int64 // a clock that can skip the 5 s failure backoff of lookups
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ec := srv.Config()
	c, err := dataverse.New(dataverse.Config{URL: srv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: srv.TokenURL(), Now: now}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Run's third failure (after 1 s and 2 s of backoff); it then waits 4 s.
	deadline := time.Now().Add(10 * time.Second)
	for srv.TokenRequests() < 3 || c.Status().(dataverse.Status).TokenError == "" {
		if time.Now().After(deadline) {
			t.Fatal("no third token request in 10s")
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	skew.Store(int64(6 * time.Second))
	if _, err := c.Lookup(context.Background(), bridge.Key{Kind: bridge.KeyPhone, Value: "+13175550100"}); err != nil {
		t.Fatal(err)
	}
	st := c.Status().(dataverse.Status)
	if st.Ready && st.TokenExpiresAt != nil && st.TokenError != "" {
		t.Errorf("status ready with a token until %v, and token_error %q", st.TokenExpiresAt, st.TokenError)
	}
}

package dataverse_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// TestClient_TimeoutsCarryNoPII: a request that times out fails with Go's
// *url.Error, whose text quotes the URL and so the $filter with the
// caller's number. Neither the error nor any log line may carry it.
func TestClient_TimeoutsCarryNoPII(t *testing.T) {
	srv := dataversetest.New(dataversetest.Config{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ec := srv.Config()
	logs := &syncbuf.Buffer{}
	c, err := dataverse.New(dataverse.Config{
		URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: srv.TokenURL(),
		SequentialLookups: true, RequestTimeout: 50 * time.Millisecond, MaxAttempts: 2, FlightTimeout: 2 * time.Second,
	}, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	warm(t, srv, c)
	srv.SetLatency(500 * time.Millisecond)
	_, err = c.Lookup(ctxT(t, 5*time.Second), phone("+13175550166"))
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

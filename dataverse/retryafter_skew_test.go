package dataverse

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestClient_RetryAfterDateIsReadOnTheServersClock: a Retry-After given as
// an HTTP date (RFC 9110 allows it; a gateway or proxy in front of
// Dataverse may answer so) is a moment on the answering server's clock.
// Read against this host's clock, a server 3 minutes ahead (its Date
// header says so) that asks for 2 s holds every lookup of the client for
// 3 min 2 s: each call in that time pops search instead of its record;
// a server 3 minutes behind is not waited for at all, and the client
// keeps asking a Dataverse that is throttling it. It must be read against
// the answer's own Date.
func TestClient_RetryAfterDateIsReadOnTheServersClock(t *testing.T) {
	for _, skew := range []time.Duration{3 * time.Minute, -3 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			serverNow := time.Now().Add(skew).UTC()
			tr := &answerTransport{status: http.StatusTooManyRequests, header: http.Header{
				"Content-Type": {"application/json"},
				"Date":         {serverNow.Format(http.TimeFormat)},
				"Retry-After":  {serverNow.Add(2 * time.Second).Format(http.TimeFormat)},
			}, body: []byte(`{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}`)}
			c := answerClient(t, tr) // one attempt
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := c.batch(ctx, c.cfg.Phone, []string{"+13175550123"}, false); err == nil {
				t.Fatal("a 429 answered no error")
			}
			// Date has whole seconds: the wait is 1 to 3 s.
			if c.gate.get().IsZero() {
				t.Fatalf("lookups not held at all after a 429 asking for 2 s from a server whose clock is %v off this host's (want 1 to 3 s)", skew)
			}
			if held := time.Until(c.gate.get()); held > 5*time.Second || held < 500*time.Millisecond {
				t.Fatalf("lookups held for %v after a 429 asking for 2 s from a server whose clock is %v off this host's (want 1 to 3 s)", held.Round(time.Second), skew)
			}
		})
	}
}

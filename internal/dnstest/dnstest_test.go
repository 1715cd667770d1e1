package dnstest

import (
	"context"
	"net"
	"testing"
	"time"
)

// A lookup the test started is still in flight when the test ends (the
// daemon's, its caller gone): the cleanup sets net.DefaultResolver back
// meanwhile. Under the race detector (make test) the server's dialler must
// not read that variable; it did, through net.Dialer, and `go test -race`
// failed the test (notifications' TestClient_DNS in CI).
func TestStart_ALookupOutlivingItsTestIsNoRace(t *testing.T) {
	done := make(chan error, 1)
	t.Run("the test", func(t *testing.T) {
		s := Start(t)
		s.Set(Slow, "slow.example.test")
		s.SetDelay(300 * time.Millisecond)
		r := net.DefaultResolver
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := r.LookupHost(ctx, "slow.example.test")
			done <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			n := s.queries
			s.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lookup's question did not reach the server within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The test ends with the answer still delayed.
	})
	select {
	case err := <-done:
		// The server stopped before its delayed answer: no address.
		if err == nil {
			t.Error("the lookup resolved from a server stopped before it answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lookup did not end within 10s of its 2s deadline")
	}
}

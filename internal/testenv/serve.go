package testenv

import (
	"context"
	"net"
	"testing"
	"time"
)

// Serve runs a server's Run on a fresh loopback listener until the test
// ends, and returns its address (host:port). The cleanup stops it and
// fails the test if Run returned an error or did not return within 15 s;
// register what the server uses (its bus) before calling Serve, so that
// the server stops first.
func Serve(tb testing.TB, run func(context.Context, net.Listener) error) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln) }()
	tb.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			tb.Error("the server's Run did not return within 15s of its stop")
		}
	})
	return ln.Addr().String()
}

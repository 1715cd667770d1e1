package dataverse

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestWithoutLocalAddr_LeavesTheSharedErrorAlone: over HTTP/2 every
// request on a connection that fails gets the same error value, so the
// flights of several callers scrub it at once. withoutLocalAddr must give
// each its own text without the local port (one warning per cause, not
// per connection), and change nothing in the error they share: writing
// into it was a data race between flights, and between a flight and the
// log formatting another's.
func TestWithoutLocalAddr_LeavesTheSharedErrorAlone(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 51234}
	remote := &net.TCPAddr{IP: net.IPv4(20, 1, 2, 3), Port: 443}
	shared := &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: remote, Err: syscall.ECONNRESET}
	err := &url.Error{Op: "Post", URL: "https://contoso.crm4.dynamics.com/api/data/v9.2/$batch", Err: shared}

	var wg sync.WaitGroup
	texts := make([]string, 8)
	for i := range texts {
		wg.Go(func() {
			got := withoutLocalAddr(err)
			texts[i] = got.Error()
			if !errors.Is(got, syscall.ECONNRESET) || !errors.As(got, new(*net.OpError)) {
				t.Errorf("the scrubbed error lost its chain: %v", got)
			}
			_ = err.Error() // another flight's log line, formatting the shared error
		})
	}
	wg.Wait()
	for _, s := range texts {
		if strings.Contains(s, "10.0.0.5") || strings.Contains(s, "51234") || !strings.Contains(s, "20.1.2.3:443") {
			t.Errorf("scrubbed text %q: want the remote address and not the local one", s)
		}
	}
	if shared.Source != local {
		t.Errorf("the shared error was changed: Source %v, want %v", shared.Source, local)
	}
}

package dataverse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// The circuit breaker as operations.md shows it to the on-call engineer:
// one warning when it opens, /status → dataverse.breaker one of closed,
// open, half-open, and one info line when it closes again; the failed
// lookups' warning (one per cause every 10 s) carries no caller number.
func TestClient_BreakerAsTheRunbookShowsIt(t *testing.T) {
	srv, c, logs := loggedEnv(t, zerolog.InfoLevel, func(cfg *dataverse.Config) {
		cfg.BreakerFailures, cfg.BreakerCooldown, cfg.MaxAttempts = 2, 100*time.Millisecond, 1
	})
	srv.FailNext(2, http.StatusServiceUnavailable)
	for _, n := range []string{"+13175550171", "+13175550172"} {
		if _, err := c.Lookup(ctxT(t, 5*time.Second), phone(n)); err == nil {
			t.Fatal("lookup against a failing Dataverse succeeded")
		}
	}
	for i := range 3 {
		if _, err := c.Lookup(ctxT(t, 5*time.Second), phone("+1317555018"+string(rune('0'+i)))); !errors.Is(err, dataverse.ErrCircuitOpen) {
			t.Fatalf("lookup with the breaker open: %v, want ErrCircuitOpen", err)
		}
	}
	// The probe after the cooldown, slow: the breaker is half-open meanwhile.
	srv.SetLatency(500 * time.Millisecond)
	probed := make(chan error, 1)
	deadline := time.Now().Add(5 * time.Second)
	go func() {
		for {
			_, err := c.Lookup(ctxT(t, 5*time.Second), phone("+13175550190"))
			if !errors.Is(err, dataverse.ErrCircuitOpen) || time.Now().After(deadline) {
				probed <- err
				return
			}
			time.Sleep(10 * time.Millisecond) // poll interval while the breaker cools down
		}
	}()
	var seen []string
	for len(seen) == 0 || seen[len(seen)-1] != "closed" {
		st := c.Status().(dataverse.Status).Breaker
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker states %v, never closed again", seen)
		}
		time.Sleep(5 * time.Millisecond) // poll interval of the status
	}
	if err := <-probed; err != nil {
		t.Fatalf("probe: %v", err)
	}
	documented := map[string]bool{"closed": true, "open": true, "half-open": true}
	for _, st := range seen {
		if !documented[st] {
			t.Errorf("/status dataverse.breaker was %q; operations.md documents closed, open, half-open (states seen %v)", st, seen)
		}
	}
	out := logs.String()
	if n := strings.Count(out, `"dataverse circuit breaker open"`); n != 1 {
		t.Errorf("%d breaker-open lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `"dataverse circuit breaker closed"`); n != 1 {
		t.Errorf("%d breaker-closed lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `"dataverse lookup finished"`); n != 1 {
		t.Errorf("%d lookup warnings, want one for the two failed lookups of one cause, none for the refused ones:\n%s", n, out)
	}
	for _, pii := range []string{"555017", "555018", "555019"} {
		if strings.Contains(out, pii) {
			t.Errorf("a log line carries the number %q:\n%s", pii, out)
		}
	}
}

// A Dataverse that fails every other request (one bad node behind its
// load balancer, a flapping gateway) never fails five lookups in a row, so
// the breaker stays closed and its line does not stand for the failures:
// each was a warning, hundreds a second at a contact centre's rate. They
// are one warning per cause every 10 s, with held_back counting the
// others; each failed lookup still has its line at debug, and
// lookups_total{result="error"} counts every one.
func TestClient_PartialOutageDoesNotFloodTheLog(t *testing.T) {
	srv, c, logs := loggedEnv(t, zerolog.DebugLevel, func(cfg *dataverse.Config) {
		cfg.MaxAttempts = 1
	})
	const failures = 20
	for i := range 2 * failures {
		if i%2 == 0 {
			srv.FailNext(1, http.StatusServiceUnavailable)
		}
		_, err := c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+131755502%02d", i)))
		if (err != nil) != (i%2 == 0) {
			t.Fatalf("lookup %d: %v; want every other one to fail", i, err)
		}
	}
	var warn, debug int
	for _, l := range logLines(t, logs) {
		if l["message"] != "dataverse lookup finished" || l["result"] != "error" {
			continue
		}
		switch l["level"] {
		case "warn":
			warn++
		case "debug":
			debug++
		}
	}
	if warn != 1 || warn+debug != failures {
		t.Fatalf("%d warnings and %d debug lines for %d failed lookups of one cause; want 1 warning, the rest at debug:\n%s", warn, debug, failures, logs.String())
	}
	if c.Status().(dataverse.Status).Breaker != "closed" {
		t.Fatal("the breaker opened: the test proves nothing")
	}
}

// The same partial outage where the failing node resets connections (a
// gateway or load balancer dropping them): a network error's text names
// the connection's local address, whose port differs every time, yet it
// is one cause, with one warning every 10 s; as a cause each, every
// failure was a warning again, up to the limiter's 64 causes per 10 s.
func TestClient_ResetConnectionsAreOneCause(t *testing.T) {
	var reset atomic.Bool
	_, c, logs := loggedEnv(t, zerolog.DebugLevel, func(cfg *dataverse.Config) {
		host := strings.TrimPrefix(cfg.URL, "http://")
		px := resettingProxy(t, host, &reset)
		cfg.MaxAttempts = 1
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			DisableKeepAlives: true, // a connection per lookup
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == host { // Dataverse, not Entra ID
					addr = px
				}
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}}
	})
	const failures = 10
	for i := range 2 * failures {
		reset.Store(i%2 == 0)
		_, err := c.Lookup(ctxT(t, 5*time.Second), phone(fmt.Sprintf("+131755503%02d", i)))
		if (err != nil) != (i%2 == 0) {
			t.Fatalf("lookup %d: %v; want every other one to fail", i, err)
		}
	}
	var warn []string
	for _, l := range logLines(t, logs) {
		if l["message"] == "dataverse lookup finished" && l["level"] == "warn" {
			warn = append(warn, fmt.Sprint(l["error"]))
		}
	}
	if len(warn) != 1 {
		t.Fatalf("%d warnings for %d lookups failed by a reset connection, want 1:\n%s", len(warn), failures, strings.Join(warn, "\n"))
	}
}

// resettingProxy relays TCP connections to addr, but resets (RST) those
// accepted while reset is set once their request has come whole.
func resettingProxy(t *testing.T, addr string, reset *atomic.Bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if reset.Load() {
				if req, err := http.ReadRequest(bufio.NewReader(in)); err == nil {
					_, _ = io.Copy(io.Discard, req.Body)
				}
				_ = in.(*net.TCPConn).SetLinger(0)
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return ln.Addr().String()
}

// logLines decodes a client's log.
func logLines(t *testing.T, logs *syncbuf.Buffer) []map[string]any {
	t.Helper()
	lines, err := logs.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

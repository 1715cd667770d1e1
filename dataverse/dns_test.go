package dataverse_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/dnstest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

const (
	dvHost    = "dv.example.test"
	loginHost = "login.example.test"
)

// dnsEnv starts the Dataverse emulator, named dv.example.test (its token
// endpoint login.example.test) through the test's DNS server, and a client
// of it whose log goes to the returned buffer. tokenLife > 0 makes short
// tokens.
func dnsEnv(t *testing.T, tokenLife time.Duration) (*dnstest.Server, *dataversetest.Server, *dataverse.Client, *syncbuf.Buffer) {
	t.Helper()
	dns := dnstest.Start(t)
	dns.Set(dnstest.OK, dvHost, loginHost)
	srv := dataversetest.New(dataversetest.Config{TokenLifetime: tokenLife})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	port := srv.URL()[strings.LastIndexByte(srv.URL(), ':')+1:]
	srv.SetURL("http://" + dvHost + ":" + port)
	ec := srv.Config()
	var logs syncbuf.Buffer
	c, err := dataverse.New(dataverse.Config{
		URL: srv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: "http://" + loginHost + ":" + port + "/" + ec.TenantID + "/oauth2/v2.0/token",
	}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return dns, srv, c, &logs
}

// warnings returns the "dataverse lookup finished" warnings logged so far.
func lookupWarnings(t *testing.T, logs *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["level"] == "warn" && m["message"] == "dataverse lookup finished" {
			out = append(out, m)
		}
	}
	return out
}

// TestClient_DNS: the org host's or the login host's name does not resolve
// for a while (NXDOMAIN, SERVFAIL, the host's resolver down), or resolves
// slowly. Lookups fail (pops become search) with an error that says it is
// DNS, name the host; once the name resolves again the record pops within
// the pop deadline (nothing remembers the failure); a slow resolver holds
// no lookup past its caller's deadline.
func TestClient_DNS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		host   string
		answer dnstest.Answer
		says   string
	}{
		{"OrgHostNXDOMAIN", dvHost, dnstest.NXDomain, "lookup " + dvHost},
		{"OrgHostSERVFAIL", dvHost, dnstest.ServFail, "lookup " + dvHost},
		{"LoginHostNXDOMAIN", loginHost, dnstest.NXDomain, "lookup " + loginHost},
		{"LoginHostSERVFAIL", loginHost, dnstest.ServFail, "lookup " + loginHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns, srv, c, logs := dnsEnv(t, 3*time.Second)
			id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Dns", Telephone1: "+13175550410"})
			warm(t, srv, c)
			c.CloseIdleConnectionsForTest()
			dns.Set(tc.answer, tc.host)
			if tc.host == loginHost {
				time.Sleep(3 * time.Second) // the token in hand expires
			}
			_, err := c.Lookup(ctxT(t, popDeadline), phone("+13175552999"))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("lookup while %s does not resolve: %v, want an error saying %q", tc.host, err, tc.says)
			}
			failLookups(t, c, 6)
			w := lookupWarnings(t, logs)
			if len(w) == 0 || !strings.Contains(w[0]["error"].(string), tc.says) {
				t.Fatalf("warnings %v, want one whose error says %q", w, tc.says)
			}
			t.Logf("on-call reads: %s", w[0]["error"])
			dns.Set(dnstest.OK, tc.host)
			back := time.Now()
			took := recoveredIn(t, c, "+13175550410", id, back)
			t.Logf("the record popped again %v after DNS came back", took.Round(time.Millisecond))
			if took > popDeadline {
				t.Errorf("calls popped `search` for %v after the name resolved again, want the record within the pop deadline (%v)", took.Round(10*time.Millisecond), popDeadline)
			}
		})
	}
	t.Run("SlowResolver", func(t *testing.T) {
		// No connection kept (the idle one closed): the next one waits for
		// DNS, 3 s. The lookup gives up at the caller's deadline (the pop
		// is search), and its flight fills the cache for the next call.
		dns, srv, c, _ := dnsEnv(t, 0)
		id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Slow", Telephone1: "+13175550411"})
		warm(t, srv, c)
		c.CloseIdleConnectionsForTest()
		dns.SetDelay(3 * time.Second)
		dns.Set(dnstest.Slow, dvHost)
		start := time.Now()
		_, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550411"))
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || took > popDeadline+200*time.Millisecond {
			t.Fatalf("lookup behind a 3 s resolver: %v after %v, want the deadline's error at the pop deadline (%v)", err, took.Round(time.Millisecond), popDeadline)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			recs, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550411"))
			if err == nil && len(recs) == 1 && recs[0].ID == id {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the slow lookup never filled the cache: %v %v", recs, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	for _, expired := range []bool{false, true} {
		name := "ResolverDownWarnsOncePerCause"
		if expired {
			name = "ResolverDownTokenExpiredWarnsOncePerCause"
		}
		t.Run(name, func(t *testing.T) {
			// The host's resolver (a stub such as systemd-resolved on
			// 127.0.0.53) is not running: each query is refused at once,
			// and Go's error names the query's own local port, new each
			// time. The warning is once every 10 s per cause
			// (docs/operations.md), whether the org host's name fails or,
			// the token expired, the login host's.
			life := time.Duration(0) // an hour: it outlasts the test
			if expired {
				life = 3 * time.Second
			}
			dns, srv, c, logs := dnsEnv(t, life)
			warm(t, srv, c)
			c.CloseIdleConnectionsForTest()
			if expired {
				time.Sleep(3 * time.Second) // the token in hand expires
			}
			dns.Down(true)
			end := time.Now().Add(8 * time.Second)
			for time.Now().Before(end) {
				_, _ = c.Lookup(ctxT(t, popDeadline), phone("+13175552999"))
				time.Sleep(50 * time.Millisecond)
			}
			w := lookupWarnings(t, logs)
			for _, l := range w {
				t.Logf("warn: %s", l["error"])
			}
			if len(w) != 1 {
				t.Errorf("%d warnings `dataverse lookup finished` in 8 s of one DNS failure, want 1 (once every 10 s per cause)", len(w))
			}
			if len(w) > 0 && !strings.Contains(w[0]["error"].(string), "lookup ") {
				t.Errorf("warning %q does not say the name did not resolve", w[0]["error"])
			}
		})
	}
}

package dataverse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/internal/testenv"
)

// TestClient_HTTP2DeadConnection: Dataverse speaks HTTP/2, so every
// lookup of the client rides one TCP connection. When that connection
// goes silent (a load balancer or NAT on the path forgets it, the front
// end behind it vanishes: no FIN, no RST), pops find their records again
// within seconds, on a new connection, rather than all going to the dead
// one and popping search until the kernel gives up on it (about 15
// minutes of retransmissions) or never (a proxy on the path that still
// ACKs). The emulator serves HTTPS with HTTP/2, as Dataverse does; a TCP
// proxy between them black-holes the live connection.
func TestClient_HTTP2DeadConnection(t *testing.T) {
	emu := dataversetest.New(dataversetest.Config{})
	if err := emu.StartTLS(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	proxy := testenv.StartProxy(t, emu.URL()[len("https://"):])
	emu.SetURL("https://" + proxy.Addr())

	logs := &syncbuf.Buffer{}
	log := zerolog.New(logs).Level(zerolog.WarnLevel)
	ec := emu.Config()
	c, err := dataverse.New(dataverse.Config{URL: emu.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
		TokenURL: emu.TokenURL(), AppID: appID}, log)
	if err != nil {
		t.Fatal(err)
	}
	c.TrustRoots(emu.RootCAs())
	stop := runClient(t, c)
	t.Cleanup(func() { stop(); c.Close() })

	const deadline = 2 * time.Second // SCREENPOP_POP_DEADLINE's default
	n := 0
	lookup := func() error {
		n++
		number := fmt.Sprintf("+1317555%04d", n)
		emu.AddContact(dataversetest.Contact{FirstName: "H2", LastName: fmt.Sprint(n), Telephone1: number})
		lctx, lcancel := context.WithTimeout(context.Background(), deadline)
		defer lcancel()
		recs, err := c.Lookup(lctx, phone(number))
		if err == nil && len(recs) != 1 {
			err = fmt.Errorf("%d records, want 1", len(recs))
		}
		return err
	}
	for i := range 5 {
		if err := lookup(); err != nil {
			t.Fatalf("warm lookup %d: %v", i, err)
		}
	}
	if p := emu.RequestsByProto(); p["HTTP/2.0"] == 0 || p["HTTP/1.1"] != 0 {
		t.Fatalf("requests by protocol %v: want HTTP/2 only", p)
	}
	if d := proxy.Dials(); d != 1 {
		t.Fatalf("%d connections before the blackhole, want 1 (HTTP/2 multiplexes)", d)
	}

	// A pop every half second, each a new caller (a cache miss), for
	// as long as it takes the client to give up on the dead connection,
	// at most recoverWithin.
	const recoverWithin = 30 * time.Second
	proxy.Blackhole()
	start := time.Now()
	failed := 0
	var firstErr error
	recovered := time.Duration(-1)
	for time.Since(start) < recoverWithin {
		t0 := time.Now()
		if err := lookup(); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			recovered = time.Since(start)
			break
		}
		time.Sleep(max(0, 500*time.Millisecond-time.Since(t0)))
	}
	if recovered < 0 {
		t.Fatalf("after the connection went dead, %d lookups in a row failed for %v (pops: search), and none found its record: first error %v; connections dialled: %d",
			failed, recoverWithin, firstErr, proxy.Dials())
	}
	t.Logf("recovered %v after the blackhole, %d lookups failed meanwhile (first error: %v); %d connections", recovered.Round(100*time.Millisecond), failed, firstErr, proxy.Dials())
	// Recovered for good: the next pops all find their records.
	for i := range 10 {
		if err := lookup(); err != nil {
			t.Errorf("lookup %d after recovery: %v", i, err)
		}
	}
	if d := proxy.Dials(); d != 2 {
		t.Errorf("%d connections, want 2: the dead one and its replacement", d)
	}
	t.Logf("log:\n%s", logs.String())
}

package dataverse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// azureLB is an in-memory network with an Azure load balancer's idle
// timeout between the client and the emulator: a flow idle for longer
// than idle is forgotten, silently (no FIN, no RST): whatever either end
// sends on it afterwards is dropped. (TCP keep-alives, which would keep a
// real flow alive, are not modelled: the worst case.)
type azureLB struct {
	idle time.Duration
	ln   *memListener

	mu      sync.Mutex
	dials   int
	dropped int // flows written to after the idle timeout
	conns   []net.Conn
}

type memListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *memListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *memListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }

func (lb *azureLB) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, c2 := net.Pipe()
	s1, server := net.Pipe()
	lb.mu.Lock()
	lb.dials++
	lb.conns = append(lb.conns, client, c2, s1, server)
	lb.mu.Unlock()
	f := &flow{lb: lb, last: time.Now()}
	go f.copy(s1, c2)
	go f.copy(c2, s1)
	select {
	case lb.ln.ch <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (lb *azureLB) close() {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, c := range lb.conns {
		c.Close()
	}
}

type flow struct {
	lb   *azureLB
	mu   sync.Mutex
	last time.Time
	gone bool
}

func (f *flow) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		now := time.Now()
		if !f.gone && now.Sub(f.last) > f.lb.idle {
			f.gone = true
			f.lb.mu.Lock()
			f.lb.dropped++
			f.lb.mu.Unlock()
		}
		f.last = now
		gone := f.gone
		f.mu.Unlock()
		if gone {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (lb *azureLB) counts() (dials, dropped int) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.dials, lb.dropped
}

// TestClient_FirstLookupAfterIdle: the first lookup after a quiet spell
// (a lunch hour, a night, a weekend) costs what the hundredth does: one
// $batch, no token request, no retry, no warning, within the pop
// deadline, although Azure's load balancer has forgotten every connection
// idle for more than 4 minutes and Entra ID's tokens lived an hour. In a
// synctest bubble, so hours pass at once and a wait (a hung connection's
// timeout, a retry's backoff) shows as elapsed time exactly.
func TestClient_FirstLookupAfterIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := dataversetest.New(dataversetest.Config{})
		emu.SetURL("http://dataverse.test")
		lb := &azureLB{idle: 4 * time.Minute, ln: &memListener{ch: make(chan net.Conn), closed: make(chan struct{})}}
		hs := &http.Server{Handler: emu}
		served := make(chan error, 1)
		go func() { served <- hs.Serve(lb.ln) }()
		t.Cleanup(func() {
			hs.Close()
			lb.close()
			if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Error(err)
			}
			emu.Close()
		})

		logs := &syncbuf.Buffer{}
		log := zerolog.New(logs).Level(zerolog.WarnLevel)
		ec := emu.Config()
		c, err := dataverse.New(dataverse.Config{URL: emu.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
			TokenURL: emu.TokenURL(), AppID: appID}, log)
		if err != nil {
			t.Fatal(err)
		}
		c.DialWith(lb.dial)
		stop := runClient(t, c)
		t.Cleanup(func() { stop(); c.Close() })
		synctest.Wait()
		if !c.Ready() {
			t.Fatal("no token after Run started")
		}

		const deadline = 2 * time.Second // SCREENPOP_POP_DEADLINE's default
		lookup := func(i int) (elapsed time.Duration, apiReqs, tokenReqs, dials, dropped int) {
			t.Helper()
			number := fmt.Sprintf("+1317555%04d", i)
			emu.AddContact(dataversetest.Contact{FirstName: "Idle", LastName: fmt.Sprint(i), Telephone1: number})
			emu.ResetLog()
			tok0 := emu.TokenRequests()
			d0, dr0 := lb.counts()
			lctx, lcancel := context.WithTimeout(context.Background(), deadline)
			defer lcancel()
			start := time.Now()
			recs, err := c.Lookup(lctx, phone(number))
			elapsed = time.Since(start)
			if err != nil {
				t.Fatalf("lookup %d: %v", i, err)
			}
			if len(recs) != 1 {
				t.Fatalf("lookup %d: %d records, want 1", i, len(recs))
			}
			d1, dr1 := lb.counts()
			return elapsed, emu.HTTPRequests(), emu.TokenRequests() - tok0, d1 - d0, dr1 - dr0
		}

		e, api, tok, dials, _ := lookup(0)
		t.Logf("warm: %v, %d API requests, %d token requests, %d dials", e, api, tok, dials)
		for i, idle := range []time.Duration{time.Second, 80 * time.Second, 3 * time.Minute, 5 * time.Minute, time.Hour, 61 * time.Minute, 14 * time.Hour, 64 * time.Hour} {
			time.Sleep(idle)
			synctest.Wait()
			e, api, tok, dials, dropped := lookup(i + 1)
			t.Logf("after %v idle: %v, %d API requests, %d token requests, %d new connections, %d dropped flows used", idle, e, api, tok, dials, dropped)
			if api != 1 || tok != 0 || dropped != 0 || e >= deadline {
				t.Errorf("after %v idle: the lookup took %v, %d API requests (want 1), %d token requests (want 0), %d forgotten flows written to (want 0)", idle, e, api, tok, dropped)
			}
		}
		if s := logs.String(); s != "" {
			t.Errorf("warnings or errors logged:\n%s", s)
		}
	})
}

// Package dnstest is a DNS server on loopback for tests of what the daemon
// does when name resolution fails, is slow, or comes back: Start points Go's
// resolver (net.DefaultResolver, which every dialer of the daemon uses) at
// it until the test ends. It answers A 127.0.0.1 for the names a test sets,
// NXDOMAIN for the others, so no query leaves the host whatever the
// resolver's configuration names. Tests that use it change a process-wide
// variable: they must not run in parallel with others.
package dnstest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Answer is how the server answers for a name.
type Answer int

const (
	OK       Answer = iota // A 127.0.0.1
	NXDomain               // the name does not exist
	ServFail               // the resolver cannot answer
	Slow                   // A 127.0.0.1, after the server's delay (SetDelay)
)

// Server is a DNS server on 127.0.0.1.
type Server struct {
	pc      net.PacketConn
	refuser *net.UDPAddr // a loopback UDP port nothing listens on
	mu      sync.Mutex
	answers map[string]Answer
	down    bool
	delay   time.Duration
	queries int // questions read, for this package's tests
	wg      sync.WaitGroup
}

// Start starts a server and points net.DefaultResolver at it until tb
// ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{pc: pc, refuser: closed.LocalAddr().(*net.UDPAddr), answers: map[string]Answer{}}
	closed.Close()
	s.wg.Add(1)
	go s.serve()
	old := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		s.mu.Lock()
		addr := pc.LocalAddr().(*net.UDPAddr)
		if s.down {
			addr = s.refuser
		}
		s.mu.Unlock()
		// DialUDP to an address already resolved: a net.Dialer would
		// read net.DefaultResolver, which the cleanup below sets back
		// while a lookup the test started may still be dialling (the
		// daemon's, given up on by its caller): a data race.
		return net.DialUDP("udp", nil, addr)
	}}
	tb.Cleanup(func() {
		net.DefaultResolver = old
		pc.Close()
		s.wg.Wait()
	})
	return s
}

// Set makes the server answer a for each of names.
func (s *Server) Set(a Answer, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.answers[n] = a
	}
}

// SetDelay is how long a Slow answer takes.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Down makes every query refused (ICMP port unreachable: the host's
// resolver is not running), or answered again.
func (s *Server) Down(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(q.Name.String(), ".")
		s.mu.Lock()
		s.queries++
		a, known := s.answers[name]
		delay := s.delay
		s.mu.Unlock()
		if !known {
			a = NXDomain
		}
		rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
		switch a {
		case NXDomain:
			rh.RCode = dnsmessage.RCodeNameError
		case ServFail:
			rh.RCode = dnsmessage.RCodeServerFailure
		}
		b := dnsmessage.NewBuilder(nil, rh)
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(q)
		if (a == OK || a == Slow) && q.Type == dnsmessage.TypeA {
			_ = b.StartAnswers()
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
		}
		msg, err := b.Finish()
		if err != nil {
			continue
		}
		if a == Slow {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				time.Sleep(delay)
				_, _ = s.pc.WriteTo(msg, from)
			}()
			continue
		}
		_, _ = s.pc.WriteTo(msg, from)
	}
}

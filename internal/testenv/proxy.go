package testenv

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on loopback between a client and a server (an
// emulator). Blackhole makes every connection open at that moment go
// silent, as when a NAT or load balancer on the path forgets a flow or
// the node behind it vanishes: nothing is forwarded either way any more,
// and nothing is closed (no FIN, no RST), so only the client can notice.
// Connections made afterwards pass.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*proxiedConn
	dials int
}

type proxiedConn struct {
	client, server net.Conn
	mu             sync.Mutex
	dead           bool
}

// StartProxy starts a Proxy to target (host:port), closed when the test
// ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxiedConn{client: c, server: s}
		p.mu.Lock()
		p.dials++
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); pc.pipe(s, c) }()
		go func() { defer p.wg.Done(); pc.pipe(c, s) }()
	}
}

// pipe copies src to dst until either fails, and, once the connection
// is black-holed, reads and drops what src sends.
func (pc *proxiedConn) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		pc.mu.Lock()
		dead := pc.dead
		pc.mu.Unlock()
		if dead {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// Blackhole makes every connection open now go silent.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.mu.Lock()
		pc.dead = true
		pc.mu.Unlock()
	}
}

// Dials counts the connections made through the proxy.
func (p *Proxy) Dials() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}

// Addr is the proxy's host:port, for the client to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, pc := range p.conns {
		pc.client.Close()
		pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

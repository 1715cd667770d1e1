package bustest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy relays TCP connections from a loopback port of its own to a
// server, each direction through a relay function, until the test ends
// or Cut.
type Proxy struct {
	ln      net.Listener
	mu      sync.Mutex
	conns   []net.Conn
	refused bool
	wg      sync.WaitGroup
}

// StartProxy starts a Proxy to addr (host:port): toServer copies what a
// client sends to the server, toClient what the server answers (nil:
// io.Copy). It stops when the test ends.
func StartProxy(t testing.TB, addr string, toServer, toClient func(dst io.Writer, src io.Reader)) *Proxy {
	t.Helper()
	copyAll := func(dst io.Writer, src io.Reader) { _, _ = io.Copy(dst, src) }
	if toServer == nil {
		toServer = copyAll
	}
	if toClient == nil {
		toClient = copyAll
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refused := p.refused
			p.mu.Unlock()
			if refused {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); toServer(out, in); out.Close() }()
			go func() { defer p.wg.Done(); toClient(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URL is the proxy's NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Cut closes every connection relayed so far, as a network that drops
// them; new ones are relayed again.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Down cuts every connection and refuses new ones, as a server that is
// down, until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.refused = true
	p.mu.Unlock()
	p.Cut()
}

// Up relays new connections again.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused = false
}

// StartSkewProxy starts a Proxy to the NATS server at addr (host:port)
// that makes the server's clock look skew off this host's, and returns
// its URL: every time the server sends (JetStream API answers, the
// Nats-Time-Stamp of direct gets, the stored time in an ack subject) has
// skew added, every time the client sends (a consumer's opt_start_time, an
// ack subject) has it taken off again. The real server is left as it is:
// only the clock the client sees moves, as with an external NATS whose
// clock is skew ahead (negative: behind).
func StartSkewProxy(t testing.TB, addr string, skew time.Duration) string {
	t.Helper()
	return StartProxy(t, addr,
		func(dst io.Writer, src io.Reader) { relaySkewed(dst, src, -skew) },
		func(dst io.Writer, src io.Reader) { relaySkewed(dst, src, skew) }).URL()
}

var rfc3339RE = regexp.MustCompile(`"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"`)

// shiftJSON moves every RFC 3339 time in a JetStream API body by d (the
// zero time stays zero).
func shiftJSON(b []byte, d time.Duration) []byte {
	return rfc3339RE.ReplaceAllFunc(b, func(m []byte) []byte {
		t, err := time.Parse(time.RFC3339Nano, string(m[1:len(m)-1]))
		if err != nil || t.IsZero() || t.Year() < 2000 {
			return m
		}
		return []byte(`"` + t.Add(d).UTC().Format(time.RFC3339Nano) + `"`)
	})
}

// shiftAck moves the stored time of a $JS.ACK subject by d.
func shiftAck(subj string, d time.Duration) string {
	if !strings.HasPrefix(subj, "$JS.ACK.") {
		return subj
	}
	tok := strings.Split(subj, ".")
	i := -1
	switch {
	case len(tok) == 9:
		i = 7
	case len(tok) >= 12:
		i = 9
	}
	if i < 0 {
		return subj
	}
	ns, err := strconv.ParseInt(tok[i], 10, 64)
	if err != nil {
		return subj
	}
	tok[i] = strconv.FormatInt(ns+int64(d), 10)
	return strings.Join(tok, ".")
}

// shiftHeaders moves Nats-Time-Stamp by d.
func shiftHeaders(h []byte, d time.Duration) []byte {
	lines := bytes.Split(h, []byte("\r\n"))
	for i, l := range lines {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("Nats-Time-Stamp")) {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, string(bytes.TrimSpace(v)))
		if err != nil {
			continue
		}
		lines[i] = []byte("Nats-Time-Stamp: " + t.Add(d).UTC().Format(time.RFC3339Nano))
	}
	return bytes.Join(lines, []byte("\r\n"))
}

// relay copies the protocol from src to dst, shifting times by d.
func relaySkewed(dst io.Writer, src io.Reader, d time.Duration) {
	r := bufio.NewReaderSize(src, 64<<10)
	w := bufio.NewWriter(dst)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		op := ""
		if len(f) > 0 {
			op = strings.ToUpper(f[0])
		}
		switch op {
		case "MSG", "PUB", "HMSG", "HPUB":
			// MSG subj sid [reply] n; PUB subj [reply] n;
			// HMSG subj sid [reply] h n; HPUB subj [reply] h n.
			hdr := op == "HMSG" || op == "HPUB"
			fixed := 2 // op, subject
			if op == "MSG" || op == "HMSG" {
				fixed = 3 // and sid
			}
			sizes := 1
			if hdr {
				sizes = 2
			}
			total, _ := strconv.Atoi(f[len(f)-1])
			hlen := 0
			if hdr {
				hlen, _ = strconv.Atoi(f[len(f)-2])
			}
			body := make([]byte, total+2)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			body = body[:total]
			head, payload := body[:hlen], body[hlen:]
			subj := f[1]
			var reply string
			if len(f) > fixed+sizes {
				reply = f[fixed]
			}
			// Server to client: a delivery's ack subject is its reply;
			// client to server: an ack is published to it.
			reply = shiftAck(reply, d)
			if op == "PUB" || op == "HPUB" {
				subj = shiftAck(subj, d)
			}
			if hdr {
				head = shiftHeaders(head, d)
			}
			if bytes.Contains(payload, []byte(`"type":"io.nats.jetstream.api.v1.`)) ||
				(op == "PUB" || op == "HPUB") && strings.HasPrefix(f[1], "$JS.API.") {
				payload = shiftJSON(payload, d)
			}
			var b strings.Builder
			b.WriteString(f[0] + " " + subj)
			if op == "MSG" || op == "HMSG" {
				b.WriteString(" " + f[2])
			}
			if reply != "" {
				b.WriteString(" " + reply)
			}
			if hdr {
				fmt.Fprintf(&b, " %d", len(head))
			}
			fmt.Fprintf(&b, " %d\r\n", len(head)+len(payload))
			w.WriteString(b.String())
			w.Write(head)
			w.Write(payload)
			w.WriteString("\r\n")
		default:
			w.WriteString(line)
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// Stalling returns a copy function for StartProxy that passes the bytes on
// until stalled is set, and from then on holds them: the TCP connection
// stays up and nothing more gets through (a hung server, a link that
// black-holes), so the client still counts itself connected.
func Stalling() (copyFn func(dst io.Writer, src io.Reader), stalled *atomic.Bool) {
	stalled = new(atomic.Bool)
	return func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for stalled.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}, stalled
}

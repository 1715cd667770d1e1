package push

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
)

func BenchmarkPopFrame(b *testing.B) {
	p := testPop("agent-1", "conv-1")
	p.Prefill = map[string]string{"telephone1": "+13175550123", "firstname": "Ada", "lastname": "Lovelace"}
	m, _ := bridge.EncodePop(p, time.Now())
	sp := bridge.StoredPop{Seq: 12345, Agent: "agent-1", Data: m.Data}
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newPopFrame(sp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePop measures one pop through the fan-out to a real socket:
// queue, writer goroutine, websocket write, and the client's read.
func BenchmarkWritePop(b *testing.B) {
	st := newMemStore()
	e := newEnv(b, Config{SendQueue: 1 << 16}, st, nil)
	waitSignal(b, st.followed, "live subscription")
	c, _ := e.connect(e.token("agent-bench"), nil, "")
	p := testPop("agent-bench", "conv-bench")
	m, _ := bridge.EncodePop(p, time.Now())
	got := make(chan int, 1)
	go func() {
		n := 0
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	e.srv.mu.RLock()
	conn := e.srv.agents["agent-bench"][0]
	e.srv.mu.RUnlock()
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	b.ResetTimer()
	var last uint64
	for i := range b.N {
		pf, err := newPopFrame(bridge.StoredPop{Seq: uint64(i + 1), Agent: "agent-bench", Data: m.Data})
		if err != nil {
			b.Fatal(err)
		}
		conn.deliverLive(pf)
		last = pf.seq
		if i%1024 == 1023 {
			// Keep the queue under the limit at which a slow socket is
			// closed (4008): b.N grows past it when frames are cheap.
			for {
				conn.mu.Lock()
				n, closing := len(conn.q), conn.closing
				conn.mu.Unlock()
				if closing {
					b.Fatal("socket closed while the benchmark wrote to it")
				}
				if n < 1<<14 {
					break
				}
				runtime.Gosched()
			}
		}
	}
	// Wait until the writer has drained the queue.
	for {
		conn.mu.Lock()
		idle := !conn.writing && len(conn.q) == 0
		if conn.closing {
			conn.mu.Unlock()
			b.Fatal("socket closed while the benchmark wrote to it")
		}
		conn.mu.Unlock()
		if idle && e.srv.nSent.Load() >= last {
			break
		}
		runtime.Gosched()
	}
	b.StopTimer()
	c.ws.Close()
	<-got
}

// rawHello opens a websocket by hand (no client library, no goroutine, no
// buffers kept) and sends the hello, so that the memory the benchmark sees
// is the server's.
func rawHello(addr, token string) (net.Conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return helloOn(nc, addr, token)
}

// helloOn upgrades nc (plain TCP or a TLS client) to a websocket by hand
// and sends the hello with token; it closes nc on an error.
func helloOn(nc net.Conn, addr, token string) (net.Conn, error) {
	fmt.Fprintf(nc, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReaderSize(nc, 256)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			nc.Close()
			return nil, err
		}
		if bytes.Equal(line, []byte("\r\n")) {
			break
		}
	}
	payload := []byte(`{"type":"hello","token":"` + token + `"}`)
	frame := []byte{0x81}
	if len(payload) < 126 {
		frame = append(frame, 0x80|byte(len(payload)))
	} else {
		frame = append(frame, 0x80|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(len(payload)))
	}
	frame = append(frame, 0, 0, 0, 0) // a zero mask leaves the payload as is
	frame = append(frame, payload...)
	if _, err := nc.Write(frame); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// BenchmarkIdleConnections opens 2,000 authenticated, idle agent sockets
// in process and reports the server's heap and stack bytes per socket and
// its goroutines per socket. Run with -benchtime=1x.
func BenchmarkIdleConnections(b *testing.B) {
	for range b.N {
		heap, stack, goroutines := idleConnectionCost(b, 2000)
		b.ReportMetric(heap, "heap-B/conn")
		b.ReportMetric(stack, "stack-B/conn")
		b.ReportMetric(heap+stack, "B/conn")
		b.ReportMetric(goroutines, "goroutines/conn")
	}
}

// idleConnectionCost connects n raw clients that said hello to a push
// server and returns, per connection once every socket is ready and the
// collector has run, the Go heap, the goroutine stack and the goroutines
// they hold.
func idleConnectionCost(tb testing.TB, n int) (heap, stack, goroutines float64) {
	tb.Helper()
	st := newMemStore()
	e := newEnv(tb, Config{}, st, nil)
	waitSignal(tb, st.followed, "live subscription")
	tokens := idleTokens(e, n)
	addr := e.ln.Addr().String()
	c := measureIdle(tb, e, n, func() func() {
		conns := make([]net.Conn, 0, n)
		for i := range n {
			nc, err := rawHello(addr, tokens[i])
			if err != nil {
				tb.Fatalf("client %d: %v", i, err)
			}
			conns = append(conns, nc)
		}
		return func() {
			for _, c := range conns {
				c.Close()
			}
		}
	})
	return c.heap, c.stack, c.goroutines
}

func idleTokens(e *env, n int) []string {
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = e.token(bridge.AgentID(fmt.Sprintf("agent-%04d", i)))
	}
	return tokens
}

// idleCost is what the server's process holds per idle socket, in bytes
// (goroutines: goroutines per socket).
type idleCost struct {
	heap, stack, goroutines float64
	// rss is the process's VmRSS after debug.FreeOSMemory, meaningful
	// only when the clients run in another process; 0 without /proc.
	rss float64
}

// measureIdle reads the Go heap, stacks, goroutines and RSS of the process
// before connect opens n idle sockets to e's server and once every one of
// them is ready, and returns the difference per socket. connect returns
// what closes them.
func measureIdle(tb testing.TB, e *env, n int, connect func() (closeAll func())) idleCost {
	tb.Helper()
	runtime.GC()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	debug.FreeOSMemory()
	rss0 := vmRSS()
	g0 := runtime.NumGoroutine()
	closeAll := connect()
	waitFor(tb, 60*time.Second, "every socket ready", func() bool {
		ready := 0
		e.srv.mu.RLock()
		for c := range e.srv.conns {
			if c.ready.Load() {
				ready++
			}
		}
		e.srv.mu.RUnlock()
		return ready == n
	})
	// Let writers finish and stacks shrink, as they do on an idle daemon.
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m1)
	debug.FreeOSMemory()
	rss1 := vmRSS()
	g1 := runtime.NumGoroutine()
	var c idleCost
	c.heap = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
	c.stack = float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / float64(n)
	c.goroutines = float64(g1-g0) / float64(n)
	if rss0 > 0 && rss1 > 0 {
		c.rss = float64(rss1-rss0) / float64(n)
	}
	closeAll()
	waitFor(tb, 30*time.Second, "sockets closed", func() bool { return e.srv.Status().(Status).Connections == 0 })
	e.stop()
	return c
}

// vmRSS is the process's resident set in bytes, 0 where /proc cannot be
// read.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

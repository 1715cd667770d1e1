package push

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleConnectionsTLS is BenchmarkIdleConnections with the agent
// listener terminating TLS itself (SCREENPOP_TLS_CERT/KEY, opened with
// Listen as the daemon does), the clients TLS 1.3 with Go's defaults in a
// child process, so that their own TLS state is not counted (and so the
// process's RSS is the server's). Run with -benchtime=1x.
func BenchmarkIdleConnectionsTLS(b *testing.B) {
	for _, acked := range []bool{false, true} {
		b.Run(map[bool]string{false: "Hello", true: "Acked"}[acked], func(b *testing.B) {
			for range b.N {
				c := idleConnectionCostTLS(b, 2000, acked)
				b.ReportMetric(c.heap, "heap-B/conn")
				b.ReportMetric(c.stack, "stack-B/conn")
				b.ReportMetric(c.heap+c.stack, "B/conn")
				b.ReportMetric(c.goroutines, "goroutines/conn")
				b.ReportMetric(c.rss, "rss-B/conn")
			}
		})
	}
}

// idleConnectionCostTLS is idleConnectionCost over TLS.
// With acked, each client also sends an ack and a pong after its hello,
// as a page does on its first pop and the server's first ping, so the
// reader has handled frames since the hello before it idles.
func idleConnectionCostTLS(tb testing.TB, n int, acked bool) idleCost {
	tb.Helper()
	certFile, keyFile := writeCert(tb, tb.TempDir())
	tlsConfig, err := LoadTLS(certFile, keyFile, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	st := newMemStore()
	e := startEnvListen(tb, Config{}, st, nil, testLogger(tb), tlsConfig)
	waitFor(tb, 10*time.Second, "server ready", e.srv.Ready)
	waitSignal(tb, st.followed, "live subscription")
	tokens := idleTokens(e, n)
	return measureIdle(tb, e, n, func() func() {
		return startTLSClients(tb, e.ln.Addr().String(), certFile, tokens, acked)
	})
}

// startTLSClients runs TestHelperProcess_TLSClients in a child process of
// the test binary: one TLS websocket per token to addr, each saying hello
// and then idle. It returns once all are open; what it returns ends them.
func startTLSClients(tb testing.TB, addr, certFile string, tokens []string, acked bool) func() {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess_TLSClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SCREENPOP_TEST_TLS_CLIENTS="+addr, "SCREENPOP_TEST_TLS_CA="+certFile)
	if acked {
		cmd.Env = append(cmd.Env, "SCREENPOP_TEST_TLS_ACK=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := false
	stop := func() {
		if done {
			return
		}
		done = true
		stdin.Close() // the child closes its sockets and exits
		go io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			tb.Errorf("TLS clients: %v", err)
		}
	}
	tb.Cleanup(stop)
	if _, err := io.WriteString(stdin, strings.Join(tokens, "\n")+"\n\n"); err != nil {
		tb.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "open\n" {
		tb.Fatalf("TLS clients: %q, %v", line, err)
	}
	return stop
}

// TestHelperProcess_TLSClients is the child of startTLSClients; it does
// nothing in a normal run.
func TestHelperProcess_TLSClients(t *testing.T) {
	addr := os.Getenv("SCREENPOP_TEST_TLS_CLIENTS")
	if addr == "" {
		t.Skip("the child process of startTLSClients")
	}
	ca, err := os.ReadFile(os.Getenv("SCREENPOP_TEST_TLS_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for in.Scan() && in.Text() != "" {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("client %d: %v", len(conns), err)
		}
		nc, err := helloOn(tc, addr, in.Text())
		if err != nil {
			t.Fatalf("client %d: %v", len(conns), err)
		}
		conns = append(conns, nc)
		if os.Getenv("SCREENPOP_TEST_TLS_ACK") != "" {
			// A masked ack (of a seq never sent: ignored) and a pong,
			// each with a zero mask.
			ack := `{"type":"ack","seq":1}`
			frames := append([]byte{0x81, 0x80 | byte(len(ack)), 0, 0, 0, 0}, ack...)
			frames = append(frames, 0x8a, 0x80, 0, 0, 0, 0)
			if _, err := nc.Write(frames); err != nil {
				t.Fatalf("client %d: %v", len(conns), err)
			}
		}
	}
	fmt.Println("open")
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
}

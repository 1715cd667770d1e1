package bus_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"

	"github.com/rs/zerolog"
)

// Any local program can connect to the built-in server's port: one that
// does not speak NATS (a port scanner, an HTTP health check pointed at
// the wrong port) made the server log an error line per connection, with
// no limit. Such lines are about one client, not the server: one every
// 10 s at warn, with how many were held back, the rest at debug.
func TestEmbedded_AClientSpeakingNoNATSIsLoggedOnceInAWhile(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.New(&logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const conns = 5
	for range conns {
		nc, err := net.Dial("tcp", c.ListenAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = nc.Read(make([]byte, 4096)) // the server's INFO, then its -ERR and close
		for {
			if _, err := nc.Read(make([]byte, 4096)); err != nil {
				break
			}
		}
		nc.Close()
	}
	var debug, warn, errs int
	deadline := time.Now().Add(5 * time.Second)
	for {
		debug, warn, errs = 0, 0, 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(l, `"message":"nats-server"`) || !strings.Contains(l, "cid:") || !strings.Contains(l, "parser") {
				continue
			}
			switch {
			case strings.Contains(l, `"level":"error"`):
				errs++
			case strings.Contains(l, `"level":"warn"`):
				warn++
			case strings.Contains(l, `"level":"debug"`):
				debug++
			}
		}
		if debug+warn+errs >= conns || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if errs != 0 || warn != 1 || debug != conns-1 {
		t.Errorf("%d connections speaking no NATS: %d parser lines at error, %d at warn, %d at debug; want 0, 1, %d", conns, errs, warn, debug, conns-1)
	}
}

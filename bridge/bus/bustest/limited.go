package bustest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LimitedServer is an in-process nats-server started from a configuration
// file whose account SP (user screenpop, password pw) has JetStream limits,
// as an external cluster's operator sets them; the limits can be changed
// and reloaded, as with nats-server --signal reload.
type LimitedServer struct {
	t     testing.TB
	conf  string
	dir   string
	ns    *server.Server
	js    string // the account's JetStream limits
	perms string // the user's permissions block, or ""
}

// StartLimitedServer serves account SP with the JetStream limits js (the
// inside of the account's jetstream block, e.g. "max_file: 2M, max_mem: 1M")
// on a free loopback port until the test ends.
func StartLimitedServer(tb testing.TB, js string) *LimitedServer {
	tb.Helper()
	x := &LimitedServer{t: tb, conf: filepath.Join(tb.TempDir(), "nats.conf"), dir: tb.TempDir()}
	x.js = js
	x.write()
	o, err := server.ProcessConfigFile(x.conf)
	if err != nil {
		tb.Fatal(err)
	}
	o.NoSigs, o.NoLog = true, true
	ns, err := server.NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	x.ns = ns
	return x
}

func (x *LimitedServer) write() {
	perms := ""
	if x.perms != "" {
		perms = ", permissions: { " + x.perms + " }"
	}
	conf := fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
accounts {
  SP { jetstream { %s }, users: [ { user: screenpop, password: pw%s } ] }
}
`, x.dir, x.js, perms)
	if err := os.WriteFile(x.conf, []byte(conf), 0o600); err != nil {
		x.t.Fatal(err)
	}
}

// URL is the client URL of account SP's user.
func (x *LimitedServer) URL() string {
	return fmt.Sprintf("nats://screenpop:pw@127.0.0.1:%d", x.ns.Addr().(*net.TCPAddr).Port)
}

// SetLimits gives account SP the JetStream limits js and reloads the
// server's configuration.
func (x *LimitedServer) SetLimits(js string) {
	x.t.Helper()
	x.js = js
	x.reload()
}

// SetPermissions gives account SP's user the permissions perms (the inside
// of a user's permissions block, e.g. `publish: { deny: "x.>" }`; "" for
// none) and reloads the server's configuration: connected clients get
// them at once.
func (x *LimitedServer) SetPermissions(perms string) {
	x.t.Helper()
	x.perms = perms
	x.reload()
}

func (x *LimitedServer) reload() {
	x.t.Helper()
	x.write()
	if err := x.ns.Reload(); err != nil {
		x.t.Fatal(err)
	}
}

// FillStore stores messages in another stream of account SP (OTHER, on
// other.>), as another service sharing the account would, until the
// account's file limit refuses even a small one.
func (x *LimitedServer) FillStore() {
	x.t.Helper()
	nc, err := nats.Connect(x.URL())
	if err != nil {
		x.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		x.t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}, Storage: jetstream.FileStorage}); err != nil {
		x.t.Fatal(err)
	}
	for size := 16 << 10; size >= 16; size /= 4 {
		chunk := make([]byte, size)
		for i := 0; ; i++ {
			if _, err := js.Publish(ctx, "other.fill", chunk); err != nil {
				break
			}
			if i > 100000 {
				x.t.Fatal("the account's file limit never refused a message")
			}
		}
	}
}

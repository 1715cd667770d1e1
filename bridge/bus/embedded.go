package bus

import (
	"net"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// embedded is the built-in NATS server. The store watcher replaces it by a
// new one on the same store and address when its store could not write;
// the daemon's in-process connection reconnects to whichever runs, and
// other local clients to the same address.
type embedded struct {
	cfg   Config
	log   zerolog.Logger // the caller's: nats-server's lines get their own component
	store *storeWatch
	cur   atomic.Pointer[server.Server]
}

func newEmbedded(cfg Config, log zerolog.Logger, store *storeWatch, ns *server.Server) *embedded {
	if cfg.Listen != "off" {
		if a := ns.Addr(); a != nil {
			cfg.Listen = a.String() // a port 0 chose: the next server keeps it
		}
	}
	e := &embedded{cfg: cfg, log: log, store: store}
	e.cur.Store(ns)
	return e
}

// server is the server running now.
func (e *embedded) server() *server.Server { return e.cur.Load() }

// InProcessConn connects to the server running now (nats.InProcessServer).
func (e *embedded) InProcessConn() (net.Conn, error) { return e.server().InProcessConn() }

// restart shuts the server down and starts a new one on its store and
// address. A failed start leaves no server: it is tried again.
func (e *embedded) restart() error {
	e.shutdown()
	e.store.rearm()
	ns, err := startEmbedded(e.cfg, e.log, e.store)
	if err != nil {
		return err
	}
	e.cur.Store(ns)
	return nil
}

// shutdown shuts the server running now down.
func (e *embedded) shutdown() {
	ns := e.server()
	ns.Shutdown()
	ns.WaitForShutdown()
}

package bus

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

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

	// closed is set by the connection's close: a restart that was under
	// way then shuts down the server it started instead of running it.
	mu     sync.Mutex
	closed bool
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
// address. A failed start leaves no server: it is tried again. Once the
// connection is closing it starts nothing (errClosed), and a server it
// started meanwhile it shuts down again.
func (e *embedded) restart() error {
	e.shutdown()
	if e.isClosed() {
		return errClosed
	}
	e.store.rearm()
	ns, err := startEmbedded(e.cfg, e.log, e.store)
	if err != nil {
		return err
	}
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.cur.Store(ns)
	}
	e.mu.Unlock()
	if closed {
		ns.Shutdown()
		ns.WaitForShutdown()
		return errClosed
	}
	return nil
}

// errClosed is restart's error once the connection is closing.
var errClosed = errors.New("the NATS connection is closing: the built-in server is not started again")

func (e *embedded) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// shutdown shuts the server running now down.
func (e *embedded) shutdown() {
	ns := e.server()
	ns.Shutdown()
	ns.WaitForShutdown()
}

// shutdownWithin is shutdown waiting at most d. nats-server's shutdown
// writes each store's state and waits for the stream that is writing: on
// a disk that does not answer (a stalled volume, an NFS server gone) that
// lasts as long as the stall. It reports whether the server finished; if
// not, its shutdown goes on in the background.
func (e *embedded) shutdownWithin(d time.Duration) bool {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.shutdown()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

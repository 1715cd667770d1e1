// Package fdlimit keeps a listener, and the process around it, working
// when file descriptors run out (RLIMIT_NOFILE: a systemd unit's
// LimitNOFILE=, a container's nofile ulimit). net/http's Serve retries an
// accept that fails with "too many open files" by itself, but logs each
// retry in plain text through the standard logger, names neither the limit
// nor what to raise, and counts nothing; meanwhile every other socket and
// file the process needs (the admin listener, Dataverse, Genesys, the NATS
// store) fails the same way.
package fdlimit

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// Hint is what to do, in every line about the limit.
const Hint = "raise LimitNOFILE= in the systemd unit (docs/deploy/screenpopd.service) or the container's nofile ulimit"

// ExhaustedMsg is the line of a listener whose accepts fail for want of a
// descriptor.
const ExhaustedMsg = "out of file descriptors: new connections wait, and lookups, reconnects and store writes fail; " + Hint

// Config is a listener's handling of the limit.
type Config struct {
	// Name names the listener in log lines and metrics ("agent", "admin").
	Name string
	// Reserve refuses (accepts and closes at once) a connection that
	// would take one of the last Reserve(limit) descriptors, so the rest
	// of the process keeps its own: for the agent listener, where any
	// number of browser tabs may connect.
	Reserve bool
	Log     zerolog.Logger
	// Errors counts accepts that failed for want of a descriptor;
	// Refused the connections refused to keep the reserve. Either may be
	// nil.
	Errors, Refused prometheus.Counter
}

// Reserve is how many descriptors a Config with Reserve keeps from its
// listener under a limit of limit: an eighth, at least 16 and at most 256
// (the Genesys channels and API, Dataverse, NATS, the store's files and
// the admin listener).
func Reserve(limit uint64) uint64 {
	return min(max(limit/8, 16), 256)
}

// Listen wraps ln.
func Listen(ln net.Listener, cfg Config) net.Listener {
	return &listener{Listener: ln, cfg: cfg, lines: loglimit.New(10*time.Second, 4), closed: make(chan struct{})}
}

type listener struct {
	net.Listener
	cfg   Config
	lines *loglimit.Limiter

	once   sync.Once
	closed chan struct{}
}

// Accept waits out a lack of descriptors itself (5 ms doubling to 1 s,
// as net/http would), logging it at most once every 10 s.
func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !Exhausted(err) {
				return nil, err
			}
			if l.cfg.Errors != nil {
				l.cfg.Errors.Inc()
			}
			if ok, held := l.lines.Allow("emfile", time.Now()); ok {
				lim, _ := Limit()
				l.cfg.Log.Error().Err(err).Str("listener", l.cfg.Name).Uint64("nofile_limit", lim).Int("held_back", held).
					Msg(ExhaustedMsg)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if l.cfg.Reserve {
			if fd, lim, ok := inReserve(c); ok {
				c.Close()
				if l.cfg.Refused != nil {
					l.cfg.Refused.Inc()
				}
				if ok, held := l.lines.Allow("reserve", time.Now()); ok {
					l.cfg.Log.Error().Str("listener", l.cfg.Name).Uint64("nofile_limit", lim).Uint64("reserve", Reserve(lim)).Int("fd", fd).Int("held_back", held).
						Msg("near the open-file limit: new connections refused (pages retry with backoff), those open keep their pops; " + Hint)
				}
				continue
			}
		}
		return c, nil
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Exhausted reports whether err is a lack of descriptors, the process's
// (EMFILE) or the system's (ENFILE).
func Exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// inReserve reports whether c took one of the last descriptors. A new
// descriptor is the lowest one free, so c's number is at most the count
// of those open: when it reaches limit-Reserve(limit), the reserve is
// being used. Cheap enough for every accept, and it follows a limit
// raised at run time (prlimit).
func inReserve(c net.Conn) (fd int, limit uint64, ok bool) {
	for {
		u, wrapped := c.(interface{ NetConn() net.Conn })
		if !wrapped {
			break
		}
		c = u.NetConn()
	}
	fd, known := fdOf(c)
	if !known {
		return 0, 0, false
	}
	limit, known = Limit()
	if !known || limit <= Reserve(limit) {
		return fd, limit, false
	}
	return fd, limit, uint64(fd) >= limit-Reserve(limit)
}

func fdOf(c net.Conn) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

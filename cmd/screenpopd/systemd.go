package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// The systemd unit (docs/deploy/screenpopd.service) is Type=notify with a
// watchdog: systemd learns that the daemon is up (its listeners bound,
// every stage running) from READY=1, that it is stopping from
// STOPPING=1, and that it is alive from WATCHDOG=1, which follows each
// liveness check; it restarts a daemon whose pings stop. An orchestrator
// learns the same from /healthz on the admin listener. Outside systemd
// (NOTIFY_SOCKET unset) the notifications do nothing.

// sdNotify sends one state to systemd. A failure is logged, at most once
// every 10 minutes per state (the watchdog's come every 20 s), not fatal:
// the daemon serves as well without it, and systemd says so itself (a
// start that times out, a watchdog restart).
func sdNotify(log zerolog.Logger, state string) {
	if err := notifySystemd(state, sdNotifyWait); err != nil {
		if ok, held := sdNotifyLimit.Allow(state, time.Now()); ok {
			log.Warn().Err(err).Str("state", state).Int("held_back", held).Msg("systemd notification failed: check NOTIFY_SOCKET and the unit's NotifyAccess")
		}
	}
}

var sdNotifyLimit = loglimit.New(10*time.Minute, 4)

// sdNotifyWait bounds a notification: READY=1 and STOPPING=1 are sent by
// the goroutine that stops the daemon, before the shutdown budget starts.
const sdNotifyWait = 500 * time.Millisecond

// notifySystemd is daemon.SdNotify with the write bounded by wait. A
// systemd that does not read its socket (PID 1 busy or hung) fills the
// socket's queue, and a datagram sent then waits for it to read again.
func notifySystemd(state string, wait time.Duration) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	_, err = conn.Write([]byte(state))
	return err
}

// livenessPeriod is how often the daemon checks itself, without a systemd
// watchdog or with one of 60 s or more; a shorter WatchdogSec makes it a
// third of that.
const livenessPeriod = 20 * time.Second

// livePart is one component answering for its state: its Status, which
// takes its lock. A deadlocked component never returns from it.
type livePart struct {
	name  string
	state func()
}

// liveness checks that the daemon is not wedged: every period it asks each
// part for its state, one after the other. The check asks no remote system
// to answer beyond a bounded wait (an outage of NATS, Genesys or Dataverse
// is not fixed by a restart, and /readyz tells of it), so a check that has
// not completed for three periods means a part that does not return.
type liveness struct {
	parts  []livePart
	period time.Duration
	// Times are on the monotonic clock (since epoch, which run sets): a
	// wall clock stepped by NTP or a resumed VM must not make a healthy
	// daemon look stuck, or hide a stuck one.
	epoch  time.Time
	begun  atomic.Bool
	done   atomic.Int64           // since epoch, ns, of the last completed check
	asking atomic.Pointer[string] // the part being asked
}

// run checks every period until ctx ends, calling alive after each check
// that completed.
func (l *liveness) run(ctx context.Context, alive func()) {
	l.epoch = time.Now()
	l.begun.Store(true) // publishes epoch to stuck
	t := time.NewTicker(l.period)
	defer t.Stop()
	for {
		for _, p := range l.parts {
			l.asking.Store(&p.name)
			p.state()
		}
		l.done.Store(int64(time.Since(l.epoch)))
		if ctx.Err() != nil {
			return
		}
		alive()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stuck says, at now, which part has kept the check from completing for
// three periods or more, and for how long; "" when none has (also before
// run began: Open may take minutes to open a large NATS store).
func (l *liveness) stuck(now time.Time) (part string, since time.Duration) {
	if !l.begun.Load() {
		return "", 0
	}
	since = now.Sub(l.epoch) - time.Duration(l.done.Load())
	if since < 3*l.period {
		return "", 0
	}
	if p := l.asking.Load(); p != nil {
		return *p, since
	}
	return "?", since
}

// stuck names the component Run's liveness check has waited on for three
// periods, and for how long; "" while the daemon is not stuck, before Run
// and while it stops. Both /healthz answer from it.
func (m *Main) stuck() (part string, since time.Duration) {
	if l := m.live.Load(); l != nil && !m.stopping.Load() {
		return l.stuck(time.Now())
	}
	return "", 0
}

// stuckError is /healthz's answer for a wedged daemon.
func stuckError(part string, since time.Duration) string {
	return fmt.Sprintf("stuck: the %s has not answered for its state for %v (a deadlock: kill -ABRT the process for a dump of its goroutines, and restart it)\n",
		part, since.Round(time.Second))
}

// newLiveness is the liveness check of Run, three times per systemd
// watchdog interval (WatchdogSec=, passed as WATCHDOG_USEC) when that is
// under a minute, else every livenessPeriod; watchdog is 0 outside systemd.
func (m *Main) newLiveness(log zerolog.Logger) (l *liveness, watchdog time.Duration) {
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog off: WATCHDOG_USEC unreadable")
		watchdog = 0
	}
	period := livenessPeriod
	if watchdog > 0 {
		period = min(period, watchdog/3)
	}
	return &liveness{parts: m.liveParts(), period: period}, watchdog
}

// feedWatchdog is a stage of Run: it runs the liveness check and, under a
// systemd watchdog, sends WATCHDOG=1 after each check that completed. A
// daemon deadlocked in a component sends nothing more, and systemd kills
// it with SIGABRT, whose goroutine dump in the journal shows the lock, and
// starts it again.
func feedWatchdog(ctx context.Context, l *liveness, watchdog time.Duration, log zerolog.Logger) {
	alive := func() {}
	if watchdog > 0 {
		alive = func() { sdNotify(log, daemon.SdNotifyWatchdog) }
	}
	l.run(ctx, alive)
}

// liveParts are the components the liveness check asks, in Status's order.
func (m *Main) liveParts() []livePart {
	return []livePart{
		{"nats connection", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.Bus.Status(ctx)
		}},
		{"genesys client", func() { m.Genesys.Status() }},
		{"normalizer", func() { m.Normalizer.Status() }},
		{"event publisher", func() { m.Events.Status() }},
		{"resolver", func() { m.Resolver.Status() }},
		{"dataverse client", func() { m.Dataverse.Status() }},
		{"push server", func() { m.Push.Status() }},
	}
}

package main

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/loglimit"
)

// The systemd unit (docs/deploy/screenpopd.service) is Type=notify with a
// watchdog: systemd learns that the daemon is up (its listeners bound,
// every stage running) from READY=1, that it is stopping from
// STOPPING=1, and restarts it when WATCHDOG=1 stops coming. Outside
// systemd (NOTIFY_SOCKET unset) each of these does nothing.

// sdNotify sends one state to systemd. A failure is logged, at most once
// every 10 minutes per state (the watchdog's come every 20 s), not fatal:
// the daemon serves as well without it, and systemd says so itself (a
// start that times out, a watchdog restart).
func sdNotify(log zerolog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		if ok, held := sdNotifyLimit.Allow(state, time.Now()); ok {
			log.Warn().Err(err).Str("state", state).Int("held_back", held).Msg("systemd notification failed: check NOTIFY_SOCKET and the unit's NotifyAccess")
		}
	}
}

var sdNotifyLimit = loglimit.New(10*time.Minute, 4)

// watchdogCheckTimeout bounds one liveness check's remote calls (the NATS
// stream and bucket reads of /status, a second each).
const watchdogCheckTimeout = 5 * time.Second

// feedWatchdog is a stage of Run under a systemd watchdog (WatchdogSec=,
// which systemd passes as WATCHDOG_USEC): three times per interval it
// gathers /status, which takes each component's lock, and then sends
// WATCHDOG=1. A daemon deadlocked on one of them sends nothing more, and
// systemd kills it with SIGABRT, whose goroutine dump in the journal shows
// the lock, and starts it again. The check asks for no remote system to
// answer: an outage of NATS, Genesys or Dataverse is not fixed by a
// restart, and /readyz tells of it.
func (m *Main) feedWatchdog(ctx context.Context, log zerolog.Logger) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog off: WATCHDOG_USEC unreadable")
	}
	if err != nil || interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, watchdogCheckTimeout)
		m.Status(cctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		sdNotify(log, daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

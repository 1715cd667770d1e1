package bus

import (
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/fdlimit"
	"github.com/screenpop/screenpop/internal/loglimit"
)

// serverLogger adapts zerolog to nats-server's Logger. Messages stay
// constant ("nats-server") with the server's text in detail, so log queries
// work as for every other line. The server's notices (its start-up banner)
// go to debug: screenpop logs its own lifecycle. A fatal error (the listener
// or JetStream failed to start) is also handed to fatal, when set, so that a
// start-up does not wait for a server that has given up.
type serverLogger struct {
	log   zerolog.Logger
	fatal chan<- string
	// store, when set, is told of the store's write errors, and quiets
	// the server's line per refused message while it knows of one.
	store *storeWatch
	// accepts, when set, keeps the server's line per failed accept of its
	// listener out of descriptors (every retry, 10 ms doubling to 1 s) to
	// one every 10 s, told as the agent and admin listeners tell it.
	accepts *loglimit.Limiter
	// slow, when set, keeps the server's notices of a client it drops
	// as a slow consumer (another local service that stopped reading
	// the events) to one every 10 s at warn; the rest go to debug.
	slow *loglimit.Limiter
	// clients, when set, keeps the server's warnings and errors about
	// one client connection (a local program on its port that does not
	// speak NATS, one that went away mid-handshake) to one every 10 s at
	// warn: any local process could otherwise write an error line per
	// connection it makes. The rest go to debug.
	clients *loglimit.Limiter
}

// clientLine reports whether a line of nats-server is about one client
// connection ("127.0.0.1:46428 - cid:16 - Client parser ERROR …").
func clientLine(detail string) bool {
	return strings.Contains(detail, " - cid:")
}

// client logs a line about one client connection, if clients allows it.
func (l serverLogger) client(detail string) {
	if ok, held := l.clients.Allow("client", time.Now()); ok {
		l.log.Warn().Str("detail", detail).Int("held_back", held).Msg(serverMsg)
		return
	}
	l.log.Debug().Str("detail", detail).Msg(serverMsg)
}

// slowConsumer reports whether a line of nats-server tells of a client
// it found (and, for a client, dropped) as a slow consumer.
func slowConsumer(detail string) bool {
	return strings.Contains(detail, "Slow Consumer Detected") || strings.Contains(detail, "Slow Consumer State")
}

// acceptExhausted reports whether a line of nats-server tells of its
// listener's accept failing for want of a descriptor (EMFILE, ENFILE).
func acceptExhausted(detail string) bool {
	return strings.Contains(detail, "Accept Error(") && strings.Contains(detail, "too many open files")
}

const serverMsg = "nats-server"

func (l serverLogger) Noticef(format string, v ...any) {
	detail := fmt.Sprintf(format, v...)
	if l.slow != nil && slowConsumer(detail) {
		if ok, held := l.slow.Allow("slow consumer", time.Now()); ok {
			l.log.Warn().Str("detail", detail).Int("held_back", held).
				Msg("the built-in NATS server dropped a client that stopped reading (a slow consumer): a service reading the events misses them until it reconnects; pops are not held up")
			return
		}
	}
	l.log.Debug().Str("detail", detail).Msg(serverMsg)
}
func (l serverLogger) Warnf(format string, v ...any) {
	detail := fmt.Sprintf(format, v...)
	if l.store != nil && l.store.serverError(detail) {
		l.log.Debug().Str("detail", detail).Msg(serverMsg)
		return
	}
	if l.clients != nil && clientLine(detail) {
		l.client(detail)
		return
	}
	l.log.Warn().Str("detail", detail).Msg(serverMsg)
}
func (l serverLogger) Fatalf(format string, v ...any) {
	detail := fmt.Sprintf(format, v...)
	l.log.Error().Str("detail", detail).Msg(serverMsg)
	if l.fatal != nil {
		select {
		case l.fatal <- detail:
		default: // the first one is the cause
		}
	}
}
func (l serverLogger) Errorf(format string, v ...any) {
	detail := fmt.Sprintf(format, v...)
	if l.accepts != nil && acceptExhausted(detail) {
		ok, held := l.accepts.Allow("emfile", time.Now())
		if !ok {
			l.log.Debug().Str("detail", detail).Msg(serverMsg)
			return
		}
		lim, _ := fdlimit.Limit()
		l.log.Error().Str("detail", detail).Str("listener", "nats").Uint64("nofile_limit", lim).Int("held_back", held).
			Msg(fdlimit.ExhaustedMsg)
		return
	}
	if l.store != nil && l.store.serverError(detail) {
		l.log.Debug().Str("detail", detail).Msg(serverMsg)
		return
	}
	if l.clients != nil && clientLine(detail) {
		l.client(detail)
		return
	}
	l.log.Error().Str("detail", detail).Msg(serverMsg)
}
func (l serverLogger) Debugf(format string, v ...any) {
	l.log.Debug().Str("detail", fmt.Sprintf(format, v...)).Msg(serverMsg)
}
func (l serverLogger) Tracef(format string, v ...any) {
	l.log.Trace().Str("detail", fmt.Sprintf(format, v...)).Msg(serverMsg)
}

package bus

import (
	"fmt"

	"github.com/rs/zerolog"
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
}

const serverMsg = "nats-server"

func (l serverLogger) Noticef(format string, v ...any) {
	l.log.Debug().Str("detail", fmt.Sprintf(format, v...)).Msg(serverMsg)
}
func (l serverLogger) Warnf(format string, v ...any) {
	detail := fmt.Sprintf(format, v...)
	if l.store != nil && l.store.serverError(detail) {
		l.log.Debug().Str("detail", detail).Msg(serverMsg)
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
	if l.store != nil && l.store.serverError(detail) {
		l.log.Debug().Str("detail", detail).Msg(serverMsg)
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

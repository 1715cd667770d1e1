// Package httplog gives an http.Server an ErrorLog that writes net/http's
// own lines (a failed TLS handshake, a handler's panic, a bad response) to
// the daemon's JSON log. Left nil, ErrorLog writes them in plain text to
// stderr, where a log pipeline that parses JSON drops them or breaks.
package httplog

import (
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// ErrorLog returns a logger for http.Server.ErrorLog that writes each line
// to l as a message with the line in "detail": a failed TLS handshake at
// debug (scanners, clients that give up, expired certificates on their
// side: common and not this server's fault; its detail names the client's
// address), a handler's panic at error, anything else at warn.
func ErrorLog(l zerolog.Logger) *log.Logger {
	return log.New(writer{l}, "", 0)
}

type writer struct{ l zerolog.Logger }

func (w writer) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	e := w.l.Warn()
	switch {
	case strings.HasPrefix(line, "http: TLS handshake error"):
		e = w.l.Debug()
	case strings.HasPrefix(line, "http: panic serving"):
		e = w.l.Error()
	}
	e.Str("detail", line).Msg("http server")
	return len(p), nil
}

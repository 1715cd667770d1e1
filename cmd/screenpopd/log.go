package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/logwriter"
)

// NewLogger builds the root logger: JSON by default, console output on a
// terminal or with LOG_FORMAT=console. Components add their own
// component field. Its writes go to w as they are made (tests read them
// so); the daemon's go through newDaemonLogger.
func NewLogger(level, format string, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	if logFormat(format, w) == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	// A hook rather than zerolog.TimeFieldFormat, a package global: times
	// in milliseconds, UTC.
	return zerolog.New(w).Level(lvl).Hook(timeHook{})
}

// logFormat is LOG_FORMAT, or when unset console on a terminal and json
// otherwise.
func logFormat(format string, w io.Writer) string {
	if format != "" {
		return format
	}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return "console"
		}
	}
	return "json"
}

// newDaemonLogger is NewLogger for run and demo: its lines reach w from a
// goroutine of their own (logwriter), so that a log reader that stops
// reading stops no pop and no stop; lines it does not take in time
// (logBuffer of them waiting) are dropped and counted, and a line says how
// many. Close the writer at the end (logFlush).
func newDaemonLogger(level, format string, w io.Writer) (zerolog.Logger, *logwriter.Writer) {
	format = logFormat(format, w)
	lw := logwriter.New(w, logBuffer, func(n uint64) []byte {
		var b bytes.Buffer
		l := NewLogger("warn", format, &b)
		l.Warn().Str("component", "main").Uint64("dropped", n).
			Msg("log lines dropped: the log's reader (journald, the container runtime, a pipe) took none for a while, or its file refused them (a full disk); pops went on. See why")
		return b.Bytes()
	})
	return NewLogger(level, format, lw), lw
}

// logBuffer is how much log the daemon holds for a reader that stalls:
// about 25 s of lines at 500 pops a second.
const logBuffer = 8 << 20

// logFlush is how long the end of run and demo waits for the log's reader
// to take the last lines: within the stop's budget.
const logFlush = 2 * time.Second

// forcedLogFlush is how long a second signal's exit waits for the log's
// reader to take the lines queued before it: short, since the signal asks
// for an exit at once, and the reader may be the stalled one.
const forcedLogFlush = 500 * time.Millisecond

// logForcedExit makes a second signal (main ends the process at once by
// its default action, skipping run's and demo's deferred Close) log that
// the stop was cut short, and write that line and those queued before it:
// without it the log just ended, a line or more short, and on-call could
// not tell a forced exit from a crash or a kill.
func logForcedExit(ctx context.Context, level, format string, out io.Writer, lw *logwriter.Writer, began time.Time) {
	format = logFormat(format, out)
	onForcedExit(ctx, func() {
		// Written as the last line even when the buffer is full (a
		// stalled reader, which is often why a stop is cut short).
		var b bytes.Buffer
		l := NewLogger(level, format, &b)
		l.Warn().Str("component", "main").Int64("uptime_s", int64(time.Since(began).Seconds())).
			Msg("screenpopd stopped at once by a second signal, before its graceful stop ended: agents see their socket drop, events not yet stored in NATS are lost, those the resolver held come back after their ack wait")
		lw.CloseWith(b.Bytes(), forcedLogFlush)
	})
}

// registerLogDropped counts lw's dropped lines on reg.
func registerLogDropped(reg prometheus.Registerer, lw *logwriter.Writer) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "screenpop_log_lines_dropped_total",
		Help: "Log lines dropped because the log's reader (stderr: journald, the container runtime) took none while 8 MB of lines waited, or its file refused them (a full disk); a warn line says how many once it takes lines again."},
		func() float64 { return float64(lw.Dropped()) }))
}

type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

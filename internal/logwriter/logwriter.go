// Package logwriter hands the daemon's log lines to its stderr from a
// goroutine of its own. A log reader that stops reading (journald hung on
// a slow disk, a container runtime whose log copier stalled, a suspended
// `| tee`) fills the pipe, and every write then blocks: each stage that
// logs (a pop line per pop, a line per agent connection) would stop with
// it, for every agent. Here lines wait in a buffer instead; when it is
// full they are dropped and counted, and a line says how many once the
// reader takes lines again. Lines a write refused (a file on a full disk)
// are counted and told the same way, and a line such a write cut short is
// finished first.
package logwriter

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Writer is an io.Writer for one log line per Write (as zerolog writes).
type Writer struct {
	out    io.Writer
	limit  int
	notice func(dropped uint64) []byte

	mu      sync.Mutex
	pending []byte // lines waiting for out
	// notices are where in pending a notice is, and how many lines it
	// stands for: a write that loses it loses them again.
	notices []queuedNotice
	dropped uint64 // lines dropped since the last notice was queued
	closed  bool

	total atomic.Uint64 // lines dropped since New
	wake  chan struct{}
	done  chan struct{}
}

// queuedNotice is a notice at off in pending, for dropped lines.
type queuedNotice struct {
	off     int
	dropped uint64
}

// New returns a Writer to out that holds up to limit bytes of lines out
// has not taken yet. notice formats the line that stands for dropped
// lines, in the log's format.
func New(out io.Writer, limit int, notice func(dropped uint64) []byte) *Writer {
	w := &Writer{out: out, limit: limit, notice: notice, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues a copy of p for out and never waits for out. A line that
// does not fit (or comes after Close) is dropped and counted.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.dropped > 0 && !w.closed {
		// The first line that fits after a gap is preceded by the gap's
		// notice.
		if n := w.notice(w.dropped); len(w.pending)+len(n)+len(p) <= w.limit {
			w.notices = append(w.notices, queuedNotice{len(w.pending), w.dropped})
			w.pending = append(w.pending, n...)
			w.dropped = 0
		}
	}
	if w.closed || w.dropped > 0 || len(w.pending)+len(p) > w.limit {
		w.dropped++
		w.mu.Unlock()
		w.total.Add(1)
		return len(p), nil
	}
	w.pending = append(w.pending, p...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped is how many lines were dropped since New: for a metric.
func (w *Writer) Dropped() uint64 { return w.total.Load() }

// Close writes what is queued, and the notice of lines dropped since the
// last one, waiting at most timeout for out, and reports whether out took
// it all. Lines written after it are dropped.
func (w *Writer) Close(timeout time.Duration) bool { return w.CloseWith(nil, timeout) }

// CloseWith is Close with a last line: last follows the queued lines and
// the notice, over the limit if need be, and nothing follows it (a line
// another goroutine writes meanwhile is dropped). For the line that says
// why the log ends. Only the first Close or CloseWith queues anything.
func (w *Writer) CloseWith(last []byte, timeout time.Duration) bool {
	w.mu.Lock()
	if !w.closed {
		if w.dropped > 0 {
			// Lines dropped with none logged since: their notice goes
			// last but for last, over the limit if need be.
			w.notices = append(w.notices, queuedNotice{len(w.pending), w.dropped})
			w.pending = append(w.pending, w.notice(w.dropped)...)
			w.dropped = 0
		}
		w.pending = append(w.pending, last...)
	}
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// maxIdleBuffer is the most a drained buffer keeps of its capacity: a
// burst that backed up megabytes gives them back.
const maxIdleBuffer = 256 << 10

func (w *Writer) run() {
	defer close(w.done)
	var batch, joined []byte
	var notices []queuedNotice
	// rest is the end of a line a failed write cut (a file on a full
	// disk takes what fits): written before the next lines, so that the
	// cut line is finished and not glued to the next one, which would
	// make both one line no log store parses.
	var rest []byte
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		closed := w.closed
		if len(w.pending) == 0 && len(rest) == 0 {
			w.mu.Unlock()
			return // closed, and all written
		}
		batch, w.pending = w.pending, batch[:0]
		notices, w.notices = w.notices, notices[:0]
		w.mu.Unlock()
		out := batch
		if len(rest) > 0 {
			joined = append(append(joined[:0], rest...), batch...)
			out = joined
		}
		n, err := w.out.Write(out)
		if err != nil {
			// stderr closed, broken or full: nowhere to say so. The
			// lines not written are lost, but for the end of one cut.
			lost := out[n:]
			cut := len(rest) > 0 && n < len(rest) || n > 0 && out[n-1] != '\n'
			batchAt := len(out) - len(batch) // where batch starts in out
			rest = rest[:0]
			if cut {
				end := bytes.IndexByte(lost, '\n') + 1
				rest, lost = append(rest, lost[:end]...), lost[end:]
			}
			lostAt := len(out) - len(lost)
			n := uint64(bytes.Count(lost, []byte{'\n'}))
			var told uint64 // lines the lost notices stood for
			for _, q := range notices {
				if batchAt+q.off >= lostAt {
					// A notice is not a line of the log's own; the
					// lines it stood for are missing again.
					n, told = n-1, told+q.dropped
				}
			}
			w.total.Add(n)
			if n += told; n > 0 {
				// The next line that is queued is preceded by the
				// notice, as after a stalled reader's gap.
				w.mu.Lock()
				w.dropped += n
				w.mu.Unlock()
			}
			if closed {
				return
			}
		} else {
			rest = rest[:0]
		}
		if cap(batch) > maxIdleBuffer {
			batch = nil
		}
		if cap(joined) > maxIdleBuffer {
			joined = nil
		}
	}
}

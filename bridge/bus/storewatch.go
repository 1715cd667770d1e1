package bus

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/fdlimit"
)

// storeWatch keeps the embedded server's store writing. When a write to
// its files fails (the disk under SCREENPOP_DATA_DIR is full, or turned
// read-only), nats-server keeps the error on the stream for good: every
// later event, marker and pop is refused (with no answer: publishes time
// out) until the stream is opened again, also once the disk has room.
// The watcher logs the failure once, reports it (metric, /status), and
// starts the server again as soon as the store's directory takes writes,
// so that screenpopd resumes without a restart of its own.
type storeWatch struct {
	dir     string // the JetStream store directory handed to nats-server
	log     zerolog.Logger
	metrics *metrics

	started atomic.Bool
	mu      sync.Mutex // orders failing's changes with the gauge's
	failing atomic.Bool
	detail  atomic.Pointer[string]
	failed  chan struct{} // one pending notice
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once

	// A disk that does not answer (a stalled volume, an NFS server gone)
	// fails no write: they wait, and with them every publish. A probe
	// write with fsync every few seconds tells it.
	stalled    atomic.Bool
	probeSince atomic.Int64 // the probe in flight's start (UnixNano), 0: none
	stallDone  chan struct{}
	probeDone  atomic.Pointer[chan struct{}] // closed when the latest probe has returned
}

// A probe of the store's disk is made every storeProbeEvery; one that has
// not returned after storeStallAfter (NATS publishes time out after 5 s)
// means the disk does not answer.
const (
	storeProbeEvery = 5 * time.Second
	storeStallAfter = 10 * time.Second
)

// storeMinFree is the room the store's filesystem must have again before
// the server is started again: a block of the stream and then some, so that a
// disk freed by a few bytes does not fail again at once.
const storeMinFree = 8 << 20

func newStoreWatch(cfg Config, log zerolog.Logger, m *metrics) *storeWatch {
	return &storeWatch{
		dir:       storeDir(cfg),
		log:       log,
		metrics:   m,
		failed:    make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		stallDone: make(chan struct{}),
	}
}

// storeWriteError reports whether a line of nats-server tells of a failed
// write to its store.
func storeWriteError(detail string) bool {
	d := strings.ToLower(detail)
	for _, s := range []string{"critical write error", "no space left on device", "read-only file system", "permission denied while writing", "out of space"} {
		if strings.Contains(d, s) {
			return true
		}
	}
	return false
}

// serverError is told each warning and error nats-server logs. It notes a
// store write failure, and reports whether the line only repeats one
// already known (nats-server logs one per refused message, about every
// second per stream), so that the logger can keep it at debug.
func (w *storeWatch) serverError(detail string) bool {
	if w.failing.Load() {
		return storeWriteError(detail) || strings.Contains(detail, "failed to store a msg")
	}
	if !storeWriteError(detail) {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing.CompareAndSwap(false, true) {
		w.detail.Store(&detail)
		w.metrics.storeFailed.Set(1)
		select {
		case w.failed <- struct{}{}:
		default:
		}
	}
	return false
}

// rearm is called between the old server's shutdown and the new one's
// start: a write error of the new server, even while it starts, is a new
// failure, noticed and restarted for.
func (w *storeWatch) rearm() {
	w.failing.Store(false)
}

// failure is the store's write error while it lasts, or "".
func (w *storeWatch) failure() string {
	if !w.failing.Load() {
		if since := w.probeSince.Load(); w.stalled.Load() && since != 0 {
			return fmt.Sprintf("the disk under SCREENPOP_DATA_DIR does not answer: a write with fsync to the store has waited %ds", int64(time.Since(time.Unix(0, since)).Seconds()))
		}
		return ""
	}
	if d := w.detail.Load(); d != nil {
		return *d
	}
	return "write error"
}

// start watches the server that restart replaces by a new one on the
// same store.
func (w *storeWatch) start(restart func() error) {
	w.started.Store(true)
	go w.run(restart)
	go w.watchStall()
}

// updateGauge sets store_write_failed from a write error or a stall.
// Called with w.mu held.
func (w *storeWatch) updateGauge() {
	v := 0.0
	if w.failing.Load() || w.stalled.Load() {
		v = 1
	}
	w.metrics.storeFailed.Set(v)
}

// watchStall probes the store's disk every storeProbeEvery, one probe at a
// time, and tells when one has waited storeStallAfter (once, at error)
// and when the disk answers again.
//
// A probe's wait is counted in this loop's ticks as well as on the
// (monotonic) clock: while the process is paused (SIGSTOP, a frozen
// cgroup, a paused VM) the clock runs but neither the probe nor this loop
// does, and a ticker keeps one missed tick, not all of them. A probe in
// flight when the process was paused returns as soon as it runs again:
// its disk answered, and the pause is no stall.
func (w *storeWatch) watchStall() {
	defer close(w.stallDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time // the latest probe's start
	ticks := 0         // ticks seen while the latest probe was in flight
	for {
		select {
		case <-w.quit:
			return
		case <-tick.C:
		}
		since := w.probeSince.Load()
		if since == 0 {
			if time.Since(last) >= storeProbeEvery {
				last, ticks = time.Now(), 0
				w.probeSince.Store(last.UnixNano())
				done := make(chan struct{})
				w.probeDone.Store(&done)
				go func() { defer close(done); w.probe() }()
			}
			continue
		}
		ticks++
		if waited := time.Since(last); waited >= storeStallAfter && ticks >= int(storeStallAfter/time.Second) && !w.stalled.Load() {
			w.mu.Lock()
			mark := w.probeSince.Load() == since // still the same probe
			if mark {
				w.stalled.Store(true)
				w.updateGauge()
			}
			w.mu.Unlock()
			if !mark {
				continue
			}
			w.log.Error().Str("store_dir", w.dir).Int64("waited_s", int64(waited.Seconds())).
				Msg("the disk under SCREENPOP_DATA_DIR does not answer (a stalled volume, an NFS server gone): writes to the built-in NATS store wait, no event, pop marker or pop is stored and calls do not pop; screenpopd resumes by itself once it answers")
		}
	}
}

// probe writes and syncs a small file in the store's directory, as the
// store does; it may block for as long as the disk does not answer.
// Errors are the write-error path's (serverError): only the wait counts.
func (w *storeWatch) probe() {
	if f, err := os.CreateTemp(w.dir, ".stall-probe-*"); err == nil {
		_, _ = f.Write([]byte{0})
		_ = f.Sync()
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	w.mu.Lock()
	since := w.probeSince.Swap(0)
	was := w.stalled.Swap(false)
	if was {
		w.updateGauge()
	}
	w.mu.Unlock()
	if was {
		w.log.Info().Str("store_dir", w.dir).Int64("stalled_s", int64(time.Since(time.Unix(0, since)).Seconds())).
			Msg("the disk under SCREENPOP_DATA_DIR answers again: events and pops are stored again")
	}
}

// stop ends the watcher within wait, so that a stop stays bounded: it
// reports whether its loop ended in that time. The loop may be writing its
// probe to a disk that does not answer, or starting the server again, which
// waits as long for the old server's shutdown and then reads the store back
// (seconds per GB); if it ends later, a server it started then shuts itself
// down (embedded.restart), so the one Close shuts down stays the last. The
// stall probe in flight, if any, on a disk that answers takes milliseconds;
// on one that does not, the stop goes on without it at the same bound.
func (w *storeWatch) stop(wait time.Duration) bool {
	w.once.Do(func() { close(w.quit) })
	if !w.started.Load() {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		return false
	}
	<-w.stallDone // its loop only waits for ticks and probes' ends
	if p := w.probeDone.Load(); p != nil {
		select {
		case <-*p:
		case <-t.C:
		}
	}
	return true
}

// probeStopWait bounds the wait at stop for the watcher: its loop and its
// probe in flight.
const probeStopWait = time.Second

func (w *storeWatch) run(restart func() error) {
	defer close(w.done)
	backoff := time.Second
	var restarted time.Time
	for {
		select {
		case <-w.quit:
			return
		case <-w.failed:
		}
		since := time.Now()
		if !restarted.IsZero() && since.Sub(restarted) < time.Minute {
			// Failed again soon after a restart: the disk fills as fast
			// as it is freed; try less often.
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		if detail := w.failure(); strings.Contains(strings.ToLower(detail), "too many open files") {
			// Not the disk: the process (or the system) is out of file
			// descriptors, and the store could not open its files.
			lim, _ := fdlimit.Limit()
			w.log.Error().Str("store_dir", w.dir).Str("detail", detail).Uint64("nofile_limit", lim).
				Msg("the built-in NATS store cannot open its files (out of file descriptors): no event, pop marker or pop is stored and calls do not pop; " + fdlimit.Hint + ": screenpopd resumes by itself")
		} else {
			w.log.Error().Str("store_dir", w.dir).Str("detail", detail).
				Msg("the built-in NATS store cannot write (disk full or read-only under SCREENPOP_DATA_DIR): no event, pop marker or pop is stored and calls do not pop; free disk space (or fix the mount): screenpopd resumes by itself")
		}
		for {
			select {
			case <-w.quit:
				return
			case <-time.After(backoff):
			}
			if !w.writable() {
				continue
			}
			select {
			case <-w.quit:
				return // stopped while the probe waited on the disk
			default:
			}
			// The stream keeps its write error until it is opened
			// again: start the server again on the same store (its
			// streams, consumers and markers are read back from disk).
			// Not JetStream alone: nats-server's ShutdownJetStream
			// leaves its API subscription behind, and a second
			// EnableJetStream races with it (and leaks its workers).
			err := restart()
			if err == nil {
				break
			}
			select {
			case <-w.quit:
				return // stopped meanwhile: restart started nothing that runs
			default:
			}
			w.log.Warn().Err(err).Msg("the built-in NATS store takes writes again but its server did not start again; trying again")
		}
		restarted = time.Now()
		w.mu.Lock()
		w.updateGauge() // 1 if the new server has failed already
		w.mu.Unlock()
		w.metrics.storeRestarts.Inc()
		w.log.Info().Str("store_dir", w.dir).Dur("down", time.Since(since)).
			Msg("the built-in NATS store writes again: its server was started again; events and pops are stored again")
	}
}

// writable is whether the store's filesystem has room (storeMinFree) and
// takes a write.
func (w *storeWatch) writable() bool {
	if free, ok := freeBytes(w.dir); ok && free < storeMinFree {
		return false
	}
	f, err := os.CreateTemp(w.dir, ".probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err == nil
}

package dataversetest

// requestLog is the emulator's request log. It is kept in chunks so that
// logging a request never copies the ones before it: the load tool
// (cmd/screenpop-bench) logs about a thousand requests a second for minutes,
// and one slice grown by append copied all of them, under the server's lock,
// each time it grew: every Dataverse lookup of the daemon stalled for
// 100-150 ms at ever longer intervals (35 s, 45 s and 56 s into a run).
type requestLog struct {
	chunks [][]Request
	n      int
	http   int // requests that were HTTP requests of their own (not $batch parts)
}

// logChunk is the number of requests in one chunk of the log.
const logChunk = 1024

func (l *requestLog) add(r Request) {
	if len(l.chunks) == 0 || len(l.chunks[len(l.chunks)-1]) == logChunk {
		l.chunks = append(l.chunks, make([]Request, 0, logChunk))
	}
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, r)
	l.n++
	if !r.InBatch {
		l.http++
	}
}

// trim drops the oldest chunks while the rest hold at least keep
// requests. The http count stays a count of every request.
func (l *requestLog) trim(keep int) {
	for len(l.chunks) > 1 && l.n-len(l.chunks[0]) >= keep {
		l.n -= len(l.chunks[0])
		l.chunks[0] = nil
		l.chunks = l.chunks[1:]
	}
}

// all returns a copy of the log, oldest first.
func (l *requestLog) all() []Request {
	out := make([]Request, 0, l.n)
	for _, c := range l.chunks {
		out = append(out, c...)
	}
	return out
}

package logwriter_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/logwriter"
)

// sink is a log reader: it keeps what it reads, and while held it reads
// nothing (each Write waits), as a full pipe whose reader stopped.
type sink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	held sync.RWMutex
	// entered has a value once a Write has begun.
	entered chan struct{}
}

func newSink() *sink { return &sink{entered: make(chan struct{}, 1)} }

func (s *sink) Write(p []byte) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	s.held.RLock()
	defer s.held.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSuffix(s.buf.String(), "\n"), "\n")
}

func notice(n uint64) []byte { return fmt.Appendf(nil, "dropped %d\n", n) }

// stuckAfterThirtyLines returns a writer holding ten lines of 10 bytes and
// its reader, held (s.held locked) on the first of 30 lines written: the
// writer holds ten, and has dropped 19.
func stuckAfterThirtyLines() (*sink, *logwriter.Writer) {
	s := newSink()
	w := logwriter.New(s, 100, notice)
	s.held.Lock()
	w.Write([]byte("line 0000\n"))
	<-s.entered
	for i := 1; i < 30; i++ {
		w.Write(fmt.Appendf(nil, "line %04d\n", i))
	}
	return s, w
}

func waitLines(t *testing.T, s *sink, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := s.lines()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriter_EveryLineInOrder(t *testing.T) {
	s := newSink()
	w := logwriter.New(s, 1<<20, notice)
	var want []string
	for i := range 1000 {
		line := fmt.Sprintf("line %d", i)
		want = append(want, line)
		w.Write([]byte(line + "\n"))
	}
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush within 5 s")
	}
	if got := s.lines(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %d lines (first %q), want the 1000 in order", len(got), got[0])
	}
	if w.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", w.Dropped())
	}
}

// While the reader reads nothing, Write returns at once; what does not fit
// in the buffer is dropped, and when the reader reads again a notice
// stands where the lines went missing, followed by the lines after them.
func TestWriter_AStuckReaderDropsLinesAndSaysHowMany(t *testing.T) {
	s := newSink()
	w := logwriter.New(s, 100, notice) // ten lines of 10 bytes
	s.held.Lock()
	// The first line is on its way to the reader, which does not take it.
	w.Write([]byte("line 0000\n"))
	<-s.entered
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 1; i < 30; i++ {
			w.Write(fmt.Appendf(nil, "line %04d\n", i))
		}
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("Write waited for a reader that reads nothing")
	}
	// Lines 1–10 wait in the buffer; 11–29 are dropped.
	if got := w.Dropped(); got != 19 {
		t.Errorf("Dropped = %d while stuck, want 19 (29 lines after the first, 10 fit)", got)
	}
	s.held.Unlock()
	waitLines(t, s, 11)
	w.Write([]byte("line after\n"))
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush within 5 s")
	}
	got := s.lines()
	var want []string
	for i := range 11 {
		want = append(want, fmt.Sprintf("line %04d", i))
	}
	want = append(want, "dropped 19", "line after")
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the reader read\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The stop must not wait for a reader that reads nothing: Close gives up
// after its timeout and says so.
func TestWriter_CloseGivesUpOnAStuckReader(t *testing.T) {
	s := newSink()
	w := logwriter.New(s, 1<<20, notice)
	s.held.Lock()
	defer s.held.Unlock()
	w.Write([]byte("the last line\n"))
	start := time.Now()
	if w.Close(200 * time.Millisecond) {
		t.Fatal("Close reported the line written while the reader read nothing")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v, want about its 200 ms", took)
	}
	w.Write([]byte("after close\n"))
	if w.Dropped() != 1 {
		t.Errorf("Dropped = %d, want the line after Close", w.Dropped())
	}
}

// Lines from many goroutines arrive whole, none lost.
func TestWriter_ConcurrentWritersLoseNothing(t *testing.T) {
	s := newSink()
	w := logwriter.New(s, 1<<20, notice)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				w.Write(fmt.Appendf(nil, "g%d line %d\n", g, i))
			}
		})
	}
	wg.Wait()
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush within 5 s")
	}
	got := s.lines()
	if len(got) != 4000 {
		t.Fatalf("%d lines, want 4000", len(got))
	}
	next := map[string]int{}
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("line %q cut or mixed: %v", l, err)
		}
		if key := fmt.Sprint(g); i != next[key] {
			t.Fatalf("goroutine %d: line %d after %d", g, i, next[key]-1)
		}
		next[fmt.Sprint(g)]++
	}
}

// Lines dropped while the reader stalled, with no line logged after the
// reader reads again before the stop (the daemon stops while its log
// pipeline recovers): Close must still write the notice that stands for
// them, or the log has a gap nothing points at (the metric is gone with
// the process).
func TestWriter_CloseSaysHowManyWereDroppedBeforeIt(t *testing.T) {
	s, w := stuckAfterThirtyLines()
	if got := w.Dropped(); got != 19 {
		t.Fatalf("Dropped = %d while stuck, want 19", got)
	}
	s.held.Unlock()
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush within 5 s")
	}
	got := s.lines()
	if last := got[len(got)-1]; last != "dropped 19" {
		t.Errorf("the reader read\n%s\nwant the 11 lines taken, then \"dropped 19\"", strings.Join(got, "\n"))
	}
}

// fullDisk is a file on a disk that fills: it takes room more bytes, then
// refuses every write (a short write with ENOSPC, as write(2) does) until
// free is called.
type fullDisk struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	room int
	full bool
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full {
		return d.buf.Write(p)
	}
	n := min(len(p), d.room)
	d.room -= n
	d.buf.Write(p[:n])
	if n < len(p) {
		return n, fmt.Errorf("write /var/log/screenpopd.log: no space left on device")
	}
	return n, nil
}

func (d *fullDisk) set(full bool, room int) {
	d.mu.Lock()
	d.full, d.room = full, room
	d.mu.Unlock()
}

// A line a full disk cut (the file took what fitted) is finished before
// the next lines once there is room: glued to the next line, the two
// would be one line no log store parses, and the next one lost with it.
// Only lines not written at all count as dropped, and the notice stands
// where they went missing.
func TestWriter_ALineAFullDiskCutIsFinishedNotGlued(t *testing.T) {
	d := &fullDisk{}
	w := logwriter.New(d, 1<<20, notice)
	d.set(true, 10)
	w.Write([]byte(`{"message":"first, cut after ten bytes"}` + "\n" + `{"message":"second, lost"}` + "\n"))
	deadline := time.Now().Add(5 * time.Second)
	for w.Dropped() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	d.set(false, 0)
	w.Write([]byte(`{"message":"third"}` + "\n"))
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush within 5 s")
	}
	got := d.buf.String()
	want := `{"message":"first, cut after ten bytes"}` + "\n" + string(notice(1)) + `{"message":"third"}` + "\n"
	if got != want {
		t.Errorf("the file holds\n%s\nwant\n%s", got, want)
	}
	if n := w.Dropped(); n != 1 {
		t.Errorf("Dropped = %d, want 1 (the second line; the first was finished)", n)
	}
}

// A disk that stays full while lines keep coming: every line queued then
// is preceded by the notice of the lines lost before it, and the write of
// both fails. The notice says how many app lines went missing in all (not
// only the last failed batch's), and the metric counts app lines, not the
// notices that could not be written either.
func TestWriter_ADiskThatStaysFullCountsEveryLostLineOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		lost int // lines written one at a time while the disk is full
	}{
		{"one line", 1},
		{"two lines", 2},
		{"five lines", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fullDisk{}
			w := logwriter.New(d, 1<<20, notice)
			d.set(true, 0)
			for i := range tc.lost {
				before := w.Dropped()
				w.Write(fmt.Appendf(nil, `{"message":"lost %d"}`+"\n", i))
				deadline := time.Now().Add(5 * time.Second)
				for w.Dropped() == before && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
			}
			d.set(false, 0)
			w.Write([]byte(`{"message":"after"}` + "\n"))
			if !w.Close(5 * time.Second) {
				t.Fatal("Close did not flush within 5 s")
			}
			got := d.buf.String()
			want := string(notice(uint64(tc.lost))) + `{"message":"after"}` + "\n"
			if got != want {
				t.Errorf("the file holds\n%s\nwant\n%s", got, want)
			}
			if n := w.Dropped(); n != uint64(tc.lost) {
				t.Errorf("Dropped = %d, want %d (the lines lost, not the notices)", n, tc.lost)
			}
		})
	}
}

// The line that says why the log ends (a forced exit) is its last line
// even with the buffer full of lines a stuck reader did not take: after
// the notice of those dropped; a line written after it is dropped.
func TestWriter_CloseWithEndsTheLogOverTheLimit(t *testing.T) {
	s, w := stuckAfterThirtyLines()
	closed := make(chan bool, 1)
	go func() { closed <- w.CloseWith([]byte("stopped at once\n"), 5*time.Second) }()
	s.held.Unlock()
	if !<-closed {
		t.Fatal("CloseWith did not flush within 5 s")
	}
	got := s.lines()
	if n := len(got); n < 2 || got[n-2] != "dropped 19" || got[n-1] != "stopped at once" {
		t.Errorf("the reader read\n%s\nwant the lines taken, \"dropped 19\", then \"stopped at once\"", strings.Join(got, "\n"))
	}
	if w.Write([]byte("too late\n")); w.Dropped() != 20 {
		t.Errorf("Dropped = %d after a line written after CloseWith, want 20", w.Dropped())
	}
	if got := s.lines(); got[len(got)-1] != "stopped at once" {
		t.Errorf("a line written after CloseWith reached the reader: %q", got[len(got)-1])
	}
}

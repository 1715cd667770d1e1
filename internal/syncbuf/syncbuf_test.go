package syncbuf_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

func TestBuffer_WritersAndAReaderAtOnce(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, err := b.Write([]byte("line\n")); err != nil {
					t.Error(err)
				}
				_ = b.String() // a reader while others write: -race checks it
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != 800 {
		t.Errorf("%d lines, want 800", got)
	}
}

// A zerolog log, read back line by line; a line that is not JSON is an
// error, not skipped.
func TestBuffer_JSONLines(t *testing.T) {
	var b syncbuf.Buffer
	_, _ = b.Write([]byte(`{"level":"info","message":"pop"}` + "\n" + `{"level":"debug","message":"no pop"}` + "\n"))
	lines, err := b.JSONLines()
	if err != nil || len(lines) != 2 || lines[0]["message"] != "pop" || lines[1]["level"] != "debug" {
		t.Fatalf("lines %v, %v; want the two objects", lines, err)
	}
	_, _ = b.Write([]byte("panic: not a log line\n"))
	if _, err := b.JSONLines(); err == nil || !strings.Contains(err.Error(), "panic: not a log line") {
		t.Fatalf("err %v, want the line quoted", err)
	}
}

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

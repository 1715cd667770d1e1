// Package syncbuf is a bytes.Buffer for writers on several goroutines and
// a reader on another: what a test hands a logger whose goroutines may
// still write while the test reads.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for concurrent use. The zero value is empty and ready.
// It only appends and reads the whole: no Bytes, Reset or Read, which
// would hand out memory or state a writer may change.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

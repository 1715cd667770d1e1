// Package syncbuf is a bytes.Buffer for writers on several goroutines and
// a reader on another: what a test hands a logger whose goroutines may
// still write while the test reads.
package syncbuf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
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

// JSONLines decodes each line written so far as a JSON object, as a
// zerolog logger writes them; a line that is not one is an error that
// quotes it.
func (b *Buffer) JSONLines() ([]map[string]any, error) {
	var out []map[string]any
	for l := range strings.Lines(b.String()) {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return nil, fmt.Errorf("log line %q is not a JSON object: %w", l, err)
		}
		out = append(out, m)
	}
	return out, nil
}

package dataversetest

import "testing"

// The log keeps every request in order across its chunks, and counts the
// HTTP requests of their own.
func TestRequestLog(t *testing.T) {
	var l requestLog
	const n = 3*logChunk + 17
	for i := range n {
		l.add(Request{Seq: i + 1, InBatch: i%4 != 0})
	}
	all := l.all()
	if len(all) != n {
		t.Fatalf("%d requests, want %d", len(all), n)
	}
	for i, r := range all {
		if r.Seq != i+1 {
			t.Fatalf("request %d has seq %d", i, r.Seq)
		}
	}
	if want := (n + 3) / 4; l.http != want {
		t.Errorf("%d HTTP requests, want %d", l.http, want)
	}
	all[0].Seq = -1 // a copy: the log is not changed through it
	if l.all()[0].Seq != 1 {
		t.Error("all returned the log itself")
	}
}

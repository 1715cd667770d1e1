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

// A long-running emulator (screenpopd demo) with KeepRequests keeps the
// newest requests only: the log of a demo left running grew by every
// lookup for as long as the process lived.
func TestServer_KeepRequests(t *testing.T) {
	const keep = 2000
	s := New(Config{KeepRequests: keep})
	const n = 10 * logChunk
	for range n {
		s.logRequest(Request{Method: "GET", Path: "contacts"})
	}
	all := s.Requests()
	if len(all) < keep || len(all) > keep+logChunk {
		t.Fatalf("log holds %d requests after %d, want %d to %d", len(all), n, keep, keep+logChunk)
	}
	if last := all[len(all)-1].Seq; last != n {
		t.Errorf("newest request has seq %d, want %d", last, n)
	}
	if s.HTTPRequests() != n {
		t.Errorf("HTTPRequests() = %d, want %d: the count covers every request", s.HTTPRequests(), n)
	}
}

package loglimit

import (
	"testing"
	"time"
)

// One line per period per key, with the count held back; past maxKeys new
// keys share one line (keys may come from clients).
func TestLimiter(t *testing.T) {
	l := New(time.Minute, 2)
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	if ok, held := l.Allow("a", t0); !ok || held != 0 {
		t.Fatalf("first line: %v, %d", ok, held)
	}
	for i := range 3 {
		if ok, _ := l.Allow("a", t0.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatal("a repeat within the period was let through")
		}
	}
	if ok, _ := l.Allow("b", t0); !ok {
		t.Fatal("another key is held back by the first")
	}
	if ok, held := l.Allow("a", t0.Add(time.Minute)); !ok || held != 3 {
		t.Fatalf("after the period: %v, held %d; want the line, with 3 held back", ok, held)
	}
	// b is swept (quiet for a period) to make room for c; past maxKeys
	// new keys share one line (keys come from clients).
	if ok, _ := l.Allow("c", t0.Add(time.Minute)); !ok {
		t.Fatal("c was not let through after b was swept")
	}
	if ok, _ := l.Allow("d", t0.Add(time.Minute)); !ok {
		t.Fatal("the shared line was not let through once")
	}
	if ok, _ := l.Allow("e", t0.Add(time.Minute)); ok {
		t.Fatal("a fifth key got a line of its own past maxKeys")
	}
}

// Every: a retry loop's warning at its first failure, then once per
// period however often it retries; after a success, the next failure is
// logged at once.
func TestEvery(t *testing.T) {
	e := Every{Period: 30 * time.Second}
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if !e.Allow(t0) {
		t.Fatal("the first failure was not logged")
	}
	for i := range 29 {
		if e.Allow(t0.Add(time.Duration(i+1) * time.Second)) {
			t.Fatalf("a retry %d s after the line was logged too", i+1)
		}
	}
	if !e.Allow(t0.Add(30 * time.Second)) {
		t.Fatal("not logged again after the period")
	}
	e.Reset()
	if !e.Allow(t0.Add(31 * time.Second)) {
		t.Fatal("the first failure after a success was held back")
	}
}

// held counts the lines held back since the last one logged, not since
// the start: each line let through reports its own period's repeats; and
// a repeat anywhere within the period is held back.
func TestLimiter_HeldBackSinceTheLastLine(t *testing.T) {
	l := New(time.Minute, 4)
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	l.Allow("a", t0)
	for _, d := range []time.Duration{time.Second, 30 * time.Second, 59 * time.Second} {
		if ok, _ := l.Allow("a", t0.Add(d)); ok {
			t.Fatalf("a repeat %v after the line was let through", d)
		}
	}
	if ok, held := l.Allow("a", t0.Add(time.Minute)); !ok || held != 3 {
		t.Fatalf("after the first period: %v, held %d; want the line, with 3 held back", ok, held)
	}
	l.Allow("a", t0.Add(90*time.Second))
	if ok, held := l.Allow("a", t0.Add(2*time.Minute)); !ok || held != 1 {
		t.Fatalf("after the second period: %v, held %d; want the line, with the 1 held back since the last", ok, held)
	}
}

// Package loglimit holds back repeats of a log line: lines any client can
// cause, or one per request or socket during an outage, must not flood the
// log.
package loglimit

import (
	"sync"
	"time"
)

// Limiter lets a log line through once per period per key and counts the
// ones it holds back (10,000 sockets whose token checks fail every 30 s
// were 330 warn lines a second).
type Limiter struct {
	period  time.Duration
	maxKeys int

	mu   sync.Mutex
	keys map[string]*limitedLine
}

type limitedLine struct {
	last time.Time
	held int
}

// New returns a limiter of one line per period per key, for at most
// maxKeys keys.
func New(period time.Duration, maxKeys int) *Limiter {
	return &Limiter{period: period, maxKeys: maxKeys, keys: map[string]*limitedLine{}}
}

// Allow reports whether the line of key may be logged at now, and how many
// of its lines were held back since the last one logged. Past maxKeys keys
// a new key shares the line of key "" (the keys come from clients).
func (l *Limiter) Allow(key string, now time.Time) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= l.maxKeys {
			l.sweep(now)
		}
		if len(l.keys) >= l.maxKeys {
			key = ""
			e = l.keys[key]
		}
		if e == nil {
			e = &limitedLine{}
			l.keys[key] = e
		}
	}
	if !e.last.IsZero() && now.Sub(e.last) < l.period {
		e.held++
		return false, 0
	}
	held, e.held, e.last = e.held, 0, now
	return true, held
}

// sweep drops the keys not logged for a period (their held-back count
// with them): made-up keys must not fill the table for good.
func (l *Limiter) sweep(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.period {
			delete(l.keys, k)
		}
	}
}

// Every lets the line of one retry loop through at its first Allow and
// then at most once per Period, whatever the pace of the attempts (a
// retry sooner than its backoff, at each event queued or each second of
// an outage). The loop keeps it as a value: no allocation, not safe for
// concurrent use.
type Every struct {
	Period time.Duration
	last   time.Time
}

// Allow reports whether the line may be logged at now.
func (e *Every) Allow(now time.Time) bool {
	if !e.last.IsZero() && now.Sub(e.last) < e.Period {
		return false
	}
	e.last = now
	return true
}

// Reset makes the next Allow let the line through: the loop succeeded, and
// its next failure is news.
func (e *Every) Reset() { e.last = time.Time{} }

package notifications

import (
	"hash/maphash"
	"sync"
	"time"
)

// seenHorizon is how long after its last snapshot a (conversation, agent)
// pair is remembered at least: longer than a conversation stays silent
// while the agent is still in it. A pair forgotten too early costs one
// conversation fetch in the next reconciliation, nothing more.
const seenHorizon = 12 * time.Hour

// seenGens is how many generations the set keeps: the one being written
// and three whole spans of seenHorizon/3, so a pair lives between the
// horizon and a third more.
const seenGens = 4

// seenSet remembers when each (conversation, agent) pair last had a
// snapshot and whether the agent then had a connected leg in it, for
// reconciliation: a conversation the agent was, and still is, connected to
// needs no fetch after a gap. It holds every pair of the last
// 12 to 16 hours (about 1.5 to 2 million for 10,000 agents on 5-minute
// calls), so it is built to be cheap to hold: a pair is a 128-bit hash of
// its two ids and a time, nothing the collector has to scan, and old pairs
// go a whole generation at a time, without a sweep that would hold the lock
// every socket reader takes.
type seenSet struct {
	mu      sync.Mutex
	seeds   [2]maphash.Seed
	span    time.Duration
	gens    [seenGens]map[seenKey]int64 // gens[0] is written; values are nanoseconds since epoch, the lowest bit the connected flag
	started time.Time                   // when gens[0] began
	// epoch is the set's start, with its monotonic reading: the times kept
	// are offsets from it, so that last gives a time with one too, and
	// comparing it with another time.Now() of this process is not thrown
	// by a step of the wall clock (NTP) between the two.
	epoch time.Time
}

// seenKey is a pair's hash: 128 bits, so that two pairs of a day's
// millions share one with a probability of about 10^-26.
type seenKey [2]uint64

func newSeenSet(horizon time.Duration, now time.Time) *seenSet {
	s := &seenSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, span: horizon / (seenGens - 1), started: now, epoch: now}
	for i := range s.gens {
		s.gens[i] = map[seenKey]int64{}
	}
	return s
}

func (s *seenSet) key(conv, agent string) seenKey {
	var k seenKey
	for i := range k {
		var h maphash.Hash
		h.SetSeed(s.seeds[i])
		h.WriteString(conv)
		h.WriteByte(0)
		h.WriteString(agent)
		k[i] = h.Sum64()
	}
	return k
}

// mark records a snapshot of conversation conv on agent's topic at at, in
// which the agent had a connected leg or not.
func (s *seenSet) mark(conv, agent string, at time.Time, connected bool) {
	k := s.key(conv, agent)
	v := int64(at.Sub(s.epoch)) &^ 1 // a nanosecond less, for the flag
	if connected {
		v |= 1
	}
	s.mu.Lock()
	s.rotate(at)
	s.gens[0][k] = v
	s.mu.Unlock()
}

// last returns when conv was last seen on agent's topic and whether the
// agent then had a connected leg in it, if the pair is remembered.
func (s *seenSet) last(conv, agent string, now time.Time) (at time.Time, connected, ok bool) {
	k := s.key(conv, agent)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate(now)
	for _, g := range s.gens {
		if v, ok := g[k]; ok {
			return s.epoch.Add(time.Duration(v &^ 1)), v&1 == 1, true
		}
	}
	return time.Time{}, false, false
}

// len returns how many pairs are held (a pair seen again after its
// generation closed counts twice until the older one is dropped).
func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.gens {
		n += len(g)
	}
	return n
}

// rotate starts a new generation for each whole span since the current one
// began, dropping the oldest. s.mu is held.
func (s *seenSet) rotate(now time.Time) {
	for i := 0; now.Sub(s.started) >= s.span; i++ {
		if i == seenGens {
			s.started = now // everything is older than the horizon: start afresh
			return
		}
		copy(s.gens[1:], s.gens[:seenGens-1])
		s.gens[0] = map[seenKey]int64{}
		s.started = s.started.Add(s.span)
	}
}

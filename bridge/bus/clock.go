package bus

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ClockOffsetHeader carries, on every message an instance publishes, its
// measured offset to the server's clock in milliseconds (the server's time
// minus the instance's): an instance handling the message moves the times
// the publisher wrote in it (an event's receivedAt) onto its own clock.
const ClockOffsetHeader = "Screenpop-Clock-Offset"

// clockRefresh is how old the measured offset of the server's clock may be
// before a reading that needs it measures it again (one stream info).
const clockRefresh = time.Minute

// clockWarnAt is the offset past which the bus warns: NTP keeps clocks
// within milliseconds; seconds mean a host without it.
const clockWarnAt = 2 * time.Second

// clockWarnEvery rate-limits the warning while the offset stays.
const clockWarnEvery = 10 * time.Minute

// serverClock is the NATS server's clock as this host sees it: the offset
// of the server's time (a JetStream info answer's ts) from this host's at
// the middle of the request, good to half a round trip. JetStream stamps
// stored messages and markers with the server's clock and reads start
// times on it; this host's windows (a replay's since, a consumer's Since,
// the duplicate window of a marker) are moved onto it. The embedded
// server shares this host's clock: its offset is about 0.
type serverClock struct {
	mu         sync.Mutex
	offset     time.Duration
	sampled    time.Time // local, zero until measured
	tried      time.Time // local: the last measurement begun, or done
	refreshing bool      // a measurement is under way
	warned     time.Time
}

// sampleClock records the server's time ts seen in an answer to a request
// sent at t0 and answered at t1, and returns the server's time now. False
// when ts is zero (a server that does not say its time).
func (c *Conn) sampleClock(ts, t0, t1 time.Time) (time.Time, bool) {
	if ts.IsZero() {
		return time.Time{}, false
	}
	off := ts.Sub(t0.Add(t1.Sub(t0) / 2))
	k := &c.clock
	k.mu.Lock()
	k.offset, k.sampled, k.tried = off, t1, t1
	warn := (off >= clockWarnAt || off <= -clockWarnAt) && (k.warned.IsZero() || t1.Sub(k.warned) >= clockWarnEvery)
	if warn {
		k.warned = t1
	}
	k.mu.Unlock()
	if warn {
		c.log.Warn().Float64("offset_seconds", off.Round(time.Millisecond).Seconds()).
			Msg("the NATS server's clock differs from this host's: check NTP (chrony, systemd-timesyncd) on both")
	}
	return t1.Add(off), true
}

// refreshClock measures the offset with one stream info.
func (c *Conn) refreshClock(ctx context.Context) {
	if c.stream == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	t0 := time.Now()
	info, err := c.stream.Info(ctx)
	if err != nil {
		return // the last offset stays
	}
	c.sampleClock(info.TimeStamp, t0, time.Now())
}

// clockOffset returns the server's clock minus this host's as last
// measured, 0 until measured. When that is older than clockRefresh it is
// measured again in the background (one measurement at a time, at most once
// per clockRefresh even when it fails), so that no pop waits for the
// stream info.
func (c *Conn) clockOffset() time.Duration {
	k := &c.clock
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.refreshing && !c.closing.Load() && (k.tried.IsZero() || time.Since(k.tried) >= clockRefresh) {
		k.refreshing, k.tried = true, time.Now()
		go func() {
			c.refreshClock(context.Background())
			k.mu.Lock()
			k.refreshing = false
			k.mu.Unlock()
		}()
	}
	return k.offset
}

// serverNow is the server's time now, as well as this host knows it.
func (c *Conn) serverNow() time.Time {
	return time.Now().Add(c.clockOffset())
}

// lastOffset returns the last measured offset, without measuring it, and
// whether there is one.
func (c *Conn) lastOffset() (time.Duration, bool) {
	c.clock.mu.Lock()
	defer c.clock.mu.Unlock()
	return c.clock.offset, !c.clock.sampled.IsZero()
}

// correction returns what to add to a time the publisher of a message with
// headers h wrote to have it on this host's clock: the publisher's offset
// to the server less this host's. False when either is unknown.
func (c *Conn) correction(h nats.Header) (time.Duration, bool) {
	v := h.Get(ClockOffsetHeader)
	if v == "" {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	mine := c.clockOffset()
	if _, ok := c.lastOffset(); !ok {
		return 0, false
	}
	return time.Duration(ms)*time.Millisecond - mine, true
}

package notifications

import (
	"testing"
	"time"
)

// A Retry-After is honoured as Genesys sends it (whole seconds), but a
// gateway's hour is not: the shard, the login and the queue pages wait at
// most five minutes before they try again.
func TestRetryAfter_WholeSecondsAtMostFiveMinutes(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":      0,
		"x":     0,
		"-3":    0,
		"0":     0,
		"7":     7 * time.Second,
		" 60 ":  time.Minute,
		"300":   5 * time.Minute,
		"3600":  5 * time.Minute,
		"86400": 5 * time.Minute,
	} {
		if got := retryAfter(v); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

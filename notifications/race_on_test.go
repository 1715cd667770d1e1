//go:build race

package notifications_test

// raceEnabled: the race detector slows everything several times over, so
// time-compressed scripts give conversations proportionally more time.
const raceEnabled = true

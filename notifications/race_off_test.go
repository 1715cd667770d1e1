//go:build !race

package notifications_test

const raceEnabled = false

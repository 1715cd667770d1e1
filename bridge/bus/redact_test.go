package bus_test

import (
	"strings"
	"testing"

	"github.com/screenpop/screenpop/bridge/bus"
)

// A NATS_URL fit to log keeps each server's address and masks its user
// info, also when a password's comma splits the list before the '@'.
func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://nats1.example.com:4222,nats://nats2.example.com:4222", "nats://nats1.example.com:4222,nats://nats2.example.com:4222"},
		{"tls://[::1]:4222", "tls://[::1]:4222"},
		{"nats://[::1]", "nats://[::1]"},
		{"wss://nats.example.com/nats", "wss://nats.example.com/nats"},
		{"nats://h1:4222, nats://h2:4222", "nats://h1:4222, nats://h2:4222"},
		{"nats1.example.com:4222", "nats1.example.com:4222"},
		{"nats://screenpop:Hunter2@127.0.0.1:4222", "nats://***@127.0.0.1:4222"},
		{"nats://token@127.0.0.1:4222", "nats://***@127.0.0.1:4222"},
		{"nats://screenpop:Hunter2,Secret@127.0.0.1:4222", "nats://***@127.0.0.1:4222"},
		{"nats://screenpop:a,b,c@h1:4222,nats://screenpop:a,b,c@h2:4222", "nats://***@h1:4222,nats://***@h2:4222"},
		{"nats://screenpop:pa ss@h1", "nats://***@h1"},
		{"nats://screenpop:Hunter2", "nats://***"},
		{"nats://h1:4222,h2:4222", "nats://h1:4222,h2:4222"},
		{"nats://u:p@h1:4222,h2:4222", "nats://***@h1:4222,h2:4222"},
	} {
		got := bus.RedactURL(c.in)
		if got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, secret := range []string{"Hunter2", "Secret", "screenpop:", "token"} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q: %q left in", c.in, got, secret)
			}
		}
	}
}

package notifications

import (
	"testing"
)

func TestUserOfTopic(t *testing.T) {
	for topic, want := range map[string]string{
		"v2.users.5e1f0a1c-0000-4000-8000-000000000001.conversations": "5e1f0a1c-0000-4000-8000-000000000001",
		"v2.users.conversations":         "", // prefix and suffix overlap: once a slice panic
		"v2.users..conversations":        "",
		"v2.users.x.conversations.calls": "",
		"v2.users.x.presence":            "",
		"channel.metadata":               "",
		"":                               "",
	} {
		if got := userOfTopic(topic); got != want {
			t.Errorf("userOfTopic(%q) = %q, want %q", topic, got, want)
		}
	}
}

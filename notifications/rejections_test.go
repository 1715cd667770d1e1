package notifications

import (
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// A PUT in flight when its agent was removed answers with that agent's
// topic rejected: the rejection of an agent no longer watched is not kept
// (it would stay in /status and the gauge for good; later PUTs do not list
// the topic).
func TestRecordRejections_IgnoresAnAgentRemovedMeanwhile(t *testing.T) {
	c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", Agents: []string{"00000000-0000-4000-8000-000000000001"}}, zerolog.Nop(), make(chan bridge.Snapshot))
	if err != nil {
		t.Fatal(err)
	}
	watched, removed := agentTopic("00000000-0000-4000-8000-000000000001"), agentTopic("00000000-0000-4000-8000-000000000002")
	c.mu.Lock()
	c.agentShard["00000000-0000-4000-8000-000000000001"] = &shard{}
	c.mu.Unlock()
	c.recordRejections([]string{watched, removed}, map[string]rejection{
		watched: {Topic: watched, UserID: userOfTopic(watched), Reason: "notification.unauthorized.topic"},
		removed: {Topic: removed, UserID: userOfTopic(removed), Reason: "notification.unauthorized.topic"},
	})
	if got := c.status().RejectedTopics; len(got) != 1 || got[0].Topic != watched {
		t.Fatalf("status rejectedTopics = %+v, want only the watched agent's", got)
	}
}

// Status lists the first rejected topics in topic order, however many
// there are, and counts them all.
func TestFirstRejections(t *testing.T) {
	m := map[string]rejection{}
	for i := range 1000 {
		topic := fmt.Sprintf("v2.users.%04d.conversations", (i*7919)%1000)
		m[topic] = rejection{Topic: topic}
	}
	for _, n := range []int{1, 3, 100, 1000, 2000} {
		got := firstRejections(m, n)
		if want := min(n, len(m)); len(got) != want {
			t.Fatalf("n=%d: %d listed, want %d", n, len(got), want)
		}
		for i, r := range got {
			if want := fmt.Sprintf("v2.users.%04d.conversations", i); r.Topic != want {
				t.Fatalf("n=%d: #%d is %s, want %s", n, i, r.Topic, want)
			}
		}
	}
	if got := firstRejections(nil, 5); len(got) != 0 {
		t.Errorf("none rejected: %d listed", len(got))
	}
}

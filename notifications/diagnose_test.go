package notifications_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// An agent past the channel limit gets no pops. The agent asks why their
// screen did not pop; the on-call engineer has the agent's user id and the
// log. The over-limit error must name the agents it leaves out (ids, no
// PII), or the engineer can only guess that this agent is one of them.
func TestClient_AgentsPastTheChannelLimitAreNamed(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.TopicsPerChannel = 1; c.MaxChannels = 2 }, 64)
	h.awaitReady(5 * time.Second)
	var left []string
	waitFor(t, 5*time.Second, "two agents watched", func() bool {
		left = left[:0]
		for _, a := range as {
			if !h.emu.IsDelivered("v2.users." + a.ID + ".conversations") {
				left = append(left, a.ID)
			}
		}
		return len(left) == 1
	})
	var line string
	waitFor(t, 5*time.Second, "the over-limit log line", func() bool {
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "too many agents for the channel limit") {
				line = l
			}
		}
		return line != ""
	})
	if !strings.Contains(line, left[0]) {
		t.Errorf("over-limit line %s\ndoes not name the agent left out, %s", line, left[0])
	}
	if ids := gjson.Get(line, "agent_ids"); ids.Exists() && len(ids.Array()) != 1 {
		t.Errorf("agent_ids %s, want the one agent left out", ids)
	}
}

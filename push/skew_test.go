package push

import (
	"testing"
	"time"
)

// A page of a later protocol version against this daemon (a rolling
// upgrade, or the web resource published before the daemon): a frame type
// this daemon does not know is ignored, as the page ignores frame types it
// does not know, and the socket keeps delivering; a known frame out of
// place (a second hello) or an ack without seq is still refused.
func TestServer_SkewUnknownFrameTypeIgnored(t *testing.T) {
	e := newEnv(t, Config{}, nil, nil)
	c, _ := e.connect(e.token("agent-newer"), nil, "")
	c.send(map[string]any{"type": "features", "popOutcome": true})
	c.send(map[string]any{"type": "result", "seq": 1, "outcome": "opened"})
	time.Sleep(300 * time.Millisecond) // the server has read them
	seq := e.publish("agent-newer", "conv-newer")
	if m := c.next(); m.Type != "pop" || m.Seq != seq {
		t.Fatalf("got %+v, want pop %d on the same socket", m, seq)
	}
	c.send(map[string]any{"type": "ack"})
	c.expectClose(CloseMalformed)
}

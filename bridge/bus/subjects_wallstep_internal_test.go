package bus

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// TestConn_SubjectsPutBackAfterAWallClockStepBack: restoreSubjects keeps
// when it last read the stream's subjects as the wall clock's UnixNano and
// compares it with a later time.Now().UnixNano() (at most once a second).
// A check made just before NTP steps the clock back 5 minutes (a host that
// ran fast) reads as made 5 minutes in the future: for those 5 minutes no
// publish puts back subjects narrowed by hand, and no pop is stored, the
// same bug 69e8d71 fixed in push and the seen set. The stamp is set as
// that check left it.
func TestConn_SubjectsPutBackAfterAWallClockStepBack(t *testing.T) {
	c, err := Start(context.Background(), Config{Listen: "off", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	// The last check, at a wall clock since stepped back 5 minutes.
	c.subjectsChecked.Store(time.Now().Add(5 * time.Minute).UnixNano())
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{"screenpop.events.>"}
	if _, err := c.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var perr error
	for range 3 { // the resolver's retries
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		perr = c.Publish(pctx, bridge.Message{Subject: bridge.PopSubject("agent-s"), ID: "pop:conv-after:P1", Data: []byte("{}")})
		cancel()
		if perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("a pop after the stream's subjects were narrowed by hand, the wall clock stepped back 5 min since the last check, is not stored after 3 tries: %v", perr)
	}
}

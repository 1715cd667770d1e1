package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// What an admin is told about personal data at rest (docs/operations.md,
// "Personal data"): a message past SCREENPOP_STREAM_MAX_AGE is no longer
// served, but JetStream leaves its bytes in the file block that holds it
// (up to 8 MB of messages) while a younger message there lives; they go
// with the block, once every message in it has expired. Should a NATS
// upgrade change either half, change that section.
func TestConn_ExpiredMessagesLeaveTheStoreWithTheirBlock(t *testing.T) {
	dir := t.TempDir()
	c := MustStart(t, bus.Config{Listen: "off", DataDir: dir, StreamMaxAge: 4 * time.Second, DuplicateWindow: time.Second})
	ctx := context.Background()
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	state := func() (first, msgs uint64) {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.FirstSeq, info.State.Msgs
	}
	callerA, callerB := "+13175550123", "+13175550188"
	publish := func(conv, phone string) {
		t.Helper()
		e := &bridge.Event{ConversationID: bridge.ConversationID(conv), Agent: bridge.AgentLeg{UserID: "agent-r", ParticipantID: "P1"},
			Media: bridge.MediaVoice, State: bridge.StateAlerting, Customer: bridge.Customer{Phone: phone, Address: "tel:" + phone}}
		m, err := bridge.EncodeEvent(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	publish("conv-a", callerA)
	// Calls keep coming, each younger than A: until A has expired, its
	// block holds a message that lives on.
	deadline := time.Now().Add(15 * time.Second)
	for n := 0; ; n++ {
		if first, _ := state(); first > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caller A's message did not expire within 15 s of a 4 s max age")
		}
		publish(fmt.Sprintf("conv-b%d", n), callerB)
		time.Sleep(250 * time.Millisecond)
	}
	if _, msgs := state(); msgs == 0 {
		t.Fatal("every message expired at once: nothing younger kept A's block")
	}
	if files := filesHolding(t, dir, callerA); len(files) == 0 {
		t.Errorf("caller A's number, expired, is in no file while younger messages share its block: NATS now erases expired messages; update docs/operations.md, Personal data")
	}

	waitFor(t, 10*time.Second, func() bool { _, msgs := state(); return msgs == 0 })
	// The block goes at the next expiry pass or sync; it is asked for
	// within a few seconds.
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := append(filesHolding(t, dir, callerA), filesHolding(t, dir, callerB)...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("both messages expired, and callers' numbers are still in %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// filesHolding lists the files under dir whose bytes contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) { // removed while walking
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

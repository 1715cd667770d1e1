package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
)

// frameSeeds are the notification frames of every bridge fixture, whole,
// as they arrive on a channel socket, plus the system frames.
func frameSeeds(f *testing.F) [][]byte {
	out := [][]byte{
		[]byte(`{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}`),
		[]byte(`{"topicName":"channel.metadata","eventBody":{"message":"pong"}}`),
		[]byte(`{"result":"404","message":"The requested channel could not be found."}`),
		[]byte(`{"result":"200","status":"subscribed","correlationId":"x"}`),
		[]byte(`{"topicName":"v2.system.socket_closing","eventBody":{"channelId":"ch-1","message":"WebSocket is closing for maintenance"}}`),
		[]byte(`{"topicName":"v2.system.no_longer_subscribed.ch-1","eventBody":{"channelId":"ch-1","systemTopicType":"no_longer_subscribed","reason":"another_channel_subscribed"}}`),
		[]byte(`{"topicName":"v2.system.token_revoked","eventBody":{}}`),
		[]byte(`{"topicName":"v2.users.conversations","eventBody":{"id":"c"}}`),
		[]byte(`{"topicName":"v2.users.a.conversations","eventBody":[]}`),
	}
	for _, dir := range []string{"snapshots", "handwritten"} {
		files, _ := filepath.Glob(filepath.Join("..", "bridge", "testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			var frames []json.RawMessage
			if err := json.Unmarshal(b, &frames); err != nil {
				f.Fatalf("%s: %v", file, err)
			}
			for _, fr := range frames {
				out = append(out, fr)
			}
		}
	}
	return out
}

// FuzzSession_Dispatch feeds arbitrary channel socket frames to a
// session's dispatch: it must never panic, emit a snapshot only for an
// agent's conversations topic with an object body, and the snapshot must
// not share the read buffer that the next frame overwrites.
func FuzzSession_Dispatch(f *testing.F) {
	for _, b := range frameSeeds(f) {
		f.Add(b)
	}
	out := make(chan bridge.Snapshot, 1)
	c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", Registerer: prometheus.NewRegistry()}, zerolog.Nop(), out)
	if err != nil {
		f.Fatal(err)
	}
	c.tok.Store(&tokenState{value: "tok", expires: time.Now().Add(time.Hour)})
	sh := newShard(c, 0)
	f.Fuzz(func(t *testing.T, frame []byte) {
		s := &session{sh: sh, chID: "ch-1", ref: channelRef("ch-1"), done: make(chan struct{})}
		close(s.done) // report must not block: no shard loop reads events here
		b := append([]byte(nil), frame...)
		s.dispatch(context.Background(), b, time.Now())
		for len(sh.events) > 0 {
			<-sh.events
		}
		for len(c.refreshCh) > 0 {
			<-c.refreshCh
		}
		select {
		case snap := <-out:
			if snap.Agent == "" || userOfTopic(snap.Topic) != string(snap.Agent) {
				t.Fatalf("snapshot for agent %q on topic %q", snap.Agent, snap.Topic)
			}
			// A broken frame may hand on a broken body (the normalizer
			// validates it); a valid frame hands on its object.
			if len(snap.Body) == 0 || snap.Body[0] != '{' || (gjson.ValidBytes(frame) && !gjson.ValidBytes(snap.Body)) {
				t.Fatalf("snapshot body %q from frame %q", snap.Body, frame)
			}
			body := append([]byte(nil), snap.Body...)
			topic := snap.Topic
			for i := range b {
				b[i] = 'x' // the next frame
			}
			if !bytes.Equal(snap.Body, body) || snap.Topic != topic {
				t.Fatal("the snapshot shares the read buffer")
			}
		default:
		}
	})
}

// FuzzAdaptConversation feeds arbitrary GET /api/v2/conversations/{id}
// answers to AdaptConversation: it must never panic, and what it accepts
// becomes a topic-shaped body with the same id that adapts to itself.
func FuzzAdaptConversation(f *testing.F) {
	for _, fr := range frameSeeds(f) {
		if body := gjson.GetBytes(fr, "eventBody"); body.IsObject() {
			f.Add([]byte(body.Raw))
		}
	}
	f.Add([]byte(`{"id":"c","participants":null,"recentTransfers":null,"divisions":[{"id":"d"}]}`))
	f.Add([]byte(`{"id":"c","participants":[{"id":"p","attributes":{"k":"v"},"calls":[{"id":"k","self":null,"other":{"nameRaw":"x"}}]}]}`))
	f.Fuzz(func(t *testing.T, rest []byte) {
		body, err := AdaptConversation(rest)
		if err != nil {
			return
		}
		var in, got struct{ ID string }
		_ = json.Unmarshal(rest, &in)
		if err := json.Unmarshal(body, &got); err != nil || got.ID != in.ID {
			t.Fatalf("adapted body %s (%v): id %q, want %q", body, err, got.ID, in.ID)
		}
		again, err := AdaptConversation(body)
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("adapting the adapted body: %v\n%s\n%s", err, body, again)
		}
	})
}

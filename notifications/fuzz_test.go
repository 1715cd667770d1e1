package notifications

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// FuzzFrameToEvents feeds arbitrary channel socket frames through the path
// a Genesys frame takes in the daemon: the session's dispatch, then the
// bridge's normalizer with the snapshot as handed over. Every event must be
// for the agent the frame's topic names (never another agent's pop), carry
// a conversation id and a participant id that make a five-part event id,
// and survive the trip over NATS (EncodeEvent, then the resolver's
// DecodeEvent) unchanged.
func FuzzFrameToEvents(f *testing.F) {
	for _, b := range frameSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"topicName":"v2.users.a.b.conversations","eventBody":{"id":"c","participants":[{"id":"p","userId":"a.b","purpose":"agent","calls":[{"state":"alerting"}]}]}}`))
	f.Add([]byte(`{"topicName":"v2.users.a.conversations","topicName":"v2.users.b.conversations","eventBody":{"id":"c","participants":[{"id":"p","userId":"b","purpose":"agent","calls":[{"state":"alerting"}]}]}}`))
	f.Add([]byte(`{"topicName":"v2.users.a.conversations","eventBody":{"id":"c","id":"d","participants":[{"id":"p","userId":"a","purpose":"agent","calls":[{"state":"alerting","state":"connected"}]}]}}`))
	out := make(chan bridge.Snapshot, 1)
	c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", Registerer: prometheus.NewRegistry()}, zerolog.Nop(), out)
	if err != nil {
		f.Fatal(err)
	}
	c.tok.Store(&tokenState{value: "tok", expires: time.Now().Add(time.Hour)})
	sh := newShard(c, 0)
	now := time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !utf8.Valid(frame) {
			return // the JSON encoder writes U+FFFD for the bytes: another name, not another event
		}
		s := &session{sh: sh, chID: "ch-1", ref: channelRef("ch-1"), done: make(chan struct{})}
		close(s.done)
		s.dispatch(context.Background(), append([]byte(nil), frame...), now)
		for len(sh.events) > 0 {
			<-sh.events
		}
		for len(c.refreshCh) > 0 {
			<-c.refreshCh
		}
		var snap bridge.Snapshot
		select {
		case snap = <-out:
		default:
			return
		}
		n, err := bridge.NewNormalizer(bridge.NormalizerConfig{Now: func() time.Time { return now }}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range n.Normalize(snap) {
			if string(e.Agent.UserID) != userOfTopic(snap.Topic) || !bridge.ValidSubjectToken(string(e.Agent.UserID)) {
				t.Fatalf("event for agent %q from topic %q", e.Agent.UserID, snap.Topic)
			}
			if e.ConversationID == "" || e.Agent.ParticipantID == "" || len(strings.Split(e.ID(), ":")) != 5 {
				t.Fatalf("event id %q", e.ID())
			}
			m, err := bridge.EncodeEvent(&e, now)
			if err != nil {
				t.Fatal(err)
			}
			back, err := bridge.DecodeEvent(m.Data)
			if err != nil {
				t.Fatalf("the event does not decode: %v\n%s", err, m.Data)
			}
			if back.ID() != e.ID() || back.Agent != e.Agent || back.Customer.Phone != e.Customer.Phone || back.Customer.Address != e.Customer.Address ||
				back.Customer.Email != e.Customer.Email || back.Customer.Name != e.Customer.Name || back.QueueID != e.QueueID || back.DNIS != e.DNIS {
				t.Fatalf("decoded %+v\nfrom      %+v", back, e)
			}
		}
	})
}

// FuzzAuthenticator_Authenticate feeds arbitrary hello tokens (anything a
// client of the push websocket sends) to the genesys mode's authenticator,
// against the Genesys emulator, which is up: a token is either an agent's,
// or refused as invalid (the socket closes 4401, the client stops). Any
// other error reads as Genesys unreachable (1013: the client retries the
// same token for ever, and auth_checks_total{result="error"} and the
// "token could not be checked" warning page the on-call engineer).
func FuzzAuthenticator_Authenticate(f *testing.F) {
	const agent = "00000000-0000-4000-8000-000000000001"
	emu := notificationstest.New(notificationstest.Config{Agents: []notificationstest.AgentSpec{{ID: agent, Name: "Agent 1"}}})
	url, err := emu.Start()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { emu.Close() })
	a, err := NewAuthenticator(AuthConfig{APIURL: url, OrgID: emu.Config().OrgID}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	good := emu.AgentToken(agent)
	for _, s := range []string{good, "nope", " " + good + " ", "a\x00b", good + "\x7f", "é", "a\vb", emu.ClientToken(), strings.Repeat("x", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, _, err := a.Authenticate(context.Background(), token)
		switch {
		case err == nil && (id != agent || strings.TrimSpace(token) != good):
			t.Fatalf("token %q accepted as %q", token, id)
		case err != nil && !errors.Is(err, bridge.ErrInvalidToken):
			t.Fatalf("token %q: %v, want ErrInvalidToken (the emulator is up)", token, err)
		}
	})
}

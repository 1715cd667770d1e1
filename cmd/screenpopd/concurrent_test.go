package main

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// popsUntilSentinel alerts an unknown caller's call for agent after a
// pause (so that whatever the steps before it pop comes first) and returns
// the agent's pops before that call's, reading until it has come.
func popsUntilSentinel(t *testing.T, d *Demo, ws *websocket.Conn, agent string) []agentPop {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	s := d.Genesys.InboundCall(agent, "+19995550999", notificationstest.Options{})
	s.Alert()
	var out []agentPop
	for {
		p := readPop(t, ws)
		if p.ConversationID == s.ID() {
			s.Disconnect()
			return out
		}
		out = append(out, p)
	}
}

// TestDaemon_ConcurrentInteractions: Genesys offers one agent a call and
// several chats, messages and emails at once. When two of them alert
// within milliseconds, each pops exactly once, with its own customer's
// record, and one interaction's snapshots (a hold, an answer) pop nothing.
func TestDaemon_ConcurrentInteractions(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	dv := d.Dataverse
	rec := func(first, phone, email string) string {
		return dv.AddContact(dataversetest.Contact{FirstName: first, LastName: "Concurrent", Telephone1: phone, EMailAddress1: email})
	}
	type want struct {
		conv   *notificationstest.Conversation
		media  string
		record string
	}
	check := func(t *testing.T, got []agentPop, wants ...want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%d pops, want %d: %+v", len(got), len(wants), got)
		}
		seen := map[string]bool{}
		for _, w := range wants {
			found := false
			for _, p := range got {
				if p.ConversationID != w.conv.ID() {
					continue
				}
				if found {
					t.Errorf("conversation %s popped twice", w.conv.ID())
				}
				found = true
				if p.Media != w.media || p.Target.Action != "open" || p.Target.ID != w.record {
					t.Errorf("pop of %s: media %s target %+v, want %s open %s", w.conv.ID(), p.Media, p.Target, w.media, w.record)
				}
				if seen[p.ID] {
					t.Errorf("pop id %s twice", p.ID)
				}
				seen[p.ID] = true
			}
			if !found {
				t.Errorf("conversation %s (%s) did not pop", w.conv.ID(), w.media)
			}
		}
	}

	t.Run("CallAndChat", func(t *testing.T) {
		agent := demoAgents[0].ID
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		cr := rec("Cal", "+13175550201", "")
		hr := rec("Chet", "", "chet@example.com")
		call := d.Genesys.InboundCall(agent, "+13175550201", notificationstest.Options{QueueID: "q-1"})
		chat := d.Genesys.Chat(agent, notificationstest.Options{QueueID: "q-chat", Attributes: map[string]string{"context.email": "chet@example.com"}})
		call.Alert()
		time.Sleep(20 * time.Millisecond)
		chat.Alert()
		check(t, popsUntilSentinel(t, d, ws, agent), want{call, "voice", cr}, want{chat, "chat", hr})
	})

	t.Run("TwoChats", func(t *testing.T) {
		agent := demoAgents[1].ID
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		r1 := rec("Ann", "", "ann.c@example.com")
		r2 := rec("Ben", "", "ben.c@example.com")
		c1 := d.Genesys.Chat(agent, notificationstest.Options{Attributes: map[string]string{"context.email": "ann.c@example.com"}})
		c2 := d.Genesys.Chat(agent, notificationstest.Options{Attributes: map[string]string{"context.email": "ben.c@example.com"}})
		c1.Alert()
		c2.Alert()
		check(t, popsUntilSentinel(t, d, ws, agent), want{c1, "chat", r1}, want{c2, "chat", r2})
		// Answering one and then the other pops nothing more.
		c2.Connect()
		c1.Connect()
		check(t, popsUntilSentinel(t, d, ws, agent))
	})

	t.Run("CallWhileAnotherOnHold", func(t *testing.T) {
		agent := demoAgents[2].ID
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		r1 := rec("Hal", "+13175550211", "")
		r2 := rec("Ida", "+13175550212", "")
		held := d.Genesys.InboundCall(agent, "+13175550211", notificationstest.Options{QueueID: "q-1"})
		held.Alert()
		check(t, popsUntilSentinel(t, d, ws, agent), want{held, "voice", r1})
		held.Connect()
		second := d.Genesys.InboundCall(agent, "+13175550212", notificationstest.Options{QueueID: "q-1"})
		held.Hold(true)
		second.Alert()
		held.SetAttributes(map[string]string{"note": "x"})
		check(t, popsUntilSentinel(t, d, ws, agent), want{second, "voice", r2})
	})

	t.Run("EmailWhileChatConnected", func(t *testing.T) {
		agent := demoAgents[3].ID
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		r1 := rec("Jo", "", "jo.c@example.com")
		r2 := rec("Kim", "", "kim.c@example.com")
		chat := d.Genesys.Chat(agent, notificationstest.Options{Attributes: map[string]string{"context.email": "jo.c@example.com"}})
		chat.Alert()
		check(t, popsUntilSentinel(t, d, ws, agent), want{chat, "chat", r1})
		chat.Connect()
		email := d.Genesys.Email(agent, "kim.c@example.com", notificationstest.Options{})
		email.Alert()
		chat.SetAttributes(map[string]string{"typing": "1"})
		check(t, popsUntilSentinel(t, d, ws, agent), want{email, "email", r2})
	})
}

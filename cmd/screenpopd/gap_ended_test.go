package main

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A call the daemon saw connected is hung up while the Genesys sockets
// are down. The reconciliation after the gap must hand on its end: a
// subscriber of the events gets the leg's `disconnected` event with
// legEnded, as from a live frame. Without it, services reading the events
// hold the leg open for ever and the resolver keeps its pop marker 24 h
// instead of the marker grace.
func TestDaemon_ALegThatEndedDuringAGapGetsItsDisconnectedEvent(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_NATS_LISTEN"] = "127.0.0.1:0"
	d, logs := MustStartDemo(t, vars)
	nc, err := nats.Connect(d.Main.Bus.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var events []eventData
	if _, err := nc.Subscribe("screenpop.events.>", func(m *nats.Msg) {
		var ce contractCE
		if err := json.Unmarshal(m.Data, &ce); err != nil {
			t.Errorf("%s: %v", m.Subject, err)
			return
		}
		mu.Lock()
		events = append(events, ce.Data)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	has := func(conv, state string, ended bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.ConversationID == conv && e.State == state && e.LegEnded == ended {
				return true
			}
		}
		return false
	}

	a := demoAgents[0].ID
	call := d.Genesys.InboundCall(a, "+13175550179", notificationstest.Options{}).Alert().Connect()
	waitFor(t, 20*time.Second, "the call's connected event", func() bool { return has(call.ID(), "connected", false) })
	duringAGap(t, d, logs, func() {
		call.Disconnect()
		time.Sleep(200 * time.Millisecond) // the hang-up's frame is lost, not just late
	})
	waitFor(t, 20*time.Second, "the disconnected event with legEnded of the call hung up during the gap", func() bool {
		return has(call.ID(), "disconnected", true)
	})
}

package main

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDaemon_Supervisor: a supervisor who monitors, coaches and then barges
// in on an agent's call gets no pop (docs/events.md: such a participant "is
// no leg: it makes no event and no pop"), with the emulator's supervision
// step sending what Genesys sends on both users' topics. When the agent then
// transfers the call to that supervisor (an escalation), the supervisor's new
// leg is a leg like any other and pops once, with the customer: live, and
// also when the transfer is made and answered while the Genesys sockets are
// down (DESIGN.md: a call "answered meanwhile" still pops after the gap).
func TestDaemon_Supervisor(t *testing.T) {
	for _, gap := range []bool{false, true} {
		name := "Live"
		if gap {
			name = "TransferAnsweredDuringAGap"
		}
		t.Run(name, func(t *testing.T) {
			vars := testEnv(t)
			vars["SCREENPOP_NATS_LISTEN"] = "127.0.0.1:0"
			d, logs := MustStartDemo(t, vars)
			bl := mustBusLog(t, d.Main.Bus.ClientURL())
			g := d.Genesys
			a, s := demoAgents[0].ID, demoAgents[1].ID
			const phone = "+16175550123"
			pops := func(conv, agent string) (n int, wrong []transferPop) {
				_, ps := bl.of(conv)
				for _, p := range ps {
					if p.Data.AgentID != agent {
						continue
					}
					n++
					if p.Data.Customer.Phone != phone {
						wrong = append(wrong, p)
					}
				}
				return n, wrong
			}
			x := g.InboundCall(a, phone, notificationstest.Options{QueueID: "5a1e5000-0000-4000-8000-000000000001", DNIS: "+18005551000", Name: "BOSTON MA"}).Alert()
			waitFor(t, 10*time.Second, "the agent's pop", func() bool { n, _ := pops(x.ID(), a); return n == 1 })
			x.Connect()
			x.Monitor(s, notificationstest.Monitoring)
			x.Monitor(s, notificationstest.Coaching)
			x.Monitor(s, notificationstest.Barging)
			time.Sleep(1500 * time.Millisecond) // what the supervision would pop, it would by now
			if n, _ := pops(x.ID(), s); n != 0 {
				t.Fatalf("the supervisor got %d pops for monitoring, coaching and barging in on the agent's call, want none", n)
			}
			transfer := func() {
				x.BlindTransfer(s)
				x.Connect()
			}
			if gap {
				duringAGap(t, d, logs, transfer)
			} else {
				transfer()
			}
			waitFor(t, 10*time.Second, "the supervisor's pop for the call transferred to them", func() bool { n, _ := pops(x.ID(), s); return n >= 1 })
			time.Sleep(500 * time.Millisecond)
			n, wrong := pops(x.ID(), s)
			if n != 1 || len(wrong) != 0 {
				t.Errorf("the supervisor got %d pops (%d not of the customer %+v), want 1 of the customer", n, len(wrong), wrong)
			}
			if n, _ := pops(x.ID(), a); n != 1 {
				t.Errorf("the agent got %d pops, want 1", n)
			}
			x.Disconnect()
		})
	}
}

package notifications_test

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// BenchmarkClient_Throughput measures frames from the emulator's socket
// to snapshots on the output channel (one conversation snapshot of about
// 2 KiB per frame, one channel).
func BenchmarkClient_Throughput(b *testing.B) {
	as := agents(1)
	h := start(b, notificationstest.Config{Agents: as, HeartbeatInterval: time.Second, SendQueue: 1 << 16},
		func(c *notifications.Config) { c.Agents = ids(as) }, 1024)
	h.awaitReady(5 * time.Second)
	c := h.emu.InboundCall(as[0].ID, "+13175550123", notificationstest.Options{QueueID: "Q1", DNIS: "+18005551000"}).Alert()
	h.next(5 * time.Second)
	body := c.Snapshot()
	topic := "v2.users." + as[0].ID + ".conversations"
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			h.emu.Publish(topic, body)
		}
	}()
	for i := 0; i < b.N; i++ {
		h.next(10 * time.Second)
	}
	b.StopTimer()
}

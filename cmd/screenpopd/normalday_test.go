package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// adminMetrics is the daemon's /metrics page.
func adminMetrics(t *testing.T, m *Main) string {
	t.Helper()
	resp, err := http.Get("http://" + m.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// ackingReader reads ws until it closes, acknowledging each pop as the
// web resource does.
func ackingReader(ws *websocket.Conn) {
	go func() {
		for {
			var p agentPop
			if err := ws.ReadJSON(&p); err != nil {
				return
			}
			if p.Type == "pop" {
				ws.WriteJSON(map[string]any{"type": "ack", "seq": p.Seq})
			}
		}
	}()
}

// The on-call engineer pages on warn and error lines and on the alerts of
// docs/operations.md section 5: a working day with no fault must raise
// neither. The daemon runs as in production (NewLogger, JSON, info)
// against both emulators while the day's normal events happen (every
// media answered or not, a stranger, an anonymous caller, transfers, a
// second tab, tabs reloaded mid-pop, a queue change, Genesys' planned
// socket_closing handover, a token refresh, a slow Dataverse, a clean stop
// and a restart); each is named in the log, so a failure says which one.
func TestDaemon_NormalDayPagesNoOne(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	cfg, g, dv, ids := emulatedConfig(t, 4, 900, notificationstest.Config{
		HeartbeatInterval: time.Second, SocketClosingGrace: 2 * time.Second,
		Queues: map[string][]string{"q-1": nil},
	}, map[string]string{"LOG_LEVEL": "info"})
	cfg.GenesysQueues = []string{"q-1"}
	logs := &syncbuf.Buffer{}
	m, stop := runDaemonLog(t, cfg, NewLogger("info", "json", logs))
	var socks []*websocket.Conn
	for _, id := range ids {
		ws := dialAgent(t, m.AgentURL(), g.AgentToken(id))
		ackingReader(ws)
		socks = append(socks, ws)
	}
	// second tab
	ackingReader(dialAgent(t, m.AgentURL(), g.AgentToken(ids[0])))
	mark := func(s string) { logs.Write([]byte(`{"level":"info","message":"scenario: ` + s + `"}` + "\n")) }
	// scenarios
	mark("calls")
	for i, id := range ids {
		c := g.InboundCall(id, fmt.Sprintf("+1317555%04d", i), notificationstest.Options{QueueID: "q-1"})
		c.Alert()
		time.Sleep(200 * time.Millisecond)
		if i%2 == 0 {
			c.Connect()
		}
		c.Disconnect()
	}
	mark("anonymous")
	c := g.InboundCall(ids[1], "anonymous", notificationstest.Options{})
	c.Alert()
	time.Sleep(300 * time.Millisecond)
	c.Disconnect()
	c = g.InboundCall(ids[1], "", notificationstest.Options{})
	c.Alert()
	time.Sleep(300 * time.Millisecond)
	c.Disconnect()
	mark("transfer")
	c = g.InboundCall(ids[0], "+13175550199", notificationstest.Options{QueueID: "q-1"})
	c.Alert()
	time.Sleep(300 * time.Millisecond)
	c.Connect()
	c.BlindTransfer(ids[2])
	time.Sleep(300 * time.Millisecond)
	c.Connect()
	c.ConsultTransfer(ids[3])
	time.Sleep(300 * time.Millisecond)
	c.Connect()
	c.Disconnect()
	mark("chat/msg/email/callback/outbound/internal")
	for _, c := range []*notificationstest.Conversation{
		g.Chat(ids[1], notificationstest.Options{}),
		g.Message(ids[1], "+13175550188", notificationstest.Options{MessageType: "sms"}),
		g.Message(ids[1], "", notificationstest.Options{}),
		g.Email(ids[2], "x@example.invalid", notificationstest.Options{}),
		g.Callback(ids[2], "+13175550177", notificationstest.Options{}),
		g.OutboundCall(ids[3], "+13175550166", notificationstest.Options{}),
		g.InternalCall(ids[3], ids[0], notificationstest.Options{}),
	} {
		c.Alert()
		time.Sleep(200 * time.Millisecond)
		c.Connect()
		c.Hold(true)
		c.Hold(false)
		c.Disconnect()
	}
	time.Sleep(time.Second)
	mark("tab reload")
	socks[2].Close()
	ackingReader(dialAgent(t, m.AgentURL(), g.AgentToken(ids[2])))
	c = g.InboundCall(ids[2], "+13175550155", notificationstest.Options{})
	c.Alert()
	socks[1].Close()
	time.Sleep(100 * time.Millisecond)
	ackingReader(dialAgent(t, m.AgentURL(), g.AgentToken(ids[1])))
	c.Disconnect()
	time.Sleep(time.Second)
	mark("queue change")
	g.SetQueueMembers("q-1", []string{ids[0]})
	time.Sleep(3 * time.Second)
	mark("socket closing")
	g.SocketClosing()
	time.Sleep(5 * time.Second)
	mark("expire tokens")
	g.ExpireTokens()
	c = g.InboundCall(ids[2], "+13175550144", notificationstest.Options{})
	c.Alert()
	time.Sleep(2 * time.Second)
	c.Disconnect()
	mark("slow dataverse")
	dv.SetLatency(800 * time.Millisecond)
	c = g.InboundCall(ids[2], "+13175550133", notificationstest.Options{})
	c.Alert()
	time.Sleep(2 * time.Second)
	c.Disconnect()
	dv.SetLatency(0)
	time.Sleep(2 * time.Second)
	after := adminMetrics(t, m)
	// The day happened: its pops reached the pages (30 in a run of
	// 2026-11-30, one per leg that rang for an agent with a page open).
	n := metricValue(after, "screenpop_push_pops_sent_total ")
	t.Logf("%v pops sent to the pages in the day", n)
	if n < 15 {
		t.Errorf("%v pops sent to the pages in the day, want at least 15: the scenarios did not run, so their silence proves nothing", n)
	}
	mark("stop")
	stop()
	mark("restart")
	m2, stop2 := runDaemonLog(t, cfg, NewLogger("info", "json", logs))
	time.Sleep(3 * time.Second)
	after2 := adminMetrics(t, m2)
	stop2()
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) {
			t.Errorf("normal operation logged %s", l)
		}
	}
	for name, s := range map[string]string{"during the day": after, "after the restart": after2} {
		for _, l := range strings.Split(s, "\n") {
			if alertingSample(l) {
				t.Errorf("%s: an alert of operations.md 5 watches %s", name, l)
			}
		}
	}
}

// alertingSample reports whether a /metrics line is one an alert of
// docs/operations.md section 5 fires on.
func alertingSample(l string) bool {
	for _, p := range []string{"screenpop_notifications_reconnects_total ", "screenpop_notifications_channels_evicted_total ", "screenpop_notifications_login_failures_total ",
		"screenpop_bus_publish_errors_total ", "screenpop_bridge_publisher_dropped_total{", "screenpop_bus_events_given_up_total ", "screenpop_bus_consumer_recreated_total ",
		"screenpop_notifications_topics_rejected ", "screenpop_notifications_agents_unwatched ", "screenpop_notifications_agents_unheard ", "screenpop_bus_reconnects_total ", "screenpop_bus_store_write_failed ", "screenpop_dataverse_throttled_total "} {
		if strings.HasPrefix(l, p) && !strings.HasSuffix(l, " 0") {
			return true
		}
	}
	switch {
	case strings.HasPrefix(l, "screenpop_ready "), strings.HasPrefix(l, "screenpop_notifications_channels_connected "):
		return strings.HasSuffix(l, " 0")
	case strings.HasPrefix(l, "screenpop_dataverse_requests_total{") && strings.Contains(l, `op="token"`) && !strings.Contains(l, `code="200"`),
		strings.HasPrefix(l, "screenpop_dataverse_lookups_total{") && (strings.Contains(l, `result="error"`) || strings.Contains(l, `result="circuit_open"`)),
		strings.HasPrefix(l, "screenpop_bridge_resolver_pops_total{") && strings.Contains(l, `action="search"`):
		return !strings.HasSuffix(l, " 0")
	}
	return false
}

// metricValue is the value of the /metrics sample line starting with
// prefix (name and labels, then a space), or -1 if there is none.
func metricValue(metrics, prefix string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

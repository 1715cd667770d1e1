package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

// stuckSubscriber connects to url as another local service whose process
// stopped reading: it subscribes to subject and never reads its socket
// (a tiny receive window, soon full).
func stuckSubscriber(t *testing.T, url, subject string) net.Conn {
	t.Helper()
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := dialer.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"stuck-wallboard\"}\r\nSUB %s 1\r\n", subject); err != nil {
		t.Fatal(err)
	}
	return c
}

// A local service subscribed to screenpop.> (docs/events.md, "Subscribing")
// whose process stops reading must not hold the agents' pops back, and when
// the embedded server drops it as a slow consumer, the daemon's log (the
// server's only voice) says so where on-call looks: at warn, not debug.
func TestNeighbours_StuckSubscriberOnTheListener(t *testing.T) {
	d, nc, logs := startDemoOnNATSLogs(t)
	stuckSubscriber(t, d.Main.Bus.ClientURL(), ">")

	// Another service's traffic on its own subjects fills the stuck
	// subscriber's socket quickly.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			nc.Publish("wallboard.refresh", chunk)
		}
	}()
	defer func() { close(stop); <-done }()

	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	// Past nats-server's write deadline (10 s), so the stuck subscriber
	// is dropped meanwhile.
	for i := range 8 {
		call := d.Genesys.InboundCall(agent, fmt.Sprintf("+1999555%04d", 100+i), notificationstest.Options{})
		start := time.Now()
		call.Alert()
		p := readPop(t, ws)
		if p.ConversationID != call.ID() {
			t.Fatalf("pop %d for %s, want %s", i, p.ConversationID, call.ID())
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("pop %d took %v with a stuck subscriber on the NATS listener", i, took)
		}
		call.Disconnect()
		time.Sleep(1500 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the server's slow consumer line", func() bool { return strings.Contains(logs.String(), "Slow Consumer") })
	var found bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "Slow Consumer") {
			continue
		}
		var l struct{ Level, Message, Detail string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s: %s", l.Level, l.Message, l.Detail)
		if l.Level == "warn" || l.Level == "error" {
			found = true
		}
	}
	if !found {
		t.Errorf("the embedded server dropped a local subscriber as a slow consumer, logged only at debug: on-call sees nothing of why another service lost its events")
	}
}

// Another service on the listener that leaks consumers of the stream (one
// per request or per restart, never deleted: a bug, not an attack) fills
// nats-server's default limit of 1,000 consumers a stream. The daemon's
// own short-lived consumers (an agent's page resuming replays the pops it
// missed) must still be made: a page back after a network blip would
// otherwise be closed with 1013 at every retry and never get its pop.
func TestNeighbours_ConsumerLeakDoesNotStopReplays(t *testing.T) {
	d, nc, logs := startDemoOnNATSLogs(t)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	first := d.Genesys.InboundCall(agent, "+19995550200", notificationstest.Options{})
	first.Alert()
	p := readPop(t, ws)
	ws.Close()

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names, refused := leakConsumers(ctx, js, d.Main.Bus.StreamName())
	made := len(names)
	t.Logf("the leaking service was refused its consumer %d: %v", made+1, refused)

	// The page was away while a second call popped; it comes back.
	second := d.Genesys.InboundCall(agent, "+19995550201", notificationstest.Options{})
	second.Alert()
	waitFor(t, 10*time.Second, "the second pop stored", func() bool {
		seq, err := d.Main.Bus.LatestPop(context.Background(), bridge.AgentID(agent))
		return err == nil && seq > p.Seq
	})
	ws2, _, err := websocket.DefaultDialer.Dial(strings.Replace(d.Main.AgentURL(), "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	if err := ws2.WriteJSON(map[string]any{"type": "hello", "token": d.Genesys.AgentToken(agent), "lastSeq": p.Seq}); err != nil {
		t.Fatal(err)
	}
	ws2.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var m agentPop
		if err := ws2.ReadJSON(&m); err != nil {
			t.Fatalf("resuming page after another service made %d consumers of the stream: %v (the pop it missed, %s, never reaches it)", made, err, second.ID())
		}
		if m.Type == "pop" {
			if m.ConversationID != second.ID() {
				t.Fatalf("replayed %s, want %s", m.ConversationID, second.ID())
			}
			break
		}
	}
	// On-call is told why, and where to look.
	if !strings.Contains(logs.String(), "the stream has no room for another consumer") {
		t.Errorf("no line tells on-call the stream's consumers are used up")
	}
	// And the page gets the calls that alert now.
	third := d.Genesys.InboundCall(agent, "+19995550202", notificationstest.Options{})
	third.Alert()
	for {
		var m agentPop
		if err := ws2.ReadJSON(&m); err != nil {
			t.Fatalf("the resumed page got no live pop: %v", err)
		}
		if m.Type == "pop" && m.ConversationID == third.ID() {
			return
		}
	}
}

// Another service leaking consumers of the stream holds every slot of
// nats-server's limit when the push server's consumer of the pops has to
// be made again (here deleted by hand, as an operator cleaning up the
// leak might; a reconnect or a missed heartbeat has it made again as
// well), and the leak takes the slot it freed. No pop reaches any agent
// until a slot frees: on-call must be told, where it looks, why (the
// consumer limit, and 'nats consumer ls'), /status must not say the pop
// consumer is live, and once the leaked consumers go the pops flow again
// by themselves.
func TestNeighbours_ConsumerLeakWhileThePopFollowIsMadeAgain(t *testing.T) {
	d, nc, logs := startDemoOnNATSLogs(t)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	first := d.Genesys.InboundCall(agent, "+19995550300", notificationstest.Options{})
	first.Alert()
	p := readPop(t, ws)
	if p.ConversationID != first.ID() {
		t.Fatalf("pop for %s, want %s", p.ConversationID, first.ID())
	}
	// The page keeps reading (and answering pings) throughout.
	pops := make(chan agentPop, 16)
	ws.SetReadDeadline(time.Time{})
	go func() {
		defer close(pops)
		for {
			var m agentPop
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			if m.Type == "pop" {
				pops <- m
			}
		}
	}()

	// The push server's consumer goes; the leak takes its slot before the
	// daemon makes it again (tried until it does).
	leaked, release := takeConsumerOf(t, nc, d.Main.Bus.StreamName(), func(ci *jetstream.ConsumerInfo) bool {
		return ci.Config.FilterSubject == bridge.SubjectPops
	})
	t.Logf("the leaking service holds %d consumers; the push server has none", leaked)

	second := d.Genesys.InboundCall(agent, "+19995550301", notificationstest.Options{})
	second.Alert()
	waitFor(t, 10*time.Second, "the second pop stored", func() bool {
		seq, err := d.Main.Bus.LatestPop(context.Background(), bridge.AgentID(agent))
		return err == nil && seq > p.Seq
	})
	select {
	case m, ok := <-pops:
		if ok {
			t.Logf("popped %s anyway", m.ConversationID)
		}
	case <-time.After(3 * time.Second):
		t.Logf("the second call is stored but no pop reaches the agent")
	}

	// Told where on-call looks: a warn or error line naming the cause.
	var told bool
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct{ Level, Message, Error string }
		if json.Unmarshal([]byte(line), &l) != nil || (l.Level != "warn" && l.Level != "error") {
			continue
		}
		if strings.Contains(l.Message+l.Error, "consumer") && strings.Contains(l.Message, "nats consumer ls") && strings.Contains(l.Message, "pop") {
			told = true
			t.Logf("%s: %s (%s)", l.Level, l.Message, l.Error)
		}
	}
	if !told {
		var dbg []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "follow pops") {
				dbg = append(dbg, line)
			}
		}
		if len(dbg) > 3 {
			dbg = dbg[:3]
		}
		t.Errorf("no agent gets a pop while the stream has no room for the push server's consumer, and no warn or error line says so (only debug: %s)", strings.Join(dbg, " "))
	}
	if st := d.Main.Push.Status().(push.Status); st.Following {
		t.Errorf("/status says push.following=true while the push server has no consumer of the pops (the stream's consumers are all taken)")
	}

	// The leak is cleaned up: the pops flow again by themselves, the one
	// stored meanwhile too.
	release()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-pops:
			if !ok {
				t.Fatal("the agent's socket closed")
			}
			if m.ConversationID == second.ID() {
				return
			}
		case <-deadline:
			t.Fatalf("no pop of %s 15 s after the leaked consumers went", second.ID())
		}
	}
}

// takeConsumerOf has another client take all of stream's consumers (its
// limit, 1,000 by default) and delete those of the daemon's that is
// matches, until the daemon cannot make one again: a service leaking
// consumers meets that consumer's remaking (a reconnect, a heartbeat
// missed, a deletion by hand). release deletes the leaked consumers (so
// does the test's end); leaked is how many there are.
func takeConsumerOf(t *testing.T, nc *nats.Conn, stream string, is func(*jetstream.ConsumerInfo) bool) (leaked int, release func()) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var names []string
	release = func() {
		for _, name := range names {
			if err := js.DeleteConsumer(context.Background(), stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Error(err)
			}
		}
		names = nil
	}
	t.Cleanup(release)
	leak := func() {
		more, _ := leakConsumers(ctx, js, stream)
		names = append(names, more...)
	}
	matching := func() []string {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		var found []string
		for ci := range st.ListConsumers(ctx).Info() {
			if is(ci) {
				found = append(found, ci.Name)
			}
		}
		return found
	}
	leak()
	for range 20 {
		for _, name := range matching() {
			_ = js.DeleteConsumer(ctx, stream, name)
		}
		leak()
		time.Sleep(3 * time.Second)
		if len(matching()) == 0 {
			return len(names), release
		}
	}
	t.Fatal("the daemon kept its consumer: the scenario did not happen")
	return 0, nil
}

// leakConsumers is a service leaking consumers of stream (of the events,
// an hour's inactivity threshold each): it makes them until nats-server
// refuses one, its limit reached, and returns their names and the refusal.
func leakConsumers(ctx context.Context, js jetstream.JetStream, stream string) (names []string, refused error) {
	for range 1100 {
		c, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
			FilterSubject:     "screenpop.events.>",
			DeliverPolicy:     jetstream.DeliverNewPolicy,
			AckPolicy:         jetstream.AckExplicitPolicy,
			InactiveThreshold: time.Hour,
			MemoryStorage:     true,
		})
		if err != nil {
			return names, err
		}
		names = append(names, c.CachedInfo().Name)
	}
	return names, nil
}

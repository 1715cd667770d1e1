package main

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// sdkMsg is one message as the CloudEvents Go SDK read it.
type sdkMsg struct {
	subject string
	msgID   string
	enc     binding.Encoding
	ev      *event.Event
	err     error
}

// extensionName is what CloudEvents 1.0 allows as an attribute name.
var extensionName = regexp.MustCompile(`^[a-z0-9]+$`)

// TestEvents_CloudEventsSDK reads the daemon's events and pops with the
// official CloudEvents Go SDK, as docs/events.md ("CloudEvents 1.0 in
// structured JSON mode") leads an integrator to: the SDK's JetStream
// receiver on the SCREENPOP stream, and the SDK's NATS binding over a plain
// subscription. Each message must be read as a structured-mode event (no
// ce- header made it look binary), valid, with every attribute and the
// data as docs/events.md documents them.
func TestEvents_CloudEventsSDK(t *testing.T) {
	d, nc := startDemoOnNATS(t)

	var mu sync.Mutex
	var viaJS, viaPlain []sdkMsg
	read := func(ctx context.Context, m binding.Message, nm *nats.Msg, into *[]sdkMsg) {
		ev, err := binding.ToEvent(ctx, m)
		_ = m.Finish(err)
		mu.Lock()
		*into = append(*into, sdkMsg{nm.Subject, nm.Header.Get("Nats-Msg-Id"), m.ReadEncoding(), ev, err})
		mu.Unlock()
	}

	// The SDK's NATS binding over a plain subscription.
	if _, err := nc.Subscribe("screenpop.>", func(m *nats.Msg) {
		read(context.Background(), cenats.NewMessage(m), m, &viaPlain)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// The SDK's JetStream receiver: it reads the stream from its start.
	cons, err := cejs.NewConsumerFromConn(nc, "SCREENPOP", "screenpop.>", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = cons.OpenInbound(ctx) }()
	go func() {
		defer wg.Done()
		for {
			m, err := cons.Receive(ctx)
			if err != nil {
				return
			}
			read(ctx, m, m.(*cejs.Message).Msg, &viaJS)
		}
	}()
	defer wg.Wait()
	defer cancel()

	agent := demoAgents[0].ID
	d.Dataverse.AddContact(dataversetest.Contact{FirstName: "Pat", LastName: "O'Brien", Telephone1: "(317) 555-0123"})
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	call := d.Genesys.InboundCall(agent, "+13175550123", notificationstest.Options{QueueID: "q-1", DNIS: "+18005551000",
		Attributes: map[string]string{"AccountId": "778812"}})
	call.Alert()
	readPop(t, ws)
	call.Connect()
	call.Disconnect()

	done := func(ms *[]sdkMsg) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			var pops, ended int
			for _, m := range *ms {
				if strings.HasPrefix(m.subject, "screenpop.pops.") {
					pops++
				}
				if strings.Contains(m.subject, ".disconnected.") {
					ended++
				}
			}
			return pops == 1 && ended == 1
		}
	}
	waitFor(t, 20*time.Second, "the pop and the hang-up (plain subscription)", done(&viaPlain))
	waitFor(t, 20*time.Second, "the pop and the hang-up (JetStream receiver)", done(&viaJS))

	mu.Lock()
	defer mu.Unlock()
	check := func(name string, ms []sdkMsg) {
		t.Run(name, func(t *testing.T) {
			if len(ms) != 4 {
				t.Errorf("%d messages, want alerting, the pop, connected, disconnected", len(ms))
			}
			for _, m := range ms {
				if m.err != nil {
					t.Errorf("%s: the SDK cannot read it (read as %v): %v", m.subject, m.enc, m.err)
					continue
				}
				ev := m.ev
				if m.enc != binding.EncodingStructured {
					t.Errorf("%s: read as %v, want structured", m.subject, m.enc)
				}
				if err := ev.Validate(); err != nil {
					t.Errorf("%s: invalid: %v", m.subject, err)
				}
				if ev.SpecVersion() != "1.0" || ev.ID() != m.msgID || ev.DataContentType() != "application/json" || ev.DataSchema() != "" {
					t.Errorf("%s: envelope %s", m.subject, ev)
				}
				for name := range ev.Extensions() {
					if !extensionName.MatchString(name) {
						t.Errorf("%s: extension %q is no valid attribute name", m.subject, name)
					}
				}
				if strings.HasPrefix(m.subject, "screenpop.pops.") {
					var p struct {
						ID             string `json:"id"`
						ConversationID string `json:"conversationId"`
						AgentID        string `json:"agentId"`
						IssuedAt       string `json:"issuedAt"`
						Target         struct {
							Action string `json:"action"`
						} `json:"target"`
					}
					if err := ev.DataAs(&p); err != nil {
						t.Errorf("%s: data: %v", m.subject, err)
						continue
					}
					issued, _ := time.Parse(time.RFC3339, p.IssuedAt)
					if ev.Type() != "screenpop.pop.v1" || ev.Source() != "/screenpop/resolver" || ev.ID() != p.ID ||
						ev.Subject() != call.ID() || p.ConversationID != call.ID() || p.AgentID != agent ||
						p.Target.Action != "open" || !ev.Time().Equal(issued) {
						t.Errorf("pop: %s\ndata %+v", ev, p)
					}
					continue
				}
				var e struct {
					ConversationID string `json:"conversationId"`
					State          string `json:"state"`
					Customer       struct {
						Phone      string            `json:"phone"`
						Attributes map[string]string `json:"attributes"`
					} `json:"customer"`
					ReceivedAt string `json:"receivedAt"`
					OccurredAt string `json:"occurredAt"`
				}
				if err := ev.DataAs(&e); err != nil {
					t.Errorf("%s: data: %v", m.subject, err)
					continue
				}
				at, _ := time.Parse(time.RFC3339, cmpOr(e.OccurredAt, e.ReceivedAt))
				if ev.Type() != "screenpop.conversation."+e.State+".v1" || ev.Source() != "/screenpop/bridge" ||
					ev.Subject() != call.ID() || e.ConversationID != call.ID() || e.Customer.Phone != "+13175550123" ||
					e.Customer.Attributes["AccountId"] != "778812" || ev.Time().IsZero() || !ev.Time().Equal(at) {
					t.Errorf("event: %s\ndata %+v", ev, e)
				}
			}
		})
	}
	check("JetStream", viaJS)
	check("Plain", viaPlain)
}

// TestDeploy_ConsumerUserReadsWithTheCloudEventsSDK: the example cluster's
// user for other services (docs/deploy) subscribes with the CloudEvents Go
// SDK's JetStream receiver as its documentation shows (stream, subject, a
// durable name), which, like nats.go's JetStream API it is built on, looks
// the stream up by subject first.
func TestDeploy_ConsumerUserReadsWithTheCloudEventsSDK(t *testing.T) {
	path, ca := natsConfForTest(t)
	opts := &server.Options{}
	if err := opts.ProcessConfigFile(path); err != nil {
		t.Fatal(err)
	}
	ns := serveAsOneNode(t, opts)
	userURL := func(user, pass string) string {
		return "tls://" + url.UserPassword(user, pass).String() + "@" + ns.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := bus.Start(ctx, bus.Config{URL: userURL("screenpop", "screenpop-pass"), TLSCA: ca, Listen: "off"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &bridge.Event{ConversationID: "c0c0c0c0-0000-4000-8000-000000000001", Media: bridge.MediaVoice, State: bridge.StateAlerting}
	e.Agent.UserID, e.Agent.ParticipantID = "5e1f0a1c-0000-4000-8000-000000000001", "00000010-0000-4000-8000-000000000001"
	msg, err := bridge.EncodeEvent(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, msg); err != nil {
		t.Fatal(err)
	}

	denied := make(chan error, 1)
	nc, err := nats.Connect(userURL("consumer", "consumer-pass"), nats.RootCAs(ca),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case denied <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cons, err := cejs.NewConsumerFromConn(nc, "SCREENPOP", "screenpop.events.>", nil, []nats.SubOpt{nats.Durable("wallboard")})
	if err != nil {
		t.Fatalf("the SDK's JetStream receiver, as user consumer: %v", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	opened := make(chan error, 1)
	go func() { opened <- cons.OpenInbound(rctx) }()
	got := make(chan binding.Message, 1)
	go func() {
		if m, err := cons.Receive(rctx); err == nil {
			got <- m
		}
	}()
	select {
	case m := <-got:
		ev, err := binding.ToEvent(rctx, m)
		if err != nil || ev.ID() != msg.ID || ev.Type() != "screenpop.conversation.alerting.v1" {
			t.Errorf("read %v, %v; want the event %s", ev, err, msg.ID)
		}
		rcancel()
		<-opened
	case err := <-opened:
		select {
		case d := <-denied:
			err = fmt.Errorf("%w (%v)", err, d)
		default:
		}
		t.Fatalf("the SDK's JetStream receiver cannot subscribe as user consumer: %v", err)
	}
}

// TestCheck_ProbeIsACloudEvent: docs/events.md tells a service that wants
// everything to subscribe to screenpop.>, where screenpopd check (with
// NATS_URL) stores its probe: the CloudEvents SDK must read it as an event
// of a type to ignore, like everything else there.
func TestCheck_ProbeIsACloudEvent(t *testing.T) {
	ns := startNATS(t, true)
	r := newCheckRig(t)
	r.vars["NATS_URL"] = ns.ClientURL()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("screenpop.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if code, out := r.check(t); code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, out)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || !strings.HasPrefix(m.Subject, "screenpop.check.") {
		t.Fatalf("subscriber got %v, %v; want the probe", m, err)
	}
	ev, err := binding.ToEvent(context.Background(), cenats.NewMessage(m))
	if err != nil {
		t.Fatalf("the CloudEvents SDK cannot read the probe on %s: %v\n%s", m.Subject, err, m.Data)
	}
	if err := ev.Validate(); err != nil || ev.ID() != m.Header.Get("Nats-Msg-Id") || ev.Type() != "screenpop.check.v1" ||
		strings.HasPrefix(ev.Type(), "screenpop.conversation.") || ev.Type() == bridge.TypePop {
		t.Errorf("probe %s (%v), want a valid screenpop.check.v1 event with its Nats-Msg-Id as id", ev, err)
	}
}

package bridge_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// A resolver consumer made anew starts back (bus.ConsumeConfig.Since), so
// events already handled reach a resolver again, delivered once as far as
// JetStream knows. Another instance (its memory empty) handling every
// kind of event a second time makes no pop and leaves the markers as they
// were: live legs, ended legs (popped or not), legs that never popped. With
// the marker young (within the duplicate window: the pop's id is dropped
// by JetStream) and old (the marker refuses).
func TestResolver_EventsHandledAgainByAConsumerMadeAnew(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dupWindow time.Duration
		wait      time.Duration
	}{
		{"young markers", 0, 0},
		{"old markers", time.Second, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			var info dataversetest.SeedInfo
			s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
				info = dv.Seed(50, rand.New(rand.NewPCG(7, 8)))
			}, func(o *stackOptions) {
				o.consume = bus.ConsumeConfig{Subjects: bridge.ResolverSubjects}
				o.dupWindow = tc.dupWindow
			})
			defer s.stop()

			ev := func(conv string, media bridge.Media, state bridge.State, f ...func(*bridge.Event)) *bridge.Event {
				e := callEvent(conv, info.Unique[len(conv)%len(info.Unique)])
				e.Media, e.State = media, state
				if media == bridge.MediaEmail || media == bridge.MediaChat {
					e.Customer = bridge.Customer{Email: info.Emails[0], Address: info.Emails[0]}
				}
				for _, g := range f {
					g(e)
				}
				return e
			}
			ended := func(e *bridge.Event) { e.LegEnded = true }
			events := []*bridge.Event{
				ev("live", bridge.MediaVoice, bridge.StateAlerting),
				ev("live", bridge.MediaVoice, bridge.StateConnected),
				ev("ended", bridge.MediaVoice, bridge.StateAlerting),
				ev("ended", bridge.MediaVoice, bridge.StateConnected),
				ev("chat", bridge.MediaChat, bridge.StateAlerting),
				ev("chat", bridge.MediaChat, bridge.StateConnected),
				ev("email-ended", bridge.MediaEmail, bridge.StateAlerting),
				ev("message", bridge.MediaMessage, bridge.StateAlerting),
				ev("outbound", bridge.MediaVoice, bridge.StateDialing, func(e *bridge.Event) { e.Direction = bridge.DirectionOutbound }),
				ev("callback", bridge.MediaCallback, bridge.StateAlerting),
				ev("first-seen-connected", bridge.MediaVoice, bridge.StateConnected),
				ev("internal", bridge.MediaVoice, bridge.StateAlerting, func(e *bridge.Event) { e.Internal = true }),
			}
			for _, e := range events {
				s.publish(t, e)
			}
			const pops = 8
			s.awaitPops(t, pops, 10*time.Second)
			// The hang-ups, once the legs have popped.
			for _, e := range []*bridge.Event{
				ev("ended", bridge.MediaVoice, bridge.StateDisconnected, ended),
				ev("email-ended", bridge.MediaEmail, bridge.StateDisconnected, ended),
				ev("callback", bridge.MediaVoice, bridge.StateDisconnected),        // its call failed; the callback goes on
				ev("internal", bridge.MediaVoice, bridge.StateDisconnected, ended), // ended, never popped
			} {
				events = append(events, e)
				s.publish(t, e)
			}
			settled := func(durable string) func() bool {
				return func() bool {
					cons, err := s.conn.JetStream().Consumer(context.Background(), s.conn.StreamName(), durable)
					if err != nil {
						return false
					}
					i := cons.CachedInfo()
					return i.NumPending == 0 && i.NumAckPending == 0 && i.Delivered.Stream >= uint64(len(events))
				}
			}
			waitUntil(t, 10*time.Second, settled("screenpop-resolver"))
			time.Sleep(tc.wait)

			// Another instance, its durable made anew a minute back.
			r2, err := bridge.NewResolver(bridge.ResolverConfig{}, s.dir, s.conn, s.conn, bridge.NewHasher([]byte("k")), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				if err := s.conn.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "again", Subjects: bridge.ResolverSubjects, Since: time.Minute}, r2.HandleMessage); err != nil {
					t.Error(err)
				}
			})
			waitUntil(t, 10*time.Second, settled("again"))
			cancel()
			wg.Wait()
			time.Sleep(300 * time.Millisecond) // a pop published last would be followed by now
			s.mu.Lock()
			n := len(s.pops)
			s.mu.Unlock()
			if n != pops {
				t.Fatalf("%d pops after the events were handled again, want %d", n, pops)
			}
			for _, conv := range []string{"ended", "email-ended", "internal"} {
				e := ev(conv, bridge.MediaVoice, bridge.StateAlerting)
				if _, err := s.conn.MarkPop(context.Background(), e.PopID(), "evt:probe"); !errors.Is(err, bridge.ErrLegEnded) {
					t.Errorf("%s: MarkPop = %v, want its marker still ended", conv, err)
				}
			}
			if tc.wait > 0 {
				for _, conv := range []string{"live", "chat", "message", "outbound", "callback", "first-seen-connected"} {
					e := ev(conv, bridge.MediaVoice, bridge.StateAlerting)
					if created, err := s.conn.MarkPop(context.Background(), e.PopID(), "evt:probe"); err != nil || created {
						t.Errorf("%s: MarkPop = %v, %v; want its marker still live", conv, created, err)
					}
				}
			}
		})
	}
}

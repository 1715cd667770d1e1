package bridge_test

import (
	"context"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// Two instances on one NATS, the resolving one's clock skew ahead of the
// one that received the Genesys frame (an instance whose host lost NTP):
// the event's receivedAt is the receiving instance's clock, the resolver's
// age and deadline its own. Seconds of skew made every such pop a search
// (the lookup deadline had passed on arrival); more than the max event age
// made no pop at all (stale).
func TestResolver_InstancesWithSkewedClocks(t *testing.T) {
	for _, skew := range []time.Duration{3 * time.Second, 40 * time.Second, -40 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			dv := dataversetest.New(dataversetest.Config{})
			info := dv.Seed(50, rand.New(rand.NewPCG(1, 2)))
			if err := dv.Start(); err != nil {
				t.Fatal(err)
			}
			defer dv.Close()
			ec := dv.Config()
			dir, err := dataverse.New(dataverse.Config{URL: dv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: dv.TokenURL(), AppID: "11111111-2222-3333-4444-555555555555"}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			// Instance A: this host's clock, the server's too.
			a, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			u, err := url.Parse(a.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			// Instance B: its clock skew ahead, so the server's looks skew
			// behind to it.
			b, err := bus.Start(context.Background(), bus.Config{URL: bustest.StartSkewProxy(t, u.Host, -skew)}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			r, err := bridge.NewResolver(bridge.ResolverConfig{Now: func() time.Time { return time.Now().Add(skew) }},
				dir, b, b, bridge.NewHasher([]byte("k")), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			type followed struct {
				pop        *bridge.Pop
				correction time.Duration
			}
			pops := make(chan followed, 4)
			live := make(chan struct{})
			wg.Go(func() { _ = dir.Run(ctx) })
			wg.Go(func() {
				_ = a.FollowPops(ctx, func(sp bridge.StoredPop) {
					if p, err := bridge.DecodePop(sp.Data); err == nil {
						pops <- followed{p, sp.ClockCorrection}
					}
				}, func() { close(live) })
			})
			wg.Go(func() {
				if err := b.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "screenpop-resolver", Since: 30 * time.Second}, r.HandleMessage); err != nil {
					t.Error(err)
				}
			})
			<-live
			waitUntil(t, 5*time.Second, dir.Ready)
			waitUntil(t, 5*time.Second, func() bool {
				cons, err := a.JetStream().Consumer(ctx, a.StreamName(), "screenpop-resolver")
				return err == nil && cons.CachedInfo().NumWaiting > 0
			})
			// A receives the frame and publishes its event.
			e := callEvent("conv-skew", info.Unique[0])
			sent := time.Now()
			m, err := bridge.EncodeEvent(e, sent)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Publish(ctx, m); err != nil {
				t.Fatal(err)
			}
			select {
			case f := <-pops:
				if f.pop.Target.Action != bridge.ActionOpen {
					t.Fatalf("the pop's action is %q, want open: the resolver %v ahead of the receiving instance took the lookup deadline as passed", f.pop.Target.Action, skew)
				}
				// The pop's eventReceivedAt is on the resolver's clock;
				// with the correction A's bus gives it, it is on A's
				// again (the push server's delivery latency uses it).
				if got := f.pop.EventReceivedAt.Add(f.correction); got.Sub(sent).Abs() > time.Second {
					t.Fatalf("eventReceivedAt %v with correction %v is %v from when A received the event; want within 1s", f.pop.EventReceivedAt.Time, f.correction, got.Sub(sent))
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no pop: the resolver %v ahead of the receiving instance took the event as stale", skew)
			}
		})
	}
}

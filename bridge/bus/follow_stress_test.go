package bus_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// Under consumer deletes and forced reconnects while pops are stored, every
// pop is followed once, in stream order, and fn is never called after
// FollowPops returned.
func TestConn_FollowPopsUnderRestarts(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seqs []uint64
	var returned atomic.Bool
	var late atomic.Int32
	var inFn atomic.Int32
	done := make(chan error, 1)
	live := make(chan struct{})
	go func() {
		done <- c.FollowPops(ctx, func(p bridge.StoredPop) {
			if inFn.Add(1) != 1 {
				t.Error("fn ran on two goroutines at once")
			}
			defer inFn.Add(-1)
			if returned.Load() {
				late.Add(1)
			}
			mu.Lock()
			seqs = append(seqs, p.Seq)
			mu.Unlock()
		}, func() { close(live) })
		returned.Store(true)
	}()
	<-live
	const n = 300
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range n {
			m := pop("agent-s", fmt.Sprintf("conv-%d", i))
			for try := 0; ; try++ {
				err := c.Publish(context.Background(), m)
				if err == nil {
					break
				}
				if try > 100 {
					t.Error(err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	stopChaos := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		for i := 0; ; i++ {
			select {
			case <-stopChaos:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if i%3 == 0 {
				_ = c.NATS().ForceReconnect()
				continue
			}
			st, err := c.JetStream().Stream(context.Background(), c.StreamName())
			if err != nil {
				continue
			}
			for name := range st.ConsumerNames(context.Background()).Name() {
				_ = c.JetStream().DeleteConsumer(context.Background(), c.StreamName(), name)
			}
		}
	}()
	<-pubDone
	close(stopChaos)
	<-chaosDone
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(seqs)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("pop seq %d followed after %d (index %d)", seqs[i], seqs[i-1], i)
		}
	}
	if len(seqs) != n {
		t.Fatalf("followed %d pops, want %d", len(seqs), n)
	}
	if late.Load() > 0 {
		t.Fatalf("fn called %d times after FollowPops returned", late.Load())
	}
}

package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// Close while the store watcher restarts the server: Close returns, no
// server keeps the address, ClientURL/Status do not race.
func TestConn_CloseDuringStoreRestart(t *testing.T) {
	disk := bustest.SmallDisk(t, "32m")
	for _, delay := range []time.Duration{900 * time.Millisecond, 1000 * time.Millisecond, 1100 * time.Millisecond, 1200 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			var logs syncbuf.Buffer
			c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(disk, "data-"+delay.String())}, zerolog.New(&logs).Level(zerolog.DebugLevel))
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(c.ClientURL())
			fctx, fcancel := context.WithCancel(context.Background())
			fdone := make(chan error, 1)
			go func() { fdone <- c.FollowPops(fctx, func(bridge.StoredPop) {}, nil) }()
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				for ctx.Err() == nil {
					_ = c.ClientURL()
					sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
					_ = c.Status(sctx)
					cancel()
				}
			})
			filler := bustest.FillDisk(t, disk)
			for i := range 5 {
				pctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := c.Publish(pctx, bridge.Message{Subject: "screenpop.pops.agent-1", ID: fmt.Sprintf("pop:c%d:p", i), Data: bytes.Repeat([]byte("x"), 2000)})
				cancel()
				if err != nil {
					break
				}
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			start := time.Now()
			fcancel()
			if err := <-fdone; err != nil {
				t.Error(err)
			}
			c.Close()
			stop()
			wg.Wait()
			t.Logf("close took %v", time.Since(start))
			if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
				conn.Close()
				t.Fatalf("a server still listens at %s after Close", u.Host)
			}
		})
	}
}

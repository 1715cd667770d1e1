package main

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// Every agent hello that has pops to replay holds a consumer of the stream
// while its replay runs (bus.ReplayPops, at most 64 at once per instance),
// and an instance that stops sends all its agents' tabs to the others
// within half a second (screenpop.js reconnects after 250–500 ms): the
// example cluster's account must let that many replays run, next to the
// resolver's durable and the instances' follows, or tabs are refused
// (1013) while pops are made.
func TestDeploy_NATSClusterConfigReplaysAtOnce(t *testing.T) {
	path, ca := natsConfForTest(t)
	opts := &server.Options{}
	if err := opts.ProcessConfigFile(path); err != nil {
		t.Fatal(err)
	}
	ns := serveAsOneNode(t, opts)
	u := "tls://" + url.UserPassword("screenpop", "screenpop-pass").String() + "@" + ns.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := bus.Start(ctx, bus.Config{URL: u, TLSCA: ca, Listen: "off"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	agent := bridge.AgentID("5e1f0a1c-0000-4000-8000-000000000001")
	if err := c.Publish(ctx, bridge.Message{Subject: bridge.PopSubject(agent), ID: "pop:c1:p1", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// 150 tabs replaying at once: a small site's failover.
	const tabs = 150
	var wg sync.WaitGroup
	errs := make(chan error, tabs)
	for range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.ReplayPops(ctx, agent, 0, time.Now().Add(-time.Minute), func(bridge.StoredPop) error {
				time.Sleep(50 * time.Millisecond) // the replay is being written to the tab
				return nil
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d replays at once refused by the example cluster config, e.g. %s", len(failed), tabs, failed[0])
	}
}

package notifications_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// startGenesysPush runs a push server in genesys mode (cfg.Auth is set)
// that checks the agents' tokens with auth, on an embedded NATS server,
// until the test ends, and returns it once ready with its websocket URL.
func startGenesysPush(t *testing.T, cfg push.Config, auth *notifications.Authenticator, log zerolog.Logger) (*push.Server, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Listen: "off", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg.Auth = push.AuthGenesys
	srv, err := push.New(cfg, b, auth, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx, ln) }()
	t.Cleanup(func() {
		rcancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("push server did not stop")
		}
		notifications.CloseIdleConnections(auth)
	})
	waitFor(t, 10*time.Second, "push server ready", srv.Ready)
	return srv, "ws://" + ln.Addr().String() + "/v1/ws"
}

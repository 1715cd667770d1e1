package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// A stage that fails stops the daemon with its cause (operations.md:
// "screenpopd stopping after a component failed": the process exits
// non-zero; systemd restarts it): here the admin listener, whose Serve
// ends. Run returns an error naming the stage, within the documented 15 s,
// after the failure line and without the clean stop's "screenpopd stopped".
func TestDaemon_AFailedStageStopsTheDaemonWithItsCause(t *testing.T) {
	vars := testEnv(t)
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := StartDemo(ctx, cfg, zerolog.New(logs), false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan error, 1)
	go func() { done <- d.Main.Run(ctx) }()
	waitFor(t, 20*time.Second, "daemon ready", d.Main.Ready)

	d.Main.adminLn.Close() // its Serve returns: the stage has failed
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "admin listener") {
			t.Errorf("Run returned %v after the admin listener failed, want an error naming it", err)
		}
	case <-time.After(15 * time.Second):
		cancel()
		<-done
		t.Fatalf("the daemon kept running 15 s after its admin listener failed; log:\n%s",
			logLines(logs, `"component":"main"`))
	}
	l := logs.String()
	if !strings.Contains(l, "screenpopd stopping after a component failed") {
		t.Errorf("no \"screenpopd stopping after a component failed\" line; log:\n%s", logLines(logs, `"component":"main"`))
	}
	if strings.Contains(l, "screenpopd stopped") {
		t.Errorf("a failed daemon logged the clean stop's \"screenpopd stopped\"; log:\n%s", logLines(logs, `"component":"main"`))
	}
}

// screenpopd run exits 1 when the daemon cannot start for a cause other
// than its configuration (operations.md, 3.1: "the process exits non-zero;
// systemd restarts it"; 2 is kept for an invalid configuration): here its
// agent port is held by another program.
func TestRun_StartFailureExits1(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	vars := runVars(d, ln.Addr().String(), t.TempDir())
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run"}, env(vars), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "another program holds it") {
		t.Fatalf("run with its agent port held exited %d, want 1 with the port's cause; stderr:\n%s", code, errb.String())
	}
}

// The stop order (architecture.md, 2): the resolver finishes the pops in
// flight, then push closes the agent sockets with 1001. So a pop whose
// lookup is in flight when SIGTERM comes reaches the agent's open socket
// live, before its 1001, not only by replay after a restart.
func TestDaemon_StopDeliversThePopInFlightBeforeClosingSockets(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t))
	agent := demoAgents[0].ID
	m, stop := runDaemon(t, cfg, logs)
	ws := dialAgent(t, m.AgentURL(), d.Genesys.AgentToken(agent))
	d.Dataverse.SetLatency(time.Second)
	d.Dataverse.ResetLog()
	c := alertCall(d, agent)
	waitFor(t, 10*time.Second, "lookup in flight", func() bool { return d.Dataverse.MaxConcurrent() > 0 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	defer func() { <-stopped }()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	popped := false
	for {
		var p agentPop
		err := ws.ReadJSON(&p)
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("agent socket ended with %v, want close 1001", err)
			}
			break
		}
		if p.Type == "pop" && p.ConversationID == c.ID() {
			popped = true
		}
	}
	if !popped {
		t.Errorf("the pop in flight at the stop did not reach the agent's socket before its 1001; log:\n%s",
			logLines(logs, `"message":"pop"`, "stopped", `"level":"warn"`, `"level":"error"`))
	}
}

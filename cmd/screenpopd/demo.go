package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// DemoCommand runs the whole daemon in one process against the built-in
// Genesys and Dataverse emulators, with simulated traffic: no credentials,
// no external services. Only loopback is used.
type DemoCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// demoAgents are the emulated agents. Genesys user ids are UUIDs.
var demoAgents = []notificationstest.AgentSpec{
	{ID: "5e1f0a1c-0000-4000-8000-000000000001", Name: "Alice Agent", Email: "alice@example.invalid"},
	{ID: "5e1f0a1c-0000-4000-8000-000000000002", Name: "Bob Agent", Email: "bob@example.invalid"},
	{ID: "5e1f0a1c-0000-4000-8000-000000000003", Name: "Carol Agent", Email: "carol@example.invalid"},
	{ID: "5e1f0a1c-0000-4000-8000-000000000004", Name: "Dave Agent", Email: "dave@example.invalid"},
}

// Run starts the emulators, the daemon and the traffic, prints the demo
// page's URL and runs until ctx is cancelled (Ctrl-C).
func (c *DemoCommand) Run(ctx context.Context, args []string) error {
	cfg, _, err := ParseConfig("demo", args, c.getenv, Requirements{}, c.stderr)
	if err != nil {
		return err
	}
	log, lw := newDaemonLogger(cfg.LogLevel, cfg.LogFormat, c.stderr)
	defer lw.Close(logFlush)
	began := time.Now()
	logForcedExit(ctx, cfg.LogLevel, cfg.LogFormat, c.stderr, lw, began)
	// A fresh temporary store unless SCREENPOP_DATA_DIR or --data-dir
	// names one: asked of the parsed configuration, so the flag counts.
	d, err := StartDemo(ctx, cfg, log, !cfg.IsSet("SCREENPOP_DATA_DIR"))
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C while it started: a stop, as RunCommand's.
			log.Info().Str("component", "main").Int64("uptime_s", int64(time.Since(began).Seconds())).Msg("screenpopd stopped")
			return nil
		}
		return err
	}
	defer d.Close()
	registerLogDropped(d.Main.Registry, lw)
	if dir := d.tempDir; dir != "" {
		// A second Ctrl-C or SIGTERM skips d.Close.
		onForcedExit(ctx, func() { os.RemoveAll(dir) })
	}
	base := d.Main.AgentURL()
	events := "nats sub 'screenpop.>' --server " + d.Main.Bus.ClientURL() + "   (go install github.com/nats-io/natscli/nats@v0.5.0)"
	if d.Main.Bus.ClientURL() == "" {
		events = "SCREENPOP_NATS_LISTEN is off: no NATS listener to subscribe to"
	}
	fmt.Fprintf(c.stdout, `
screenpop demo is running. Open the agent page:

    %s/web/demo.html

Pick an agent there; simulated calls, chats and messages pop Dynamics records every few seconds.
Or log in the way agents do, with Genesys Cloud's PKCE login (emulated):

    %s/web/demo.html#login=%s&clientId=%s

Watch the events:   %s
Admin:              http://%s/status  /metrics  /readyz
Stop with Ctrl-C.

`, base, base, d.Genesys.URL(), d.Genesys.Config().BrowserClientID, events, d.Main.AdminAddr())
	return d.Run(ctx)
}

// Demo is a daemon wired to the emulators, plus the traffic that drives it.
type Demo struct {
	Main      *Main
	Genesys   *notificationstest.Emulator
	Dataverse *dataversetest.Server
	Seed      dataversetest.SeedInfo
	Traffic   *Traffic
	tempDir   string
}

// StartDemo starts both emulators on loopback, points cfg at them and opens
// the daemon. With tempData the JetStream store goes to a temporary
// directory removed by Close, so every demo starts fresh.
func StartDemo(ctx context.Context, cfg *Config, log zerolog.Logger, tempData bool) (*Demo, error) {
	d := &Demo{}
	if tempData {
		dir, err := os.MkdirTemp("", "screenpop-demo-")
		if err != nil {
			return nil, err
		}
		d.tempDir, cfg.DataDir = dir, dir
	}
	// A demo runs for days: its emulator forgets what ended an hour ago
	// (every scripted conversation, agent token and request it answered
	// was otherwise kept for good, about 3 KB a call).
	d.Genesys = notificationstest.New(notificationstest.Config{Agents: demoAgents, Forget: time.Hour})
	if _, err := d.Genesys.Start(); err != nil {
		d.Close()
		return nil, fmt.Errorf("start genesys emulator: %w", err)
	}
	d.Dataverse = dataversetest.New(dataversetest.Config{KeepRequests: 10000})
	if err := d.Dataverse.Start(); err != nil {
		d.Close()
		return nil, fmt.Errorf("start dataverse emulator: %w", err)
	}
	d.Seed = d.Dataverse.Seed(300, mrand.New(mrand.NewPCG(1, 2)))

	gc, dc := d.Genesys.Config(), d.Dataverse.Config()
	cfg.GenesysRegion, cfg.GenesysAPIURL = "", d.Genesys.URL()
	cfg.GenesysClientID, cfg.GenesysClientSecret = gc.ClientID, gc.ClientSecret
	cfg.GenesysAgents, cfg.GenesysAgentsFile, cfg.GenesysQueues = nil, "", nil
	for _, a := range demoAgents {
		cfg.GenesysAgents = append(cfg.GenesysAgents, a.ID)
	}
	cfg.DataverseURL, cfg.DataverseTokenURL = d.Dataverse.URL(), d.Dataverse.TokenURL()
	cfg.DataverseTenantID, cfg.DataverseClientID, cfg.DataverseClientSecret = dc.TenantID, dc.ClientID, dc.ClientSecret
	cfg.DataverseClientCertificate = "" // the emulator's secret instead
	if cfg.DataverseAppID == "" {
		cfg.DataverseAppID = "00000000-0000-4000-8000-0000000000de"
	}
	// Agents log in as in production: their Genesys token, checked against
	// the (emulated) users/me.
	cfg.Auth = "genesys"

	d.Main = NewMain(cfg, log)
	d.Main.DemoAgents = d.agents
	d.Main.TempDataDir = tempData
	if err := d.Main.Open(ctx); err != nil {
		d.Main.Close()
		d.Close()
		return nil, err
	}
	var ids []string
	for _, a := range demoAgents {
		ids = append(ids, a.ID)
	}
	d.Traffic = NewTraffic(d.Genesys, ids, d.Seed, log)
	return d, nil
}

// demoAgent is one entry of GET /demo/agents.
type demoAgent struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Token string `json:"token"`
}

func (d *Demo) agents() any {
	out := make([]demoAgent, 0, len(demoAgents))
	for _, a := range demoAgents {
		out = append(out, demoAgent{ID: a.ID, Name: a.Name, Token: d.Genesys.AgentToken(a.ID)})
	}
	return out
}

// Run runs the daemon and the traffic until ctx is cancelled.
func (d *Demo) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	tctx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); d.Traffic.Run(tctx, 4*time.Second) }()
	err := d.Main.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// Close stops the emulators and removes a temporary store.
func (d *Demo) Close() {
	if d.Genesys != nil {
		d.Genesys.Close()
	}
	if d.Dataverse != nil {
		d.Dataverse.Close()
	}
	if d.tempDir != "" {
		os.RemoveAll(d.tempDir)
	}
}

// Traffic scripts conversations on the Genesys emulator: inbound and
// outbound calls, transfers, internal calls, chats, messages, emails and
// callbacks, from numbers the Dataverse emulator knows once, several times,
// or not at all.
type Traffic struct {
	emu    *notificationstest.Emulator
	agents []string
	seed   dataversetest.SeedInfo
	log    zerolog.Logger
	mu     sync.Mutex
	rnd    *mrand.Rand
	wg     sync.WaitGroup
}

// NewTraffic returns a traffic generator for agents.
func NewTraffic(emu *notificationstest.Emulator, agents []string, seed dataversetest.SeedInfo, log zerolog.Logger) *Traffic {
	return &Traffic{emu: emu, agents: agents, seed: seed, log: log.With().Str("component", "traffic").Logger(), rnd: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))}
}

// Run starts a scenario every interval until ctx is cancelled, then waits
// for the running ones to stop.
func (t *Traffic) Run(ctx context.Context, interval time.Duration) {
	defer t.wg.Wait()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	t.start(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.start(ctx)
		}
	}
}

func (t *Traffic) pick(list []string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(list) == 0 {
		return ""
	}
	return list[t.rnd.IntN(len(list))]
}

func (t *Traffic) intn(n int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rnd.IntN(n)
}

// number picks a caller: mostly a known number, sometimes a shared or an
// unknown one.
func (t *Traffic) number() string {
	switch r := t.intn(10); {
	case r < 6:
		return t.pick(t.seed.Unique)
	case r < 8:
		return t.pick(t.seed.Shared)
	default:
		return t.pick(t.seed.Unknown)
	}
}

// start runs one random scenario in its own goroutine.
func (t *Traffic) start(ctx context.Context) {
	agent := t.pick(t.agents)
	other := t.pick(t.agents)
	for other == agent && len(t.agents) > 1 {
		other = t.pick(t.agents)
	}
	opts := notificationstest.Options{QueueID: "q-demo-sales", DNIS: "+18005551000"}
	var c *notificationstest.Conversation
	kind := t.intn(20)
	switch {
	case kind < 9:
		c = t.emu.InboundCall(agent, t.number(), opts)
	case kind < 11:
		c = t.emu.OutboundCall(agent, t.number(), notificationstest.Options{})
	case kind < 12:
		c = t.emu.InternalCall(agent, other, notificationstest.Options{})
	case kind < 14:
		email := t.pick(t.seed.Emails)
		opts.Attributes = map[string]string{"context.firstName": "Web", "context.lastName": "Visitor", "context.email": email}
		c = t.emu.Chat(agent, opts)
	case kind < 16:
		// An SMS: web messaging guests have no number to look up.
		opts.MessageType = "sms"
		c = t.emu.Message(agent, t.number(), opts)
	case kind < 17:
		c = t.emu.Email(agent, t.pick(t.seed.Emails), opts)
	case kind < 18:
		c = t.emu.Callback(agent, t.number(), opts)
	default:
		c = t.emu.InboundCall(agent, t.number(), opts)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.play(ctx, c, func() { c.BlindTransfer(other) })
		}()
		return
	}
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.play(ctx, c, nil) }()
}

// play runs a conversation through alerting, connected and disconnected,
// with an optional step (a transfer) while connected.
func (t *Traffic) play(ctx context.Context, c *notificationstest.Conversation, middle func()) {
	steps := []func(){func() { c.Alert() }, func() { c.Connect() }}
	if middle != nil {
		steps = append(steps, middle, func() { c.Connect() })
	}
	steps = append(steps, func() { c.Disconnect() })
	for i, step := range steps {
		if i > 0 {
			select {
			case <-ctx.Done():
				c.Disconnect()
				return
			case <-time.After(time.Duration(1500+t.intn(2500)) * time.Millisecond):
			}
		}
		step()
	}
	t.log.Debug().Str("conversation_id", c.ID()).Msg("scripted conversation done")
}

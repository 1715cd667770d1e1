// Command screenpopd pops the matching Microsoft Dynamics 365 record in a
// contact-centre agent's browser when a Genesys Cloud conversation reaches
// the agent. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/push"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// The first SIGINT/SIGTERM asks for the graceful stop; a second one
	// ends the process at once, by the signal's default action (Ctrl-C
	// again, or an impatient supervisor). The channel holds both, so the
	// second is never lost however soon it follows.
	ctx, cancel := context.WithCancel(context.Background())
	stop := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if len(os.Args) > 1 && os.Args[1] == "run" {
		// SIGHUP, the usual "reload", must not end the daemon by its
		// default action: the configuration is read at start only (the
		// agents file is followed without it), and systemd's
		// Restart=on-failure does not restart a process that SIGHUP ended
		// (a clean exit signal to it).
		signal.Ignore(syscall.SIGHUP)
	} else {
		// The demo and the short commands run in a terminal: closing it
		// stops them as Ctrl-C does, gracefully.
		stop = append(stop, syscall.SIGHUP)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stop...)
	forced := &forcedExit{}
	ctx = context.WithValue(ctx, forcedExitKey{}, forced)
	go func() {
		first := <-sigs
		at := time.Now()
		cancel()
		again := <-sigs
		for again == first && time.Since(at) < signalEcho {
			// The same signal delivered twice: to the process group and
			// forwarded by the parent (timeout, make), not a second
			// request.
			again = <-sigs
		}
		forced.run()
		signal.Reset(stop...)
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Signal(again)
		}
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	os.Exit(code)
}

// signalEcho is how soon after the first signal the same signal counts as
// its echo: `timeout` and make forward a SIGTERM that the process group
// also delivered, microseconds apart, while a second Ctrl-C takes a human
// a good fraction of a second.
const signalEcho = 100 * time.Millisecond

// forcedExit holds what must be done even when a second signal ends the
// process at once, skipping the deferred clean-up: the demo's temporary
// store is removed. Two signals are common: `timeout` and make (for a
// recipe) forward the SIGTERM their process group also delivers.
type forcedExit struct {
	mu  sync.Mutex
	fns []func()
}

type forcedExitKey struct{}

// onForcedExit registers fn to run before a second signal ends the
// process. It does nothing when ctx does not come from main (tests).
func onForcedExit(ctx context.Context, fn func()) {
	if f, ok := ctx.Value(forcedExitKey{}).(*forcedExit); ok {
		f.mu.Lock()
		f.fns = append(f.fns, fn)
		f.mu.Unlock()
	}
}

func (f *forcedExit) run() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range f.fns {
		fn()
	}
}

// run is main without the process: tests call it with their own
// environment and writers. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var cmd interface {
		Run(ctx context.Context, args []string) error
	}
	switch args[0] {
	case "run":
		cmd = &RunCommand{getenv: getenv, stdout: stdout, stderr: stderr}
	case "demo":
		cmd = &DemoCommand{getenv: getenv, stdout: stdout, stderr: stderr}
	case "check":
		cmd = &CheckCommand{getenv: getenv, stdout: stdout, stderr: stderr}
	case "token":
		cmd = &TokenCommand{getenv: getenv, stdout: stdout, stderr: stderr}
	case "version":
		fmt.Fprintln(stdout, "screenpopd", versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "screenpopd: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.Run(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(*UsageError)):
		return 2 // the flag package has printed it, with the flags
	default:
		var ce *ConfigError
		if errors.As(err, &ce) {
			if args[0] == "check" {
				// check has printed each problem as a FAIL config line
				// with its fix.
				fmt.Fprintf(stderr, "screenpopd check: invalid configuration: %d problem(s), each on a FAIL config line above\n", len(ce.Problems))
				return 2
			}
			lastLine(stderr, fmt.Sprintf("screenpopd %s: %v\n", args[0], err))
			return 2
		}
		lastLine(stderr, fmt.Sprintf("screenpopd %s: %v\n", args[0], err))
		return 1
	}
}

// lastLine writes the line the process ends with, waiting for stderr at
// most logFlush: a log reader that stopped reading (see newDaemonLogger)
// must not keep a failed daemon from exiting, and so from its restart.
func lastLine(stderr io.Writer, line string) {
	ctx, cancel := context.WithTimeout(context.Background(), logFlush)
	defer cancel()
	_, _ = unlessDone(ctx, func() (int, error) { return io.WriteString(stderr, line) })
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: screenpopd <command> [flags]

commands:
  run      run the daemon (Genesys Cloud -> NATS -> Dataverse -> agent browsers)
  demo     run everything in one process against built-in emulators, no credentials
  check    validate the configuration and probe Genesys, Dataverse, NATS and TLS
  token    mint a jwt-mode agent token: screenpopd token --agent <user id> [--ttl 8h] [--jwt-audience A]
  version  print the version

Run "screenpopd <command> -h" for the flags; every flag has an environment variable.
See docs/configuration.md.
`)
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

// RunCommand runs the daemon.
type RunCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// Run parses the configuration, builds the daemon and runs it until ctx is
// cancelled (SIGINT or SIGTERM).
func (c *RunCommand) Run(ctx context.Context, args []string) error {
	unknown := UnknownVariables(environ())
	cfg, _, err := ParseConfig("run", args, c.getenv, Requirements{Genesys: true, Dataverse: true}, c.stderr)
	if err != nil {
		// A misspelled variable is often why a required one is missing.
		for _, u := range unknown {
			fmt.Fprintf(c.stderr, "screenpopd run: warning: %s\n", u)
		}
		return err
	}
	log, lw := newDaemonLogger(cfg.LogLevel, cfg.LogFormat, c.stderr)
	defer lw.Close(logFlush)
	logForcedExit(ctx, cfg.LogLevel, cfg.LogFormat, c.stderr, lw, time.Now())
	for _, u := range unknown {
		log.Warn().Str("component", "main").Msg(u)
	}
	for _, a := range cfg.Advice() {
		log.Warn().Str("component", "main").Msg(a)
	}
	m := NewMain(cfg, log)
	if err := m.Open(ctx); err != nil {
		m.Close()
		if ctx.Err() != nil {
			// SIGINT/SIGTERM during start-up (systemctl stop or restart,
			// Ctrl-C): a stop asked for, not a failure of what start-up
			// was waiting on ("context canceled" blamed NATS or the disk,
			// and exit 1 left the unit failed).
			log.Info().Str("component", "main").Int64("uptime_s", int64(time.Since(m.started).Seconds())).Msg("screenpopd stopped")
			return nil
		}
		return err
	}
	registerLogDropped(m.Registry, lw)
	return m.Run(ctx)
}

// TokenCommand mints a jwt-mode agent token, for tests, the demo and
// deployments that use SCREENPOP_AUTH=jwt with their own login.
type TokenCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// Run prints one token.
func (c *TokenCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	agent := fs.String("agent", "", "the Genesys user id the token is for (required)")
	ttl := fs.Duration("ttl", 8*time.Hour, "how long the token is valid")
	secret := fs.String("jwt-secret", "", "the HS256 secret (SCREENPOP_JWT_SECRET)")
	audience := fs.String("jwt-audience", "", "the token's aud (SCREENPOP_JWT_AUDIENCE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = c.getenv("SCREENPOP_JWT_SECRET")
	}
	*secret = JWTSecretOf(*secret) // as the daemon reads it
	if *audience == "" {
		*audience = strings.TrimSpace(c.getenv("SCREENPOP_JWT_AUDIENCE"))
	}
	*agent = strings.ToLower(strings.TrimSpace(*agent)) // as GENESYS_AGENTS: Genesys writes user ids in lower case
	if dataverse.IsGUID(*agent) {
		*agent = bridge.GenesysID(*agent) // without braces, as GENESYS_AGENTS
	}
	var p []string
	switch {
	case *agent == "":
		p = append(p, "--agent: required; the agent's Genesys user id (a UUID)")
	case !dataverse.IsGUID(*agent) || !bridge.ValidSubjectToken(*agent):
		// run watches only user ids (GENESYS_AGENTS refuses anything
		// else): a token for another word connects and never pops.
		p = append(p, fmt.Sprintf("--agent: %q is not a Genesys user id (a UUID such as 5e1f0a1c-0000-4000-8000-000000000001); Admin > People shows it in the user's URL", *agent))
	}
	if len(*secret) < push.MinJWTSecret {
		p = append(p, fmt.Sprintf("SCREENPOP_JWT_SECRET: required, at least %d bytes (the daemon's secret); generate one with: openssl rand -base64 48", push.MinJWTSecret))
	}
	if *ttl <= 0 {
		p = append(p, "--ttl: must be positive")
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	var aud []string
	if *audience != "" {
		aud = []string{*audience}
	}
	tok, err := push.MintToken([]byte(*secret), bridge.AgentID(*agent), *ttl, aud...)
	if err != nil {
		return fmt.Errorf("mint token: %w", err)
	}
	fmt.Fprintln(c.stdout, tok)
	return nil
}

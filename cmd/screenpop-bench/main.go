// Command screenpop-bench is screenpop's load tool. It starts a screenpopd
// in a child process (so that its memory and CPU are measured alone) against
// the in-process Genesys and Dataverse emulators, connects N agent
// websocket clients, drives R inbound calls a second for D seconds with a
// chosen Dataverse latency and cache-hit ratio, and reports:
//
//   - end-to-end latency, from the emulator writing the alerting frame to
//     the agent's client reading the pop (p50, p90, p99, max);
//   - the pipeline overhead without the Dataverse lookup;
//   - pops lost, duplicated and misrouted;
//   - daemon RSS before and after connecting the agents (memory per idle
//     connection), CPU seconds per 1,000 pops, Dataverse requests per pop;
//   - two reference paths in the same run: the same clients fed straight
//     from a NATS publish (the floor of the push path), and the original
//     browser integration (one uncached Dataverse query per pop).
//
// Output: a table on stdout, results.json and latency.svg under -out.
// `make bench` runs it with the defaults (the full target run: 10,000
// agents, 500 pops/s, 60 s); -quick is a short run (1,000 agents, 200/s,
// 10 s) that the package's test also runs. Only loopback is used.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
)

// Options is one run's parameters.
type Options struct {
	Agents     int           // agent websocket clients (and watched Genesys users)
	Rate       int           // inbound calls (pops) a second
	Duration   time.Duration // of the measured phase
	RefPhase   time.Duration // of each reference phase (NATS floor, browser baseline)
	Warmup     time.Duration // unmeasured calls before the phases
	DVLatency  time.Duration // added to every Dataverse API request
	HitRatio   float64       // share of calls from a caller whose lookup is cached
	Hangup     time.Duration // a call is disconnected this long after it alerts; 0 = never
	Seed       int           // records in the Dataverse emulator
	Markers    int           // pop markers of earlier legs stored in the daemon before the run
	Out        string        // results folder
	Daemon     string        // screenpopd binary; "" builds ./cmd/screenpopd
	Quick      bool          // recorded in the results
	DrainAfter time.Duration // how long to wait for the last pops after sending stops
	Stdout     io.Writer
	Verbose    bool // echo the daemon's warnings and errors
	Samples    bool // write pops.csv (every pop's times) and daemon.log (the daemon's stderr) under Out
	Profile    bool // profile the daemon during the screenpop phase and its heap before and after connecting (files under Out)
	Pin        bool // run the daemon on one CPU and this whole process on the others (Linux; for good: Run pins the calling process)
	TLS        bool // the daemon's agent listener terminates TLS (SCREENPOP_TLS_CERT/KEY, a self-signed certificate); the clients dial wss
}

func defaultOptions() Options {
	return Options{
		Agents: 10000, Rate: 500, Duration: 60 * time.Second, RefPhase: 10 * time.Second, Warmup: 2 * time.Second,
		DVLatency: 5 * time.Millisecond, HitRatio: 0.5, Hangup: 3 * time.Second, Seed: 200,
		Out: "bench-results", DrainAfter: 10 * time.Second,
	}
}

func quickOptions(o Options) Options {
	o.Agents, o.Rate, o.Duration, o.RefPhase, o.Warmup, o.Quick = 1000, 200, 10*time.Second, 3*time.Second, time.Second, true
	return o
}

func main() {
	// The load generator allocates steadily (emulators, 10,000 clients);
	// fewer GC cycles leave more of the shared cores to the daemon. The
	// daemon keeps its own default (SCREENPOPD_GOGC sets it).
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "screenpop-bench:", err)
		return 2
	}
	o.Stdout = stdout
	res, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "screenpop-bench:", err)
		return 1
	}
	if res.Lost+res.Duplicated+res.Misrouted > 0 {
		return 3
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("screenpop-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short run: 1,000 agents, 200 pops/s, 10 s, 3 s reference phases (explicit flags still win)")
	fs.IntVar(&o.Agents, "agents", o.Agents, "agent websocket clients (and watched Genesys users)")
	fs.IntVar(&o.Rate, "rate", o.Rate, "inbound calls (pops) a second")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of the measured phase")
	fs.DurationVar(&o.RefPhase, "ref-duration", o.RefPhase, "length of each reference phase (NATS floor, browser baseline); 0 skips them")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured calls before the phases")
	fs.DurationVar(&o.DVLatency, "dv-latency", o.DVLatency, "latency the Dataverse emulator adds to every API request")
	fs.Float64Var(&o.HitRatio, "hit-ratio", o.HitRatio, "share of calls from a repeat caller whose lookup is cached (0..1)")
	fs.DurationVar(&o.Hangup, "hangup", o.Hangup, "disconnect each call this long after it alerts (0: never)")
	fs.IntVar(&o.Seed, "seed", o.Seed, "records seeded in the Dataverse emulator")
	fs.IntVar(&o.Markers, "markers", o.Markers, "pop markers of earlier legs stored in the daemon before the run, as a daemon holds with that many calls in progress or ended in the last 15 minutes (0: an empty store)")
	fs.StringVar(&o.Out, "out", o.Out, "results folder (results.json, latency.svg)")
	fs.StringVar(&o.Daemon, "daemon", "", "screenpopd binary to run (default: go build ./cmd/screenpopd)")
	fs.DurationVar(&o.DrainAfter, "drain", o.DrainAfter, "wait this long for the last pops after sending stops")
	fs.BoolVar(&o.Verbose, "v", false, "echo the daemon's warnings and errors")
	fs.BoolVar(&o.Samples, "samples", false, "also write pops.csv (each pop's send and receive times) and daemon.log (the daemon's log) under -out")
	fs.BoolVar(&o.Profile, "profile", false, "profile the daemon during the screenpop phase (daemon-cpu.pprof, daemon-allocs.pprof) and the tool (bench-cpu.pprof), and the daemon's heap before and after the agents connect (daemon-heap-idle.pprof, daemon-heap-connected.pprof), under -out")
	fs.BoolVar(&o.TLS, "tls", false, "the daemon terminates TLS on its agent listener, as in production without a proxy in front (a self-signed certificate for 127.0.0.1); the clients connect with wss")
	fs.BoolVar(&o.Pin, "pin", false, "run the daemon alone on the first CPU this process may use and the tool on the others, so that neither preempts the other (Linux, 2+ CPUs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := quickOptions(o)
		if !set["agents"] {
			o.Agents = q.Agents
		}
		if !set["rate"] {
			o.Rate = q.Rate
		}
		if !set["duration"] {
			o.Duration = q.Duration
		}
		if !set["ref-duration"] {
			o.RefPhase = q.RefPhase
		}
		if !set["warmup"] {
			o.Warmup = q.Warmup
		}
		o.Quick = true
	}
	switch {
	case o.Agents < 1:
		return o, fmt.Errorf("-agents %d: want at least 1", o.Agents)
	case o.Rate < 1:
		return o, fmt.Errorf("-rate %d: want at least 1", o.Rate)
	case o.Duration <= 0:
		return o, fmt.Errorf("-duration %s: want a positive duration", o.Duration)
	case o.HitRatio < 0 || o.HitRatio > 1:
		return o, fmt.Errorf("-hit-ratio %g: want 0..1", o.HitRatio)
	case o.Markers < 0:
		return o, fmt.Errorf("-markers %d: want 0 or more", o.Markers)
	case o.DVLatency < 0 || o.RefPhase < 0 || o.Warmup < 0 || o.Hangup < 0:
		return o, fmt.Errorf("durations must not be negative")
	}
	return o, nil
}

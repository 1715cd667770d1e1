package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/screenpop/screenpop/notifications"
)

// CheckCommand validates the configuration and probes each dependency,
// printing one line per check with a fix hint. It exits non-zero when any
// check fails: 2 for an invalid configuration (nothing is probed), 1 when a
// probe fails.
type CheckCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// checkDeadline bounds the whole check.
const checkDeadline = 60 * time.Second

// Run runs the checks.
func (c *CheckCommand) Run(ctx context.Context, args []string) error {
	// A misspelled variable is often why a required one is missing: the
	// warnings come whether or not the configuration is valid.
	warnUnknown := func() {
		for _, u := range UnknownVariables(environ()) {
			fmt.Fprintf(c.stdout, "warn config: %s\n", u)
		}
	}
	cfg, _, err := ParseConfig("check", args, c.getenv, Requirements{Genesys: true, Dataverse: true}, c.stderr)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				// Problems read "VARIABLE: what is wrong; the fix".
				detail, fix, ok := strings.Cut(p, "; ")
				if !ok {
					fix = "correct the value; docs/configuration.md lists every variable"
				}
				fmt.Fprintf(c.stdout, "FAIL config: %s\n     fix: %s\n", detail, fix)
			}
			warnUnknown()
		}
		return err
	}
	agents, err := cfg.Agents()
	if err != nil {
		fmt.Fprintf(c.stdout, "FAIL config: %v\n", err)
		return &ConfigError{Problems: []string{err.Error()}}
	}
	fmt.Fprintf(c.stdout, "ok   config: every variable is valid (%d agents, %d queues, pop on %s, auth %s)\n", len(agents), len(cfg.GenesysQueues), cfg.PopOn, cfg.Auth)
	// The daemon logs the agents it has no room for only once it runs;
	// queue members are not counted here (they are read at start).
	if most := (notifications.Config{}).AgentCapacity(); len(agents) > most {
		fmt.Fprintf(c.stdout, "warn genesys agents: %d agents to watch, but one screenpopd watches at most %d (Genesys allows 20 channels of 1,000 topics per OAuth client, and a handover needs two per channel): %d would get no pops\n     fix: split the agents over instances, each with its own OAuth client\n",
			len(agents), most, len(agents)-most)
	}
	warnUnknown()
	for _, a := range cfg.Advice() {
		detail, fix, _ := strings.Cut(a, "; ")
		fmt.Fprintf(c.stdout, "warn config: %s\n     fix: %s\n", detail, fix)
	}
	ctx, cancel := context.WithTimeout(ctx, checkDeadline)
	defer cancel()
	failed := RunChecks(ctx, cfg, NewLogger("error", "json", io.Discard), c.stdout)
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	fmt.Fprintln(c.stdout, "all checks passed")
	return nil
}

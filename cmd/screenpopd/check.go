package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// CheckCommand validates the configuration and probes each dependency,
// printing one line per check with a fix hint. It exits non-zero when any
// check fails.
type CheckCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// Run runs the checks.
func (c *CheckCommand) Run(ctx context.Context, args []string) error {
	cfg, _, err := ParseConfig("check", args, c.getenv, Requirements{Genesys: true, Dataverse: true}, c.stderr)
	if err != nil {
		fmt.Fprintln(c.stdout, "FAIL config:", err)
		return err
	}
	fmt.Fprintln(c.stdout, "ok   config: every variable is valid")
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	failed := RunChecks(ctx, cfg, NewLogger("error", "json", io.Discard), c.stdout)
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// Pinning is Linux-only: planSplit says so, and Run never calls the other
// two with CPUs to pin to.

func planSplit() (cpuSplit, error) {
	return cpuSplit{}, errors.New("-pin is only available on Linux: run without it")
}

func startOn(cmd *exec.Cmd, _ []int) error { return cmd.Start() }

func pinSelf([]int) error { return nil }

//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

func planSplit() (cpuSplit, error) { return cpuSplit{}, errors.New("-pin is only available on Linux") }

func startOn(cmd *exec.Cmd, _ []int) error { return cmd.Start() }

func pinSelf([]int) error { return nil }

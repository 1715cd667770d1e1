package main

import (
	"fmt"
	"strconv"
	"strings"
)

// cpuSplit is -pin's layout: the daemon alone on one CPU, the tool (its
// emulators and clients) on the others, so that neither preempts the
// other: the nearest one machine comes to a load generator on a machine of
// its own.
type cpuSplit struct {
	Daemon []int `json:"daemon"`
	Tool   []int `json:"tool"`
}

func (s cpuSplit) String() string {
	return fmt.Sprintf("daemon on CPU %s, tool on CPU %s", cpuList(s.Daemon), cpuList(s.Tool))
}

// cpuList renders CPU numbers as taskset and /proc do: 0,2-3.
func cpuList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

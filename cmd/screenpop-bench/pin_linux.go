package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// planSplit gives the daemon the first CPU this process may run on and the
// tool the rest.
func planSplit() (cpuSplit, error) {
	cpus, err := usableCPUs()
	if err != nil {
		return cpuSplit{}, fmt.Errorf("-pin: read the CPU affinity: %w", err)
	}
	if len(cpus) < 2 {
		return cpuSplit{}, fmt.Errorf("-pin needs at least 2 CPUs to split between the daemon and the tool, and this process may use %d: run without -pin", len(cpus))
	}
	return cpuSplit{Daemon: cpus[:1], Tool: cpus[1:]}, nil
}

// usableCPUs lists, in order, the CPUs the calling thread may run on.
func usableCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for c := 0; len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// startOn starts cmd on cpus. A child inherits the CPU affinity of the
// thread that forks it (os/exec clones from the calling thread), so the
// fork happens on a locked thread restricted to cpus for the fork's while;
// the thread gets its own affinity back before it is unlocked (were it
// left locked, the runtime would end it, but not the main thread, which it
// only parks). A thread the runtime needs meanwhile does not inherit the
// restriction: a locked thread's new threads come from the runtime's
// template thread, started by LockOSThread before the affinity changes.
func startOn(cmd *exec.Cmd, cpus []int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var own unix.CPUSet
		if err := unix.SchedGetaffinity(0, &own); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("-pin: read the forking thread's CPU affinity: %w", err)
			return
		}
		if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("-pin: restrict the forking thread to CPU %s: %w", cpuList(cpus), err)
			return
		}
		err := cmd.Start()
		if rerr := unix.SchedSetaffinity(0, &own); rerr == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine: the
		// child runs either way, so cmd's result is what the caller needs
		errc <- err
	}()
	return <-errc
}

// pinSelf restricts every thread of this process to cpus and GOMAXPROCS
// to their number. Threads started later inherit the affinity of the
// thread that starts them; the passes repeat until one finds every thread
// already restricted, so a thread started during a pass is not missed.
func pinSelf(cpus []int) error {
	want := cpuSet(cpus)
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("-pin: list this process's threads: %w", err)
		}
		changed := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var have unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &have); errors.Is(err, unix.ESRCH) {
				continue // the thread has exited
			} else if err != nil {
				return fmt.Errorf("-pin: read thread %d's CPU affinity: %w", tid, err)
			}
			if have == *want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, want); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("-pin: restrict thread %d to CPU %s: %w", tid, cpuList(cpus), err)
			}
			changed++
		}
		if changed == 0 {
			runtime.GOMAXPROCS(len(cpus))
			return nil
		}
	}
	return errors.New("-pin: threads kept starting with the old CPU affinity; run without -pin, or the whole tool under taskset")
}

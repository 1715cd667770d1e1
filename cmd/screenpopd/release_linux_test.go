package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// fdTable lists this process's open descriptors by what they point at.
func fdTable(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err) // Linux only: the file's name says so
	}
	out := map[string]string{}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			out[e.Name()] = l
		}
	}
	return out
}

// fdKinds counts descriptors by kind (socket, anon_inode, pipe, a path).
func fdKinds(fds map[string]string) map[string]int {
	k := map[string]int{}
	for _, l := range fds {
		switch {
		case strings.HasPrefix(l, "socket:"):
			l = "socket"
		case strings.HasPrefix(l, "pipe:"):
			l = "pipe"
		}
		k[l]++
	}
	return k
}

func fdDiff(before, after map[string]string) string {
	b, a := fdKinds(before), fdKinds(after)
	var lines []string
	for k, n := range a {
		if n > b[k] {
			lines = append(lines, fmt.Sprintf("+%d %s", n-b[k], k))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// goroutineStacks is the goroutine profile, for the log of a failure.
func goroutineStacks() string {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return buf.String()
}

// TestDaemon_StopReleasesEverything: a graceful stop with agents
// connected, then a start again in the same process on the same
// addresses and data dir, 10 times: descriptors and goroutines come back
// to where they were before the first start (a supervisor that restarts
// the daemon in process, and any restart that binds the same ports).
func TestDaemon_StopReleasesEverything(t *testing.T) {
	d, cfg, _ := demoEmulators(t, testEnv(t))
	cfg.Listen, cfg.AdminListen, cfg.NatsListen = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID
	cycle := func(i int) {
		logs := &syncbuf.Buffer{}
		m, stop := runDaemon(t, cfg, logs)
		ws0, _ := resumeAgent(t, m.AgentURL(), d.Genesys.AgentToken(a0), 0, "", "")
		ws1, _ := resumeAgent(t, m.AgentURL(), d.Genesys.AgentToken(a1), 0, "", "")
		c := alertCall(d, a0)
		for readPop(t, ws0).ConversationID != c.ID() { // the replay first
		}
		resp, err := http.Get("http://" + cfg.AdminListen + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		stop()
		ws0.Close()
		ws1.Close()
		http.DefaultClient.CloseIdleConnections()
	}
	cycle(0) // the first start makes the store, the key, the emulators' first connections
	settle := func() {
		runtime.GC()
		time.Sleep(200 * time.Millisecond)
	}
	settle()
	fds0, g0 := fdTable(t), runtime.NumGoroutine()
	stacks0 := goroutineStacks()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	const n = 10
	for i := 1; i <= n; i++ {
		cycle(i)
	}
	// Generous: what is released at all is released within 5 s.
	var fds map[string]string
	var g int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		settle()
		fds, g = fdTable(t), runtime.NumGoroutine()
		if (len(fds) <= len(fds0)+2 && g <= g0+5) || time.Now().After(deadline) {
			break
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("after %d more cycles: fds %d -> %d, goroutines %d -> %d, heap %d KB -> %d KB", n, len(fds0), len(fds), g0, g, ms0.HeapAlloc>>10, ms.HeapAlloc>>10)
	if len(fds) > len(fds0)+2 {
		t.Errorf("%d start/stop cycles left %d more descriptors open:\n%s", n, len(fds)-len(fds0), fdDiff(fds0, fds))
	}
	if g > g0+5 {
		t.Errorf("%d start/stop cycles left %d more goroutines", n, g-g0)
		t.Logf("goroutines before:\n%s\nafter:\n%s", stacks0, goroutineStacks())
	}
}

// settled waits (generously) for this process's descriptors and
// goroutines to come back to fds0 and g0, and reports what is left.
func settled(t *testing.T, fds0 map[string]string, g0 int) (extraFDs string, extraG int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		runtime.GC()
		fds, g := fdTable(t), runtime.NumGoroutine()
		if (len(fds) <= len(fds0) && g <= g0) || time.Now().After(deadline) {
			if len(fds) > len(fds0) {
				extraFDs = fdDiff(fds0, fds)
			}
			return extraFDs, max(g-g0, 0)
		}
	}
}

// startedOnce is base on addresses and a data dir of its own, started and
// stopped once (the store and the key exist, as on any start but the
// first), with this process's descriptors and goroutines after that.
func startedOnce(t *testing.T, base *Config) (cfg *Config, fds0 map[string]string, g0 int) {
	t.Helper()
	c := *base
	cfg = &c
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.AdminListen, cfg.NatsListen = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	_, stop := runDaemon(t, cfg, &syncbuf.Buffer{})
	stop()
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	return cfg, fdTable(t), runtime.NumGoroutine()
}

// TestDaemon_FailedStartReleasesEverything: a start that fails at each of
// Open's stages in turn (Run never called; the caller closes, as
// RunCommand does) leaves nothing held: the listeners, the data dir's
// lock, the built-in NATS server and its store, descriptors and
// goroutines; a start right after, in the same process on the same
// addresses and data dir, comes up ready.
func TestDaemon_FailedStartReleasesEverything(t *testing.T) {
	_, base, _ := demoEmulators(t, testEnv(t))
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n"), 0o600)
	hold := func(t *testing.T, addr string) func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return func() { ln.Close() }
	}
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, cfg *Config) (undo func())
		once   string // a setting the error names, once
	}{
		{"AgentListenerTaken", func(t *testing.T, cfg *Config) func() { return hold(t, cfg.Listen) }, ""},
		{"AdminListenerTaken", func(t *testing.T, cfg *Config) func() { return hold(t, cfg.AdminListen) }, ""},
		{"DataDirLocked", func(t *testing.T, cfg *Config) func() {
			lock, _, err := lockDataDir(cfg.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			return func() { lock.Close() }
		}, ""},
		{"NATSListenerTaken", func(t *testing.T, cfg *Config) func() { return hold(t, cfg.NatsListen) }, ""},
		{"NATSStoreUnusable", func(t *testing.T, cfg *Config) func() {
			p := filepath.Join(cfg.DataDir, "jetstream")
			if err := os.Rename(p, p+".aside"); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(p, []byte("x"), 0o600)
			return func() { os.Remove(p); os.Rename(p+".aside", p) }
		}, ""},
		{"ExternalNATSUnreachable", func(t *testing.T, cfg *Config) func() {
			cfg.NatsURL = "nats://" + freeLoopbackAddr(t)
			return func() { cfg.NatsURL = "" }
		}, "NATS_URL"},
		{"BadTLSCert", func(t *testing.T, cfg *Config) func() {
			cfg.TLSCert, cfg.TLSKey = garbage, garbage
			return func() { cfg.TLSCert, cfg.TLSKey = "", "" }
		}, "SCREENPOP_TLS_KEY"},
		{"BadDataverseCert", func(t *testing.T, cfg *Config) func() {
			secret := cfg.DataverseClientSecret
			cfg.DataverseClientCertificate, cfg.DataverseClientSecret = garbage, ""
			return func() { cfg.DataverseClientCertificate, cfg.DataverseClientSecret = "", secret }
		}, "DATAVERSE_CLIENT_CERTIFICATE"},
		{"BadAgentsFile", func(t *testing.T, cfg *Config) func() {
			cfg.GenesysAgentsFile = filepath.Join(t.TempDir(), "missing")
			return func() { cfg.GenesysAgentsFile = "" }
		}, "GENESYS_AGENTS_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, fds0, g0 := startedOnce(t, base)

			undo := tc.break_(t, cfg)
			logs := &syncbuf.Buffer{}
			m := NewMain(cfg, zerolog.New(logs))
			err := m.Open(context.Background())
			m.Close()
			undo()
			if err == nil {
				t.Fatal("Open succeeded (the test proves nothing)")
			}
			t.Logf("Open: %v", err)
			if n := strings.Count(err.Error(), tc.once); tc.once != "" && n != 1 {
				t.Errorf("the error names %s %d times, want once: %v", tc.once, n, err)
			}
			if fds, g := settled(t, fds0, g0); fds != "" || g > 0 {
				t.Errorf("after the failed start (%v) and Close, %d goroutines and these descriptors were still held:\n%s", err, g, fds)
			}
			// The same addresses and data dir: ready, or runDaemon fails.
			_, stop2 := runDaemon(t, cfg, logs)
			stop2()
		})
	}
}

// TestDaemon_StopWhileNotReadyReleasesEverything: a daemon stopped while
// start-up is still waiting on a remote (Genesys refusing its credentials,
// Genesys's login slow, Dataverse refusing its credentials) releases what
// it took, and a start right after on the same addresses and data dir
// comes up ready.
func TestDaemon_StopWhileNotReadyReleasesEverything(t *testing.T) {
	d, base, _ := demoEmulators(t, testEnv(t))
	for _, tc := range []struct {
		name   string
		break_ func(cfg *Config) (undo func())
	}{
		{"GenesysRefusesCredentials", func(cfg *Config) func() {
			s := cfg.GenesysClientSecret
			cfg.GenesysClientSecret = "wrong"
			return func() { cfg.GenesysClientSecret = s }
		}},
		{"GenesysLoginSlow", func(cfg *Config) func() {
			// Longer than the wait before the stop; the emulator's
			// handler sleeps it out whatever the client does, so not much
			// longer (its socket is the emulator's, not the daemon's).
			d.Genesys.SetLoginDelay(3 * time.Second)
			return func() { d.Genesys.SetLoginDelay(0) }
		}},
		{"DataverseRefusesCredentials", func(cfg *Config) func() {
			s := cfg.DataverseClientSecret
			cfg.DataverseClientSecret = "wrong"
			return func() { cfg.DataverseClientSecret = s }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, fds0, g0 := startedOnce(t, base)

			undo := tc.break_(cfg)
			logs := &syncbuf.Buffer{}
			m, stop1 := startDaemon(t, cfg, zerolog.New(logs))
			time.Sleep(1500 * time.Millisecond)
			if m.Ready() {
				t.Fatal("ready (the test proves nothing)")
			}
			stop1()
			undo()
			if fds, g := settled(t, fds0, g0); fds != "" || g > 0 {
				t.Errorf("after a stop while not ready, %d goroutines and these descriptors were still held:\n%s", g, fds)
				t.Logf("goroutines:\n%s", goroutineStacks())
			}
			_, stop2 := runDaemon(t, cfg, logs)
			stop2()
		})
	}
}

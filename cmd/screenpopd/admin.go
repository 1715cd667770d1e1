package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/screenpop/screenpop/bridge"
)

// adminHandler is the admin listener's mux.
func (m *Main) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if part, since := m.stuck(); part != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(stuckError(part, since)))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !m.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: see /status\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(m.Status(r.Context()))
	})
	if m.Config.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		// No /debug/pprof/cmdline: it would serve the command line, and a
		// secret given as a flag with it, to anyone who reaches the listener.
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// No admin request needs a body but pprof's symbol lookup, which
	// reads it to the end and answers a line per address from memory.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		mux.ServeHTTP(w, r)
	})
}

// maxAdminBody bounds an admin request's body: pprof's symbol lookup of a
// few thousand addresses.
const maxAdminBody = 64 << 10

// StatusReport is /status: each component's state, no secrets, no PII.
type StatusReport struct {
	Version    string         `json:"version"`
	Ready      bool           `json:"ready"`
	Uptime     string         `json:"uptime"`
	Components map[string]any `json:"components"`
	// Listeners are the addresses this process listens on, by name
	// (agent, admin, nats): screenpopd check tells its own port in use by
	// this daemon from one held by another program.
	Listeners map[string]string `json:"listeners,omitempty"`
}

// listeners are the addresses StatusReport.Listeners names.
func (m *Main) listeners() map[string]string {
	ls := map[string]string{}
	if m.agentLn != nil {
		ls["agent"] = m.agentLn.Addr().String()
	}
	if m.adminLn != nil {
		ls["admin"] = m.adminLn.Addr().String()
	}
	switch {
	case m.Config.NatsURL != "" || m.Config.NatsListen == "off":
	case m.opened.Load():
		if a := m.Bus.ListenAddr(); a != "" {
			ls["nats"] = a
		}
	default:
		// Starting: the built-in server may still be opening its store;
		// the address it takes is the configured one.
		ls["nats"] = m.Config.NatsListen
	}
	return ls
}

// Status gathers each component's state.
func (m *Main) Status(ctx context.Context) StatusReport {
	r := StatusReport{Version: version, Ready: m.Ready(), Uptime: time.Since(m.started).Round(time.Second).String(), Components: map[string]any{}, Listeners: m.listeners()}
	if !m.opened.Load() {
		return r // starting: the parts are still being built
	}
	if m.Bus != nil {
		r.Components["nats"] = m.Bus.Status(ctx)
	}
	if m.Genesys != nil {
		r.Components["genesys"] = m.Genesys.Status()
	}
	if m.Normalizer != nil {
		r.Components["normalizer"] = m.Normalizer.Status()
	}
	if m.Events != nil {
		r.Components["eventPublisher"] = m.Events.Status()
	}
	if m.Resolver != nil {
		r.Components["resolver"] = struct {
			bridge.ResolverStatus
			Consuming bool `json:"consuming"`
		}{m.Resolver.Status(), m.resolving.Load()}
	}
	if m.Dataverse != nil {
		r.Components["dataverse"] = m.Dataverse.Status()
	}
	if m.Push != nil {
		r.Components["push"] = m.Push.Status()
	}
	return r
}

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// With pprof on, the profiles are served but not the command line: a
// secret given as a flag would be in it.
func TestAdminHandler_PProfWithoutCmdline(t *testing.T) {
	m := &Main{Config: &Config{PProf: true}, Registry: prometheus.NewRegistry()}
	srv := httptest.NewServer(m.adminHandler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("goroutine profile: %d, want 200", code)
	}
	code, body := get("/debug/pprof/cmdline")
	if code == http.StatusOK || strings.Contains(body, os.Args[0]) {
		t.Fatalf("cmdline served: %d %q", code, body)
	}
}

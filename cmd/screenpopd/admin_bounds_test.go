package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// With pprof on, POST /debug/pprof/symbol reads its body to the end and
// builds its whole answer in memory, a line per address: a body without
// end (a client on the admin listener, or a tool pointed at the wrong
// port) grows the daemon's memory without limit. An admin request body
// must be bounded.
func TestAdminHandler_RequestBodyIsBounded(t *testing.T) {
	m := &Main{Config: &Config{PProf: true}, Registry: prometheus.NewRegistry()}
	srv := httptest.NewServer(m.adminHandler())
	defer srv.Close()
	pc := reflect.ValueOf(TestAdminHandler_RequestBodyIsBounded).Pointer()
	word := fmt.Sprintf("%#x+", pc)
	body := strings.Repeat(word, (4<<20)/len(word)) // 4 MiB of addresses
	resp, err := http.Post(srv.URL+"/debug/pprof/symbol", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if n > 1<<20 {
		t.Fatalf("a 4 MiB request body answered with %d MiB built in memory: the body is read whole", n>>20)
	}
}

package notifications_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/screenpop/screenpop/notifications"
)

// The Genesys SDK reads its logging (lines with whole channel ids, which
// open a channel's socket without a token) and a gateway (a host every
// request, the login with the client secret included, goes to) from the
// configuration file it is given. Nobody, root included, can make that
// file; in particular it is not in the temporary directory, where any
// local user could plant one for a `screenpopd check` run from a shell.
func TestClient_TheSDKConfigurationFileCannotBeMade(t *testing.T) {
	path := notifications.SDKConfigPath
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		t.Errorf("made the directory of the SDK's configuration file %s", path)
	}
	if err := os.WriteFile(path, []byte("[logging]\nlog_level = trace\n"), 0o600); err == nil {
		os.Remove(path)
		t.Errorf("wrote the SDK's configuration file %s", path)
	}

	// A gateway planted where the client looked before (the temporary
	// directory's screenpop-no-genesys-config/absent.ini) gets nothing.
	var got atomic.Int64
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer gw.Close()
	gu, _ := url.Parse(gw.URL)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	planted := filepath.Join(tmp, "screenpop-no-genesys-config", "absent.ini")
	if err := os.MkdirAll(filepath.Dir(planted), 0o777); err != nil {
		t.Fatal(err)
	}
	ini := "[gateway]\nhost = " + gu.Hostname() + "\nport = " + gu.Port() + "\nprotocol = http\nauth-username = u\nauth-password = p\n"
	if err := os.WriteFile(planted, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := compressed("http://127.0.0.1:1") // nothing listens: the probe fails at login
	cfg.Agents = []string{"00000000-0000-4000-8000-000000000001"}
	lg, _ := newLog(t)
	notifications.Probe(context.Background(), cfg, lg, func(notifications.ProbeStep) {})
	if n := got.Load(); n != 0 {
		t.Errorf("a gateway planted in the temporary directory got %d requests (the login's with the client secret among them)", n)
	}
}

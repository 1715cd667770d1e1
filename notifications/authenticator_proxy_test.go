package notifications

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// Behind a corporate proxy an agent's token is checked through it
// (users/me on the API host). A proxy that refuses the tunnel must be named
// in the error push logs ("token could not be checked"), not read as
// Genesys' own "Forbidden"; and it is not the agent's token that is bad.
func TestAuthenticator_AProxyRefusalIsNamedAsTheProxys(t *testing.T) {
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden) // no tunnel to anywhere
	}))
	defer px.Close()
	pxURL, _ := url.Parse(px.URL)
	a, err := NewAuthenticator(AuthConfig{APIURL: "https://api.genesys.proxy.test"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := a.hc.Transport.(*http.Transport)
	if tr == nil { // Go's default transport
		tr = http.DefaultTransport.(*http.Transport).Clone()
		a.hc.Transport = tr
	}
	tr.Proxy = http.ProxyURL(pxURL) // as HTTPS_PROXY would (read once per process)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = a.Authenticate(ctx, "an-agents-token")
	if err == nil || errors.Is(err, bridge.ErrInvalidToken) {
		t.Fatalf("err = %v, want a failed check, not a refused token", err)
	}
	if want := "proxy " + pxURL.Host + " refused the connection to api.genesys.proxy.test:443: 403"; !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to say %q", err, want)
	}
}

package dataverse_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestClient_EnvironmentRedirected: the environment answers its Web API
// with a redirect to another host (its URL was changed, or a front door
// sends it elsewhere). The token's audience is DATAVERSE_URL, so no answer
// from the other host can be the environment's: the client must not follow
// (a 301/302 turns the $batch POST into a GET without its body; every
// redirect to another host drops the Authorization header), and its error
// must name the redirect and where it points, so that the on-call engineer
// changes DATAVERSE_URL rather than chase a token the other host "rejects".
func TestClient_EnvironmentRedirected(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv, c := MustEnv(t, nil)
			srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Moved", Telephone1: "+13175550500"})
			other := dataversetest.New(dataversetest.Config{})
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close() })
			// Another host name for the same loopback address: Go keeps
			// Authorization on a redirect to the same host name.
			u, _ := url.Parse(other.URL())
			moved := "http://localhost:" + u.Port()
			warm(t, srv, c)
			tokens := srv.TokenRequests()
			srv.RedirectAPI(status, moved)

			_, err := c.Lookup(ctxT(t, popDeadline), phone("+13175550500"))
			if err == nil {
				t.Fatal("a lookup answered by a redirect succeeded")
			}
			if n := len(other.Requests()); n != 0 {
				t.Errorf("the client followed the redirect: %d requests reached %s (first: %s %s, status %d)", n, moved, other.Requests()[0].Method, other.Requests()[0].Path, other.Requests()[0].Status)
			}
			if !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "localhost:"+u.Port()) || !strings.Contains(err.Error(), "DATAVERSE_URL") {
				t.Errorf("error %q: want it to name the redirect, its target host and DATAVERSE_URL", err)
			}
			if n := srv.TokenRequests() - tokens; n != 0 {
				t.Errorf("%d token requests for one redirected lookup: the token was thrown away, want it kept (Entra ID issued it right)", n)
			}
		})
	}
}

// TestClient_AppUserDisabledMidShift: the application user is disabled
// (403 on every request with a valid token), then enabled again. Calls
// meanwhile pop `search` at once, not after the pop deadline; once it is
// enabled, the record pops again within the pop deadline.
func TestClient_AppUserDisabledMidShift(t *testing.T) {
	srv, c := MustEnv(t, nil)
	id := srv.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Role", Telephone1: "+13175550600"})
	warm(t, srv, c)
	srv.DisableAppUser(true)
	for i := range 8 {
		start := time.Now()
		_, err := c.Lookup(ctxT(t, popDeadline), phone(fmt.Sprintf("+1317555%04d", 3100+i)))
		if err == nil {
			t.Fatal("a lookup by a disabled application user succeeded")
		}
		if took := time.Since(start); took > popDeadline/2 {
			t.Errorf("lookup %d took %v to fail: a refusal is an answer, want search at once", i, took)
		}
		if i == 0 && !strings.Contains(err.Error(), "application user") {
			t.Errorf("error %q does not name the application user", err)
		}
	}
	srv.DisableAppUser(false)
	took := recoveredIn(t, c, "+13175550600", id, time.Now())
	if took > popDeadline {
		t.Errorf("record popped again %v after the application user was enabled, want within %v", took, popDeadline)
	}
}

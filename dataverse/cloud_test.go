package dataverse_test

import (
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// cloudRouter is the network seen from a host in one Microsoft cloud,
// played on loopback: every request, whatever its host, is answered by
// the emulator, and the URL it was meant for is recorded. Nothing leaves
// 127.0.0.1.
type cloudRouter struct {
	emu *url.URL
	tr  http.RoundTripper

	mu   sync.Mutex
	seen []*url.URL
}

func (r *cloudRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	orig := *req.URL
	r.mu.Lock()
	r.seen = append(r.seen, &orig)
	r.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = r.emu.Scheme, r.emu.Host, ""
	return r.tr.RoundTrip(out)
}

func (r *cloudRouter) tokenHosts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, u := range r.seen {
		if len(u.Path) > len("/oauth2/v2.0/token") && u.Path[len(u.Path)-len("/oauth2/v2.0/token"):] == "/oauth2/v2.0/token" {
			out = append(out, u.Host)
		}
	}
	return out
}

// A Dataverse environment's token comes from the Entra ID of the cloud the
// environment lives in: its app registration and application user exist
// only there (learn.microsoft.com/entra/identity-platform/
// authentication-national-cloud: "US Government Microsoft Entra ID:
// https://login.microsoftonline.us", "Microsoft Entra China operated by
// 21Vianet: https://login.partner.microsoftonline.cn", "Microsoft Entra ID
// (global service): https://login.microsoftonline.com"). The environment
// hosts per cloud are those of the Dataverse global discovery service
// (microsoft/PowerApps-Samples: Commercial crm.dynamics.com, GCC
// crm9.dynamics.com, USG crm.microsoftdynamics.us, DOD crm.appsplatform.us,
// CHINA crm.dynamics.cn). GCC runs on the commercial Entra ID; GCC High and
// DoD on Azure Government's; China on 21Vianet's. With DATAVERSE_TOKEN_URL
// unset (docs: "override the token endpoint (emulator)"), the client must
// ask the environment's cloud, with the scope <DATAVERSE_URL>/.default.
func TestClient_TokenAuthorityFollowsTheEnvironmentsCloud(t *testing.T) {
	for _, tc := range []struct {
		cloud, env string
		authority  []string // acceptable token hosts
	}{
		{"commercial", "https://contoso.crm.dynamics.com", []string{"login.microsoftonline.com"}},
		{"commercial EMEA", "https://contoso.crm4.dynamics.com", []string{"login.microsoftonline.com"}},
		{"GCC", "https://contoso.crm9.dynamics.com", []string{"login.microsoftonline.com"}},
		{"GCC High", "https://contoso.crm.microsoftdynamics.us", []string{"login.microsoftonline.us"}},
		{"DoD", "https://contoso.crm.appsplatform.us", []string{"login.microsoftonline.us"}},
		{"China 21Vianet", "https://contoso.crm.dynamics.cn", []string{"login.partner.microsoftonline.cn", "login.chinacloudapi.cn"}},
	} {
		t.Run(tc.cloud, func(t *testing.T) {
			srv := dataversetest.New(dataversetest.Config{})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			emu, _ := url.Parse(srv.URL())
			// The emulator plays the environment: its scope check and
			// record URLs use the sovereign URL.
			srv.SetURL(tc.env)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			rt := &cloudRouter{emu: emu, tr: tr}
			ec := srv.Config()
			c, err := dataverse.New(dataverse.Config{
				URL: tc.env, TenantID: ec.TenantID, ClientID: ec.ClientID, ClientSecret: ec.ClientSecret,
				AppID: appID, MaxAttempts: 1, HTTPClient: &http.Client{Transport: rt},
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			id := srv.AddContact(dataversetest.Contact{FirstName: "Ann", LastName: "Gov", Telephone1: "+1 317 555 0123"})

			recs, lerr := c.Lookup(ctxT(t, 10*time.Second), phone("+13175550123"))
			hosts := rt.tokenHosts()
			if len(hosts) == 0 {
				t.Fatalf("no token request was made (lookup: %v)", lerr)
			}
			for _, h := range hosts {
				if !slices.Contains(tc.authority, h) {
					t.Errorf("%s environment %s: token asked of %s, want %s", tc.cloud, tc.env, h, tc.authority[0])
				}
			}
			if lerr != nil || len(recs) != 1 || recs[0].ID != id {
				t.Errorf("lookup: %+v, %v; want contact %s", recs, lerr, id)
			}
		})
	}
}

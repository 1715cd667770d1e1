package dataverse_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// mustCert makes a self-signed certificate with an RSA key.
func mustCert(tb testing.TB, opt dataversetest.CertificateOptions) *dataversetest.Certificate {
	tb.Helper()
	c, err := dataversetest.NewCertificate(opt)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// certEnv is an emulator with registered certificates and a client that
// signs its token requests with the certificate in file (no secret), its
// log in logs. mod may change the client's configuration.
func certEnv(tb testing.TB, registered []*dataversetest.Certificate, file string, mod func(*dataverse.Config)) (*dataversetest.Server, *dataverse.Client, *syncbuf.Buffer) {
	tb.Helper()
	cfg := dataversetest.Config{}
	for _, c := range registered {
		cfg.ClientCertificates = append(cfg.ClientCertificates, c.Cert)
	}
	srv := dataversetest.New(cfg)
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	ec := srv.Config()
	dc := dataverse.Config{URL: srv.URL(), TenantID: ec.TenantID, ClientID: ec.ClientID, ClientCertificate: file, TokenURL: srv.TokenURL(), AppID: appID,
		BreakerFailures: 100}
	if mod != nil {
		mod(&dc)
	}
	logs := &syncbuf.Buffer{}
	c, err := dataverse.New(dc, zerolog.New(logs))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return srv, c, logs
}

// messages returns the log's lines with message msg.
func messages(tb testing.TB, logs *syncbuf.Buffer, msg string) []map[string]any {
	tb.Helper()
	lines, err := logs.JSONLines()
	if err != nil {
		tb.Fatal(err)
	}
	var out []map[string]any
	for _, l := range lines {
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func TestClient_Certificate(t *testing.T) {
	a, b := mustCert(t, dataversetest.CertificateOptions{}), mustCert(t, dataversetest.CertificateOptions{PKCS1: true})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := a.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	srv, c, logs := certEnv(t, []*dataversetest.Certificate{a, b}, file, nil)
	// lookup finds a new caller each time (so the cache does not answer).
	callers := 0
	lookup := func(t *testing.T) {
		t.Helper()
		callers++
		number := fmt.Sprintf("+1317555%04d", callers)
		want := srv.AddContact(dataversetest.Contact{FirstName: "Caller", LastName: strconv.Itoa(callers), Telephone1: number})
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(number))
		if err != nil {
			t.Fatalf("lookup with a certificate: %v", err)
		}
		if len(recs) != 1 || recs[0].ID != want {
			t.Fatalf("records %+v, want %s", recs, want)
		}
	}

	t.Run("LookupSucceeds", func(t *testing.T) {
		lookup(t)
		if used := srv.CertificatesUsed(); !slices.Equal(used, []string{a.Thumbprint()}) {
			t.Fatalf("certificates used %v, want [%s]", used, a.Thumbprint())
		}
		st := c.Status().(dataverse.Status)
		if st.CertificateThumbprint != a.Thumbprint() || st.CertificateNotAfter == nil || !st.CertificateNotAfter.Equal(a.Cert.NotAfter) {
			t.Errorf("status: certificate %q until %v, want %s until %v", st.CertificateThumbprint, st.CertificateNotAfter, a.Thumbprint(), a.Cert.NotAfter)
		}
	})

	// The admin replaces the file with another certificate registered on
	// the app: the next token is signed with it, no restart.
	t.Run("Rotation", func(t *testing.T) {
		if err := b.WriteFile(file); err != nil {
			t.Fatal(err)
		}
		srv.ExpireTokens() // the next request needs a new token
		lookup(t)
		if used := srv.CertificatesUsed(); !slices.Equal(used, []string{a.Thumbprint(), b.Thumbprint()}) {
			t.Fatalf("certificates used %v, want [%s %s]", used, a.Thumbprint(), b.Thumbprint())
		}
		l := messages(t, logs, "dataverse client certificate reloaded")
		if len(l) != 1 || l[0]["thumbprint"] != b.Thumbprint() || l[0]["previous_thumbprint"] != a.Thumbprint() || l[0]["level"] != "info" {
			t.Fatalf("reload lines %v, want one naming %s after %s", l, b.Thumbprint(), a.Thumbprint())
		}
	})

	// A replacement that does not load (half written, the key missing)
	// keeps the last good certificate in use, with one warning per
	// distinct error however many tokens it lasts.
	t.Run("BrokenReplacementKeepsTheOld", func(t *testing.T) {
		const warning = "dataverse client certificate file does not load; signing with the previous certificate"
		if err := os.WriteFile(file, a.PEM()[:strings.Index(string(a.PEM()), "-----BEGIN PRIVATE KEY")], 0o600); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			srv.ExpireTokens()
			lookup(t)
		}
		if used := srv.CertificatesUsed(); !slices.Equal(used[2:], []string{b.Thumbprint(), b.Thumbprint()}) {
			t.Fatalf("certificates used %v, want %s twice more (the last good one)", used, b.Thumbprint())
		}
		w := messages(t, logs, warning)
		if len(w) != 1 {
			t.Fatalf("%d warnings for two tokens with the same broken file, want 1: %v", len(w), w)
		}
		if e, _ := w[0]["error"].(string); !strings.Contains(e, "holds no private key") || w[0]["thumbprint"] != b.Thumbprint() || w[0]["level"] != "warn" {
			t.Errorf("warning %v: want the file's error and the thumbprint still in use", w[0])
		}
		// Another error is news.
		if err := os.WriteFile(file, []byte("not a PEM file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		srv.ExpireTokens()
		lookup(t)
		if w := messages(t, logs, warning); len(w) != 2 || !strings.Contains(w[1]["error"].(string), "holds no certificate") {
			t.Fatalf("warnings %v, want a second one for the new error", w)
		}
		if strings.Contains(logs.String(), "eyJ") {
			t.Error("the log holds a JWT (the client assertion?)")
		}
	})
}

// A certificate the app registration does not have: the token request is
// refused with AADSTS700027, and the error says where to upload it.
func TestClient_CertificateNotRegistered(t *testing.T) {
	registered, unknown := mustCert(t, dataversetest.CertificateOptions{}), mustCert(t, dataversetest.CertificateOptions{})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := unknown.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	_, c, _ := certEnv(t, []*dataversetest.Certificate{registered}, file, nil)
	_, err := c.CheckAuth(ctxT(t, 5*time.Second))
	var ae *dataverse.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v, want an AuthError", err)
	}
	if ae.AADSTS != 700027 || ae.Status != 401 || !strings.Contains(ae.Code, "AADSTS700027") {
		t.Errorf("AuthError %+v, want HTTP 401 AADSTS700027", ae)
	}
	for _, want := range []string{"DATAVERSE_CLIENT_CERTIFICATE", unknown.Thumbprint(), "Certificates & secrets"} {
		if !strings.Contains(ae.Hint, want) {
			t.Errorf("hint %q lacks %q", ae.Hint, want)
		}
	}
}

// A host clock an hour slow makes assertions Entra ID finds expired
// (AADSTS700024): the error points at the clock.
func TestClient_CertificateClockSkew(t *testing.T) {
	a := mustCert(t, dataversetest.CertificateOptions{})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := a.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	_, c, _ := certEnv(t, []*dataversetest.Certificate{a}, file, func(cfg *dataverse.Config) {
		cfg.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	})
	_, err := c.CheckAuth(ctxT(t, 5*time.Second))
	var ae *dataverse.AuthError
	if !errors.As(err, &ae) || ae.AADSTS != 700024 || !strings.Contains(ae.Hint, "clock") {
		t.Fatalf("error %v, want AADSTS700024 with a hint about the clock", err)
	}
}

// A certificate that expires within two weeks is warned of at start.
func TestClient_CertificateExpiresSoon(t *testing.T) {
	a := mustCert(t, dataversetest.CertificateOptions{NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := a.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	_, _, logs := certEnv(t, []*dataversetest.Certificate{a}, file, nil)
	w := messages(t, logs, "dataverse client certificate expires soon: make a new certificate, upload it to the app registration (Certificates & secrets) next to this one, then replace the file")
	if len(w) != 1 || w[0]["days_left"] != float64(5) || w[0]["thumbprint"] != a.Thumbprint() {
		t.Fatalf("expiry warnings %v, want one with days_left 5", w)
	}
}

// Exactly one credential, and a certificate file that loads.
func TestNew_CertificateConfig(t *testing.T) {
	a := mustCert(t, dataversetest.CertificateOptions{})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	if err := a.WriteFile(good); err != nil {
		t.Fatal(err)
	}
	base := dataverse.Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c"}
	for _, tc := range []struct {
		name         string
		secret, file string
		want         string
	}{
		{"Both", "s", good, "both set"},
		{"Neither", "", "", "DATAVERSE_CLIENT_SECRET or DATAVERSE_CLIENT_CERTIFICATE is required"},
		{"Missing", "", filepath.Join(dir, "none.pem"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.ClientSecret, cfg.ClientCertificate = tc.secret, tc.file
			c, err := dataverse.New(cfg, zerolog.Nop())
			if err == nil {
				c.Close()
				t.Fatal("New accepted it")
			}
			if !errors.Is(err, dataverse.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

// A PEM given where the path of the file is expected: New's error says so
// and does not quote it (it would put the private key in the log).
func TestNew_CertificateContentNotEchoed(t *testing.T) {
	cert := mustCert(t, dataversetest.CertificateOptions{})
	_, err := dataverse.New(dataverse.Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c", ClientCertificate: string(cert.PEM())}, zerolog.Nop())
	if err == nil {
		t.Fatal("New accepted PEM text as the path of the certificate file")
	}
	_, key, _ := strings.Cut(string(cert.PEM()), "-----BEGIN PRIVATE KEY-----\n")
	if first, _, _ := strings.Cut(key, "\n"); strings.Contains(err.Error(), first) {
		t.Errorf("New's error quotes the private key (%d bytes)", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "not the path of a file") {
		t.Errorf("the error does not say the value is PEM text, not a path")
	}
}

// A token where the certificate's path belongs (a creds file's JWT, a
// bearer token pasted into the wrong setting) is refused unquoted too.
func TestNew_ATokenForTheCertificateIsNotEchoed(t *testing.T) {
	const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvbnRvc28uY3JtLmR5bmFtaWNzLmNvbSJ9.c2lnbmF0dXJl"
	_, err := dataverse.New(dataverse.Config{URL: "https://contoso.crm.dynamics.com", TenantID: "t", ClientID: "c", ClientCertificate: jwt}, zerolog.Nop())
	if err == nil || strings.Contains(err.Error(), "eyJhdWQi") || !strings.Contains(err.Error(), "the value is a JWT, not the path of a file") {
		t.Errorf("New with a JWT for the certificate's path: %v", err)
	}
}

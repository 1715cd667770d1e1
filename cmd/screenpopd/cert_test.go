package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

func mustCert(t *testing.T, opt dataversetest.CertificateOptions) *dataversetest.Certificate {
	t.Helper()
	c, err := dataversetest.NewCertificate(opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pemOf is a PEM block of typ holding der.
func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// TestParseConfig_DataverseCertificate: exactly one of the secret and the
// certificate, and a certificate file the daemon can sign with, or a
// problem that names DATAVERSE_CLIENT_CERTIFICATE and what to do.
func TestParseConfig_DataverseCertificate(t *testing.T) {
	a, b := mustCert(t, dataversetest.CertificateOptions{}), mustCert(t, dataversetest.CertificateOptions{})
	certA := pemOf("CERTIFICATE", a.Cert.Raw)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyA := pemOf("PRIVATE KEY", pkcs8)
	keyB := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(b.Key))
	// An ECDSA certificate and key, which Entra's RSA signatures cannot use.
	eck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ec"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	ecDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &eck.PublicKey, eck)
	if err != nil {
		t.Fatal(err)
	}
	ecKeyDER, err := x509.MarshalECPrivateKey(eck)
	if err != nil {
		t.Fatal(err)
	}
	legacyEncrypted := "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,37D945790A3C3858CBDD0AB27C3DBBB4\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	runReq := Requirements{Genesys: true, Dataverse: true}
	withCert := func(path string) map[string]string {
		m := good()
		delete(m, "DATAVERSE_CLIENT_SECRET")
		m["DATAVERSE_CLIENT_CERTIFICATE"] = path
		return m
	}

	t.Run("Good", func(t *testing.T) {
		for name, content := range map[string]string{
			"pkcs8.pem":      certA + keyA,
			"key-first.pem":  keyA + certA, // as az ad sp create-for-rbac --create-cert writes it
			"pkcs1.pem":      pemOf("CERTIFICATE", b.Cert.Raw) + keyB,
			"chain.pem":      pemOf("CERTIFICATE", b.Cert.Raw) + certA + keyA, // the key's certificate is the one used
			"windows.pem":    "\ufeff" + strings.ReplaceAll(certA+keyA, "\n", "\r\n"),
			"bagattribs.pem": "Bag Attributes\n    localKeyID: 01 00 00 00\n" + keyA + "subject=CN = x\n" + certA,
		} {
			c, _, err := ParseConfig("run", nil, env(withCert(write(name, content))), runReq, io.Discard)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if c.DataverseClientCertificate == "" {
				t.Errorf("%s: DataverseClientCertificate not set", name)
			}
		}
	})

	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"Both", with(good(), "DATAVERSE_CLIENT_CERTIFICATE", write("both.pem", certA+keyA)),
			[]string{"DATAVERSE_CLIENT_SECRET, DATAVERSE_CLIENT_CERTIFICATE: both are set; set one"}},
		{"Neither", with(good(), "DATAVERSE_CLIENT_SECRET", ""),
			[]string{"DATAVERSE_CLIENT_SECRET or DATAVERSE_CLIENT_CERTIFICATE: one is required", "upload a certificate"}},
		{"Unreadable", withCert(filepath.Join(dir, "missing.pem")), []string{"DATAVERSE_CLIENT_CERTIFICATE: open ", "no such file", "; give the path of a PEM file the service user can read"}},
		{"ADirectory", withCert(dir), []string{"DATAVERSE_CLIENT_CERTIFICATE: read " + dir, "is a directory"}},
		{"NotUnderSystemd", withCert("/run/credentials/screenpopd.service/dataverse.pem"), []string{"DATAVERSE_CLIENT_CERTIFICATE: open ", "LoadCredential=", "DATAVERSE_CLIENT_CERTIFICATE=/etc/screenpop/dataverse.pem screenpopd check"}},
		{"NoCertificate", withCert(write("key.pem", keyA)), []string{"holds no certificate", "cat cert.pem key.pem > dataverse.pem"}},
		{"NoKey", withCert(write("cert.pem", certA)), []string{"holds no private key", "cat cert.pem key.pem"}},
		{"EncryptedKey", withCert(write("enc.pem", certA+pemOf("ENCRYPTED PRIVATE KEY", []byte("opaque")))), []string{"encrypted private key", "openssl pkey -in key.pem -out key-plain.pem"}},
		{"LegacyEncryptedKey", withCert(write("enc1.pem", certA+legacyEncrypted)), []string{"encrypted private key (Proc-Type: 4,ENCRYPTED)", "openssl pkey"}},
		{"ECDSAKey", withCert(write("ec.pem", pemOf("CERTIFICATE", ecDER)+pemOf("EC PRIVATE KEY", ecKeyDER))), []string{"holds an ECDSA key, not an RSA key", "openssl req -x509 -newkey rsa:2048 -nodes"}},
		{"KeyOfAnotherCertificate", withCert(write("mismatch.pem", certA+keyB)), []string{"private key that does not belong to its certificate"}},
		{"Garbage", withCert(write("garbage.pem", "hello\n")), []string{"holds no certificate"}},
		{"CorruptCertificate", withCert(write("corrupt.pem", pemOf("CERTIFICATE", []byte("nope"))+keyA)), []string{"has a certificate that does not parse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig("run", nil, env(tc.vars), runReq, io.Discard)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a ConfigError", err)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("problems %q, want one", ce.Problems)
			}
			p := ce.Problems[0]
			for _, w := range tc.want {
				if !strings.Contains(p, w) {
					t.Errorf("problem %q lacks %q", p, w)
				}
			}
			// check prints "what; fix": there is a fix after the first "; ".
			if _, fix, ok := strings.Cut(p, "; "); !ok || fix == "" {
				t.Errorf("problem %q has no fix after '; '", p)
			}
		})
	}
}

// TestDaemon_DataverseCertificate runs the daemon with a certificate
// instead of a client secret, one that is readable by others and expires
// in ten days: it warns of both at start, a call pops the right record,
// and `screenpopd check` with the same settings passes, with warn lines
// for both.
func TestDaemon_DataverseCertificate(t *testing.T) {
	cert := mustCert(t, dataversetest.CertificateOptions{NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := cert.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	rig := startCertDaemon(t, cert, file)
	g, d, m, logs, vars := rig.genesys, rig.dataverse, rig.m, rig.logs, rig.vars
	contactID := d.AddContact(dataversetest.Contact{FirstName: "Ada", LastName: "Cert", Telephone1: "+1 317 555 0188"})

	ws := dialAgent(t, m.AgentURL(), g.AgentToken(checkAgent))
	call := g.InboundCall(checkAgent, "+13175550188", notificationstest.Options{})
	call.Alert()
	if p := readPop(t, ws); p.ConversationID != call.ID() || p.Target.Action != "open" || p.Target.ID != contactID {
		t.Fatalf("pop %+v, want open contact %s", p, contactID)
	}
	if used := d.CertificatesUsed(); len(used) == 0 || used[0] != cert.Thumbprint() {
		t.Errorf("certificates used %v, want %s", used, cert.Thumbprint())
	}

	lines, err := logs.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	warned := map[string]map[string]any{}
	for _, l := range lines {
		if l["level"] == "warn" {
			warned[l["message"].(string)] = l
		}
	}
	if l := warned["dataverse client certificate expires soon: make a new certificate, upload it to the app registration (Certificates & secrets) next to this one, then replace the file"]; l == nil ||
		l["days_left"] != float64(10) || l["thumbprint"] != cert.Thumbprint() || l["component"] != "dataverse" {
		t.Errorf("no expiry warning with days_left 10 and the thumbprint at start: %v", warned)
	}
	if l := warned["DATAVERSE_CLIENT_CERTIFICATE is readable by other users: its private key signs in as the app registration; chmod 600 it and chown it to the service user (or hand it over with systemd's LoadCredential=)"]; l == nil || l["path"] != file {
		t.Errorf("no warning that the file is readable by others: %v", warned)
	}

	// check with the daemon's settings (its own listeners are in use).
	vars["SCREENPOP_LISTEN"] = m.agentLn.Addr().String()
	vars["SCREENPOP_ADMIN_LISTEN"] = m.AdminAddr()
	r := &checkRig{genesys: g, dataverse: d, agent: checkAgent, vars: vars}
	code, out := r.check(t)
	if code != 0 {
		t.Fatalf("check with a certificate exited %d", code)
	}
	wantLine(t, out, "warn dataverse certificate:", cert.Thumbprint(), "(10 days)", "fix: make a new certificate", "LoadCredential= only after systemctl restart")
	wantLine(t, out, "warn dataverse certificate: "+file+" is readable by other users", "chmod 600")
	wantLine(t, out, "ok   dataverse token:", "application user")
	wantLine(t, out, "ok   dataverse contact:")
	if strings.Contains(out+logs.String(), "eyJ") {
		t.Error("a JWT (the client assertion?) is in check's output or the log")
	}
}

// A certificate Entra ID does not know: check names the fix (upload it).
func TestCheck_DataverseCertificateNotRegistered(t *testing.T) {
	r := newCheckRig(t) // its emulator has no certificate registered
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	cert := mustCert(t, dataversetest.CertificateOptions{})
	if err := cert.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	delete(r.vars, "DATAVERSE_CLIENT_SECRET")
	r.vars["DATAVERSE_CLIENT_CERTIFICATE"] = file
	code, out := r.check(t)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	wantLine(t, out, "ok   dataverse certificate:", cert.Thumbprint(), "valid until")
	wantLine(t, out, "FAIL dataverse token:", "AADSTS700027", cert.Thumbprint(), "Certificates & secrets > Certificates > Upload certificate")
}

// TestRun_DataverseCertificateContentNotEchoed: an admin who puts the PEM
// itself in DATAVERSE_CLIENT_CERTIFICATE (a Kubernetes secretKeyRef, or
// "$(cat dataverse.pem)" on a command line) instead of its path gets a
// config error that says so, without the private key in it: run's error
// goes to the journal, check's to the terminal.
func TestRun_DataverseCertificateContentNotEchoed(t *testing.T) {
	r := newCheckRig(t)
	cert := mustCert(t, dataversetest.CertificateOptions{})
	content := string(cert.PEM())
	delete(r.vars, "DATAVERSE_CLIENT_SECRET")
	r.vars["DATAVERSE_CLIENT_CERTIFICATE"] = content
	// Lines of the key's base64, any of which is key material.
	_, keyPEM, _ := strings.Cut(content, "-----BEGIN PRIVATE KEY-----\n")
	keyLines := strings.Split(strings.TrimSpace(keyPEM), "\n")[:3]
	leaks := func(what, out string) {
		t.Helper()
		for _, l := range keyLines {
			if strings.Contains(out, l) {
				t.Errorf("%s shows the private key (%d bytes of output)", what, len(out))
				return
			}
		}
	}
	for _, cmd := range []string{"run", "check"} {
		var out, errb strings.Builder
		code := run(context.Background(), []string{cmd}, env(r.vars), &out, &errb)
		if code != 2 {
			t.Errorf("%s exited %d, want 2 (invalid configuration)", cmd, code)
		}
		leaks(cmd, out.String()+errb.String())
		if !strings.Contains(out.String()+errb.String(), "not the path of a file") {
			t.Errorf("%s does not say the value is PEM text, not a path", cmd)
		}
	}
}

// TestRun_DataverseCertificateBase64NotEchoed: the value an admin most
// often pastes from Azure Key Vault, a certificate's secret (the PFX, or a
// key, base64 in one line, no BEGIN line), is key material too: run's and
// check's error must not show it either.
func TestRun_DataverseCertificateBase64NotEchoed(t *testing.T) {
	r := newCheckRig(t)
	cert := mustCert(t, dataversetest.CertificateOptions{})
	der, err := x509.MarshalPKCS8PrivateKey(cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	value := base64.StdEncoding.EncodeToString(der)
	delete(r.vars, "DATAVERSE_CLIENT_SECRET")
	r.vars["DATAVERSE_CLIENT_CERTIFICATE"] = value
	for _, cmd := range []string{"run", "check"} {
		var out, errb strings.Builder
		code := run(context.Background(), []string{cmd}, env(r.vars), &out, &errb)
		if code != 2 {
			t.Errorf("%s exited %d, want 2 (invalid configuration)", cmd, code)
		}
		if all := out.String() + errb.String(); strings.Contains(all, value[:64]) || strings.Contains(all, value[len(value)-64:]) {
			t.Errorf("%s shows the base64 private key (%d bytes of output)", cmd, len(all))
		}
		if !strings.Contains(out.String()+errb.String(), "not the path of a file") {
			t.Errorf("%s does not say the value is the key itself, not a path", cmd)
		}
	}
}

// certDaemon is a daemon run (until the test ends) against both emulators,
// reaching Dataverse with the certificate of file alone; vars are its
// settings.
type certDaemon struct {
	genesys   *notificationstest.Emulator
	dataverse *dataversetest.Server
	m         *Main
	logs      *syncbuf.Buffer
	vars      map[string]string
}

func startCertDaemon(t *testing.T, cert *dataversetest.Certificate, file string) *certDaemon {
	t.Helper()
	g := notificationstest.New(notificationstest.Config{Agents: demoAgents[:1]})
	if _, err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	d := dataversetest.New(dataversetest.Config{ClientCertificates: []*x509.Certificate{cert.Cert}})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	gc, dc := g.Config(), d.Config()
	vars := testEnv(t)
	for k, v := range map[string]string{
		"GENESYS_API_URL": g.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret, "GENESYS_AGENTS": checkAgent,
		"DATAVERSE_URL": d.URL(), "DATAVERSE_TOKEN_URL": d.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_CERTIFICATE": file,
	} {
		vars[k] = v
	}
	cfg, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMain(cfg, zerolog.New(logs))
	if err := m.Open(ctx); err != nil {
		cancel()
		m.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 20*time.Second, "daemon ready", m.Ready)
	return &certDaemon{genesys: g, dataverse: d, m: m, logs: logs, vars: vars}
}

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// TestCheck_QuotedValueFromDockerEnvFile: docs/configuration.md ("The env
// file") has the admin put a value with a '~' in single quotes in
// /etc/screenpop/screenpop.env, and every Entra ID client secret's Value
// has one (xxx8Q~…). systemd and the shell of the documented check command
// remove the quotes; `docker run --env-file` (docs/deploy/README.md) keeps
// them as part of the value. An env file carried over with its quotes must
// be refused as such, naming the variable and the quotes, before anything
// is probed: a quoted secret otherwise reads as a wrong secret ("use the
// secret's Value, not its Secret ID", which the admin did), and a quoted
// path passes check as a directory named ' under the working directory.
func TestCheck_QuotedValueFromDockerEnvFile(t *testing.T) {
	for _, tc := range []struct{ env, quote string }{
		{"DATAVERSE_CLIENT_SECRET", "'"},
		{"GENESYS_CLIENT_SECRET", `"`},
		{"SCREENPOP_DATA_DIR", "'"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			r := newCheckRig(t)
			if tc.env == "SCREENPOP_DATA_DIR" {
				// A quoted path is relative: keep what check makes of it
				// out of the source tree.
				t.Chdir(t.TempDir())
				r.vars[tc.env] = filepath.Join(t.TempDir(), "data")
			}
			r.vars[tc.env] = tc.quote + r.vars[tc.env] + tc.quote
			code, out := r.check(t)
			if code != 2 {
				t.Errorf("exit %d, want 2 (an invalid configuration, nothing probed)", code)
			}
			l, fix := line(t, out, "FAIL config: "+tc.env+":")
			if !strings.Contains(l+fix, "quote") || !strings.Contains(fix, "without") {
				t.Errorf("the FAIL line does not name the quotes and their fix: %q / %q", l, fix)
			}
		})
	}
}

// TestCheck_AgentsFileFromWindows: GENESYS_AGENTS_FILE saved on Windows
// as Notepad's "Unicode" or by Windows PowerShell's > and Out-File is
// UTF-16LE with a byte-order mark. check must either read it or say what
// is wrong with the file (its encoding) and what to do, not quote the file
// back as "\xff\xfe5\x00e\x00…" under a generic fix. A line that is not a
// user id (an email, a CSV export's "id,name") needs the fix GENESYS_AGENTS
// gets for the same mistake (where the user id is shown), not "correct the
// value; docs/configuration.md lists every variable".
func TestCheck_AgentsFileFromWindows(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("UTF16", func(t *testing.T) {
		u := utf16.Encode([]rune("\ufeff" + checkAgent + "\r\n"))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
		r := newCheckRig(t)
		r.vars["GENESYS_AGENTS"], r.vars["GENESYS_AGENTS_FILE"] = "", write("agents-utf16.txt", b)
		code, out := r.check(t)
		if code == 0 {
			return // read as the ids it holds
		}
		l, fix := line(t, out, "FAIL config: GENESYS_AGENTS_FILE:")
		if !strings.Contains(l+fix, "UTF-16") || !strings.Contains(fix, "UTF-8") {
			t.Errorf("the FAIL line does not name the file's encoding and the fix: %q / %q", l, fix)
		}
		if strings.Contains(l, `\x00`) {
			t.Errorf("the FAIL line quotes the file's raw bytes: %q", l)
		}
	})
	for name, content := range map[string]string{
		"Email": "jane.doe@contoso.com\n",
		"CSV":   checkAgent + ",Jane Doe\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := newCheckRig(t)
			r.vars["GENESYS_AGENTS"], r.vars["GENESYS_AGENTS_FILE"] = "", write("agents-"+name+".txt", []byte(content))
			code, out := r.check(t)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			_, fix := line(t, out, "FAIL config: GENESYS_AGENTS_FILE:")
			if !strings.Contains(fix, "Admin > People") {
				t.Errorf("fix line %q does not say where a user id is found (as GENESYS_AGENTS's does)", fix)
			}
		})
	}
}

// TestCheck_TLSChainInWrongOrder: docs/setup.md section 4 wants
// SCREENPOP_TLS_CERT "leaf first, then the chain". A file built the other
// way round (cat ca.crt server.crt) holds the key's certificate, second.
// check must say that the order is wrong, not "private key does not match
// public key", which the docs give for the key of another certificate and
// which sends the admin after a key that is right.
func TestCheck_TLSChainInWrongOrder(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Contoso Issuing CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "screenpop.example.com"},
		DNSNames: []string{"screenpop.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})...)
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newCheckRig(t)
	r.vars["SCREENPOP_TLS_CERT"], r.vars["SCREENPOP_TLS_KEY"] = certFile, keyFile
	code, out := r.check(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	l, _ := line(t, out, "FAIL tls agent listener:")
	if !strings.Contains(l, "first") || strings.HasSuffix(l, "private key does not match public key") {
		t.Errorf("the FAIL line does not say the certificates are in the wrong order: %q", l)
	}
}

// TestCheck_InlineCommentAsTheServiceReadsIt: a line such as
// GENESYS_CLIENT_SECRET=…  # prod org in /etc/screenpop/screenpop.env is
// read by the shell of the documented check command without the comment,
// and by systemd's EnvironmentFile= (and docker run --env-file) with it:
// the service gets "…  # prod org". Given the value the service gets, the
// configuration must be refused naming the comment, not reported as a
// wrong secret (or, for a path, accepted as a directory whose name ends
// in "# prod").
func TestCheck_InlineCommentAsTheServiceReadsIt(t *testing.T) {
	for _, env := range []string{"GENESYS_CLIENT_SECRET", "DATAVERSE_CLIENT_SECRET", "SCREENPOP_DATA_DIR"} {
		t.Run(env, func(t *testing.T) {
			r := newCheckRig(t)
			r.vars[env] += "  # prod org"
			code, out := r.check(t)
			if code != 2 {
				t.Errorf("exit %d, want 2 (an invalid configuration, nothing probed)", code)
			}
			l, fix := line(t, out, "FAIL config: "+env+":")
			if !strings.Contains(l, "comment") || !strings.Contains(fix, "line of its own") {
				t.Errorf("the FAIL line does not name the inline comment and its fix: %q / %q", l, fix)
			}
		})
	}
}

// TestCheck_AgentsFileExportedAsCSV: the admin exports the user id column
// from a spreadsheet or PowerShell. Windows PowerShell's Export-Csv puts
// every value in double quotes; Excel's "CSV UTF-8" writes a byte-order
// mark, CRLF line ends and, when other columns of the sheet were ever
// used, a comma for each (5e1f…,,). Each line still holds one user id and
// nothing else, as an id in braces does, which is read without them; it
// was refused as "is not a Genesys user id (a UUID)" while quoting a UUID
// back to the admin, who could not see what was wrong with it.
func TestCheck_AgentsFileExportedAsCSV(t *testing.T) {
	for name, content := range map[string]string{
		"PowerShellQuotes":     `"` + checkAgent + `"` + "\r\n",
		"ExcelTrailingCommas":  "\ufeff" + checkAgent + ",,\r\n" + checkAgent + ",,\r\n",
		"QuotedTrailingCommas": `"` + strings.ToUpper(checkAgent) + `",""` + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agents.csv")
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			r := newCheckRig(t)
			r.vars["GENESYS_AGENTS"], r.vars["GENESYS_AGENTS_FILE"] = "", p
			if code, out := r.check(t); code != 0 {
				t.Errorf("exit %d, want 0 (the file names one user id):\n%s", code, out)
			}
		})
	}
}

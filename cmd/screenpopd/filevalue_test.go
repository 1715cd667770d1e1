package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/screenpop/screenpop/internal/certtest"
)

// A setting that names a file, given the file's content instead (a
// Kubernetes secretKeyRef, "$(cat key.pem)", a Key Vault secret), is a
// configuration error naming the setting, and the content (a private key,
// a NATS user's seed) is printed nowhere: every error about a path quotes
// the path.
func TestRun_AFileSettingHoldingItsContentIsRefusedUnseen(t *testing.T) {
	certFile, keyFile, err := certtest.Write(t.TempDir(), certtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	keyB64 := base64.StdEncoding.EncodeToString(append(block.Bytes, bytes.Repeat(block.Bytes, 4)...))
	keyB64Alone := base64.StdEncoding.EncodeToString(block.Bytes) // an EC key: 164 characters
	creds := natsCredsFile(t)
	var seed string
	for _, l := range strings.Split(string(creds), "\n") {
		if strings.HasPrefix(l, "SU") {
			seed = strings.TrimSpace(l)
		}
	}
	// The secret part of each value, which must not be printed: the
	// key's base64 lines, the seed.
	keySecret := strings.Split(string(keyPEM), "\n")[1]
	var userJWT string
	for _, l := range strings.Split(string(creds), "\n") {
		if strings.HasPrefix(l, "eyJ") {
			userJWT = strings.TrimSpace(l)
		}
	}
	for _, c := range []struct {
		name, variable, value, secret string
		more                          map[string]string
	}{
		{"TLSKeyPEM", "SCREENPOP_TLS_KEY", string(keyPEM), keySecret, map[string]string{"SCREENPOP_TLS_CERT": certFile}},
		{"TLSKeyBase64", "SCREENPOP_TLS_KEY", keyB64, keyB64[:40], map[string]string{"SCREENPOP_TLS_CERT": certFile}},
		{"NATSCreds", "NATS_CREDS", string(creds), seed, map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}},
		{"NATSTLSKey", "NATS_TLS_KEY", string(keyPEM), keySecret, map[string]string{"NATS_URL": "tls://127.0.0.1:4222", "NATS_TLS_CERT": certFile}},
		// Short ones, and the parts of a creds file on their own.
		{"TLSKeyBase64Alone", "SCREENPOP_TLS_KEY", keyB64Alone, keyB64Alone[:40], map[string]string{"SCREENPOP_TLS_CERT": certFile}},
		{"NATSTLSKeyBase64Alone", "NATS_TLS_KEY", keyB64Alone, keyB64Alone[:40], map[string]string{"NATS_URL": "tls://127.0.0.1:4222", "NATS_TLS_CERT": certFile}},
		{"NATSCredsSeedAlone", "NATS_CREDS", seed, seed, map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}},
		{"NATSCredsJWTAlone", "NATS_CREDS", userJWT, userJWT, map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			vars := good()
			for k, v := range testEnv(t) {
				vars[k] = v
			}
			for k, v := range c.more {
				vars[k] = v
			}
			vars[c.variable] = c.value
			for _, sub := range []string{"run", "check"} {
				var out, errb bytes.Buffer
				code := run(context.Background(), []string{sub}, env(vars), &out, &errb)
				all := out.String() + errb.String()
				if code != 2 {
					t.Errorf("%s exited %d, want 2 (an invalid configuration):\n%s", sub, code, all)
				}
				if !strings.Contains(all, c.variable+": the value is") || !strings.Contains(all, "not the path of a file") {
					t.Errorf("%s: no line saying %s holds a file's content:\n%s", sub, c.variable, all)
				}
				if strings.Contains(all, c.secret) {
					t.Fatalf("%s printed the secret of %s:\n%s", sub, c.variable, all)
				}
			}
		})
	}
}

// A NATS password with a comma in it splits NATS_URL's list before its
// '@': the configuration error names the fix and prints no part of it.
func TestParseConfig_ANATSPasswordWithACommaIsNotPrinted(t *testing.T) {
	vars := good()
	vars["NATS_URL"] = "nats://screenpop:Hunter2,Secret@127.0.0.1:4222"
	var errb bytes.Buffer
	code := run(context.Background(), []string{"run"}, env(vars), &bytes.Buffer{}, &errb)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if strings.Contains(errb.String(), "Hunter2") || strings.Contains(errb.String(), "Secret@") {
		t.Errorf("part of the password printed:\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), ", as %2C") {
		t.Errorf("the fix does not say to percent-encode the comma:\n%s", errb.String())
	}
}

// A list entry without a scheme, next to one with credentials, is told to
// write its scheme, not to percent-encode a password it does not have.
func TestParseConfig_ANATSURLEntryGetsItsOwnFix(t *testing.T) {
	vars := good()
	vars["NATS_URL"] = "nats://screenpop:pw@nats1.example.com:4222,nats2.example.com:4222"
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"run"}, env(vars), &bytes.Buffer{}, &errb); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.Contains(l, `"nats2.example.com:4222"`) {
			if !strings.Contains(l, "write each as scheme://host:port") || strings.Contains(l, "percent-encode") {
				t.Errorf("the schemeless entry's line: %s", l)
			}
			return
		}
	}
	t.Errorf("no line for the schemeless entry:\n%s", errb.String())
}

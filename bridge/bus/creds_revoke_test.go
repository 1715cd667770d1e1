package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// writeUserCreds writes a creds file for a new user of the account (moved
// over the old file in one go) and returns the user's public key.
func (o *operatorNATS) writeUserCreds(t *testing.T, path string) string {
	t.Helper()
	u, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	uPub, _ := u.PublicKey()
	uJWT, err := jwt.NewUserClaims(uPub).Encode(o.account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := u.Seed()
	b, err := jwt.FormatUserConfig(uJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return uPub
}

// The NATS_CREDS rotation of docs/operations.md 7.1: the new creds file is
// written in place, and only then the old user is revoked; "the daemon
// reconnects with the new one when the servers drop the old, no restart".
func TestStart_CredsRotatedThenOldUserRevoked(t *testing.T) {
	o := startOperatorNATS(t)
	creds := filepath.Join(t.TempDir(), "screenpop.creds")
	oldUser := o.writeUserCreds(t, creds)
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{URL: o.srv.ClientURL(), Creds: creds}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	o.writeUserCreds(t, creds)          // (1) the new file in place
	time.Sleep(1100 * time.Millisecond) // revocations are by the second: the new user's JWT is not "issued before"
	accPub, _ := o.account.PublicKey()
	acc, err := o.srv.LookupAccount(accPub)
	if err != nil {
		t.Fatal(err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ac.Revoke(oldUser) // (2) then revoke the old user
	o.srv.UpdateAccountClaims(acc, ac)

	waitFor(t, 10*time.Second, func() bool { return !c.Connected() })
	deadline := time.Now().Add(10 * time.Second)
	for !c.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected again with the new creds within 10s; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old user's connection was dropped as the rotation's last step
	// says: no error telling the admin to check NATS_CREDS, which holds
	// the new user the servers took at once.
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"level":"error"`) {
			t.Errorf("error line in a rotation done as documented (new file first, then revoke): %s", l)
		}
	}
}

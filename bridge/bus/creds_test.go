package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// operatorNATS is a nats-server in operator mode (decentralized JWT auth,
// what NATS_CREDS files are for) with JetStream and one account.
type operatorNATS struct {
	srv     *server.Server
	account nkeys.KeyPair
}

func startOperatorNATS(t *testing.T) *operatorNATS {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	sys, err := nkeys.CreateAccount()
	must(err)
	sysPub, _ := sys.PublicKey()
	oc.SystemAccount = sysPub
	_, err = oc.Encode(op)
	must(err)
	acc, err := nkeys.CreateAccount()
	must(err)
	accPub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	must(err)
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(op)
	must(err)
	res := &server.MemAccResolver{}
	must(res.Store(accPub, accJWT))
	must(res.Store(sysPub, sysJWT))
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{oc}, SystemAccount: sysPub, AccountResolver: res,
	})
	must(err)
	srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return &operatorNATS{srv: srv, account: acc}
}

// writeCreds writes a creds file for a new user of the account whose JWT
// expires at exp, as a credential store renewing it in place does.
func (o *operatorNATS) writeCreds(t *testing.T, path string, exp time.Time) {
	t.Helper()
	u, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Expires = exp.Unix()
	uJWT, err := uc.Encode(o.account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := u.Seed()
	b, err := jwt.FormatUserConfig(uJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// NATS_CREDS is read again at every reconnect, so credentials renewed in
// place (a secret volume, a credential store) are picked up without a
// restart. A renewal that lands a little after the old user JWT expired
// (the server cuts the connection, and refuses the old file at the next
// tries) must still be picked up: nats.go by default closes the connection
// for good once one server refuses the same credentials twice, and the
// daemon then stays up, not ready, with no event stored and no pop, until
// someone restarts it (docs/operations.md 7.4 promises it reconnects
// "forever").
func TestStart_CredsRenewedAfterExpiryReconnects(t *testing.T) {
	o := startOperatorNATS(t)
	creds := filepath.Join(t.TempDir(), "screenpop.creds")
	o.writeCreds(t, creds, time.Now().Add(3*time.Second))
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{URL: o.srv.ClientURL(), Creds: creds}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 10*time.Second, func() bool { return !c.Connected() })
	// The renewal lands 3 s late: the server refuses the expired file at
	// each of the reconnects meanwhile (one every 0.25-0.5 s).
	time.Sleep(3 * time.Second)
	o.writeCreds(t, creds, time.Now().Add(time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	if !strings.Contains(logs.String(), "nats refused the credentials") {
		t.Errorf("no line says NATS refused the credentials; log:\n%s", logs.String())
	}
	for !c.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected again within 10s of the renewed creds file; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

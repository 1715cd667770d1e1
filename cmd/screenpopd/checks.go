package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/push"
)

// check is one probe: its name and what it does.
type check struct {
	name string
	run  func(ctx context.Context) error
	fix  string
}

// RunChecks probes each dependency for real and prints one line per check:
// "ok" or "FAIL" with the error and a fix hint. It returns how many failed.
func RunChecks(ctx context.Context, cfg *Config, log zerolog.Logger, w io.Writer) int {
	checks := []check{
		{"tls", func(context.Context) error {
			_, err := push.LoadTLS(cfg.TLSCert, cfg.TLSKey)
			return err
		}, "SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY must name a readable PEM certificate and its key"},
		{"nats", func(ctx context.Context) error {
			dir := cfg.DataDir
			if cfg.NatsURL == "" {
				// Probe the embedded server in a scratch store, so a
				// running daemon's store is not touched.
				tmp, err := os.MkdirTemp("", "screenpop-check-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			c, err := bus.Start(ctx, bus.Config{URL: cfg.NatsURL, Creds: cfg.NatsCreds, TLSCA: cfg.NatsTLSCA, TLSCrt: cfg.NatsTLSCert, TLSKey: cfg.NatsTLSKey,
				Listen: "off", DataDir: dir, Stream: cfg.Stream, StreamMaxAge: cfg.StreamMaxAge, StreamReplicas: cfg.StreamReplicas}, log)
			if err != nil {
				return err
			}
			c.Close()
			return nil
		}, "check NATS_URL, NATS_CREDS, NATS_TLS_* and that the account has JetStream"},
		{"genesys", func(ctx context.Context) error {
			agents, err := cfg.Agents()
			if err != nil {
				return err
			}
			g, err := notifications.New(notifications.Config{Region: cfg.GenesysRegion, APIURL: cfg.GenesysAPIURL,
				ClientID: cfg.GenesysClientID, ClientSecret: cfg.GenesysClientSecret, Agents: agents, Queues: cfg.GenesysQueues}, log, nil)
			if err != nil {
				return err
			}
			return g.Check(ctx)
		}, "see docs/setup.md, Genesys Cloud: region, OAuth client and its role"},
		{"dataverse", func(ctx context.Context) error {
			d, err := dataverse.New(dataverse.Config{URL: cfg.DataverseURL, TenantID: cfg.DataverseTenantID, ClientID: cfg.DataverseClientID,
				ClientSecret: cfg.DataverseClientSecret, TokenURL: cfg.DataverseTokenURL, AppID: cfg.DataverseAppID,
				Phone: cfg.LookupPhone, Email: cfg.LookupEmail, Entities: cfg.Entities, PhoneRegion: cfg.PhoneRegion}, log)
			if err != nil {
				return err
			}
			defer d.Close()
			return d.Check(ctx)
		}, "see docs/dataverse.md: app registration, application user and its security role"},
	}
	failed := 0
	for _, c := range checks {
		if err := c.run(ctx); err != nil {
			failed++
			fmt.Fprintf(w, "FAIL %s: %v\n     fix: %s\n", c.name, err, c.fix)
			continue
		}
		fmt.Fprintf(w, "ok   %s\n", c.name)
	}
	return failed
}

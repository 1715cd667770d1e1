package dataverse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Check probes the configuration: a token, WhoAmI, and a one-row read of
// every entity the lookups use. The error names the fix. Only the tests use
// it (screenpopd check calls CheckAuth and CheckEntity), so it lives here.
func (c *Client) Check(ctx context.Context) error {
	if _, err := c.tokens.get(ctx); err != nil {
		return fmt.Errorf("check token: %w", err)
	}
	if _, _, err := c.send(ctx, "whoami", "", func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.api+"WhoAmI", nil)
	}, nil); err != nil {
		return fmt.Errorf("check WhoAmI: %w", err)
	}
	seen := map[string]bool{}
	for _, ec := range append(append([]EntityColumns(nil), c.cfg.Phone...), c.cfg.Email...) {
		if seen[ec.Entity] {
			continue
		}
		seen[ec.Entity] = true
		info := c.cfg.Entities[ec.Entity]
		cols := append([]string{info.IDColumn, info.NameColumn}, ec.Columns...)
		u := c.api + info.EntitySet + "?$select=" + strings.Join(cols, ",") + "&$top=1"
		if _, _, err := c.send(ctx, "query", ec.Entity, func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		}, nil); err != nil {
			return fmt.Errorf("check read %s: %w", ec.Entity, err)
		}
	}
	return nil
}

// DialWith replaces the dialer of the client's default transport, keeping
// its idle pool and timeouts, so a test can put a network of its own (an
// in-memory one, in a synctest bubble) between the client and the
// emulator.
func (c *Client) DialWith(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	c.cfg.HTTPClient.Transport.(*http.Transport).DialContext = dial
}

// TrustRoots makes the client's default transport trust roots (the
// emulator's StartTLS certificate), keeping everything else of it: its
// HTTP/2, pools and timeouts are what the test is about.
func (c *Client) TrustRoots(roots *x509.CertPool) {
	c.cfg.HTTPClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
}

// CloseIdleConnectionsForTest drops the connections kept for the next
// request, as Dataverse or the idle timeout does: the next request dials,
// and so resolves the host's name, again.
func (c *Client) CloseIdleConnectionsForTest() { c.cfg.HTTPClient.CloseIdleConnections() }

package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A proxy that asks for Digest only, with the challenge of RFC 7616's own
// example: its qop is a quoted list ("auth, auth-int"), and a realm may
// hold a comma as well. The error names the scheme the proxy asks for,
// Digest, and no word of a quoted value as if it were another scheme.
func TestProxyError_ADigestChallengeWithQuotedCommas(t *testing.T) {
	ws := wsEcho(t)
	px := startShapedProxy(t, ws, func(c net.Conn, _ *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n"+
			"Proxy-Authenticate: Digest realm=\"Proxy, Contoso Ltd\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"\r\n"+
			"Content-Length: 0\r\n\r\n")
		return false
	})
	pu, _ := url.Parse("http://svc:s3cret@" + px.ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tr := &http.Transport{Proxy: http.ProxyURL(pu), OnProxyConnectResponse: OnProxyConnectResponse}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://login.mypurecloud.ie/", nil)
	_, restErr := tr.RoundTrip(req)
	_, wsErr := dialLikeTheShard(ctx, http.ProxyURL(pu), "wss://streaming.mypurecloud.ie/channels/x")
	for what, err := range map[string]error{"REST": restErr, "websocket": wsErr} {
		var pe *ProxyError
		if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired {
			t.Errorf("%s: %v, want the proxy's 407 as a *ProxyError", what, err)
			continue
		}
		if len(pe.Schemes) != 1 || pe.Schemes[0] != "Digest" {
			t.Errorf("%s: schemes %q, want [Digest]", what, pe.Schemes)
		}
		msg := err.Error()
		if !strings.Contains(msg, "asks for Digest authentication") {
			t.Errorf("%s: %q; want it to say the proxy asks for Digest authentication", what, msg)
		}
	}
}

// The schemes of challenges whose parameters hold commas within quotes,
// or spaces around their "=" (RFC 9110 11.2 allows both).
func TestAuthSchemes_QuotedCommasAndSpacedParams(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
	}{
		{`Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf"`, "Digest"},
		{`Basic realm="Contoso, Ltd", charset="UTF-8"`, "Basic"},
		{`Negotiate, Digest realm = "corp", nonce = "abc"`, "Negotiate Digest"},
		{`Digest realm="a \"quoted, name\"", nonce="x", NTLM`, "Digest NTLM"},
	} {
		h := http.Header{}
		h.Add("Proxy-Authenticate", tc.header)
		if got := strings.Join(authSchemes(h), " "); got != tc.want {
			t.Errorf("%s: schemes %q, want %q", tc.header, got, tc.want)
		}
	}
}

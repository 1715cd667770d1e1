package egress

import (
	"net/http"
	"strings"
	"testing"
)

// A proxy that asks for Digest only, with the challenge of RFC 7616's own
// example: its qop is a quoted list ("auth, auth-int"), and a realm may
// hold a comma as well. The error names the scheme the proxy asks for,
// Digest, and no word of a quoted value as if it were another scheme.
func TestProxyError_ADigestChallengeWithQuotedCommas(t *testing.T) {
	for what, pe := range refused407(t, "Proxy-Authenticate: Digest realm=\"Proxy, Contoso Ltd\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"\r\n") {
		if len(pe.Schemes) != 1 || pe.Schemes[0] != "Digest" {
			t.Errorf("%s: schemes %q, want [Digest]", what, pe.Schemes)
		}
		if msg := pe.Error(); !strings.Contains(msg, "asks for Digest authentication") {
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

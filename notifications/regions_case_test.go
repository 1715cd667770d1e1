package notifications_test

import (
	"testing"

	"github.com/screenpop/screenpop/notifications"
)

// TestRegionHosts_APIURLHostCaseInsensitive: GENESYS_API_URL gives the API
// host, and the login host is derived from it "the way the SDK does it".
// The SDK (platformclientv2 v157 configuration.go, AuthorizeClientCredentials)
// derives it with regexp `(?i)\/\/api\.` replaced by "//login.": a host
// written API.mypurecloud.de logs in at login.mypurecloud.de (host names
// are case-insensitive). The hosts screenpopd reports (screenpopd check's
// "genesys region" line, "login <host>: HTTP 401 …", "cannot reach
// <host>", and the streaming host the websocket hint names) must be the
// ones actually used, not the API host under the login's name.
func TestRegionHosts_APIURLHostCaseInsensitive(t *testing.T) {
	for _, apiURL := range []string{"https://API.mypurecloud.de", "https://Api.usw2.pure.cloud/"} {
		h, err := notifications.RegionHosts("", apiURL)
		if err != nil {
			t.Fatalf("%s: %v", apiURL, err)
		}
		want := map[string]string{
			"https://API.mypurecloud.de":   "mypurecloud.de",
			"https://Api.usw2.pure.cloud/": "usw2.pure.cloud",
		}[apiURL]
		if h.Login != "https://login."+want {
			t.Errorf("GENESYS_API_URL=%s: login host %s, want https://login.%s (where the SDK logs in)", apiURL, h.Login, want)
		}
		if h.Streaming != "wss://streaming."+want {
			t.Errorf("GENESYS_API_URL=%s: streaming host %s, want wss://streaming.%s", apiURL, h.Streaming, want)
		}
	}
}

package notifications

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// regions lists every Genesys Cloud region domain (PureCloudRegionHosts of
// the JavaScript SDK; the Go SDK v157 lacks the last two).
var regions = []string{
	"mypurecloud.com", "mypurecloud.ie", "mypurecloud.com.au", "mypurecloud.jp", "mypurecloud.de",
	"usw2.pure.cloud", "cac1.pure.cloud", "apne2.pure.cloud", "euw2.pure.cloud", "aps1.pure.cloud",
	"use2.us-gov-pure.cloud", "sae1.pure.cloud", "mec1.pure.cloud", "apne3.pure.cloud", "euc2.pure.cloud",
	"mxc1.pure.cloud", "apse1.pure.cloud",
}

// Hosts are the base URLs of one Genesys Cloud region.
type Hosts struct {
	API       string // https://api.{domain}
	Login     string // https://login.{domain}
	Streaming string // wss://streaming.{domain} (informational: sockets use the channel's connectUri)
}

// Regions returns the known region domains, sorted.
func Regions() []string {
	out := append([]string(nil), regions...)
	sort.Strings(out)
	return out
}

// RegionHosts maps a region domain (e.g. mypurecloud.ie) to its hosts. An
// apiURL (GENESYS_API_URL) overrides them: the login host is then derived
// the way the SDK does it (//api. -> //login.), so an emulator on one
// http://127.0.0.1:PORT serves both.
func RegionHosts(region, apiURL string) (Hosts, error) {
	if apiURL != "" {
		u, err := url.Parse(apiURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Hosts{}, fmt.Errorf("GENESYS_API_URL %q: want an absolute http(s) URL such as https://api.mypurecloud.com", apiURL)
		}
		base := strings.TrimRight(apiURL, "/")
		login := strings.Replace(base, "//api.", "//login.", 1)
		ws := "ws"
		if u.Scheme == "https" {
			ws = "wss"
		}
		return Hosts{API: base, Login: login, Streaming: ws + "://" + strings.Replace(u.Host, "api.", "streaming.", 1)}, nil
	}
	d := strings.ToLower(strings.TrimSpace(region))
	d = strings.TrimPrefix(strings.TrimPrefix(d, "https://"), "api.")
	for _, r := range regions {
		if r == d {
			return Hosts{API: "https://api." + d, Login: "https://login." + d, Streaming: "wss://streaming." + d}, nil
		}
	}
	if d == "" {
		return Hosts{}, fmt.Errorf("GENESYS_REGION is required (one of %s), or set GENESYS_API_URL", strings.Join(Regions(), ", "))
	}
	return Hosts{}, fmt.Errorf("GENESYS_REGION %q is not a Genesys Cloud region domain (one of %s)", region, strings.Join(Regions(), ", "))
}

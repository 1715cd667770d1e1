package notifications

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// regionByAWS maps every Genesys Cloud region's AWS region to its domain
// (PureCloudRegionHosts of the JavaScript SDK; the Go SDK v157 lacks the
// last two). The AWS names are not accepted, only recognised, so that a
// GENESYS_REGION written as eu-west-1 is answered with its domain.
var regionByAWS = map[string]string{
	"us-east-1": "mypurecloud.com", "eu-west-1": "mypurecloud.ie", "ap-southeast-2": "mypurecloud.com.au",
	"ap-northeast-1": "mypurecloud.jp", "eu-central-1": "mypurecloud.de", "us-west-2": "usw2.pure.cloud",
	"ca-central-1": "cac1.pure.cloud", "ap-northeast-2": "apne2.pure.cloud", "eu-west-2": "euw2.pure.cloud",
	"ap-south-1": "aps1.pure.cloud", "us-east-2": "use2.us-gov-pure.cloud", "sa-east-1": "sae1.pure.cloud",
	"me-central-1": "mec1.pure.cloud", "ap-northeast-3": "apne3.pure.cloud", "eu-central-2": "euc2.pure.cloud",
	"mx-central-1": "mxc1.pure.cloud", "ap-southeast-1": "apse1.pure.cloud",
}

// regions lists every Genesys Cloud region domain.
var regions = func() []string {
	out := make([]string, 0, len(regionByAWS))
	for _, d := range regionByAWS {
		out = append(out, d)
	}
	return out
}()

// sdkLoginHost is how the SDK finds the login host in its base path
// (platformclientv2 configuration.go): //api. in any case.
var sdkLoginHost = regexp.MustCompile(`(?i)//api\.`)

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
		login := sdkLoginHost.ReplaceAllString(base, "//login.")
		ws := "ws"
		if u.Scheme == "https" {
			ws = "wss"
		}
		streaming := strings.ToLower(u.Host)
		if rest, ok := strings.CutPrefix(streaming, "api."); ok {
			streaming = "streaming." + rest
		}
		return Hosts{API: base, Login: login, Streaming: ws + "://" + streaming}, nil
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
	if dom, ok := regionByAWS[strings.ReplaceAll(d, "_", "-")]; ok {
		return Hosts{}, fmt.Errorf("GENESYS_REGION %q is an AWS region name; its Genesys Cloud region domain is %s", region, dom)
	}
	return Hosts{}, fmt.Errorf("GENESYS_REGION %q is not a Genesys Cloud region domain (one of %s)", region, strings.Join(Regions(), ", "))
}

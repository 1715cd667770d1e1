package main

import (
	"io"
	"strings"
	"testing"
)

// TestConfig_RegionAsAWSName: Genesys names its regions by AWS region too
// (its SDKs' region constants, and GENESYSCLOUD_REGION of its Terraform
// provider takes eu-west-1). An admin who sets GENESYS_REGION that way is
// told the domain to set, not left to guess it from a list of domains
// (eu-west-1 is mypurecloud.ie, us-east-2 the FedRAMP use2.us-gov-pure.cloud).
func TestConfig_RegionAsAWSName(t *testing.T) {
	for aws, domain := range map[string]string{
		"us-east-1":      "mypurecloud.com",
		"eu-west-1":      "mypurecloud.ie",
		"ap-southeast-2": "mypurecloud.com.au",
		"ap-northeast-1": "mypurecloud.jp",
		"eu-central-1":   "mypurecloud.de",
		"us-east-2":      "use2.us-gov-pure.cloud",
		"us-west-2":      "usw2.pure.cloud",
		"ap-southeast-1": "apse1.pure.cloud",
		"EU_WEST_1":      "mypurecloud.ie", // the SDK constant's spelling
	} {
		_, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_REGION", aws)), Requirements{Genesys: true, Dataverse: true}, io.Discard)
		if err == nil {
			t.Fatalf("%s: accepted", aws)
		}
		if want := "Genesys Cloud region domain is " + domain + ";"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: the message does not name its domain (want %q):\n%v", aws, want, err)
		}
	}
}

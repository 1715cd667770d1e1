package main

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// A DATAVERSE_URL without a scheme is answered with the value to write
// ("write it as https://…"). For an address copied with its path, as a
// browser shows the app (contoso.crm4.dynamics.com/main.aspx?appid=…),
// the value offered is refused in turn: the admin who follows the fix
// gets a second error.
func TestParseConfig_SchemelessURLFixIsAccepted(t *testing.T) {
	for _, v := range []string{
		"contoso.crm4.dynamics.com/main.aspx?appid=0f5c1b44-0000-4000-8000-000000000001",
		"contoso.crm4.dynamics.com/",
	} {
		t.Run(v, func(t *testing.T) {
			vars := good()
			vars["DATAVERSE_URL"] = v
			_, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err %v, want a ConfigError", err)
			}
			var fix string
			for _, p := range ce.Problems {
				if m := regexp.MustCompile(`write it as (\S+)`).FindStringSubmatch(p); m != nil && strings.HasPrefix(p, "DATAVERSE_URL:") {
					fix = m[1]
				}
			}
			if fix == "" {
				t.Fatalf("no value to write in:\n  %s", strings.Join(ce.Problems, "\n  "))
			}
			vars["DATAVERSE_URL"] = fix
			if _, _, err := ParseConfig("run", nil, env(vars), Requirements{Genesys: true, Dataverse: true}, io.Discard); err != nil {
				t.Errorf("the value the fix offers, %s, is refused: %v", fix, err)
			}
		})
	}
}

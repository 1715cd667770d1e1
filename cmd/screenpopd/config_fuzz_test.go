package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/screenpop/screenpop/dataverse"
)

// FuzzParseConfig sets one variable of a complete environment to an
// arbitrary value, and the agents file to arbitrary content: ParseConfig
// must never panic, answer either a config or a ConfigError, and a config
// it accepts must give agent ids that are all UUIDs.
func FuzzParseConfig(f *testing.F) {
	f.Add(uint8(0), "mypurecloud.ie", []byte(a1+"\n"))
	f.Add(uint8(1), "http://127.0.0.1:1", []byte("# agents\n\n"+a1+"\r\n "+a2+" \n"))
	for i, s := range settings {
		f.Add(uint8(i), s.def, []byte(b1+"\n"+b2))
	}
	for _, v := range []string{"contact:telephone1,mobilephone;account:telephone1", "none", ";;:", "x=y/z/w;a=b//c", "1h", "-1s",
		"0", "true", "off", "[::1]:0", "http://[::1", "https://contoso.crm.dynamics.com/main.aspx", "nats://a:b@h:4222,nats://h2"} {
		f.Add(uint8(len(v)), v, []byte("not-a-uuid\n"))
	}
	f.Fuzz(func(t *testing.T, which uint8, value string, agentsFile []byte) {
		path := filepath.Join(t.TempDir(), "agents")
		if err := os.WriteFile(path, agentsFile, 0o600); err != nil {
			t.Fatal(err)
		}
		m := good()
		m[settings[int(which)%len(settings)].env] = value
		m["GENESYS_AGENTS_FILE"] = path // its content is fuzzed, not its name
		c, _, err := ParseConfig("run", nil, env(m), Requirements{Genesys: true, Dataverse: true}, io.Discard)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is no ConfigError with problems", err)
			}
			return
		}
		agents, err := c.Agents()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range agents {
			if !dataverse.IsGUID(a) {
				t.Fatalf("agent %q accepted", a)
			}
		}
	})
}

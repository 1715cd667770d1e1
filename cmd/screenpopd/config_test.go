package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	a1 = "5e1f0a1c-0000-4000-8000-0000000000a1"
	a2 = "5e1f0a1c-0000-4000-8000-0000000000a2"
	b1 = "5e1f0a1c-0000-4000-8000-0000000000b1"
	b2 = "5e1f0a1c-0000-4000-8000-0000000000b2"
)

// good is a complete environment for `run`.
func good() map[string]string {
	return map[string]string{
		"GENESYS_REGION":          "mypurecloud.ie",
		"GENESYS_CLIENT_ID":       "client",
		"GENESYS_CLIENT_SECRET":   "s3cr3t-value",
		"GENESYS_AGENTS":          a1 + ", " + a2 + "," + a1,
		"DATAVERSE_URL":           "https://contoso.crm4.dynamics.com/",
		"DATAVERSE_TENANT_ID":     "00000000-0000-0000-0000-000000000001",
		"DATAVERSE_CLIENT_ID":     "00000000-0000-0000-0000-000000000002",
		"DATAVERSE_CLIENT_SECRET": "dv-s3cr3t-value",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestParseConfig(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	t.Run("Defaults", func(t *testing.T) {
		c, _, err := ParseConfig("run", nil, env(good()), runReq, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "127.0.0.1:8080" || c.AdminListen != "127.0.0.1:9090" || c.NatsListen != "127.0.0.1:4222" ||
			c.PopOn != "alerting" || c.PopDeadline != 2*time.Second || c.MaxEventAge != 30*time.Second ||
			c.ReplayWindow != 2*time.Minute || c.FreshWindow != 30*time.Second || c.Stream != "SCREENPOP" ||
			c.StreamMaxAge != 24*time.Hour || c.Auth != "genesys" || c.PhoneRegion != "US" || c.DataverseConcurrency != 8 ||
			c.CreateEntity != "contact" || c.OverrideEntityKey != "screenpop.entity" || c.OverrideIDKey != "screenpop.id" ||
			len(c.LookupPhone) != 3 || len(c.LookupEmail) != 3 || c.GenesysQueueRefresh != 5*time.Minute {
			t.Fatalf("defaults: %+v", c)
		}
		if c.DataverseURL != "https://contoso.crm4.dynamics.com" {
			t.Errorf("trailing slash kept: %q", c.DataverseURL)
		}
		agents, err := c.Agents()
		if err != nil || strings.Join(agents, ",") != a1+","+a2 {
			t.Errorf("agents %v %v", agents, err)
		}
	})
	t.Run("FlagsWin", func(t *testing.T) {
		c, _, err := ParseConfig("run", []string{"--genesys-region", "usw2.pure.cloud", "--pop-on=connected", "--listen", "127.0.0.1:0"},
			env(with(good(), "SCREENPOP_POP_ON", "alerting")), runReq, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.GenesysRegion != "usw2.pure.cloud" || c.PopOn != "connected" || c.Listen != "127.0.0.1:0" {
			t.Fatalf("flags did not win: %+v", c)
		}
	})
	t.Run("BooleanFlagsStandAlone", func(t *testing.T) {
		c, _, err := ParseConfig("run", []string{"--pprof", "--pop-internal=true", "--allow-plaintext=false"},
			env(with(good(), "SCREENPOP_ALLOW_PLAINTEXT", "true")), runReq, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !c.PProf || !c.PopInternal || c.AllowPlaintext {
			t.Fatalf("pprof %v pop-internal %v allow-plaintext %v; want true, true, false", c.PProf, c.PopInternal, c.AllowPlaintext)
		}
		// A setting that is not boolean still needs its value.
		if _, _, err := ParseConfig("run", []string{"--pop-on"}, env(good()), runReq, io.Discard); err == nil {
			t.Fatal("--pop-on without a value accepted")
		}
	})
	t.Run("AgentsFile", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "agents")
		os.WriteFile(f, []byte("# watched\n"+b1+"\n\n"+b2+"\n"), 0o600)
		c, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", "", "GENESYS_AGENTS_FILE", f)), runReq, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := c.Agents(); strings.Join(a, ",") != b1+","+b2 {
			t.Fatalf("agents from file %v", a)
		}
	})

	// The bad id is named by its line in the file, comments and blank
	// lines counted, so that an editor's "go to line" finds it.
	t.Run("AgentsFileNamesTheLine", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "agents")
		os.WriteFile(f, []byte("# watched agents\n\n"+b1+"\njane.doe\n"), 0o600)
		_, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", "", "GENESYS_AGENTS_FILE", f)), runReq, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `GENESYS_AGENTS_FILE: line 4: "jane.doe"`) {
			t.Fatalf("got %v, want the error to name line 4", err)
		}
	})
	// A wrong path (a log, a dump) is refused with a message naming the
	// file, before the daemon reads it whole: an agents file of the most
	// agents one instance watches is 370 KB.
	t.Run("AgentsFileTooLarge", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "huge.log")
		os.WriteFile(f, []byte(strings.Repeat(b1+"\n", maxAgentsFile/len(b1))), 0o600)
		_, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", "", "GENESYS_AGENTS_FILE", f)), runReq, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "huge.log is larger than 4 MiB") || !strings.Contains(err.Error(), "right file") {
			t.Fatalf("got %v, want the file refused by its size", err)
		}
	})
	// The file's watcher refuses an empty file (still being written) and,
	// when it is the only source of agents, one that names no one; so
	// does the start, or the daemon would say ready watching no one of
	// the file until the watcher next read it. A file of comments only
	// beside GENESYS_AGENTS is fine.
	t.Run("AgentsFileRefusedAsTheWatcherDoes", func(t *testing.T) {
		dir := t.TempDir()
		empty, none := filepath.Join(dir, "empty"), filepath.Join(dir, "none")
		os.WriteFile(empty, nil, 0o600)
		os.WriteFile(none, []byte("# none\n"), 0o600)
		for _, tc := range []struct {
			name, file, agents, want string
		}{
			{"Empty", empty, "", "is empty (still being written?)"},
			{"EmptyBesideAgents", empty, b1, "is empty (still being written?)"},
			{"NamesNoOne", none, "", "names no agent"},
			{"NoOneBesideAgents", none, b1, ""},
		} {
			_, _, err := ParseConfig("run", nil, env(with(good(), "GENESYS_AGENTS", tc.agents, "GENESYS_AGENTS_FILE", tc.file)), runReq, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s: %v, want it accepted", tc.name, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "GENESYS_AGENTS_FILE: ") || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s: got %v, want GENESYS_AGENTS_FILE refused: %q", tc.name, err, tc.want)
			}
		}
	})
	// A boolean flag takes its value with '=': in "--pprof false" the
	// flag stands alone (true) and "false" is left over. Left-over words
	// are refused rather than dropped, so the setting is never the
	// opposite of what was written.
	t.Run("LeftOverArgument", func(t *testing.T) {
		for _, args := range [][]string{{"--pprof", "false"}, {"--allow-plaintext", "false", "--listen", "0.0.0.0:8443"}} {
			c, _, err := ParseConfig("run", args, env(good()), runReq, io.Discard)
			if err == nil {
				t.Errorf("%q accepted (pprof %v, allow plaintext %v)", args, c.PProf, c.AllowPlaintext)
				continue
			}
			if !strings.Contains(err.Error(), `"false"`) || !strings.Contains(err.Error(), "=false") {
				t.Errorf("%q: message lacks the word and the fix:\n%v", args, err)
			}
		}
	})

	bad := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the message
	}{
		{"Empty", map[string]string{}, []string{"GENESYS_REGION: required", "GENESYS_CLIENT_ID: required", "GENESYS_CLIENT_SECRET: required", "DATAVERSE_URL: required", "DATAVERSE_TENANT_ID: required", "DATAVERSE_CLIENT_ID: required", "DATAVERSE_CLIENT_SECRET or DATAVERSE_CLIENT_CERTIFICATE: one is required", "GENESYS_AGENTS, GENESYS_AGENTS_FILE or GENESYS_QUEUES"}},
		{"Duration", with(good(), "SCREENPOP_POP_DEADLINE", "2"), []string{"SCREENPOP_POP_DEADLINE", "Go duration"}},
		{"NegativeDuration", with(good(), "SCREENPOP_CACHE_TTL", "-5m"), []string{"SCREENPOP_CACHE_TTL"}},
		{"PopOn", with(good(), "SCREENPOP_POP_ON", "ringing"), []string{"SCREENPOP_POP_ON", "alerting, connected"}},
		{"Bool", with(good(), "SCREENPOP_POP_INTERNAL", "yes please"), []string{"SCREENPOP_POP_INTERNAL", "true or false"}},
		{"Listen", with(good(), "SCREENPOP_LISTEN", "8080"), []string{"SCREENPOP_LISTEN", "host:port"}},
		// A port the listen cannot take: a configuration error (exit 2)
		// naming the variable, not a start-up failure (exit 1) after
		// the data directory is made.
		{"ListenPortTooHigh", with(good(), "SCREENPOP_LISTEN", "127.0.0.1:99999"), []string{"SCREENPOP_LISTEN", "neither a number from 0 to 65535 nor a service name"}},
		{"ListenPortNotANumber", with(good(), "SCREENPOP_LISTEN", "127.0.0.1:abc"), []string{"SCREENPOP_LISTEN", "neither a number from 0 to 65535 nor a service name"}},
		{"AdminPortNegative", with(good(), "SCREENPOP_ADMIN_LISTEN", "127.0.0.1:-1"), []string{"SCREENPOP_ADMIN_LISTEN", "neither a number from 0 to 65535 nor a service name"}},
		{"NATSPortTooHigh", with(good(), "SCREENPOP_NATS_LISTEN", "127.0.0.1:70000"), []string{"SCREENPOP_NATS_LISTEN", "neither a number from 0 to 65535 nor a service name"}},
		{"PublicWithoutTLS", with(good(), "SCREENPOP_LISTEN", "0.0.0.0:8443"), []string{"SCREENPOP_LISTEN", "SCREENPOP_TLS_CERT", "SCREENPOP_ALLOW_PLAINTEXT"}},
		{"HalfTLS", with(good(), "SCREENPOP_TLS_CERT", "/x.pem"), []string{"SCREENPOP_TLS_CERT, SCREENPOP_TLS_KEY: set both"}},
		{"PublicEmbeddedNATS", with(good(), "SCREENPOP_NATS_LISTEN", "0.0.0.0:4222"), []string{"SCREENPOP_NATS_LISTEN", "no authentication", "NATS_URL"}},
		{"JWTWithoutSecret", with(good(), "SCREENPOP_AUTH", "jwt"), []string{"SCREENPOP_JWT_SECRET", "openssl rand"}},
		{"Auth", with(good(), "SCREENPOP_AUTH", "basic"), []string{"SCREENPOP_AUTH", "genesys, jwt"}},
		{"DataverseURL", with(good(), "DATAVERSE_URL", "contoso.crm.dynamics.com"), []string{"DATAVERSE_URL", "http(s) URL"}},
		{"Lookup", with(good(), "SCREENPOP_LOOKUP_PHONE", "contact"), []string{"SCREENPOP_LOOKUP_PHONE", "entity:column"}},
		{"UnknownEntity", with(good(), "SCREENPOP_LOOKUP_PHONE", "incident:telephone1"), []string{"incident", "SCREENPOP_ENTITIES"}},
		{"Entities", with(good(), "SCREENPOP_ENTITIES", "incident=incidents"), []string{"SCREENPOP_ENTITIES", "entityset/idcolumn/namecolumn"}},
		{"PhoneRegion", with(good(), "SCREENPOP_PHONE_REGION", "XX"), []string{"SCREENPOP_PHONE_REGION"}},
		{"OverrideKeys", with(good(), "SCREENPOP_OVERRIDE_KEYS", "just-one"), []string{"SCREENPOP_OVERRIDE_KEYS", "entity-key,id-key"}},
		// One attribute for both: its value would be read as the entity
		// and as the id, and no override would ever open.
		{"OverrideKeysTheSame", with(good(), "SCREENPOP_OVERRIDE_KEYS", "screenpop.id,screenpop.id"), []string{"SCREENPOP_OVERRIDE_KEYS", "two different"}},
		{"Origins", with(good(), "SCREENPOP_ALLOWED_ORIGINS", "https://contoso.crm.dynamics.com/main.aspx"), []string{"SCREENPOP_ALLOWED_ORIGINS", "not an origin"}},
		// A browser sends its page's origin whole: a pattern matches no
		// page, and every agent's socket would be refused (403) with the
		// configuration checked and started as fine.
		{"OriginWildcard", with(good(), "SCREENPOP_ALLOWED_ORIGINS", "https://*.crm4.dynamics.com"), []string{"SCREENPOP_ALLOWED_ORIGINS", `"https://*.crm4.dynamics.com" has a wildcard`, "each organization's origin"}},
		{"OriginStar", with(good(), "SCREENPOP_ALLOWED_ORIGINS", "https://contoso.crm4.dynamics.com,*"), []string{"SCREENPOP_ALLOWED_ORIGINS", `"*"`}},
		{"OriginUserinfo", with(good(), "SCREENPOP_ALLOWED_ORIGINS", "https://user@contoso.crm4.dynamics.com"), []string{"SCREENPOP_ALLOWED_ORIGINS", "not an origin"}},
		{"Windows", with(good(), "SCREENPOP_FRESH_WINDOW", "5m"), []string{"SCREENPOP_FRESH_WINDOW"}},
		// An admin keeping callers' data as short as it can: refused here,
		// naming the least, not by JetStream after NATS has started.
		{"StreamMaxAgeBelowDuplicateWindow", with(good(), "SCREENPOP_STREAM_MAX_AGE", "1m"), []string{"SCREENPOP_STREAM_MAX_AGE", "at least 2m0s"}},
		{"AgentsFileMissing", with(good(), "GENESYS_AGENTS_FILE", "/nonexistent/agents"), []string{"GENESYS_AGENTS_FILE"}},
		{"AgentNotAUserID", with(good(), "GENESYS_AGENTS", "alice"), []string{"GENESYS_AGENTS", `"alice" is not a Genesys user id`}},
		{"QueueNotAnID", with(good(), "GENESYS_QUEUES", "sales"), []string{"GENESYS_QUEUES", `"sales" is not a Genesys queue id`}},
		{"StreamName", with(good(), "SCREENPOP_STREAM", "a.b"), []string{"SCREENPOP_STREAM"}},
		{"Concurrency", with(good(), "SCREENPOP_DATAVERSE_CONCURRENCY", "0"), []string{"SCREENPOP_DATAVERSE_CONCURRENCY"}},
		{"LogLevel", with(good(), "LOG_LEVEL", "loud"), []string{"LOG_LEVEL"}},
		// Checked by the same functions the clients call at start, so that
		// they fail here (exit 2) and not after NATS has started.
		{"GenesysRegion", with(good(), "GENESYS_REGION", "apps.mypurecloud.ie"), []string{`GENESYS_REGION: "apps.mypurecloud.ie" is not a Genesys Cloud region domain`, "mypurecloud.ie", "https://login.mypurecloud.ie means mypurecloud.ie"}},
		{"DataverseURLWithPath", with(good(), "DATAVERSE_URL", "https://contoso.crm4.dynamics.com/main.aspx?appid=1"), []string{"DATAVERSE_URL", "without a path", "scheme and host only: https://contoso.crm4.dynamics.com"}},
		{"DataverseURLAPIPath", with(good(), "DATAVERSE_URL", "https://contoso.crm4.dynamics.com/api/data/v9.2"), []string{"DATAVERSE_URL", "scheme and host only: https://contoso.crm4.dynamics.com"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig("run", nil, env(tc.env), runReq, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%v", w, err)
				}
			}
		})
	}
	t.Run("SecretsNeverEchoed", func(t *testing.T) {
		_, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_AUTH", "jwt", "SCREENPOP_JWT_SECRET", "short-secret-xyz")), runReq, io.Discard)
		if err == nil || strings.Contains(err.Error(), "short-secret-xyz") {
			t.Fatalf("err %v", err)
		}
	})
	// "--pprof true" stops flag parsing at "true": the words after it,
	// secret flags' values among them, must not be quoted back.
	t.Run("SecretFlagsAfterAStrayWordNeverEchoed", func(t *testing.T) {
		args := []string{"--allow-plaintext", "true", "--genesys-client-secret", "g-flag-s3cr3t", "--dataverse-client-secret", "dv-flag-s3cr3t", "--jwt-secret", "jwt-flag-s3cr3t-0123456789abcdef0123"}
		_, _, err := ParseConfig("run", args, env(good()), runReq, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--allow-plaintext=false") {
			t.Fatalf("err %v, want the stray argument reported", err)
		}
		for _, s := range []string{"g-flag-s3cr3t", "dv-flag-s3cr3t", "jwt-flag-s3cr3t"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error echoes the secret %q:\n%v", s, err)
			}
		}
	})
	t.Run("DemoNeedsNothing", func(t *testing.T) {
		if _, _, err := ParseConfig("demo", nil, env(nil), Requirements{}, io.Discard); err != nil {
			t.Fatal(err)
		}
		// demo ignores the Genesys and Dataverse settings, so it does not
		// refuse them either.
		if _, _, err := ParseConfig("demo", nil, env(map[string]string{"GENESYS_REGION": "nowhere", "DATAVERSE_URL": "https://contoso.crm.dynamics.com/main.aspx"}), Requirements{}, io.Discard); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("IsSet", func(t *testing.T) {
		c, _, err := ParseConfig("run", []string{"--data-dir", "/srv/screenpop"}, env(with(good(), "SCREENPOP_POP_ON", "connected")), runReq, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for v, want := range map[string]bool{"SCREENPOP_DATA_DIR": true, "SCREENPOP_POP_ON": true, "GENESYS_REGION": true, "SCREENPOP_LISTEN": false, "SCREENPOP_STREAM": false} {
			if got := c.IsSet(v); got != want {
				t.Errorf("IsSet(%s) = %v, want %v", v, got, want)
			}
		}
	})
	t.Run("EveryVariableHasAFlag", func(t *testing.T) {
		for _, s := range settings {
			if got := flagName(s.env); strings.ContainsAny(got, "_ ") || strings.HasPrefix(got, "screenpop") {
				t.Errorf("%s -> --%s", s.env, got)
			}
		}
		if flagName("GENESYS_REGION") != "genesys-region" || flagName("SCREENPOP_POP_ON") != "pop-on" {
			t.Error("flag names differ from DESIGN.md")
		}
	})
}

func TestUnknownVariables(t *testing.T) {
	got := UnknownVariables([]string{
		"SCREENPOP_ALLOWED_ORIGIN=https://contoso.crm4.dynamics.com", // one letter short
		"SCREENPOP_ALLOWED_ORIGINS=https://contoso.crm4.dynamics.com",
		"GENESYS_REGON=mypurecloud.ie",
		"SCREENPOP_SOMETHING_ELSE=1",
		"SCREENPOP_TEST_OLD_NATS_SERVER=/bin/x", // the tests' own
		"SCREENPOPD_GOGC=200",                   // the load tool's, for the daemon's runtime
		"PATH=/usr/bin",
	})
	want := []string{
		"GENESYS_REGON is not a setting and is ignored; did you mean GENESYS_REGION?",
		"SCREENPOP_ALLOWED_ORIGIN is not a setting and is ignored; did you mean SCREENPOP_ALLOWED_ORIGINS?",
		"SCREENPOP_SOMETHING_ELSE is not a setting and is ignored; docs/configuration.md lists every setting",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

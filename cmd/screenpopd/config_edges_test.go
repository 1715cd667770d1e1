package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// SCREENPOP_STREAM_REPLICAS is 1, 3 or 5 on a cluster (configuration.md).
// A value the stream cannot have is refused at start, naming the variable
// and the fix, as every invalid value is (exit 2, before anything
// connects): not by NATS once the embedded server has started, with a hint
// about the data dir's free space.
func TestParseConfig_StreamReplicas(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"ThreeWithoutACluster", with(good(), "SCREENPOP_STREAM_REPLICAS", "3"), []string{"SCREENPOP_STREAM_REPLICAS", "NATS_URL"}},
		{"MoreThanNATSKeeps", with(good(), "SCREENPOP_STREAM_REPLICAS", "7", "NATS_URL", "nats://nats1.example.com:4222"), []string{"SCREENPOP_STREAM_REPLICAS", "5"}},
		{"Billions", with(good(), "SCREENPOP_STREAM_REPLICAS", "2000000000", "NATS_URL", "nats://nats1.example.com:4222"), []string{"SCREENPOP_STREAM_REPLICAS"}},
	} {
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
	// On a cluster 3 is what docs/deploy sets.
	if _, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_STREAM_REPLICAS", "3", "NATS_URL", "nats://nats1.example.com:4222")), runReq, io.Discard); err != nil {
		t.Fatalf("3 replicas on a cluster refused: %v", err)
	}
}

// The same in use: the daemon with the built-in server and 3 replicas
// starts NATS, then stops with NATS's words and a hint about the disk,
// naming no variable to change.
func TestDaemon_StreamReplicasWithoutAClusterNamesTheVariable(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_STREAM_REPLICAS"] = "3"
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		if strings.Contains(err.Error(), "SCREENPOP_STREAM_REPLICAS") {
			return // refused at start, as every invalid value
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := StartDemo(ctx, cfg, zerolog.Nop(), false)
	if d != nil {
		defer d.Close()
	}
	if err == nil {
		t.Fatal("started with 3 replicas on the built-in server")
	}
	if !strings.Contains(err.Error(), "SCREENPOP_STREAM_REPLICAS") || strings.Contains(err.Error(), "free space") {
		t.Errorf("the error does not name SCREENPOP_STREAM_REPLICAS (or blames the disk):\n%v", err)
	}
}

// An empty lookup list turns the lookups off only when said so (none);
// an empty or blank value is unset and gives the default (configuration.md,
// "Lookups"), or is refused. Phone lookups silently off make every call
// pop create, for callers who are in Dataverse.
func TestParseConfig_BlankLookupIsNotOff(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"EmptyFlag", []string{"--lookup-phone="}, good()},
		{"Blank", nil, with(good(), "SCREENPOP_LOOKUP_PHONE", " ")},
		{"Separators", nil, with(good(), "SCREENPOP_LOOKUP_PHONE", ";")},
		{"EmptyEmailFlag", []string{"--lookup-email="}, good()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := ParseConfig("run", tc.args, env(tc.env), runReq, io.Discard)
			if err != nil {
				if !strings.Contains(err.Error(), "SCREENPOP_LOOKUP_") {
					t.Errorf("refused without naming the variable:\n%v", err)
				}
				return
			}
			if len(c.LookupPhone) == 0 || len(c.LookupEmail) == 0 {
				t.Errorf("accepted with lookups off (phone %v, email %v), without none having been written", c.LookupPhone, c.LookupEmail)
			}
		})
	}
}

// An ended leg's marker lives the longer of 15 minutes and twice
// SCREENPOP_MAX_EVENT_AGE (configuration.md), for any value the setting
// takes: twice a long one does not wrap around to less.
func TestMarkerGrace_LongMaxEventAge(t *testing.T) {
	c, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_MAX_EVENT_AGE", "2000000h")), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		if strings.Contains(err.Error(), "SCREENPOP_MAX_EVENT_AGE") {
			return // refused
		}
		t.Fatal(err)
	}
	if got := markerGrace(c.MaxEventAge); got < c.MaxEventAge {
		t.Errorf("markerGrace(%v) = %v: an ended leg's marker goes while its events can still pop", c.MaxEventAge, got)
	}
}

// The resolver's ack wait is the pop deadline plus 5 s (configuration.md),
// for any deadline the setting takes: not 10 s for a deadline so long that
// adding 5 s wraps around.
func TestResolverAckWait_LongPopDeadline(t *testing.T) {
	c, _, err := ParseConfig("run", nil, env(with(good(), "SCREENPOP_POP_DEADLINE", "2562047h47m16s")), Requirements{Genesys: true, Dataverse: true}, io.Discard)
	if err != nil {
		if strings.Contains(err.Error(), "SCREENPOP_POP_DEADLINE") {
			return // refused
		}
		t.Fatal(err)
	}
	if got := resolverAckWait(c.PopDeadline); got < c.PopDeadline {
		t.Errorf("resolverAckWait(%v) = %v: shorter than the deadline", c.PopDeadline, got)
	}
	if got := resolverPublishTimeout(c.PopDeadline); got <= 0 || got > 10*time.Second {
		t.Errorf("resolverPublishTimeout(%v) = %v", c.PopDeadline, got)
	}
}

// GENESYS_QUEUE_REFRESH=5ms, a slip for 5m, is a positive Go duration and
// so accepted; the daemon then reads every queue's members again and again
// for as long as it runs, spending the OAuth client's whole request budget
// (300 a minute, shared with the channel, subscription and reconciliation
// requests a pop waits for) on queue pages. Refused at start instead,
// naming the variable, or read no more often than a refresh can mean.
func TestDaemon_QueueRefreshTypoDoesNotSpin(t *testing.T) {
	vars := testEnv(t)
	vars["GENESYS_QUEUE_REFRESH"] = "5ms"
	if _, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard); err != nil {
		if strings.Contains(err.Error(), "GENESYS_QUEUE_REFRESH") {
			return // refused at start
		}
		t.Fatal(err)
	}
	d, cfg, logs := demoEmulators(t, vars)
	const queue = "q-refresh"
	d.Genesys.SetQueueMembers(queue, []string{demoAgents[1].ID})
	cfg.GenesysQueues = []string{queue}
	runDaemon(t, cfg, logs)
	const members = "/api/v2/routing/queues/" + queue + "/members"
	first := d.Genesys.CountRequests("GET", members)
	time.Sleep(3 * time.Second)
	if n := d.Genesys.CountRequests("GET", members) - first; n > 2 {
		t.Errorf("GENESYS_QUEUE_REFRESH=5ms accepted, and the queue's members were read %d times in 3s", n)
	}
}

// --data-dir= (an empty flag, a systemd unit's --data-dir=${DIR} with DIR
// unset) or a blank SCREENPOP_DATA_DIR is accepted, and run then stops
// after the configuration was found valid, with exit code 1 and
// "SCREENPOP_DATA_DIR : mkdir : no such file or directory", which says
// nothing of what to do. Refused with the configuration instead.
func TestParseConfig_BlankDataDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"EmptyFlag", []string{"--data-dir="}, good()},
		{"Blank", nil, with(good(), "SCREENPOP_DATA_DIR", "  ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			code := run(context.Background(), append([]string{"run"}, tc.args...), env(with(tc.env, "SCREENPOP_LISTEN", "127.0.0.1:0", "SCREENPOP_ADMIN_LISTEN", "off", "SCREENPOP_NATS_LISTEN", "off")), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "SCREENPOP_DATA_DIR") || strings.Contains(stderr.String(), "mkdir : ") {
				t.Errorf("exit %d, want 2 with SCREENPOP_DATA_DIR refused as configuration:\n%s", code, stderr.String())
			}
		})
	}
}

// NATS_CREDS and NATS_TLS_* are for external NATS (NATS_URL). Set without
// NATS_URL (a line of the env file forgotten or commented out), they are
// dropped without a word and the daemon runs the built-in server: the
// deployment's events and pops stay in this process, where neither the
// other instance of a pair nor the services reading the cluster see them.
func TestParseConfig_NATSCredentialsWithoutNATSURL(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	for _, v := range []string{"NATS_CREDS", "NATS_TLS_CA"} {
		_, _, err := ParseConfig("run", nil, env(with(good(), v, "/etc/screenpop/nats.file")), runReq, io.Discard)
		if err == nil || !strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), "NATS_URL") {
			t.Errorf("%s without NATS_URL: got %v, want it refused naming %s and NATS_URL", v, err, v)
		}
	}
	if _, _, err := ParseConfig("run", nil, env(with(good(), "NATS_CREDS", "/etc/screenpop/nats.creds", "NATS_URL", "nats://nats1.example.com:4222")), runReq, io.Discard); err != nil {
		t.Errorf("NATS_CREDS with NATS_URL refused: %v", err)
	}
}

// DATAVERSE_APP_ID is the app's appmoduleid, a GUID (dataverse.md, step
// 5), put in every pop's link as appid=. The app's uniquename, the other
// column of the query the docs give, is accepted as well, and every pop
// then links to main.aspx?appid=msdynce_CustomerService&…, which opens in
// no app.
func TestParseConfig_DataverseAppIDIsAGUID(t *testing.T) {
	runReq := Requirements{Genesys: true, Dataverse: true}
	_, _, err := ParseConfig("run", nil, env(with(good(), "DATAVERSE_APP_ID", "msdynce_CustomerService")), runReq, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATAVERSE_APP_ID") {
		t.Errorf("an app's uniquename as DATAVERSE_APP_ID: got %v, want it refused naming DATAVERSE_APP_ID", err)
	}
	c, _, err := ParseConfig("run", nil, env(with(good(), "DATAVERSE_APP_ID", " 7B4F2C6A-0000-4000-8000-000000000001 ")), runReq, io.Discard)
	if err != nil || !strings.EqualFold(c.DataverseAppID, "7b4f2c6a-0000-4000-8000-000000000001") {
		t.Errorf("a GUID app id: %v, %q", err, c.DataverseAppID)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"

	pc "github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
)

// BenchmarkDecodeSDKModel is the reference point for bridge's
// BenchmarkNormalize: decoding the same realistic snapshot (frame 3 of
// inbound_call, ~4.4 KB) into the SDK's topic model, as a normalizer built on
// the SDK would.
func BenchmarkDecodeSDKModel(b *testing.B) {
	raw, err := os.ReadFile("../../../bridge/testdata/snapshots/inbound_call.json")
	if err != nil {
		b.Fatal(err)
	}
	var frames []struct {
		EventBody json.RawMessage `json:"eventBody"`
	}
	if err := json.Unmarshal(raw, &frames); err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	if err := json.Compact(&body, frames[2].EventBody); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		var c pc.Conversationeventtopicconversation
		if err := json.Unmarshal(body.Bytes(), &c); err != nil || c.Id == nil {
			b.Fatal(err)
		}
	}
}

// TestFixturesUpToDate regenerates the fixtures into a temporary directory
// and compares them with the committed ones, so a change to a case that was
// not regenerated (or a hand edit of a generated file) fails.
func TestFixturesUpToDate(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		want, err := os.ReadFile(dir + "/" + c.name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile("../../../bridge/testdata/snapshots/" + c.name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("bridge/testdata/snapshots/%s.json is stale: run go run ./notifications/internal/fixturegen", c.name)
		}
	}
}

package bridge_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// TestNormalizer_PhoneCacheDoesNotKeepLongAddresses: the normalizer's
// phone cache is bounded in entries (maxPhoneCache, 4096), but it kept
// every raw address it was asked about whole, however long. A web chat
// visitor types their phone number into the chat form (context.phoneNumber,
// participant data Genesys relays on every frame): each chat with a long
// made-up "number" left that string in the cache, so 4096 chats of 16 KB
// numbers held 64 MB until the cache was cleared, up to 4096 whole frames
// (4 MB each) in the worst case. ParsePhone refuses anything longer than
// maxPhoneInput (128 bytes after trimming) at once, so caching such an
// input saves nothing.
func TestNormalizer_PhoneCacheDoesNotKeepLongAddresses(t *testing.T) {
	const (
		chats = 2000
		size  = 16 << 10 // bytes of each made-up number
	)
	n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const phoneMark, convMark = "PHONE-MARK", "c0c0c0c0-0000-4000-8000-000000000013"
	tmpl := fixtureSnapshot(t, "web_chat", func(parts []any) {
		byPurpose(t, parts, "customer")["attributes"].(map[string]any)["context.phoneNumber"] = phoneMark
	})
	if !bytes.Contains(tmpl.Body, []byte(convMark)) || !bytes.Contains(tmpl.Body, []byte(phoneMark)) {
		t.Fatal("fixture changed: no conversation id or phone to replace")
	}
	pad := strings.Repeat("9", size)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for i := range chats {
		conv := fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", i)
		body := bytes.Replace(tmpl.Body, []byte(convMark), []byte(conv), -1)
		body = bytes.Replace(body, []byte(phoneMark), []byte(fmt.Sprintf("%d%s", i, pad)), 1)
		s := tmpl
		s.Body = body
		if evs := n.Normalize(s); len(evs) != 1 {
			t.Fatalf("chat %d: %d events, want 1 (alerting)", i, len(evs))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapAlloc) - int64(before)
	runtime.KeepAlive(n)
	// The numbers were 2,000 x 16 KB = 32 MB; a cache of real numbers
	// holds a few dozen bytes an entry.
	if kept := n.PhoneCacheBytes(); kept > chats*300 {
		t.Fatalf("the phone cache keeps %d KB of raw addresses after %d chats with %d KB phone numbers (heap grew %d KB): it keeps inputs ParsePhone refuses outright",
			kept>>10, chats, size>>10, grew>>10)
	}
	t.Logf("heap grew %d KB; %d conversations remembered", grew>>10, n.Status().Conversations)
}

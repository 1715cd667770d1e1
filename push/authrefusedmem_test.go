package push

import (
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A refused token is remembered for refusedTTL, up to maxRefused of them,
// so that a flood of bogus hellos costs little: the refusal keeps why, but
// not a copy of what the hello carried. A token's claims are the
// client's to write (one the JWT parser cannot read, an exp of 5,900
// digits, is quoted whole in its error): 8 KB hellos from a page nobody
// signed in must not be held by the thousand.
func TestAuthCache_RefusalsOfBigBogusTokensKeepLittle(t *testing.T) {
	e := newEnv(t, Config{}, newMemStore(), nil)
	const n = 2000
	exp := strings.Repeat("9", 5900)
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	tokens := make([]string, n)
	for i := range tokens {
		claims := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"sub":"agent-a","n":%d,"exp":%s}`, i, exp))
		tokens[i] = header + "." + claims + ".c2ln"
		if len(tokens[i]) > maxToken {
			t.Fatalf("token of %d bytes, over maxToken", len(tokens[i]))
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tok := range tokens {
		if _, _, err := e.srv.auth.check(t.Context(), tok, time.Now()); err == nil {
			t.Fatal("a bogus token was accepted")
		}
	}
	tokens = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	e.srv.auth.mu.Lock()
	kept := len(e.srv.auth.refused)
	var longest int
	for _, r := range e.srv.auth.refused {
		longest = max(longest, len(r.err.Error()))
	}
	e.srv.auth.mu.Unlock()
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d refusals kept, the longest reason %d bytes; heap grew %d KB", kept, longest, grew>>10)
	if longest > 1024 {
		t.Errorf("a refusal keeps a reason of %d bytes, the client's own text", longest)
	}
	if grew > 8<<20 {
		t.Errorf("%d refused tokens hold %d MB of heap for refusedTTL (%d MB at maxRefused)", n, grew>>20, grew*maxRefused/n>>20)
	}
}

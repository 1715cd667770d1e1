package statuslabel

import "testing"

func TestOf(t *testing.T) {
	for code, want := range map[int]string{
		200: "200", 401: "401", 429: "429", 503: "503",
		499: "4xx", 520: "5xx", 299: "2xx",
		0: "other", -1: "other", 600: "other", 999: "other", 1234567: "other",
	} {
		if got := Of(code); got != want {
			t.Errorf("Of(%d) = %q, want %q", code, got, want)
		}
	}
	seen := map[string]bool{}
	for code := -1000; code < 100000; code++ {
		seen[Of(code)] = true
	}
	if len(seen) > 70 {
		t.Fatalf("%d distinct labels, want at most 70", len(seen))
	}
}

// The bounds of the registered range: 100 and 599 are statuses an
// upstream may answer, 99 and 600 are not.
func TestOf_Bounds(t *testing.T) {
	for code, want := range map[int]string{99: "other", 100: "100", 101: "101", 599: "5xx", 600: "other"} {
		if got := Of(code); got != want {
			t.Errorf("Of(%d) = %q, want %q", code, got, want)
		}
	}
}

package identity_test

import (
	"errors"
	"testing"

	"github.com/agate-pdp/agate/identity"
)

func TestSame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"alice@example.com", "alice@example.com", true},
		{"alice@example.com", "Alice@Example.com", true},
		{"alice@example.com", "ALICE@EXAMPLE.COM", true},
		{"alice@example.com", "ａｌｉｃｅ@example.com", true}, // fullwidth
		{"Finance Bot", "finance bot", true},
		{"Finance Bot", "Finance  Bot", true},
		{"straße", "STRASSE", false}, // lower-casing, not full folding, as RFC 8266 says
		{"alice@example.com", "bob@example.com", false},
		{"alice@example.com", " alice@example.com", false},
		{"alice@example.com", "alice@example.com ", false},
		{"alice@example.com", "alice@example.com\u200b", false},
		{"", "", false},
	} {
		if got := identity.Same(tc.a, tc.b); got != tc.same {
			t.Errorf("Same(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"agent-7", nil},
		{"alice@example.com", nil},
		{"Finance Bot", nil},
		{"spiffe://example.org/dispatcher", nil},
		{"", identity.ErrEmpty},
		{" alice", identity.ErrSpace},
		{"alice\t", identity.ErrSpace},
		{"al\x00ice", identity.ErrControl},
		{"al\u202eice", identity.ErrControl},
		{"al\xffice", identity.ErrUTF8},
		{"alice\u2800", identity.ErrControl},             // braille blank
		{"al\u3164ice", identity.ErrControl},             // Hangul filler
		{"alice\ufe0f@example.com", identity.ErrControl}, // variation selector
		{string(make([]byte, 257)), identity.ErrTooLong},
	} {
		if err := identity.Check(tc.id); !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"alice@example.com", "Finance Bot", "ＡＬＩＣＥ", "\xff", " x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := identity.Key(s)
		if err != nil {
			return
		}
		// The key is a fixed point: canonicalizing twice changes nothing.
		if k2, err := identity.Key(k); err != nil || k2 != k {
			t.Fatalf("Key(%q) = %q, Key of that = %q, %v", s, k, k2, err)
		}
	})
}

func TestConfusable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"alice@example.com", "ALICE@example.com", true},
		{"alice@example.com", "\u0430lice@example.com", true}, // Cyrillic а
		{"alice@example.com", "alice@ex\u0430mple.com", true},
		{"paypal", "p\u0430yp\u0430l", true},
		{"alice@example.com", "bob@example.com", false},
		{"alice@example.com", "alice@example.com\u2800", false}, // refused by Check, so confusable with nothing
	} {
		if got := identity.Confusable(tc.a, tc.b); got != tc.want {
			t.Errorf("Confusable(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

package thoonk

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateFeedName(t *testing.T) {
	for _, ok := range []string{"news", "team:353:member:12:tasks", "a.b/c d", "ünïcödé", "x?[y]", "a*b", strings.Repeat("n", MaxFeedNameLen)} {
		if err := ValidateFeedName(ok); err != nil {
			t.Errorf("ValidateFeedName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a\x00b", "a\r\nb", "tab\there", "del\x7f", "c1\u0085", "\xff", "rtl\u202eevil", "ls\u2028", strings.Repeat("n", MaxFeedNameLen+1)} {
		if err := ValidateFeedName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateFeedName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if len(a) != 32 || a == b || a[12] != '4' || !strings.ContainsRune("89ab", rune(a[16])) {
		t.Fatalf("ids %q %q are not random v4 uuids in hex", a, b)
	}
}

// checkNameProperties holds for anything the validators accept: the value
// can be put in a NUL-separated payload and a single protocol line.
func checkNameProperties(t *testing.T, s string, err error, max int) {
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		return
	}
	if s == "" || len(s) > max || !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\n") {
		t.Fatalf("accepted %q", s)
	}
}

func FuzzValidateFeedName(f *testing.F) {
	for _, s := range []string{"news", "a:b", "", "a*", "\x00", "é", "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateFeedName(s)
		checkNameProperties(t, s, err, MaxFeedNameLen)
	})
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"1", "abc", "", "\n", "\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkNameProperties(t, s, ValidateID(s), MaxIDLen)
	})
}

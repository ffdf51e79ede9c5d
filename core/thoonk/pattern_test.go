package thoonk

import (
	"errors"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"team:*:tasks", "team:353:tasks", true},
		{"team:*:tasks", "team:353:member:12:tasks", true},
		{"team:*:tasks", "team:353:notes", false},
		{"*", "anything/with/slashes", true},
		{"news", "news", true},
		{"news", "news2", false},
		{"n?ws", "news", true},
		{"n?ws", "nws", false},
		{"?", "é", true},
		{"[abc]x", "bx", true},
		{"[^abc]x", "bx", false},
		{"[^abc]x", "dx", true},
		{"[a-c]x", "cx", true},
		{"[c-a]x", "bx", true},
		{"[]]x", "]x", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"a*", "", false},
		{"**", "", true},
	} {
		p, err := CompilePattern(tc.glob)
		if err != nil {
			t.Fatalf("CompilePattern(%q): %v", tc.glob, err)
		}
		if got := p.Match(tc.name); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
	if (Pattern{}).Match("") {
		t.Error("the zero pattern matched")
	}
	for _, bad := range []string{"", "[abc", `trailing\`, "\xff"} {
		if _, err := CompilePattern(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CompilePattern(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if !MustPattern("news").Literal() || MustPattern("n*").Literal() {
		t.Error("Literal() is wrong")
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{{"team:*:tasks", "team:1:tasks"}, {"[a-z]?", "b!"}, {`\[x`, "[x"}, {"*[^]]*", "a]b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, name string) {
		p, err := CompilePattern(glob)
		if err != nil {
			return
		}
		_ = p.Match(name) // never panics, always terminates
		if p.Literal() && !p.Match(glob) {
			t.Fatalf("literal %q does not match itself", glob)
		}
		if lit, err := CompilePattern(escapeGlob(name)); err == nil && !lit.Match(name) {
			t.Fatalf("escaped %q does not match itself", name)
		}
		if MustPattern("*").Match(name) != true {
			t.Fatalf("* does not match %q", name)
		}
	})
}

// escapeGlob makes every character of s literal.
func escapeGlob(s string) string {
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, '\\', s[i])
	}
	return string(out)
}

package irc

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCleanText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
		want string
	}{
		{"a\r\nJOIN #x\rb\nc", false, "a\nJOIN #x\nb\nc"},
		{"nul\x00bell\x07del\x7fc1\u0085end", false, "nulbelldelc1end"},
		{"\x01ACTION spoof\x01", false, "ACTION spoof"},
		{"tab\there", false, "tab here"},
		{"\x02bold\x02 \x0304,12red\x03 \x03,5x \x0399 \x04ff00aahex\x0f", false, "bold red ,5x  hex"},
		{"\x02bold\x02 \x0304red", true, "\x02bold\x02 \x0304red"},
		{"caf\xe9 na\xefve", false, "café naïve"}, // Latin-1 bytes
		{"ok \xc3\xa9 \xff", false, "ok é ÿ"},     // valid UTF-8 kept, 0xff repaired
		{"\u2028sep\u2029", false, "\nsep\n"},
		{"user \u202egnp.exe", false, "user gnp.exe"},             // bidi override
		{"a\u2066b\u2069c\u200bd\u00ade\ufefff", false, "abcdef"}, // isolates, zero width, soft hyphen, BOM
		{"tag\U000E0041\U000E0042s", false, "tags"},               // invisible tag characters
		{"\U0001F468\u200D\U0001F469\u200D\U0001F467 family", false, "\U0001F468\u200D\U0001F469\u200D\U0001F467 family"},
		{"\U0001F3F3\uFE0F\u200D\U0001F308 \U0001F9D1\U0001F3FD\u200D\U0001F4BB", false, "\U0001F3F3\uFE0F\u200D\U0001F308 \U0001F9D1\U0001F3FD\u200D\U0001F4BB"},
		{"a\u200db \U0001F468\u200d x\u200d\U0001F469", false, "ab \U0001F468 x\U0001F469"}, // joiners outside emoji sequences
	} {
		if got := cleanText(tc.in, tc.keep); got != tc.want {
			t.Errorf("cleanText(%q, %v) = %q, want %q", tc.in, tc.keep, got, tc.want)
		}
	}
}

// texts extracts the trailing texts of built lines.
func texts(t *testing.T, lines []string, head string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		body, ok := strings.CutPrefix(l, head+" :")
		if !ok || !strings.HasSuffix(body, "\r\n") {
			t.Fatalf("line %q does not start with %q or end with CR LF", l, head)
		}
		out = append(out, strings.TrimSuffix(body, "\r\n"))
	}
	return out
}

func TestBuildLinesSplits(t *testing.T) {
	w := wire{prefixLen: len(":feedbot!~feedbridge@host.example.org "), maxLines: 100}
	long := strings.Repeat("word ", 300)
	lines, err := w.buildLines("PRIVMSG", []string{"#news"}, long, "")
	if err != nil {
		t.Fatal(err)
	}
	got := texts(t, lines, "PRIVMSG #news")
	if strings.Join(got, " ") != strings.TrimSpace(long) {
		t.Errorf("word split lost text: %q", got)
	}
	for _, l := range lines {
		if n := w.prefixLen + len(l); n > maxLine {
			t.Errorf("relayed line of %d bytes", n)
		}
	}
	for _, g := range got {
		if g == "" || g[0] == ' ' || g[len(g)-1] == ' ' {
			t.Errorf("split piece %q starts or ends with a space", g)
		}
	}

	// A word longer than a line is cut at rune boundaries: nothing lost,
	// no broken UTF-8.
	word := strings.Repeat("ü€😀", 200)
	lines, _ = w.buildLines("NOTICE", []string{"alice"}, word, "")
	got = texts(t, lines, "NOTICE alice")
	if strings.Join(got, "") != word {
		t.Error("rune split lost text")
	}
	for _, g := range got {
		if !utf8.ValidString(g) {
			t.Errorf("invalid UTF-8 piece %q", g)
		}
	}

	// Line breaks become separate lines; blank lines disappear.
	lines, _ = w.buildLines("PRIVMSG", []string{"#news"}, "one\r\n\r\n  \ntwo\rthree", "")
	if got := texts(t, lines, "PRIVMSG #news"); strings.Join(got, "|") != "one|two|three" {
		t.Errorf("paragraphs = %q", got)
	}
}

func TestBuildLinesCap(t *testing.T) {
	w := wire{prefixLen: 60, maxLines: 3}
	long := strings.Repeat("abcdefgh ", 400)
	lines, err := w.buildLines("PRIVMSG", []string{"#c"}, long, "https://feeds.example.org/v1/feeds/x/items/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want the cap of 3", len(lines))
	}
	last := strings.TrimSuffix(lines[2], "\r\n")
	if !strings.Contains(last, " … (+") || !strings.HasSuffix(last, " more) https://feeds.example.org/v1/feeds/x/items/1") {
		t.Errorf("last line %q lacks the cap suffix and link", last)
	}
	// A link that is not a clean URL is left out.
	lines, _ = w.buildLines("PRIVMSG", []string{"#c"}, long, "javascript:alert(1)")
	if last := lines[2]; strings.Contains(last, "javascript") || !strings.HasSuffix(last, " more)\r\n") {
		t.Errorf("last line %q", last)
	}
}

func TestBuildLinesRefuses(t *testing.T) {
	w := wire{prefixLen: 60, maxLines: 3}
	for _, params := range [][]string{{"#a b"}, {":x"}, {""}, {"#a\r\nQUIT"}, {"#a\x00"}} {
		if _, err := w.buildLines("PRIVMSG", params, "hi", ""); err == nil {
			t.Errorf("params %q accepted", params)
		}
	}
	if _, err := w.buildLines("JOIN", []string{strings.Repeat("#x", 300)}, "", ""); err == nil {
		t.Error("an over-long JOIN was accepted")
	}
	// Non-message text is one line: breaks become spaces.
	lines, err := w.buildLines("QUIT", nil, "bye\r\nJOIN #x", "")
	if err != nil || len(lines) != 1 || lines[0] != "QUIT :bye JOIN #x\r\n" {
		t.Errorf("QUIT = %q, %v", lines, err)
	}
}

// FuzzBuildLines checks the line builder's promises on any text: no line
// carries CR, LF (but its end), NUL or \x01; none exceeds 512 bytes with
// the prefix; every line is valid UTF-8; no visible text is lost below the
// cap; and a built line's text builds to itself (never split twice).
func FuzzBuildLines(f *testing.F) {
	for _, s := range []string{"", "hello", "a\r\nJOIN #evil", "\x01PING\x01", strings.Repeat("é", 700),
		strings.Repeat("long-word", 100) + " tail", "\x0304,05c\x02b", "caf\xe9", "😀 " + strings.Repeat("x ", 400),
		"\u202eevil\u202c", strings.Repeat("\U0001F468\u200D\U0001F469\u200D\U0001F467", 60), "a\u200d\u200d\U0001F469"} {
		f.Add(s, uint8(60), false, uint8(4))
	}
	f.Fuzz(func(t *testing.T, text string, prefix uint8, keep bool, maxLines uint8) {
		w := wire{prefixLen: 1 + int(prefix)%160, keepFormatting: keep, maxLines: 1 + int(maxLines)%8}
		lines, err := w.buildLines("PRIVMSG", []string{"#chan"}, text, "https://example.org/i/1")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range lines {
			body := strings.TrimSuffix(l, "\r\n")
			if strings.ContainsAny(body, "\r\n\x00\x01") || !strings.HasSuffix(l, "\r\n") {
				t.Fatalf("line %q", l)
			}
			if w.prefixLen+len(l) > maxLine {
				t.Fatalf("relayed line of %d bytes: %q", w.prefixLen+len(l), l)
			}
			if !utf8.ValidString(l) {
				t.Fatalf("invalid UTF-8 %q", l)
			}
			if i := strings.IndexFunc(body, func(r rune) bool { return unicode.Is(unicode.Cf, r) && r != zwj }); i >= 0 {
				t.Fatalf("invisible format character at %d in %q", i, l)
			}
			text, _ := strings.CutPrefix(body, "PRIVMSG #chan :")
			got = append(got, text)
		}
		if len(lines) > w.maxLines {
			t.Fatalf("%d lines over the cap of %d", len(lines), w.maxLines)
		}
		visible := func(s string) string {
			return strings.Map(func(r rune) rune {
				if r == ' ' || r == '\n' {
					return -1
				}
				return r
			}, s)
		}
		capped := len(got) > 0 && strings.Contains(got[len(got)-1], " … (+")
		if !capped && visible(strings.Join(got, "")) != visible(cleanText(text, keep)) {
			t.Fatalf("visible text lost: %q -> %q", cleanText(text, keep), got)
		}
		if !capped {
			for _, g := range got {
				again, err := w.buildLines("PRIVMSG", []string{"#chan"}, g, "")
				if err != nil || len(again) != 1 || again[0] != "PRIVMSG #chan :"+g+"\r\n" {
					t.Fatalf("%q split again into %q", g, again)
				}
			}
		}
	})
}

// FuzzCleanText: cleaned text is valid UTF-8 without controls (but line
// breaks) or invisible format characters, except joiners that stay inside
// an emoji sequence; cleaning it again changes nothing.
func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"", "plain", "\u202eevil", "\U0001F468\u200D\U0001F469", "x\u200d", "\u200d\U0001F469", "\U000E0067\U000E007F", "\xff\u200b"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, keep bool) {
		c := cleanText(s, keep)
		if !utf8.ValidString(c) {
			t.Fatalf("%q -> invalid UTF-8 %q", s, c)
		}
		for i, r := range c {
			if unicode.Is(unicode.Cf, r) && (r != zwj || !emojiJoiners(c)[i]) || r < 0x20 && r != '\n' && !(keep && isFormatting(r)) {
				t.Fatalf("%q -> %q keeps %U at %d", s, c, r, i)
			}
		}
		if again := cleanText(c, keep); again != c {
			t.Fatalf("%q -> %q -> %q", s, c, again)
		}
	})
}

func TestCasemap(t *testing.T) {
	if got := casemap("rfc1459").fold("#Foo[]\\~"); got != "#foo{}|^" {
		t.Errorf("rfc1459 fold = %q", got)
	}
	if got := casemap("ascii").fold("#Foo[]"); got != "#foo[]" {
		t.Errorf("ascii fold = %q", got)
	}
	if got := casemap("strict-rfc1459").fold("A~"); got != "a~" {
		t.Errorf("strict fold = %q", got)
	}
}

func TestChannelNames(t *testing.T) {
	for _, bad := range []string{"news", "#a b", "#a,b", "#a:b", "#a\x07", "#" + strings.Repeat("x", 60), "#\xff"} {
		if validChannel(bad, "#&", 50) == nil {
			t.Errorf("validChannel(%q) accepted", bad)
		}
	}
	if err := validChannel("#ops-é", "#&", 50); err != nil {
		t.Error(err)
	}
	for feed, want := range map[string]string{
		"team:353:member:12:tasks": "#feed-team-353-member-12-tasks",
		"News Feed, Ünïcode!":      "#feed-news-feed-n-code",
		"::::":                     "",
		strings.Repeat("a", 80):    "#feed-" + strings.Repeat("a", 44),
	} {
		if got := autoChannel("#feed-", feed, 50); got != want {
			t.Errorf("autoChannel(%q) = %q, want %q", feed, got, want)
		}
		if got := autoChannel("#feed-", feed, 50); got != "" && validChannel(got, "#", 50) != nil {
			t.Errorf("autoChannel(%q) = %q is not a valid channel", feed, got)
		}
	}
}

// FuzzAutoChannel: any feed name gives a valid channel name or none.
func FuzzAutoChannel(f *testing.F) {
	for _, s := range []string{"news", "a b,c:d\x07", "日本語", "-x-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, feed string) {
		if got := autoChannel("#feed-", feed, 50); got != "" && validChannel(got, "#", 50) != nil {
			t.Fatalf("autoChannel(%q) = %q", feed, got)
		}
	})
}

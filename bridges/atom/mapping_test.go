package atom

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func testMapping(t testing.TB) *Mapping {
	t.Helper()
	return newBridge(t, `mappings:
  - feeds: ["*"]
    title: meta.headline
    summary: teaser
    content: body
    content_type: html
    author: by
    link: url
    updated: edited
    published: posted
    categories: tags`).cfg.mappingFor("x")
}

func TestMappingReadsEveryField(t *testing.T) {
	e := testMapping(t).apply([]byte(`{"meta":{"headline":"  Big\n news  "},"teaser":"short","body":"<p>long</p>",
		"by":{"name":"Ann","email":"ann@example.org","uri":"https://ann.example.org"},"url":"https://example.org/1",
		"edited":"2025-03-04T05:06:07Z","posted":1700000000,"tags":["go","feeds","go",""]}`), 1000)
	want := entry{title: "Big news", summary: "short", content: "<p>long</p>", html: true,
		author: Person{Name: "Ann", Email: "ann@example.org", URI: "https://ann.example.org"}, link: "https://example.org/1",
		updated: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), published: time.Unix(1700000000, 0).UTC(), categories: []string{"go", "feeds"}}
	if !equalEntries(e, want) {
		t.Fatalf("got  %+v\nwant %+v", e, want)
	}
}

func equalEntries(a, b entry) bool {
	return a.title == b.title && a.summary == b.summary && a.content == b.content && a.html == b.html &&
		a.author == b.author && a.link == b.link && a.updated.Equal(b.updated) && a.published.Equal(b.published) &&
		strings.Join(a.categories, "\x00") == strings.Join(b.categories, "\x00")
}

func TestMappingDefaultsAndRefusals(t *testing.T) {
	m := testMapping(t)
	cases := []struct {
		name string
		data string
		want entry
	}{
		{"text: title from the first line", "\n\n  First line  \nsecond", entry{title: "First line", content: "\n\n  First line  \nsecond"}},
		{"JSON without the mapped parts is shown whole", `{"other":1}`, entry{title: `{"other":1}`, content: `{"other":1}`}},
		{"a JSON array is text", `["a"]`, entry{title: `["a"]`, content: `["a"]`}},
		{"unsafe links and bad values are dropped", `{"body":"x","url":"javascript:alert(1)","by":{"email":"nope"},"edited":"yesterday","tags":7}`,
			entry{content: "x", html: true}},
		{"an HTML body gives no title, the teaser does", `{"body":"<h1>T</h1>","teaser":"Teaser\nmore"}`,
			entry{title: "Teaser", summary: "Teaser\nmore", content: "<h1>T</h1>", html: true}},
		{"hostile text is cleaned", "a\x00b\x1b]]>\xff<x/>", entry{title: "ab]]>\uFFFD<x/>", content: "ab]]>\uFFFD<x/>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := m.apply([]byte(c.data), 1000); !equalEntries(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestMappingLimits(t *testing.T) {
	e := (*Mapping)(nil).apply([]byte(strings.Repeat("é", 1000)), 301)
	if len(e.content) > 301 || !strings.HasSuffix(e.content, "…") || !utf8.ValidString(e.content) {
		t.Fatalf("content not cut at %d bytes on a character boundary: %d bytes", 301, len(e.content))
	}
	e = (*Mapping)(nil).apply([]byte(strings.Repeat("é", 1000)), 1<<20)
	if n := utf8.RuneCountInString(e.title); n != maxTitleRunes || !strings.HasSuffix(e.title, "…") {
		t.Fatalf("title has %d characters, want %d", n, maxTitleRunes)
	}
}

// FuzzApply feeds arbitrary payloads through the mapping and the Atom
// encoder: the document must stay well-formed XML holding exactly one
// entry whose text reads back as the cleaned text.
func FuzzApply(f *testing.F) {
	for _, s := range []string{"", "plain", "<script>alert(1)</script>", "]]>", "\x00\x01\x7f\xff\xfe", "a\r\nb",
		`{"title":"t","body":"<b>x</b>]]>","tags":["a"],"url":"https://x"}`, `{"title":{"x":1}}`, "\uFFFE\uFFFF\U0010FFFF"} {
		f.Add([]byte(s))
	}
	m := testMapping(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		e := m.apply(data, 512)
		e.id, e.updated, e.author = "tag:x,2025:f/1", time.Unix(0, 0), Person{Name: "n"}
		body, err := encode(formatAtom, &document{id: "tag:x,2025:f", title: e.title, base: "http://x", path: "f", alternate: "http://x", author: e.author, entries: []entry{e}})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Entries []struct {
				Title   string `xml:"title"`
				Content string `xml:"content"`
			} `xml:"entry"`
		}
		if err := xml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, body)
		}
		if len(doc.Entries) != 1 || doc.Entries[0].Title != e.title || doc.Entries[0].Content != e.content {
			t.Fatalf("entry does not read back: %+v\n%s", doc.Entries, body)
		}
	})
}

// FuzzClean checks clean's promises: valid UTF-8, no character XML
// forbids, the byte limit, and idempotence.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "ok", "\x00\x08\x0b\x0c\x1f", "\xff\xfe\xfd", "é", "\uFFFE", strings.Repeat("ü", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := clean(s, 256)
		if !utf8.ValidString(c) || strings.IndexFunc(c, forbidden) >= 0 || len(c) > 256 || clean(c, 256) != c {
			t.Fatalf("clean(%q) = %q", s, c)
		}
	})
}

// FuzzLookup: finding a member in the raw object gives what decoding the
// whole object into maps and walking the path gives.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":"x\"y"},"a":{"b":2}}`, `{"t\u0069tle":"x","c":[1,{"a":"}"}]}`, `{ "a" : { "b" : null } }`, `[1]`, `{"a":"caf\u00e9 \ud83d\ude00"}`} {
		f.Add([]byte(s), "a.b")
		f.Add([]byte(s), "title")
	}
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		if !json.Valid(data) || path == "" {
			return
		}
		var obj any
		_ = json.Unmarshal(data, &obj)
		var want any = obj
		for part := range strings.SplitSeq(path, ".") {
			m, ok := want.(map[string]any)
			if !ok {
				want = nil
				break
			}
			want = m[part]
		}
		got := lookup(newRawObject(data), path)
		if _, isObj := obj.(map[string]any); !isObj {
			want = nil
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			if s, ok := got.(string); !ok || strings.ToValidUTF8(s, "\uFFFD") != want {
				t.Fatalf("%s %q: got %#v, want %#v", data, path, got, want)
			}
		}
	})
}

package irc

import (
	"strings"
	"testing"
)

func TestViews(t *testing.T) {
	def := defaultConfig().Announce.Templates
	tmpl := func(kind string) string { return def[kind] }
	for _, tc := range []struct {
		name, kind, item, pos, want string
	}{
		{"json", kindPublish, `{"title":"Deploy done","url":"https://ci.example.org/9"}`, "", "[news] Deploy done — https://ci.example.org/9"},
		{"json bad link", kindPublish, `{"name":"n","link":"javascript:alert(1)"}`, "", "[news] n — https://b.example/v1/feeds/news/items/42"},
		{"text", kindPublish, "plain text\nsecond line", "", "[news] plain text\nsecond line — https://b.example/v1/feeds/news/items/42"},
		{"empty", kindPublish, "", "", "[news] 42 — https://b.example/v1/feeds/news/items/42"},
		{"binary", kindPublish, "\x00\x01\x02", "", "[news] (binary item, 3 bytes) — https://b.example/v1/feeds/news/items/42"},
		{"latin1", kindEdit, "caf\xe9", "", "[news] edited: café — https://b.example/v1/feeds/news/items/42"},
		{"retract", kindRetract, "", "", "[news] retracted 42"},
		{"move", kindPosition, `{"title":"t"}`, "7:", "[news] moved t after 7"},
		{"move top", kindPosition, "x", "begin:", "[news] moved x to the top"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := parseTemplate(tc.kind, tmpl(tc.kind))
			if err != nil {
				t.Fatal(err)
			}
			var item []byte
			if tc.item != "" || tc.kind != kindRetract {
				item = []byte(tc.item)
			}
			got, err := render(tp, newView(tc.kind, "news", "42", item, tc.pos, linkURL(defaultConfig().Links.Item, "https://b.example", "news", "42")))
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTemplateLimits(t *testing.T) {
	if _, err := parseTemplate(kindPublish, "{{range .Nope}}"); err == nil {
		t.Error("an unparsable template was accepted")
	}
	tp, err := parseTemplate(kindPublish, `{{range $i, $_ := .Fields}}{{$.Text}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	v := newView(kindPublish, "f", "1", []byte(`{"a":1,"b":2,"c":3,"t":"`+strings.Repeat("x", 6000)+`"}`), "", "")
	if _, err := render(tp, v); err == nil {
		t.Error("a template writing 24 KiB was not stopped")
	}
}

func TestLinkURL(t *testing.T) {
	for _, tc := range []struct{ tmpl, base, want string }{
		{"/v1/feeds/{feed}/items/{id}", "https://x.example", "https://x.example/v1/feeds/team:1%2Fa%20b/items/i%2F1"},
		{"/atom/{feed}", "", ""},
		{"https://other.example/{feed}", "", "https://other.example/team:1%2Fa%20b"},
		{"", "https://x.example", ""},
	} {
		if got := linkURL(tc.tmpl, tc.base, "team:1/a b", "i/1"); got != tc.want {
			t.Errorf("linkURL(%q, %q) = %q, want %q", tc.tmpl, tc.base, got, tc.want)
		}
	}
}

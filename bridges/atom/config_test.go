package atom

import (
	"strings"
	"testing"
)

func TestConfigDefaultsAreValid(t *testing.T) {
	a, err := New(mustSection(t, "enabled: true"))
	if err != nil {
		t.Fatal(err)
	}
	b := a.(*Bridge)
	if b.cfg.Entries != 20 || b.cfg.TombstoneTTL.Hours() != 168 || b.cfg.mappingFor("any:feed") == nil {
		t.Fatalf("unexpected defaults: %+v", b.cfg)
	}
}

func TestConfigDisabledIsNilButValidated(t *testing.T) {
	a, err := New(mustSection(t, "enabled: false"))
	if err != nil || a != nil {
		t.Fatalf("disabled section: adapter %v, err %v", a, err)
	}
	if _, err := New(mustSection(t, "enabled: false\nentries: 0")); err == nil {
		t.Fatal("a disabled section with a bad value was accepted")
	}
}

func TestConfigErrorsNameKeyAndFix(t *testing.T) {
	_, err := New(mustSection(t, `enabled: true
base_url: ftp://x
tag_authority: example.org
author: {name: "", email: nobody}
alternate_url: "https://x/{nope}"
entry_url: "https://x/{feed}/{id}"
entries: 5000
max_entry_bytes: 10
tombstone_ttl: -1s
cache_bytes: -1
mappings:
  - feeds: []
    content_type: pdf
    title: "a..b"
  - feeds: ["[oops"]`))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"bridge.yaml:3: atom.base_url", "atom.tag_authority", "example.org,2025", "atom.author.name", "atom.author.email",
		"atom.alternate_url", "{feed}", "atom.entries: must be between 1 and 1000", "atom.max_entry_bytes",
		"atom.tombstone_ttl", "atom.cache_bytes", "atom.mappings[0].feeds", "atom.mappings[0].content_type",
		"text, html or markdown", "atom.mappings[0].title", "atom.mappings[1].feeds[0]",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "entry_url") {
		t.Errorf("a valid entry_url was refused:\n%s", msg)
	}
}

func TestConfigUnknownKey(t *testing.T) {
	_, err := New(mustSection(t, "enabled: true\nentires: 5"))
	if err == nil || !strings.Contains(err.Error(), `unknown key "entires"`) {
		t.Fatalf("want an unknown-key error, got %v", err)
	}
}

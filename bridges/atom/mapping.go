package atom

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Limits on what an item contributes to an entry.
const (
	maxTitleRunes = 200
	maxCategories = 32
)

// entry is one item as every format shows it. Every string in it is
// clean: valid UTF-8 without characters XML forbids.
type entry struct {
	id         string // tag: URI
	title      string
	summary    string // text
	content    string
	html       bool // content is HTML (else text)
	author     Person
	link       string
	categories []string
	published  time.Time // zero when unknown
	updated    time.Time
}

// mappingFor returns the first mapping rule for feed, or nil.
func (c *Config) mappingFor(feed string) *Mapping {
	for i := range c.Mappings {
		for _, p := range c.Mappings[i].patterns {
			if p.Match(feed) {
				return &c.Mappings[i]
			}
		}
	}
	return nil
}

// apply turns an item's payload into an entry's parts. A JSON object is
// read through the mapping m (nil: no mapping); anything else, and JSON
// without a summary or content, is shown whole as text. limit bounds the
// summary and the content in bytes. Times left zero are unknown.
func (m *Mapping) apply(data []byte, limit int) entry {
	var e entry
	var obj map[string]any
	if m != nil && looksLikeObject(data) && json.Unmarshal(data, &obj) == nil {
		e.title = line(str(lookup(obj, m.Title)))
		e.summary = clean(str(lookup(obj, m.Summary)), limit)
		e.content = clean(str(lookup(obj, m.Content)), limit)
		e.html = m.ContentType == typeHTML && e.content != ""
		e.author = person(lookup(obj, m.Author))
		e.link = httpURL(str(lookup(obj, m.Link)))
		e.updated = jsonTime(lookup(obj, m.Updated))
		e.published = jsonTime(lookup(obj, m.Published))
		e.categories = terms(lookup(obj, m.Categories))
	}
	if e.summary == "" && e.content == "" {
		e.content = clean(string(data), limit)
	}
	if e.title == "" {
		e.title = firstLine(e.summary)
	}
	if e.title == "" && !e.html {
		e.title = firstLine(e.content)
	}
	return e
}

func looksLikeObject(data []byte) bool {
	s := strings.TrimLeft(string(data), " \t\r\n")
	return strings.HasPrefix(s, "{")
}

// lookup follows a dotted path into a JSON object; nil when absent.
func lookup(obj map[string]any, path string) any {
	if path == "" {
		return nil
	}
	var v any = obj
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// str returns a JSON string or number as text; "" for anything else.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

// person reads an author: a name, or an object with name, email and uri.
func person(v any) Person {
	if obj, ok := v.(map[string]any); ok {
		p := Person{Name: line(str(obj["name"])), Email: line(str(obj["email"])), URI: httpURL(str(obj["uri"]))}
		if !validEmail(p.Email) {
			p.Email = ""
		}
		if p.Name == "" {
			p.Name = p.Email
		}
		if p.Name == "" {
			return Person{}
		}
		return p
	}
	return Person{Name: line(str(v))}
}

// validEmail accepts what RFC 4287's schema does (".+@.+") on one line.
func validEmail(s string) bool {
	i := strings.IndexByte(s, '@')
	return i > 0 && i < len(s)-1 && !strings.ContainsAny(s, "\r\n")
}

// httpURL returns s normalised when it is an absolute http(s) URL, else "".
// Other schemes (javascript:, data:) never become links.
func httpURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return clean(u.String(), 4096)
}

// jsonTime reads an RFC 3339 string or a Unix time in seconds or
// milliseconds; the zero time when absent or out of range.
func jsonTime(v any) time.Time {
	var t time.Time
	switch x := v.(type) {
	case string:
		t, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(x))
	case float64:
		if x > 0 && x < 1e15 {
			t = thoonk.ScoreTime(x)
		}
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}
	}
	return t.UTC()
}

// terms reads categories: a string or a list of strings.
func terms(v any) []string {
	var raw []any
	switch x := v.(type) {
	case string:
		raw = []any{x}
	case []any:
		raw = x
	}
	var out []string
	for _, r := range raw {
		if t := line(str(r)); t != "" && !slices.Contains(out, t) && len(out) < maxCategories {
			out = append(out, t)
		}
	}
	return out
}

// clean makes s safe for every format: invalid UTF-8 becomes U+FFFD,
// characters XML 1.0 forbids (C0 controls but tab, CR and LF; U+FFFE;
// U+FFFF) are removed, and text longer than limit bytes is cut at a
// character boundary and ends with "…".
func clean(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, forbidden) >= 0 {
		s = strings.Map(func(r rune) rune {
			if forbidden(r) {
				return -1
			}
			return r
		}, s)
	}
	if len(s) > limit {
		cut := limit - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// forbidden reports characters outside XML 1.0's Char production (in
// valid UTF-8, which holds no surrogates).
func forbidden(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0xFFFE || r == 0xFFFF
}

// line cleans s into one line: whitespace runs become one space, and more
// than maxTitleRunes characters are cut with "…".
func line(s string) string {
	s = strings.Join(strings.Fields(clean(s, 16<<10)), " ")
	if utf8.RuneCountInString(s) > maxTitleRunes {
		s = string([]rune(s)[:maxTitleRunes-1]) + "…"
	}
	return s
}

// firstLine returns the first non-blank line of s, as a title.
func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if t := line(l); t != "" {
			return t
		}
	}
	return ""
}

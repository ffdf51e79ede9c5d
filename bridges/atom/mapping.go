package atom

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	if m != nil && looksLikeObject(data) && json.Valid(data) {
		obj := newRawObject(data)
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

// rawObject is a valid JSON object's text, whose members are found and
// decoded only when a mapping asks for them: a render decodes the few
// fields it shows, not the whole item (a full decode into maps was a
// sixth of a render, the largest part after Redis). Its top-level members
// are indexed once.
type rawObject struct {
	top []rawMember
}

// rawMember is a member's quoted name and raw value.
type rawMember struct{ key, value []byte }

// newRawObject indexes the top-level members of valid JSON data.
func newRawObject(data []byte) rawObject {
	var o rawObject
	eachMember(data, func(k, v []byte) { o.top = append(o.top, rawMember{k, v}) })
	return o
}

// lookup follows a dotted path into the object and decodes the value
// found there; nil when absent.
func lookup(obj rawObject, path string) any {
	if path == "" {
		return nil
	}
	part, rest, more := strings.Cut(path, ".")
	var raw []byte
	found := false
	for _, m := range obj.top { // the last one counts, as with encoding/json
		if keyIs(m.key, part) {
			raw, found = m.value, true
		}
	}
	for found && more {
		part, rest, more = strings.Cut(rest, ".")
		raw, found = member(raw, part)
	}
	if !found {
		return nil
	}
	if len(raw) > 1 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]) // no escapes: the text itself
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return v
}

// member returns the raw value of the member key of the JSON object at
// the start of data (valid JSON), or false when data is no object or has
// no such member (the last one counts).
func member(data []byte, key string) ([]byte, bool) {
	var found []byte
	ok := false
	eachMember(data, func(k, v []byte) {
		if keyIs(k, key) {
			found, ok = v, true
		}
	})
	return found, ok
}

// eachMember calls fn with the quoted name and raw value of each member
// of the JSON object at the start of data (valid JSON); nothing when data
// is no object.
func eachMember(data []byte, fn func(key, value []byte)) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return
	}
	for i++; ; {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return
		}
		if data[i] == ',' {
			i++
			continue
		}
		kEnd := skipValue(data, i)
		k := data[i:kEnd]
		i = skipSpace(data, kEnd)
		if i >= len(data) || data[i] != ':' {
			return
		}
		vStart := skipSpace(data, i+1)
		i = skipValue(data, vStart)
		fn(k, data[vStart:i])
	}
}

// keyIs compares a member's quoted name with key.
func keyIs(quoted []byte, key string) bool {
	if len(quoted) < 2 {
		return false
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1:len(quoted)-1]) == key
	}
	var k string
	return json.Unmarshal(quoted, &k) == nil && k == key
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just after the JSON value starting at i.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		for i++; i < len(data); i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return i
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipValue(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[i])) {
		i++
	}
	return i
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

// maxMapped bounds the entries the mapped cache keeps; when full it
// starts over.
const maxMapped = 8192

// mappedCache keeps items already turned into entries, by content: a
// render after a change maps only the new and edited items, not the page
// they stand in. It is keyed by the mapping rule and a keyed hash of the
// payload (a random seed per process, so no payload can be made to
// collide with another on purpose) with the payload's length.
type mappedCache struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    map[mappedKey]entry
}

type mappedKey struct {
	rule *Mapping
	sum  uint64
	n    int
}

func newMappedCache() *mappedCache {
	return &mappedCache{seed: maphash.MakeSeed(), m: map[mappedKey]entry{}}
}

// apply is m.apply(data, limit), from the cache when the same payload
// was mapped by the same rule before. The entry's parts are shared: the
// caller sets its own id, times and defaults on the copy it gets.
func (c *mappedCache) apply(m *Mapping, data []byte, limit int) entry {
	k := mappedKey{rule: m, sum: maphash.Bytes(c.seed, data), n: len(data)}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return e
	}
	e = m.apply(data, limit)
	c.mu.Lock()
	if len(c.m) >= maxMapped {
		clear(c.m)
	}
	c.m[k] = e
	c.mu.Unlock()
	return e
}

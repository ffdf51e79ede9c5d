package atom

import (
	"bytes"
	"encoding/json"
	"html"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/feeds"
)

// The formats, by URL prefix.
const (
	formatAtom = "atom"
	formatRSS  = "rss"
	formatJSON = "json"
)

// Media types of the documents.
var mediaTypes = map[string]string{
	formatAtom: "application/atom+xml; charset=utf-8",
	formatRSS:  "application/rss+xml; charset=utf-8",
	formatJSON: "application/feed+json; charset=utf-8",
}

// encode renders d in format. Atom and RSS are written directly (see
// xmlWriter): encoding/xml's reflective marshalling was a third of a
// render's time.
func encode(format string, d *document) ([]byte, error) {
	switch format {
	case formatAtom:
		return writeAtom(d), nil
	case formatRSS:
		return writeRSS(d), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	err := enc.Encode(jsonFeedOf(d))
	return buf.Bytes(), err
}

// atomTime formats an RFC 3339 date-time in UTC with milliseconds.
func atomTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// xmlWriter appends an XML document to a buffer, escaping every text and
// attribute value; its strings are clean already (mapping.clean), and any
// character XML 1.0 forbids that slips through becomes U+FFFD, as
// encoding/xml does.
type xmlWriter struct{ b []byte }

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>`

// open writes <name attr="value" ...> (pairs with an empty value are left
// out); end writes </name>.
func (w *xmlWriter) open(name string, attrs ...string) {
	w.b = append(w.b, '<')
	w.b = append(w.b, name...)
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] == "" {
			continue
		}
		w.b = append(w.b, ' ')
		w.b = append(w.b, attrs[i]...)
		w.b = append(w.b, `="`...)
		w.escape(attrs[i+1], true)
		w.b = append(w.b, '"')
	}
	w.b = append(w.b, '>')
}

func (w *xmlWriter) end(name string) {
	w.b = append(w.b, "</"...)
	w.b = append(w.b, name...)
	w.b = append(w.b, '>')
}

// empty writes <name attrs...></name>.
func (w *xmlWriter) empty(name string, attrs ...string) {
	w.open(name, attrs...)
	w.end(name)
}

// text writes <name attrs...>text</name>.
func (w *xmlWriter) text(name, text string, attrs ...string) {
	w.open(name, attrs...)
	w.escape(text, false)
	w.end(name)
}

// optional writes text unless it is empty.
func (w *xmlWriter) optional(name, text string) {
	if text != "" {
		w.text(name, text)
	}
}

// escape appends s as character data or (attr) an attribute value.
func (w *xmlWriter) escape(s string, attr bool) {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' && c != '"' {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == '&':
			esc = "&amp;"
		case r == '<':
			esc = "&lt;"
		case r == '>':
			esc = "&gt;"
		case r == '"':
			esc = "&#34;"
		case r == '\r':
			esc = "&#xD;"
		case r == '\n' && attr:
			esc = "&#xA;"
		case r == '\t' && attr:
			esc = "&#x9;"
		case r == '\n' || r == '\t':
			i += n
			continue
		case r == utf8.RuneError && n == 1, !xmlChar(r):
			esc = "\uFFFD"
		default:
			i += n
			continue
		}
		w.b = append(w.b, s[last:i]...)
		w.b = append(w.b, esc...)
		i += n
		last = i
	}
	w.b = append(w.b, s[last:]...)
}

// xmlChar reports XML 1.0's Char production.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// ---- Atom (RFC 4287, RFC 5005 paging, RFC 6721 tombstones) ----

// writeAtom writes d as an Atom feed document.
func writeAtom(d *document) []byte {
	const atomType = "application/atom+xml"
	w := &xmlWriter{b: make([]byte, 0, 2048+1024*len(d.entries))}
	w.b = append(w.b, xmlHeader...)
	w.open("feed", "xmlns", "http://www.w3.org/2005/Atom")
	w.text("id", d.id)
	w.text("title", d.title, "type", "text")
	if d.subtitle != "" {
		w.text("subtitle", d.subtitle, "type", "text")
	}
	w.text("updated", atomTime(d.updated))
	w.person("author", d.author)
	w.empty("link", "href", d.link(formatAtom, d.self), "rel", "self", "type", atomType)
	w.empty("link", "href", d.alternate, "rel", "alternate", "type", "text/html")
	w.empty("link", "href", d.link(formatAtom, ""), "rel", "first", "type", atomType)
	if d.next != "" {
		w.empty("link", "href", d.link(formatAtom, d.next), "rel", "next", "type", atomType)
	}
	if d.prev != "" {
		w.empty("link", "href", d.link(formatAtom, d.prev), "rel", "previous", "type", atomType)
	}
	if d.hub != "" {
		w.empty("link", "href", d.hub, "rel", "hub")
	}
	for _, t := range d.deleted {
		w.empty("deleted-entry", "xmlns", "http://purl.org/atompub/tombstones/1.0", "ref", t.id, "when", atomTime(t.when))
	}
	for _, e := range d.entries {
		w.open("entry")
		w.text("id", e.id)
		w.text("title", e.title, "type", "text")
		w.text("updated", atomTime(e.updated))
		if !e.published.IsZero() {
			w.text("published", atomTime(e.published))
		}
		w.person("author", e.author)
		if e.link != "" {
			w.empty("link", "href", e.link, "rel", "alternate")
		}
		for _, c := range e.categories {
			w.empty("category", "term", c)
		}
		if e.summary != "" {
			w.text("summary", e.summary, "type", "text")
		}
		switch {
		case e.content != "":
			w.text("content", e.content, "type", contentType(e))
		case e.link == "":
			w.empty("content", "type", "text") // RFC 4287 4.1.2: content or an alternate link
		}
		w.end("entry")
	}
	w.end("feed")
	return w.b
}

// person writes an Atom person construct.
func (w *xmlWriter) person(name string, p Person) {
	w.open(name)
	w.optional("name", p.Name)
	w.optional("email", p.Email)
	w.optional("uri", p.URI)
	w.end(name)
}

func contentType(e entry) string {
	if e.html {
		return "html"
	}
	return "text"
}

// ---- RSS 2.0 ----

// htmlOf returns an entry part as HTML: text is escaped, HTML kept.
func htmlOf(s string, isHTML bool) string {
	if isHTML {
		return s
	}
	return strings.ReplaceAll(html.EscapeString(s), "\n", "<br>\n")
}

// writeRSS writes d as an RSS 2.0 document (with atom:link self and
// paging links, content:encoded and dc:creator).
func writeRSS(d *document) []byte {
	const rssType = "application/rss+xml"
	w := &xmlWriter{b: make([]byte, 0, 2048+1024*len(d.entries))}
	w.b = append(w.b, xmlHeader...)
	w.open("rss", "version", "2.0", "xmlns:atom", "http://www.w3.org/2005/Atom",
		"xmlns:content", "http://purl.org/rss/1.0/modules/content/", "xmlns:dc", "http://purl.org/dc/elements/1.1/")
	w.open("channel")
	desc := d.subtitle
	if desc == "" {
		desc = d.title
	}
	w.text("title", d.title)
	w.text("link", d.alternate)
	w.text("description", desc)
	w.text("lastBuildDate", d.updated.Format(time.RFC1123Z))
	w.empty("atom:link", "rel", "self", "type", rssType, "href", d.link(formatRSS, d.self))
	if d.next != "" {
		w.empty("atom:link", "rel", "next", "type", rssType, "href", d.link(formatRSS, d.next))
	}
	if d.prev != "" {
		w.empty("atom:link", "rel", "previous", "type", rssType, "href", d.link(formatRSS, d.prev))
	}
	if d.hub != "" {
		w.empty("atom:link", "rel", "hub", "href", d.hub)
	}
	for _, e := range d.entries {
		w.open("item")
		w.text("title", e.title)
		w.optional("link", e.link)
		description, content := htmlOf(e.content, e.html), ""
		if e.summary != "" {
			description = htmlOf(e.summary, false)
			if e.content != "" {
				content = htmlOf(e.content, e.html)
			}
		}
		w.text("description", description)
		w.optional("content:encoded", content)
		w.optional("dc:creator", e.author.Name)
		for _, c := range e.categories {
			w.text("category", c)
		}
		w.text("guid", e.id, "isPermaLink", "false")
		pub := e.updated
		if !e.published.IsZero() {
			pub = e.published
		}
		w.text("pubDate", pub.Format(time.RFC1123Z))
		w.end("item")
	}
	w.end("channel")
	w.end("rss")
	return w.b
}

// ---- JSON Feed 1.1 ----

// jsonFeed is gorilla/feeds' JSON Feed with "items" always present (the
// specification requires it, even when empty).
type jsonFeed struct {
	*feeds.JSONFeed
	Items []*jsonItem `json:"items"`
}

// jsonItem is gorilla/feeds' JSON Feed item whose content_text is present
// whenever content_html is not, also when it is empty: JSON Feed requires
// one of them, and gorilla/feeds omits empty ones.
type jsonItem struct {
	*feeds.JSONItem
	ContentText *string `json:"content_text,omitempty"`
}

func jsonFeedOf(d *document) *jsonFeed {
	f := &jsonFeed{
		JSONFeed: &feeds.JSONFeed{
			Version:     "https://jsonfeed.org/version/1.1",
			Title:       d.title,
			HomePageUrl: d.alternate,
			FeedUrl:     d.link(formatJSON, d.self),
			Description: d.subtitle,
			Authors:     []*feeds.JSONAuthor{jsonAuthor(d.author)},
		},
		Items: []*jsonItem{},
	}
	if d.next != "" {
		f.NextUrl = d.link(formatJSON, d.next)
	}
	if d.hub != "" {
		f.Hubs = []*feeds.JSONHub{{Type: "WebSub", Url: d.hub}}
	}
	for _, e := range d.entries {
		it := &jsonItem{JSONItem: &feeds.JSONItem{
			Id: e.id, Url: e.link, Title: e.title, Summary: e.summary, Tags: e.categories,
			Authors: []*feeds.JSONAuthor{jsonAuthor(e.author)},
		}}
		switch {
		case e.html:
			it.ContentHTML = e.content
		case e.content != "":
			it.ContentText = &e.content
		default:
			it.ContentText = &e.summary // "" for an empty item
		}
		if !e.published.IsZero() {
			it.PublishedDate = &e.published
		}
		it.ModifiedDate = &e.updated
		f.Items = append(f.Items, it)
	}
	return f
}

func jsonAuthor(p Person) *feeds.JSONAuthor {
	a := &feeds.JSONAuthor{Name: p.Name, Url: p.URI}
	if a.Url == "" && p.Email != "" {
		a.Url = "mailto:" + p.Email
	}
	return a
}

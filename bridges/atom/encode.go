package atom

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"html"
	"strings"
	"time"

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

// encode renders d in format.
func encode(format string, d *document) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case formatAtom:
		err = feeds.WriteXML(atomFeedOf(d), &buf)
	case formatRSS:
		err = feeds.WriteXML(rssOf(d), &buf)
	default:
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		err = enc.Encode(jsonFeedOf(d))
	}
	return buf.Bytes(), err
}

// atomTime formats an RFC 3339 date-time in UTC with milliseconds.
func atomTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// ---- Atom (RFC 4287, RFC 5005 paging, RFC 6721 tombstones) ----

// gorilla/feeds' own Atom feed allows one link, no category term and no
// tombstones; its person, link, summary and content types fit and are used.

type atomFeed struct {
	XMLName  xml.Name  `xml:"http://www.w3.org/2005/Atom feed"`
	ID       string    `xml:"id"`
	Title    atomText  `xml:"title"`
	Subtitle *atomText `xml:"subtitle,omitempty"`
	Updated  string    `xml:"updated"`
	Author   *feeds.AtomAuthor
	Links    []feeds.AtomLink
	Deleted  []atomDeleted
	Entries  []atomEntry
}

// FeedXml lets feeds.WriteXML encode the feed.
func (f *atomFeed) FeedXml() any { return f }

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type atomDeleted struct {
	XMLName xml.Name `xml:"http://purl.org/atompub/tombstones/1.0 deleted-entry"`
	Ref     string   `xml:"ref,attr"`
	When    string   `xml:"when,attr"`
}

type atomEntry struct {
	XMLName    xml.Name `xml:"entry"`
	ID         string   `xml:"id"`
	Title      atomText `xml:"title"`
	Updated    string   `xml:"updated"`
	Published  string   `xml:"published,omitempty"`
	Author     *feeds.AtomAuthor
	Links      []feeds.AtomLink
	Categories []atomCategory
	Summary    *feeds.AtomSummary
	Content    *feeds.AtomContent
}

type atomCategory struct {
	XMLName xml.Name `xml:"category"`
	Term    string   `xml:"term,attr"`
}

func atomPerson(p Person) *feeds.AtomAuthor {
	return &feeds.AtomAuthor{AtomPerson: feeds.AtomPerson{Name: p.Name, Email: p.Email, Uri: p.URI}}
}

func atomFeedOf(d *document) *atomFeed {
	const atomType = "application/atom+xml"
	f := &atomFeed{
		ID:      d.id,
		Title:   atomText{Type: "text", Body: d.title},
		Updated: atomTime(d.updated),
		Author:  atomPerson(d.author),
		Links: []feeds.AtomLink{
			{Rel: "self", Type: atomType, Href: d.link(formatAtom, d.self)},
			{Rel: "alternate", Type: "text/html", Href: d.alternate},
			{Rel: "first", Type: atomType, Href: d.link(formatAtom, "")},
		},
	}
	if d.subtitle != "" {
		f.Subtitle = &atomText{Type: "text", Body: d.subtitle}
	}
	if d.next != "" {
		f.Links = append(f.Links, feeds.AtomLink{Rel: "next", Type: atomType, Href: d.link(formatAtom, d.next)})
	}
	if d.prev != "" {
		f.Links = append(f.Links, feeds.AtomLink{Rel: "previous", Type: atomType, Href: d.link(formatAtom, d.prev)})
	}
	if d.hub != "" {
		f.Links = append(f.Links, feeds.AtomLink{Rel: "hub", Href: d.hub})
	}
	for _, t := range d.deleted {
		f.Deleted = append(f.Deleted, atomDeleted{Ref: t.id, When: atomTime(t.when)})
	}
	for _, e := range d.entries {
		ae := atomEntry{
			ID:      e.id,
			Title:   atomText{Type: "text", Body: e.title},
			Updated: atomTime(e.updated),
			Author:  atomPerson(e.author),
		}
		if !e.published.IsZero() {
			ae.Published = atomTime(e.published)
		}
		if e.link != "" {
			ae.Links = []feeds.AtomLink{{Rel: "alternate", Href: e.link}}
		}
		for _, c := range e.categories {
			ae.Categories = append(ae.Categories, atomCategory{Term: c})
		}
		if e.summary != "" {
			ae.Summary = &feeds.AtomSummary{Type: "text", Content: e.summary}
		}
		if e.content != "" {
			ae.Content = &feeds.AtomContent{Type: contentType(e), Content: e.content}
		}
		if ae.Content == nil && ae.Links == nil {
			ae.Content = &feeds.AtomContent{Type: "text"} // RFC 4287 4.1.2: content or an alternate link
		}
		f.Entries = append(f.Entries, ae)
	}
	return f
}

func contentType(e entry) string {
	if e.html {
		return "html"
	}
	return "text"
}

// ---- RSS 2.0 ----

// gorilla/feeds' RSS item allows one category and its channel no
// atom:link; its guid and content:encoded types fit and are used.

type rssDoc struct {
	XMLName   xml.Name   `xml:"rss"`
	Version   string     `xml:"version,attr"`
	NSAtom    string     `xml:"xmlns:atom,attr"`
	NSContent string     `xml:"xmlns:content,attr"`
	NSDC      string     `xml:"xmlns:dc,attr"`
	Channel   rssChannel `xml:"channel"`
}

// FeedXml lets feeds.WriteXML encode the document.
func (r *rssDoc) FeedXml() any { return r }

type rssChannel struct {
	Title         string        `xml:"title"`
	Link          string        `xml:"link"`
	Description   string        `xml:"description"`
	LastBuildDate string        `xml:"lastBuildDate"`
	AtomLinks     []rssAtomLink `xml:"atom:link"`
	Items         []rssItem     `xml:"item"`
}

type rssAtomLink struct {
	Rel  string `xml:"rel,attr"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type rssItem struct {
	Title       string `xml:"title"`
	Link        string `xml:"link,omitempty"`
	Description string `xml:"description"`
	Content     *feeds.RssContent
	Creator     string   `xml:"dc:creator,omitempty"`
	Categories  []string `xml:"category"`
	GUID        *feeds.RssGuid
	PubDate     string `xml:"pubDate,omitempty"`
}

// htmlOf returns an entry part as HTML: text is escaped, HTML kept.
func htmlOf(s string, isHTML bool) string {
	if isHTML {
		return s
	}
	return strings.ReplaceAll(html.EscapeString(s), "\n", "<br>\n")
}

func rssOf(d *document) *rssDoc {
	const rssType = "application/rss+xml"
	desc := d.subtitle
	if desc == "" {
		desc = d.title
	}
	ch := rssChannel{
		Title: d.title, Link: d.alternate, Description: desc,
		LastBuildDate: d.updated.Format(time.RFC1123Z),
		AtomLinks:     []rssAtomLink{{Rel: "self", Type: rssType, Href: d.link(formatRSS, d.self)}},
	}
	if d.next != "" {
		ch.AtomLinks = append(ch.AtomLinks, rssAtomLink{Rel: "next", Type: rssType, Href: d.link(formatRSS, d.next)})
	}
	if d.prev != "" {
		ch.AtomLinks = append(ch.AtomLinks, rssAtomLink{Rel: "previous", Type: rssType, Href: d.link(formatRSS, d.prev)})
	}
	if d.hub != "" {
		ch.AtomLinks = append(ch.AtomLinks, rssAtomLink{Rel: "hub", Href: d.hub})
	}
	for _, e := range d.entries {
		it := rssItem{
			Title: e.title, Link: e.link, Creator: e.author.Name, Categories: e.categories,
			GUID:    &feeds.RssGuid{Id: e.id, IsPermaLink: "false"},
			PubDate: e.updated.Format(time.RFC1123Z),
		}
		if !e.published.IsZero() {
			it.PubDate = e.published.Format(time.RFC1123Z)
		}
		switch {
		case e.summary != "" && e.content != "":
			it.Description = htmlOf(e.summary, false)
			it.Content = &feeds.RssContent{Content: htmlOf(e.content, e.html)}
		case e.summary != "":
			it.Description = htmlOf(e.summary, false)
		default:
			it.Description = htmlOf(e.content, e.html)
		}
		ch.Items = append(ch.Items, it)
	}
	return &rssDoc{
		Version: "2.0", NSAtom: "http://www.w3.org/2005/Atom",
		NSContent: "http://purl.org/rss/1.0/modules/content/", NSDC: "http://purl.org/dc/elements/1.1/",
		Channel: ch,
	}
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

package atom

// The reference of BenchmarkFeed: a fresh render as the adapter did it
// before its render was made faster (the previous release's code, kept
// here only to be measured in the same run): three Redis round trips
// (Describe, Page, the times script), JSON items decoded whole into maps,
// and the Atom document marshalled by encoding/xml's reflection through
// gorilla/feeds' types.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/feeds"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// referenceRender renders the first page of feed as Atom the old way.
func (b *Bridge) referenceRender(ctx context.Context, feed string) (*rendered, error) {
	infos, err := b.hub.Store.Describe(ctx, feed)
	if err != nil || len(infos) == 0 {
		return nil, errNoFeed
	}
	info := infos[0]
	page, err := b.hub.Store.Page(ctx, feed, thoonk.PageRequest{Limit: b.cfg.Entries})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(page.Items))
	for i, it := range page.Items {
		ids[i] = it.ID
	}
	now := time.Now()
	times, err := readTimes(ctx, b.hub.Store.Client(), feed, ids, info.Type == thoonk.TypeSorted, b.cfg.TombstoneTTL, now)
	if err != nil {
		return nil, err
	}
	d := &document{id: b.tagID(feed), title: line(info.Config["title"]), updated: times.feed, author: b.cfg.Author,
		base: b.baseURL(), path: url.PathEscape(feed)}
	d.alternate = d.base + "/atom/#" + d.path
	m := b.cfg.mappingFor(feed)
	for i, it := range page.Items {
		e := referenceApply(m, it.Data, b.cfg.MaxEntryBytes)
		e.id = d.id + "/" + url.PathEscape(it.ID)
		e.author = b.cfg.Author
		e.updated = latest(it.Published, times.items[i].updated)
		d.updated = latest(d.updated, e.updated)
		d.entries = append(d.entries, e)
	}
	var buf bytes.Buffer
	if err := feeds.WriteXML(referenceAtomOf(d), &buf); err != nil {
		return nil, err
	}
	return newRendered(buf.Bytes(), mediaTypes[formatAtom], d.updated, d.expires), nil
}

// referenceApply is the old mapping: the whole item decoded into maps.
func referenceApply(m *Mapping, data []byte, limit int) entry {
	var e entry
	var obj map[string]any
	if m != nil && looksLikeObject(data) && json.Unmarshal(data, &obj) == nil {
		get := func(path string) any {
			if path == "" {
				return nil
			}
			var v any = obj
			for part := range strings.SplitSeq(path, ".") {
				mm, ok := v.(map[string]any)
				if !ok {
					return nil
				}
				v = mm[part]
			}
			return v
		}
		e.title = line(str(get(m.Title)))
		e.summary = clean(str(get(m.Summary)), limit)
		e.content = clean(str(get(m.Content)), limit)
		e.html = m.ContentType == typeHTML && e.content != ""
		e.author = person(get(m.Author))
		e.link = httpURL(str(get(m.Link)))
		e.updated = jsonTime(get(m.Updated))
		e.published = jsonTime(get(m.Published))
		e.categories = terms(get(m.Categories))
	}
	if e.summary == "" && e.content == "" {
		e.content = clean(string(data), limit)
	}
	if e.title == "" {
		e.title = firstLine(e.summary)
	}
	return e
}

// The previous release's Atom types, marshalled by reflection.

// gorilla/feeds' own Atom feed allows one link, no category term and no
// tombstones; its person, link, summary and content types fit and are used.

type refAtomFeed struct {
	XMLName  xml.Name     `xml:"http://www.w3.org/2005/Atom feed"`
	ID       string       `xml:"id"`
	Title    refAtomText  `xml:"title"`
	Subtitle *refAtomText `xml:"subtitle,omitempty"`
	Updated  string       `xml:"updated"`
	Author   *feeds.AtomAuthor
	Links    []feeds.AtomLink
	Deleted  []refAtomDeleted
	Entries  []refAtomEntry
}

// FeedXml lets feeds.WriteXML encode the feed.
func (f *refAtomFeed) FeedXml() any { return f }

type refAtomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type refAtomDeleted struct {
	XMLName xml.Name `xml:"http://purl.org/atompub/tombstones/1.0 deleted-entry"`
	Ref     string   `xml:"ref,attr"`
	When    string   `xml:"when,attr"`
}

type refAtomEntry struct {
	XMLName    xml.Name    `xml:"entry"`
	ID         string      `xml:"id"`
	Title      refAtomText `xml:"title"`
	Updated    string      `xml:"updated"`
	Published  string      `xml:"published,omitempty"`
	Author     *feeds.AtomAuthor
	Links      []feeds.AtomLink
	Categories []refAtomCategory
	Summary    *feeds.AtomSummary
	Content    *feeds.AtomContent
}

type refAtomCategory struct {
	XMLName xml.Name `xml:"category"`
	Term    string   `xml:"term,attr"`
}

func refAtomPerson(p Person) *feeds.AtomAuthor {
	return &feeds.AtomAuthor{AtomPerson: feeds.AtomPerson{Name: p.Name, Email: p.Email, Uri: p.URI}}
}

func referenceAtomOf(d *document) *refAtomFeed {
	const atomType = "application/atom+xml"
	f := &refAtomFeed{
		ID:      d.id,
		Title:   refAtomText{Type: "text", Body: d.title},
		Updated: atomTime(d.updated),
		Author:  refAtomPerson(d.author),
		Links: []feeds.AtomLink{
			{Rel: "self", Type: atomType, Href: d.link(formatAtom, d.self)},
			{Rel: "alternate", Type: "text/html", Href: d.alternate},
			{Rel: "first", Type: atomType, Href: d.link(formatAtom, "")},
		},
	}
	if d.subtitle != "" {
		f.Subtitle = &refAtomText{Type: "text", Body: d.subtitle}
	}
	if d.next != "" {
		f.Links = append(f.Links, feeds.AtomLink{Rel: "next", Type: atomType, Href: d.link(formatAtom, d.next)})
	}
	if d.prev != "" {
		f.Links = append(f.Links, feeds.AtomLink{Rel: "previous", Type: atomType, Href: d.link(formatAtom, d.prev)})
	}
	for _, t := range d.deleted {
		f.Deleted = append(f.Deleted, refAtomDeleted{Ref: t.id, When: atomTime(t.when)})
	}
	for _, e := range d.entries {
		ae := refAtomEntry{
			ID:      e.id,
			Title:   refAtomText{Type: "text", Body: e.title},
			Updated: atomTime(e.updated),
			Author:  refAtomPerson(e.author),
		}
		if !e.published.IsZero() {
			ae.Published = atomTime(e.published)
		}
		if e.link != "" {
			ae.Links = []feeds.AtomLink{{Rel: "alternate", Href: e.link}}
		}
		for _, c := range e.categories {
			ae.Categories = append(ae.Categories, refAtomCategory{Term: c})
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

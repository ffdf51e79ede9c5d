package atom

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// document is one page of a feed as every format shows it.
type document struct {
	id        string // tag: URI
	title     string
	subtitle  string
	updated   time.Time
	author    Person
	alternate string
	hub       string // the WebSub hub's URL (first pages, hub enabled), else ""
	base      string // public base URL
	path      string // escaped feed name
	// self, next and prev are query strings ("" or "?after=...") of this
	// page and its neighbours; next and prev are "" when there is none.
	self, next, prev string
	entries          []entry
	deleted          []deletedEntry
	// expires is when the oldest listed tombstone ages out (zero: never).
	expires time.Time
}

// deletedEntry is an RFC 6721 tombstone.
type deletedEntry struct {
	id   string // the entry's tag: URI
	when time.Time
}

// link returns the URL of this feed in format (atom, rss, json) with query.
func (d *document) link(format, query string) string {
	return d.base + "/" + format + "/" + d.path + query
}

// pageQuery selects a page: at most one of after and before is set.
type pageQuery struct {
	after, before *thoonk.Cursor
	raw           string // "" or "?after=TOKEN" / "?before=TOKEN"
}

// parsePageQuery reads the after and before parameters of a raw query.
func parsePageQuery(raw string) (pageQuery, error) {
	q, err := core.ParseQuery(raw)
	if err != nil {
		return pageQuery{}, err
	}
	for _, name := range []string{"after", "before"} {
		if len(q[name]) > 1 {
			return pageQuery{}, fmt.Errorf("query parameter %s is given %d times; give it once: %w", name, len(q[name]), thoonk.ErrInvalid)
		}
	}
	after, before := q.Get("after"), q.Get("before")
	switch {
	case after != "" && before != "":
		return pageQuery{}, fmt.Errorf("give after or before, not both: %w", thoonk.ErrInvalid)
	case after != "":
		c, err := thoonk.DecodeCursor(after)
		return pageQuery{after: &c, raw: "?after=" + url.QueryEscape(after)}, namedParam("after", err)
	case before != "":
		c, err := thoonk.DecodeCursor(before)
		return pageQuery{before: &c, raw: "?before=" + url.QueryEscape(before)}, namedParam("before", err)
	}
	return pageQuery{}, nil
}

// namedParam names the query parameter in its error, if any.
func namedParam(name string, err error) error {
	if err != nil {
		return fmt.Errorf("query parameter %s: %w", name, err)
	}
	return nil
}

// baseURL is where readers reach the bridge.
func (b *Bridge) baseURL() string {
	if b.cfg.BaseURL != "" {
		return b.cfg.BaseURL
	}
	return b.hub.PublicURL
}

// tagID is the feed's tag: URI; entries append "/" and their escaped id.
func (b *Bridge) tagID(feed string) string {
	return "tag:" + b.cfg.TagAuthority + ":" + url.PathEscape(feed)
}

// load reads one page of a plain or sorted feed, with its config, its
// times and (on the first page) its tombstones: in one round trip (one
// pipeline: the page read joins the items' recorded times, and the config,
// the feed's time and the tombstones are read beside it), and a second
// one only when times must be recorded first (a first render).
func (b *Bridge) load(ctx context.Context, feed string, q pageQuery) (*document, error) {
	ttl := b.cfg.TombstoneTTL
	if q.raw != "" {
		ttl = 0 // tombstones go on the first page only
	}
	now := time.Now()
	pipe := b.hub.Store.Client().Pipeline()
	headOf := readHead(ctx, pipe, feed, ttl, now)
	pageOf := b.hub.Store.PageIn(ctx, pipe, feed, thoonk.PageRequest{Limit: b.cfg.Entries, After: q.after, Before: q.before, Join: timesJoin(feed)})
	_, _ = pipe.Exec(ctx) // each reply's error is looked at by its reader
	page, perr := pageOf()
	head, err := headOf()
	switch {
	case perr != nil:
		return nil, perr
	case err != nil:
		return nil, err
	case len(head.config) == 0:
		return nil, errNoFeed // deleted between the two reads
	}
	info := thoonk.FeedInfo{Name: feed, Type: page.Type, Config: head.config}
	times, ok := joinedTimes(head, page.Items, page.Type == thoonk.TypeSorted)
	if !ok {
		ids := make([]string, len(page.Items))
		for i, it := range page.Items {
			ids[i] = it.ID
		}
		if times, err = readTimes(ctx, b.hub.Store.Client(), feed, ids, page.Type == thoonk.TypeSorted, ttl, now); err != nil {
			return nil, err
		}
	}
	d := &document{
		id:       b.tagID(info.Name),
		title:    line(info.Config["title"]),
		subtitle: line(info.Config["description"]),
		updated:  times.feed,
		author:   b.cfg.Author,
		base:     b.baseURL(),
		path:     url.PathEscape(info.Name),
		self:     q.raw,
	}
	if d.title == "" {
		d.title = line(info.Name)
	}
	d.alternate = d.base + "/atom/#" + d.path
	if b.ws != nil && q.raw == "" {
		d.hub = b.ws.hubURL()
	}
	if b.cfg.AlternateURL != "" {
		d.alternate = strings.ReplaceAll(b.cfg.AlternateURL, "{feed}", templateValue(info.Name))
	}
	if n := len(page.Items); n > 0 {
		if page.HasNext() {
			d.next = "?after=" + page.Items[n-1].Cursor().Encode()
		}
		if page.HasPrev() {
			d.prev = "?before=" + page.Items[0].Cursor().Encode()
		}
	}
	m := b.cfg.mappingFor(info.Name)
	for i, it := range page.Items {
		e := b.mapped.apply(m, it.Data, b.cfg.MaxEntryBytes)
		e.id = d.id + "/" + url.PathEscape(it.ID)
		if e.title == "" {
			e.title = line(it.ID)
		}
		if e.author.Name == "" {
			e.author = b.cfg.Author
		}
		if e.link == "" && b.cfg.EntryURL != "" {
			e.link = strings.NewReplacer("{feed}", templateValue(info.Name), "{id}", templateValue(it.ID)).Replace(b.cfg.EntryURL)
		}
		seen := times.items[i]
		if e.updated.IsZero() {
			e.updated = latest(it.Published, seen.updated) // plain feeds: the score is the last publish or edit
		}
		if e.updated.IsZero() {
			e.updated = times.feed
		}
		if e.published.IsZero() && !seen.published.IsZero() && !seen.published.After(e.updated) {
			e.published = seen.published
		}
		d.updated = latest(d.updated, e.updated)
		d.entries = append(d.entries, e)
	}
	for _, t := range times.deleted {
		d.deleted = append(d.deleted, deletedEntry{id: d.id + "/" + url.PathEscape(t.id), when: t.when})
		d.updated = latest(d.updated, t.when)
		if end := t.when.Add(b.cfg.TombstoneTTL); d.expires.IsZero() || end.Before(d.expires) {
			d.expires = end
		}
	}
	d.updated = d.updated.UTC()
	return d, nil
}

// queryDelims are the characters url.PathEscape leaves alone that would
// split or change a query.
var queryDelims = strings.NewReplacer("&", "%26", "=", "%3D", "+", "%2B")

// templateValue escapes a feed name or item id for a link template, where
// it may stand in a path segment or in a query value.
func templateValue(s string) string { return queryDelims.Replace(url.PathEscape(s)) }

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

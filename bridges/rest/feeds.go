package rest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// FeedJSON describes a feed.
type FeedJSON struct {
	Name   string            `json:"name"`
	Type   thoonk.FeedType   `json:"type"`
	Config map[string]string `json:"config"`
	Count  int64             `json:"count"`
}

// FeedList is a page of feeds.
type FeedList struct {
	Feeds []FeedJSON `json:"feeds"`
	// Total is the number of feeds this client may see.
	Total int `json:"total"`
	// Next is the cursor of the next page, when there is one.
	Next string `json:"next,omitempty"`
}

// ItemList is a page of a feed's items in display order.
type ItemList struct {
	Feed  string          `json:"feed"`
	Type  thoonk.FeedType `json:"type"`
	Total int64           `json:"total"`
	Start int64           `json:"start"`
	Items []ItemJSON      `json:"items"`
}

// writeJSON answers with v as JSON and returns the body written.
func writeJSON(c *gin.Context, status int, v any) []byte {
	b, _ := json.Marshal(v) // cannot fail: API types only
	b = append(b, '\n')
	c.Data(status, "application/json", b)
	return b
}

// feedParam returns the path's feed when this client may see it, or
// answers with the same 404 for unknown, hidden and unreadable feeds.
func (b *Bridge) feedParam(c *gin.Context) (string, bool) {
	feed := param(c, "feed")
	if err := thoonk.ValidateFeedName(feed); err != nil {
		fail(c, "bad-request", err.Error())
		return "", false
	}
	if !b.exposed(actorOf(c), feed) {
		fail(c, "not-found", "")
		return "", false
	}
	return feed, true
}

// limitParam reads ?limit= (1 to core.MaxPageSize, default core.DefaultPageSize).
func limitParam(c *gin.Context) (int, bool) {
	s := c.Query("limit")
	if s == "" {
		return thoonk.DefaultPageSize, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > thoonk.MaxPageSize {
		fail(c, "bad-request", "limit must be a whole number from 1 to "+strconv.Itoa(thoonk.MaxPageSize))
		return 0, false
	}
	return n, true
}

// linkTo renders an RFC 8288 link to this path with the given query.
func linkTo(c *gin.Context, q url.Values, rel string) string {
	return "<" + c.Request.URL.EscapedPath() + "?" + q.Encode() + `>; rel="` + rel + `"`
}

func (b *Bridge) listFeeds(c *gin.Context) {
	limit, ok := limitParam(c)
	if !ok {
		return
	}
	after := ""
	if cur := c.Query("cursor"); cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil {
			fail(c, "bad-request", "cursor is not a cursor from this API")
			return
		}
		after = string(raw)
	}
	names, err := b.hub.Store.Feeds(c.Request.Context())
	if err != nil {
		b.failErr(c, err)
		return
	}
	actor := actorOf(c)
	names = slices.DeleteFunc(names, func(n string) bool { return !b.exposed(actor, n) })
	total := len(names)
	start, _ := slices.BinarySearch(names, after)
	if after != "" && start < len(names) && names[start] == after {
		start++
	}
	page := names[start:min(len(names), start+limit)]
	infos, err := b.hub.Store.Describe(c.Request.Context(), page...)
	if err != nil {
		b.failErr(c, err)
		return
	}
	out := FeedList{Feeds: make([]FeedJSON, 0, len(infos)), Total: total}
	for _, fi := range b.hub.Usable(b.Name(), infos) {
		out.Feeds = append(out.Feeds, FeedJSON{Name: fi.Name, Type: fi.Type, Config: fi.Config, Count: fi.Count})
	}
	if start+len(page) < len(names) {
		out.Next = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1]))
		c.Header("Link", linkTo(c, url.Values{"cursor": {out.Next}, "limit": {strconv.Itoa(limit)}}, "next"))
	}
	c.Header("Cache-Control", "no-cache")
	writeJSON(c, http.StatusOK, out)
}

func (b *Bridge) getFeed(c *gin.Context) {
	feed, ok := b.feedParam(c)
	if !ok {
		return
	}
	infos, err := b.hub.Store.Describe(c.Request.Context(), feed)
	if err != nil {
		b.failErr(c, err)
		return
	}
	if len(infos) == 0 {
		fail(c, "not-found", "")
		return
	}
	fi := infos[0]
	if fi.Err != nil {
		b.failErr(c, fi.Err)
		return
	}
	c.Header("Cache-Control", "no-cache")
	writeJSON(c, http.StatusOK, FeedJSON{Name: fi.Name, Type: fi.Type, Config: fi.Config, Count: fi.Count})
}

func (b *Bridge) getItem(c *gin.Context) {
	feed, ok := b.feedParam(c)
	if !ok {
		return
	}
	inm, err := core.ParseETags("If-None-Match", c.Request.Header.Values("If-None-Match"))
	if err != nil {
		fail(c, "bad-request", err.Error())
		return
	}
	it, err := b.readItemFast(c.Request.Context(), feed, param(c, "id"))
	if err != nil {
		b.failErr(c, err)
		return
	}
	body, _ := json.Marshal(it)
	body = append(body, '\n')
	etag := itemETag(it, body)
	c.Header("ETag", etag)
	c.Header("Cache-Control", "no-cache")
	if inm.Matches(etag, true) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, "application/json", body)
}

// cursorParam decodes the cursor in query parameter name, if any.
func cursorParam(c *gin.Context, name string) (*thoonk.Cursor, bool) {
	s := c.Query(name)
	if s == "" {
		return nil, true
	}
	cur, err := thoonk.DecodeCursor(s)
	if err != nil {
		fail(c, "bad-request", name+": not a cursor from this API")
		return nil, false
	}
	return &cur, true
}

// listItems serves one page in display order (?cursor= onward, ?before=
// backward), or, with ?after= or ?wait=, the items that came after a
// cursor (newer on plain feeds, later in position on sorted feeds),
// waiting up to wait seconds for one to exist (long polling).
func (b *Bridge) listItems(c *gin.Context) {
	feed, ok := b.feedParam(c)
	if !ok {
		return
	}
	limit, ok := limitParam(c)
	if !ok {
		return
	}
	next, ok1 := cursorParam(c, "cursor")
	before, ok2 := cursorParam(c, "before")
	after, ok3 := cursorParam(c, "after")
	if !ok1 || !ok2 || !ok3 {
		return
	}
	wait, ok := waitParam(c, b.cfg.MaxWait)
	if !ok {
		return
	}
	if n := btoi(next != nil) + btoi(before != nil) + btoi(after != nil); n > 1 || n == 1 && wait > 0 && after == nil {
		fail(c, "bad-request", "use one of cursor, before and after; wait goes with after (or alone)")
		return
	}
	if after != nil || wait > 0 {
		b.poll(c, feed, after, limit, wait)
		return
	}
	page, err := b.hub.Store.Page(c.Request.Context(), feed, thoonk.PageRequest{Limit: limit, After: next, Before: before})
	if err != nil {
		b.failErr(c, err)
		return
	}
	var links []string
	if page.HasNext() && len(page.Items) > 0 {
		q := url.Values{"cursor": {page.Items[len(page.Items)-1].Cursor().Encode()}, "limit": {strconv.Itoa(limit)}}
		links = append(links, linkTo(c, q, "next"))
	}
	if page.HasPrev() && len(page.Items) > 0 {
		q := url.Values{"before": {page.Items[0].Cursor().Encode()}, "limit": {strconv.Itoa(limit)}}
		links = append(links, linkTo(c, q, "prev"))
	}
	if len(links) > 0 {
		c.Header("Link", strings.Join(links, ", "))
	}
	c.Header("Cache-Control", "no-cache")
	writeJSON(c, http.StatusOK, itemList(feed, page))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func itemList(feed string, page thoonk.Page) ItemList {
	out := ItemList{Feed: feed, Type: page.Type, Total: page.Total, Start: page.Start, Items: make([]ItemJSON, 0, len(page.Items))}
	for _, it := range page.Items {
		out.Items = append(out.Items, listedItem(it))
	}
	return out
}

// waitParam reads ?wait= seconds, capped at max.
func waitParam(c *gin.Context, max time.Duration) (time.Duration, bool) {
	s := c.Query("wait")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		fail(c, "bad-request", "wait must be a whole number of seconds, 0 or more")
		return 0, false
	}
	return seconds(n, max), true
}

// poll answers with the items after the cursor (all, from the start, when
// there is none) as soon as one exists, or 204 when the wait runs out. It
// registers for the feed's events before reading, so an item published
// between the read and the wait still ends the wait.
func (b *Bridge) poll(c *gin.Context, feed string, after *thoonk.Cursor, limit int, wait time.Duration) {
	ctx := c.Request.Context()
	typ, err := b.hub.Store.Type(ctx, feed)
	if err != nil {
		b.failErr(c, err)
		return
	}
	req := thoonk.PageRequest{Limit: limit}
	if after != nil && typ == thoonk.TypeSorted {
		req.After = after
	} else if after != nil {
		req.Before = after // plain feeds show newest first: newer is before
	}
	p, done, ok := b.startPoll(c, feed, wait)
	if !ok {
		return
	}
	defer done()
	for {
		page, err := b.hub.Store.Page(ctx, feed, req)
		if err != nil {
			b.failErr(c, err)
			return
		}
		if len(page.Items) > 0 {
			newest := page.Items[0]
			if typ == thoonk.TypeSorted {
				newest = page.Items[len(page.Items)-1]
			}
			q := url.Values{"after": {newest.Cursor().Encode()}, "limit": {strconv.Itoa(limit)}, "wait": {strconv.Itoa(int(wait.Seconds()))}}
			c.Header("Link", linkTo(c, q, "next"))
			c.Header("Cache-Control", "no-store")
			writeJSON(c, http.StatusOK, itemList(feed, page))
			return
		}
		if !p.waiting() {
			c.Status(http.StatusNoContent)
			return
		}
		if !p.wait(ctx) {
			return
		}
	}
}

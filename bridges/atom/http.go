package atom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/feeds"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// renderTimeout bounds one render; it runs detached from the request that
// started it, because other requests may be waiting for it.
const renderTimeout = 10 * time.Second

// errNoFeed means the feed does not exist or holds no readable items.
var errNoFeed = fmt.Errorf("no such feed: %w", thoonk.ErrNotFound)

// MountHTTP serves /atom/{feed}, /rss/{feed}, /json/{feed} and the
// discovery page /atom/ on the shared listener.
func (b *Bridge) MountHTTP(hub *core.Hub, mux *http.ServeMux) error {
	b.hub = hub
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Feed names are single percent-encoded segments ("a%2Fb" is the feed
	// "a/b"): route on the escaped path and unescape the name ourselves
	// (gin's own unescaping turns '+' into a space).
	r.UseEscapedPath = true
	r.UnescapePathValues = false
	// names may end with "/" or hold "//": no redirect to another path
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(b.cfg.TrustedProxies); err != nil {
		return fmt.Errorf("atom: trusted_proxies: %w", err)
	}
	r.Use(func(*gin.Context) { hub.Metrics.RequestIn(b.Name()) }, b.authenticate)
	read := []string{http.MethodGet, http.MethodHead}
	r.Match(read, "/atom/", b.serveIndex)
	for _, format := range []string{formatAtom, formatRSS, formatJSON} {
		r.Match(read, "/"+format+"/:feed", b.serveFeed(format))
	}
	r.NoRoute(func(c *gin.Context) { problem(c, http.StatusNotFound, "no such feed") })
	r.NoMethod(func(c *gin.Context) {
		if c.Request.URL.Path == hubPath {
			hubText(c, http.StatusMethodNotAllowed, "send subscription requests with POST")
			return
		}
		problem(c, http.StatusMethodNotAllowed, "feeds are read only: use GET or HEAD")
	})
	for _, prefix := range []string{"/atom/", "/rss/", "/json/"} {
		mux.Handle(prefix, r)
	}
	if b.ws != nil {
		b.ws.mountHub(r, mux)
	}
	return nil
}

// actorKey holds the request's reader (a core.Actor) in the gin context.
const actorKey = "feedbridge.actor"

// readerOf returns the reader authenticate proved.
func readerOf(c *gin.Context) core.Actor { return c.MustGet(actorKey).(core.Actor) }

// authenticate proves the reader: a token (Bearer, the password of HTTP
// Basic, or ?access_token=) makes it atom:NAME, no token atom:anonymous. A
// wrong token is a 401 before the path is looked at, so it tells nothing
// about which feeds exist; it counts against the client address's rate
// limit, which throttles token guessing.
func (b *Bridge) authenticate(c *gin.Context) {
	// what is served depends on the credentials: no shared cache may
	// give one reader's answer to another
	c.Header("Vary", "Authorization")
	reader := core.Actor{Protocol: "atom", ID: core.Anonymous}
	if token, given := core.RequestToken(c.Request, true); given {
		name, ok := b.tokens.Lookup(token)
		if !ok {
			if b.allow(c) {
				c.Header("WWW-Authenticate", `Basic realm="feedbridge"`)
				problem(c, http.StatusUnauthorized, "the token is not valid")
			}
			c.Abort()
			return
		}
		reader.ID = name
	}
	c.Set(actorKey, reader)
	c.Next()
}

// allow takes one request from the client address's bucket, or answers
// 429 with Retry-After and returns false.
func (b *Bridge) allow(c *gin.Context) bool {
	ok, wait := b.limits.Allow("ip:"+c.ClientIP(), b.cfg.RateLimit.PerIP)
	if !ok {
		c.Header("Retry-After", core.RetryAfter(wait))
		problem(c, http.StatusTooManyRequests, "too many requests; retry after "+core.RetryAfter(wait)+"s")
	}
	return ok
}

// readable reports whether reader may see feed: the adapter exposes it
// and the ACL lets the reader read it.
func (b *Bridge) readable(reader core.Actor, feed string) bool {
	return b.hub.Exposed(b.cfg.Feeds).Allows(feed) && b.hub.ACL.Allowed(reader, feed, core.OpRead)
}

func (b *Bridge) serveFeed(format string) gin.HandlerFunc {
	return func(c *gin.Context) {
		feed, err := url.PathUnescape(c.Param("feed"))
		if err != nil || thoonk.ValidateFeedName(feed) != nil || !b.readable(readerOf(c), feed) {
			problem(c, http.StatusNotFound, "no such feed")
			return
		}
		q, err := parsePageQuery(c.Request.URL.RawQuery)
		if err == nil {
			err = checkConditions(c.Request)
		}
		if err != nil {
			problem(c, http.StatusBadRequest, err.Error())
			return
		}
		// The document is the same for every reader who may read the feed
		// (checked above): one cache entry serves them all.
		r, ok := b.cached(c, feed, format+q.raw, func(ctx context.Context) (*rendered, error) {
			return b.renderFeed(ctx, feed, format, q)
		})
		if ok {
			if q.raw == "" {
				b.ws.advertise(c, format, feed)
			}
			send(c, r)
		}
	}
}

// renderFeed renders one page of a feed. A feed that does not exist or
// holds no items (a queue or job feed) is errNoFeed.
func (b *Bridge) renderFeed(ctx context.Context, feed, format string, q pageQuery) (*rendered, error) {
	d, err := b.load(ctx, feed, q)
	if errors.Is(err, thoonk.ErrFeedNotFound) || errors.Is(err, thoonk.ErrWrongType) {
		return nil, fmt.Errorf("%w: %w", errNoFeed, err) // gone, or a queue or job feed
	}
	if err != nil {
		return nil, err
	}
	body, err := encode(format, d)
	if err != nil {
		return nil, fmt.Errorf("encode %s of %q: %w", format, feed, err)
	}
	// Item payloads may claim future times; Last-Modified must not.
	modified := d.updated
	if now := time.Now(); modified.After(now) {
		modified = now
	}
	return newRendered(body, mediaTypes[format], modified, d.expires), nil
}

func newRendered(body []byte, ctype string, modified, expires time.Time) *rendered {
	sum := sha256.Sum256(body)
	return &rendered{
		body: body, ctype: ctype, modified: modified, expires: expires,
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`,
	}
}

// cached returns a document from the cache while the event subscription
// keeps it current; otherwise (not cached, or the cache is bypassed) it
// renders it, within the client address's rate limit. When it returns
// false it has answered the request with a problem.
func (b *Bridge) cached(c *gin.Context, key, variant string, render func(context.Context) (*rendered, error)) (*rendered, bool) {
	following := b.following.Load() && b.hub.Events.Connected()
	if following {
		if r := b.cache.peek(key, variant); r != nil {
			return r, true
		}
	}
	if !b.allow(c) {
		return nil, false
	}
	ctx := c.Request.Context()
	var r *rendered
	var err error
	if following {
		r, err = b.cache.load(ctx, key, variant, func() (*rendered, error) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renderTimeout)
			defer cancel()
			return render(rctx)
		})
	} else {
		r, err = render(ctx)
	}
	switch {
	case errors.Is(err, errNoFeed):
		problem(c, http.StatusNotFound, "no such feed")
	case b.hub.Malformed(b.Name(), err):
		problem(c, http.StatusInternalServerError, err.Error())
	case errors.Is(err, thoonk.ErrItemNotFound):
		problem(c, http.StatusBadRequest, "the page cursor no longer points into the feed: start again from the first page")
	case err != nil:
		b.unavailable(c, err)
	}
	return r, err == nil
}

// send answers with r, or 304 when the request's validators match. A
// reader with a token gets it as private: no shared cache keeps it.
func send(c *gin.Context, r *rendered) {
	h := c.Writer.Header()
	h.Set("Content-Type", r.ctype)
	h.Set("ETag", r.etag)
	h.Set("Cache-Control", "no-cache")
	if readerOf(c).ID != core.Anonymous {
		h.Set("Cache-Control", "private, no-cache")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(c.Writer, c.Request, "", r.modified, bytes.NewReader(r.body))
}

// checkConditions refuses a malformed If-None-Match (never taken as a
// match of anything) and If-Modified-Since (http.ServeContent would
// ignore it silently).
func checkConditions(r *http.Request) error {
	if _, err := core.ParseETags("If-None-Match", r.Header.Values("If-None-Match")); err != nil {
		return err
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if _, err := http.ParseTime(ims); err != nil {
			return fmt.Errorf("If-Modified-Since %q is not an HTTP date such as %s: %w", ims, http.TimeFormat, core.ErrBadHeader)
		}
	}
	return nil
}

// problem answers with an RFC 9457 problem document.
func problem(c *gin.Context, status int, detail string) {
	body, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
	c.Header("Cache-Control", "no-store")
	c.Data(status, "application/problem+json", body)
}

func (b *Bridge) unavailable(c *gin.Context, err error) {
	b.hub.Log.Warn("atom: cannot render", "path", c.Request.URL.EscapedPath(), "err", err)
	c.Header("Retry-After", "5")
	problem(c, http.StatusServiceUnavailable, "the feed store is unavailable; try again shortly")
}

// ---- discovery ----

// listed is a feed on the discovery page.
type listed struct {
	Name, Title, Anchor, Atom, RSS, JSON string
}

func (b *Bridge) serveIndex(c *gin.Context) {
	q, err := core.ParseQuery(c.Request.URL.RawQuery)
	if err == nil {
		err = checkConditions(c.Request)
	}
	if err != nil {
		problem(c, http.StatusBadRequest, err.Error())
		return
	}
	format := "html"
	if f, ok := q["format"]; ok {
		format = f[0]
		if len(f) > 1 || format != "html" && format != "opml" {
			problem(c, http.StatusBadRequest, "query parameter format must be given once, as html or opml")
			return
		}
	}
	// the list depends on the reader: one cache entry per reader
	reader := readerOf(c)
	r, ok := b.cached(c, indexKey, format+" "+reader.ID, func(ctx context.Context) (*rendered, error) {
		return b.renderIndex(ctx, format, reader)
	})
	if ok {
		send(c, r)
	}
}

// renderIndex lists the plain and sorted feeds reader may read as HTML
// (with feed autodiscovery links) or OPML.
func (b *Bridge) renderIndex(ctx context.Context, format string, reader core.Actor) (*rendered, error) {
	names, err := b.hub.Store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	var readable []string
	for _, n := range names {
		if b.readable(reader, n) {
			readable = append(readable, n)
		}
	}
	infos, err := b.hub.Store.Describe(ctx, readable...)
	if err != nil {
		return nil, err
	}
	base := b.baseURL()
	var list []listed
	for _, info := range b.hub.Usable(b.Name(), infos) {
		if info.Type != thoonk.TypeFeed && info.Type != thoonk.TypeSorted {
			continue
		}
		p := url.PathEscape(info.Name)
		l := listed{Name: line(info.Name), Title: line(info.Config["title"]), Anchor: p,
			Atom: base + "/atom/" + p, RSS: base + "/rss/" + p, JSON: base + "/json/" + p}
		if l.Title == "" {
			l.Title = l.Name
		}
		list = append(list, l)
	}
	var buf bytes.Buffer
	if format == "opml" {
		err = feeds.WriteXML(opmlOf(list), &buf)
		return newRendered(buf.Bytes(), "text/x-opml; charset=utf-8", time.Time{}, time.Time{}), err
	}
	err = indexPage.Execute(&buf, list)
	return newRendered(buf.Bytes(), "text/html; charset=utf-8", time.Time{}, time.Time{}), err
}

var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Feeds</title>
{{- range .}}
<link rel="alternate" type="application/atom+xml" title="{{.Title}}" href="{{.Atom}}">
{{- end}}
</head>
<body>
<h1>Feeds</h1>
<ul>
{{- range .}}
<li id="{{.Anchor}}"><strong>{{.Title}}</strong> ({{.Name}}): <a href="{{.Atom}}">Atom</a> · <a href="{{.RSS}}">RSS</a> · <a href="{{.JSON}}">JSON Feed</a></li>
{{- else}}
<li>No feeds are exposed.</li>
{{- end}}
</ul>
<p><a href="?format=opml">OPML</a></p>
</body>
</html>
`))

type opml struct {
	XMLName  xml.Name      `xml:"opml"`
	Version  string        `xml:"version,attr"`
	Title    string        `xml:"head>title"`
	Outlines []opmlOutline `xml:"body>outline"`
}

type opmlOutline struct {
	Type   string `xml:"type,attr"`
	Text   string `xml:"text,attr"`
	Title  string `xml:"title,attr"`
	XMLURL string `xml:"xmlUrl,attr"`
}

// FeedXml lets feeds.WriteXML encode the outline.
func (o *opml) FeedXml() any { return o }

func opmlOf(list []listed) *opml {
	o := &opml{Version: "2.0", Title: "Feeds"}
	for _, l := range list {
		o.Outlines = append(o.Outlines, opmlOutline{Type: "rss", Text: l.Title, Title: l.Title, XMLURL: l.Atom})
	}
	return o
}

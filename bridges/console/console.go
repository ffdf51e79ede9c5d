package console

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

//go:embed assets/*.html
var pages embed.FS

//go:embed assets/console.js assets/console.css
var static embed.FS

// Bridge is the console adapter.
type Bridge struct {
	cfg    Config
	tokens *core.TokenSet
	limits *core.RateLimiter
	tmpl   *template.Template
	hub    *core.Hub
	admin  *core.Admin
}

var (
	_ core.Adapter                       = (*Bridge)(nil)
	_ core.HTTPMounter                   = (*Bridge)(nil)
	_ interface{ EffectiveConfig() any } = (*Bridge)(nil)
)

func newBridge(cfg Config) (*Bridge, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"feedPath": func(name string) string { return "/console/feeds/" + segment(name) },
		"jobsPath": func(name string) string { return "/console/jobs/" + segment(name) },
		"since":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	}).ParseFS(pages, "assets/*.html")
	if err != nil {
		return nil, err
	}
	return &Bridge{cfg: cfg, tokens: core.NewTokenSet(cfg.Tokens), limits: core.NewRateLimiter(cfg.RateLimit.MaxClients), tmpl: t}, nil
}

// segment percent-encodes a name as one path segment.
func segment(name string) string { return core.PathSegment(name) }

// Name returns "console".
func (b *Bridge) Name() string { return "console" }

// EffectiveConfig returns the section with every default filled in, for
// bridge check (tokens masked).
func (b *Bridge) EffectiveConfig() any { return b.cfg }

// Run reports the console up until ctx ends: it holds no connection of
// its own (pages read Redis when asked; live updates come from the REST
// adapter's streams).
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	hub.SetState(b.Name(), core.StateUp, nil)
	<-ctx.Done()
	return nil
}

// MountHTTP serves the dashboard at / and the console's pages under
// /console/.
func (b *Bridge) MountHTTP(hub *core.Hub, mux *http.ServeMux) error {
	b.hub = hub
	b.admin = core.NewAdmin(hub.Store, hub.ACL, hub.Log.With("component", "console"))
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.UseRawPath = true // feed names may hold %2F
	e.UnescapePathValues = false
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(b.cfg.TrustedProxies); err != nil {
		return fmt.Errorf("console: trusted_proxies: %w", err)
	}
	e.Use(b.headers)
	read := []string{http.MethodGet, http.MethodHead}
	e.Match(read, "/", b.dashboard)
	e.Match(read, "/console/", func(c *gin.Context) { c.Redirect(http.StatusFound, "/") })
	e.Match(read, "/console/feeds/:feed", b.feedPage)
	e.Match(read, "/console/jobs/:queue", b.jobsPage)
	e.POST("/console/jobs/:queue/:id/:op", b.jobAction)
	e.Match(read, "/console/summary.json", b.summaryJSON)
	assets, _ := fs.Sub(static, "assets")
	e.StaticFS("/console/static", http.FS(assets))
	e.NoRoute(func(c *gin.Context) { b.errorPage(c, http.StatusNotFound, "There is no such page.") })
	e.NoMethod(func(c *gin.Context) {
		b.errorPage(c, http.StatusMethodNotAllowed, "This page does not take that method.")
	})
	mux.Handle("/{$}", e)
	mux.Handle("/console/", e)
	return nil
}

// headers names the route for the listener's logs and metrics and sets
// the pages' security headers: scripts, styles and connections from this
// origin only, no framing, forms posting here only.
func (b *Bridge) headers(c *gin.Context) {
	core.SetRoute(c.Request, c.FullPath())
	b.hub.Metrics.RequestIn(b.Name())
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "+
		"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

// reader is who reads the pages: the console knows no reader's token, so
// every reader is console:anonymous (the ACL's read decides).
var reader = core.Actor{Protocol: "console", ID: core.Anonymous}

// layout is what every page shows around its content.
type layout struct {
	Title string
	// Live is the REST stream the page's script follows ("" = none).
	Live string
	// LiveNote says why a page is not live, when it is not.
	LiveNote string
	Flash    string
	Error    string
	Status   int
}

func (b *Bridge) render(c *gin.Context, status int, page string, data any) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if c.Request.Method == http.MethodHead {
		return
	}
	if err := b.tmpl.ExecuteTemplate(c.Writer, page, data); err != nil {
		b.hub.Log.Warn("console: render", "page", page, "err", err)
	}
}

func (b *Bridge) errorPage(c *gin.Context, status int, msg string) {
	b.render(c, status, "error.html", layout{Title: http.StatusText(status), Error: msg, Status: status})
}

// storeFailed answers a Redis failure without its text (logged).
func (b *Bridge) storeFailed(c *gin.Context, err error) {
	b.hub.Log.Warn("console: read", "path", c.Request.URL.EscapedPath(), "err", err)
	c.Header("Retry-After", "5")
	b.errorPage(c, http.StatusServiceUnavailable, "The feed store did not answer; try again in a moment.")
}

// live returns the REST stream path a page follows, or why there is none.
func (b *Bridge) live(path string) (string, string) {
	if _, ok := b.hub.States()["rest"]; !ok {
		return "", "Live updates need the REST adapter (rest.enabled: true): this page shows what was there when it loaded."
	}
	return path, ""
}

// ItemView is an item as the console shows it.
type ItemView struct {
	ID        string
	Summary   string
	Published string
}

// summary renders a payload as one line of text: a JSON item's title (or
// its JSON), text as is, binary as its size; at most 200 characters.
func summary(data []byte) string {
	s := ""
	switch {
	case !utf8.Valid(data):
		return fmt.Sprintf("(%d bytes of binary data)", len(data))
	case json.Valid(data):
		var obj map[string]any
		if json.Unmarshal(data, &obj) == nil {
			if t, ok := obj["title"].(string); ok && t != "" {
				s = t
				break
			}
		}
		s = string(data)
	default:
		s = string(data)
	}
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > 200 {
		s = string([]rune(s)[:199]) + "…"
	}
	return s
}

func itemView(it thoonk.Item) ItemView {
	v := ItemView{ID: it.ID, Summary: summary(it.Data)}
	if !it.Published.IsZero() {
		v.Published = it.Published.UTC().Format("2006-01-02 15:04:05")
	}
	return v
}

// FeedView is a feed on the dashboard.
type FeedView struct {
	Name  string
	Title string
	Type  thoonk.FeedType
	Count int64
	Items []ItemView
}

// QueueView is a job feed with its jobs by state.
type QueueView struct {
	Name                         string           `json:"name"`
	Available, InFlight, Stalled int64            `json:"-"`
	Counts                       map[string]int64 `json:"counts"`
}

// AdapterView is an adapter's state.
type AdapterView struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Since string `json:"since"`
	Error string `json:"last_error,omitempty"`
}

type dashboardData struct {
	layout
	Feeds     []FeedView
	MoreFeeds int
	Queues    []QueueView
	Adapters  []AdapterView
	HasREST   bool
}

// feedsAndQueues lists the feeds the console exposes and the job feeds
// the reader may read.
func (b *Bridge) feedsAndQueues(ctx context.Context) (feeds []thoonk.FeedInfo, queues []QueueView, err error) {
	names, err := b.hub.Store.Feeds(ctx)
	if err != nil {
		return nil, nil, err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !b.hub.ACL.Allowed(reader, n, core.OpRead) })
	infos, err := b.hub.Store.Describe(ctx, names...)
	if err != nil {
		return nil, nil, err
	}
	exposed := b.hub.Exposed(b.cfg.Feeds)
	for _, fi := range infos {
		switch {
		case fi.Type == thoonk.TypeJob:
			n, err := b.hub.Store.Jobs(fi.Name).Counts(ctx)
			if err != nil {
				return nil, nil, err
			}
			queues = append(queues, QueueView{Name: fi.Name, Available: n.Available, InFlight: n.InFlight, Stalled: n.Stalled,
				Counts: map[string]int64{"available": n.Available, "in_flight": n.InFlight, "stalled": n.Stalled}})
		case exposed.Allows(fi.Name):
			feeds = append(feeds, fi)
		}
	}
	return feeds, queues, nil
}

func (b *Bridge) adapters() []AdapterView {
	states := b.hub.States()
	out := make([]AdapterView, 0, len(states))
	for name, st := range states {
		out = append(out, AdapterView{Name: name, State: string(st.State), Since: st.Since.UTC().Format("2006-01-02 15:04:05 UTC"), Error: st.LastError})
	}
	slices.SortFunc(out, func(a, b AdapterView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (b *Bridge) dashboard(c *gin.Context) {
	ctx := c.Request.Context()
	infos, queues, err := b.feedsAndQueues(ctx)
	if err != nil {
		b.storeFailed(c, err)
		return
	}
	d := dashboardData{Queues: queues, Adapters: b.adapters()}
	d.Title = "feedbridge console"
	d.Live, d.LiveNote = b.live("/v1/events")
	d.HasREST = d.Live != ""
	if len(infos) > b.cfg.MaxFeeds {
		d.MoreFeeds = len(infos) - b.cfg.MaxFeeds
		infos = infos[:b.cfg.MaxFeeds]
	}
	for _, fi := range infos {
		fv := FeedView{Name: fi.Name, Title: fi.Config["title"], Type: fi.Type, Count: fi.Count}
		if fi.Type == thoonk.TypeFeed || fi.Type == thoonk.TypeSorted {
			page, err := b.hub.Store.Page(ctx, fi.Name, thoonk.PageRequest{Limit: b.cfg.Items})
			if err != nil && !errors.Is(err, thoonk.ErrNotFound) && !errors.Is(err, thoonk.ErrWrongType) {
				b.storeFailed(c, err)
				return
			}
			for _, it := range page.Items {
				fv.Items = append(fv.Items, itemView(it))
			}
		}
		d.Feeds = append(d.Feeds, fv)
	}
	b.render(c, http.StatusOK, "dashboard.html", d)
}

type feedData struct {
	layout
	Feed       FeedView
	Start, End int64
	Next, Prev string
	First      bool
	PageSize   int
}

// param returns a path parameter decoded exactly once (gin matched the
// raw path when there was one).
func param(c *gin.Context, name string) string { return core.PathParam(c.Request, c.Param(name)) }

func (b *Bridge) feedPage(c *gin.Context) {
	feed := param(c, "feed")
	if thoonk.ValidateFeedName(feed) != nil || !b.hub.Exposed(b.cfg.Feeds).Allows(feed) || !b.hub.ACL.Allowed(reader, feed, core.OpRead) {
		b.errorPage(c, http.StatusNotFound, "There is no such feed, or it is not shown here.")
		return
	}
	req := thoonk.PageRequest{Limit: b.cfg.PageSize}
	for _, k := range []string{"cursor", "before"} {
		if s := c.Query(k); s != "" {
			cur, err := thoonk.DecodeCursor(s)
			if err != nil {
				b.errorPage(c, http.StatusBadRequest, "That page link is not valid: start again from the feed's first page.")
				return
			}
			if k == "cursor" {
				req.After = &cur
			} else {
				req.Before = &cur
			}
		}
	}
	ctx := c.Request.Context()
	infos, err := b.hub.Store.Describe(ctx, feed)
	if err != nil {
		b.storeFailed(c, err)
		return
	}
	if len(infos) == 0 || (infos[0].Type != thoonk.TypeFeed && infos[0].Type != thoonk.TypeSorted) {
		b.errorPage(c, http.StatusNotFound, "There is no such feed, or it holds no items to page through (a queue or job feed).")
		return
	}
	page, err := b.hub.Store.Page(ctx, feed, req)
	switch {
	case errors.Is(err, thoonk.ErrNotFound):
		b.errorPage(c, http.StatusNotFound, "That page no longer exists: start again from the feed's first page.")
		return
	case err != nil:
		b.storeFailed(c, err)
		return
	}
	d := feedData{Feed: FeedView{Name: feed, Title: infos[0].Config["title"], Type: infos[0].Type, Count: page.Total},
		Start: page.Start + 1, End: page.Start + int64(len(page.Items)), First: !page.HasPrev(), PageSize: b.cfg.PageSize}
	for _, it := range page.Items {
		d.Feed.Items = append(d.Feed.Items, itemView(it))
	}
	base := "/console/feeds/" + segment(feed)
	if page.HasNext() && len(page.Items) > 0 {
		d.Next = base + "?cursor=" + url.QueryEscape(page.Items[len(page.Items)-1].Cursor().Encode())
	}
	if page.HasPrev() && len(page.Items) > 0 {
		d.Prev = base + "?before=" + url.QueryEscape(page.Items[0].Cursor().Encode())
	}
	d.Title = "Feed " + feed
	if d.First { // later pages stay as they are: new items go to the first
		d.Live, d.LiveNote = b.live("/v1/feeds/" + segment(feed) + "/events")
	}
	b.render(c, http.StatusOK, "feed.html", d)
}

// StalledView is a stalled job as its page shows it.
type StalledView struct {
	core.StalledJob
	Payload string
	Action  string
}

type jobsData struct {
	layout
	Queue   QueueView
	Stalled []StalledView
	Total   int
	Shown   int
}

func (b *Bridge) jobsPage(c *gin.Context) {
	b.showJobs(c, http.StatusOK, layout{Flash: flash(c.Query("done"), c.Query("job"))})
}

// flash is the message of a finished admin request (from the redirect).
func flash(done, job string) string {
	switch done {
	case "retried":
		return "Job " + job + " is available to workers again."
	case "dropped":
		return "Job " + job + " was dropped."
	}
	return ""
}

func (b *Bridge) showJobs(c *gin.Context, status int, l layout) {
	queue := param(c, "queue")
	ctx := c.Request.Context()
	if thoonk.ValidateFeedName(queue) != nil {
		b.errorPage(c, http.StatusNotFound, "There is no such job feed.")
		return
	}
	typ, err := b.hub.Store.Type(ctx, queue)
	if errors.Is(err, thoonk.ErrNotFound) || err == nil && typ != thoonk.TypeJob || !b.hub.ACL.Allowed(reader, queue, core.OpRead) {
		b.errorPage(c, http.StatusNotFound, "There is no such job feed, or it is not shown here.")
		return
	}
	if err != nil {
		b.storeFailed(c, err)
		return
	}
	n, err := b.hub.Store.Jobs(queue).Counts(ctx)
	if err != nil {
		b.storeFailed(c, err)
		return
	}
	jobs, total, err := b.admin.Stalled(ctx, reader, queue, b.cfg.StalledJobs)
	if err != nil {
		b.storeFailed(c, err)
		return
	}
	d := jobsData{layout: l, Queue: QueueView{Name: queue, Available: n.Available, InFlight: n.InFlight, Stalled: n.Stalled}, Total: total}
	for _, j := range jobs {
		sv := StalledView{StalledJob: j, Payload: payloadText(j.Item)}
		if aj, err := core.DecodeActionJob(j.Item); err == nil {
			sv.Action = aj.Verb + " on " + aj.Feed + " by " + aj.Actor.String()
		}
		d.Stalled = append(d.Stalled, sv)
	}
	d.Shown = len(d.Stalled)
	d.Title = "Jobs of " + queue
	b.render(c, status, "jobs.html", d)
}

// payloadText shows a job payload: text as is (JSON indented), binary as
// base64; at most 4 KiB.
func payloadText(p []byte) string {
	s := string(p)
	if !utf8.Valid(p) {
		s = "base64: " + base64.StdEncoding.EncodeToString(p)
	} else if json.Valid(p) {
		var v any
		if json.Unmarshal(p, &v) == nil {
			if b, err := json.MarshalIndent(v, "", "  "); err == nil {
				s = string(b)
			}
		}
	}
	if len(s) > 4096 {
		s = s[:4096] + "\n… (" + fmt.Sprint(len(p)) + " bytes in all)"
	}
	return s
}

// jobAction retries or drops a stalled job for an operator: the token
// (form field token, or Authorization: Bearer) proves console:NAME, whom
// the ACL must grant admin on the job feed. A browser is sent back to the
// job feed's page (303); a wrong token is a 401, no grant a 403.
func (b *Bridge) jobAction(c *gin.Context) {
	queue, id, op := param(c, "queue"), param(c, "id"), c.Param("op")
	if op != "retry" && op != "drop" {
		b.errorPage(c, http.StatusNotFound, "There is no such action: use retry or drop.")
		return
	}
	if ok, wait := b.limits.Allow("ip:"+c.ClientIP(), b.cfg.RateLimit.PerIP); !ok {
		c.Header("Retry-After", core.RetryAfter(wait))
		b.showJobs(c, http.StatusTooManyRequests, layout{Error: "Too many requests from your address; wait " + core.RetryAfter(wait) + " s."})
		return
	}
	token, _ := core.RequestToken(c.Request, false)
	if form := c.PostForm("token"); form != "" {
		token = form
	}
	name, ok := b.tokens.Lookup(token)
	if !ok {
		msg := "That token is not one of console.tokens."
		if token == "" {
			msg = "Enter an operator token (one of console.tokens) to retry or drop jobs."
		}
		c.Header("WWW-Authenticate", `Bearer realm="feedbridge console"`)
		b.showJobs(c, http.StatusUnauthorized, layout{Error: msg})
		return
	}
	actor := core.Actor{Protocol: "console", ID: name}
	var err error
	if op == "retry" {
		err = b.admin.Retry(c.Request.Context(), actor, queue, id)
	} else {
		err = b.admin.Drop(c.Request.Context(), actor, queue, id)
	}
	switch {
	case errors.Is(err, core.ErrDenied):
		b.showJobs(c, http.StatusForbidden, layout{Error: actor.String() + " may not retry or drop jobs of " + queue + ": the ACL must allow it admin."})
	case errors.Is(err, thoonk.ErrNotStalled), errors.Is(err, thoonk.ErrNotFound):
		b.showJobs(c, http.StatusConflict, layout{Error: "Job " + id + " is not stalled (any more): nothing was changed."})
	case errors.Is(err, thoonk.ErrInvalid):
		b.errorPage(c, http.StatusBadRequest, "That job name is not valid.")
	case err != nil:
		b.storeFailed(c, err)
	default:
		done := map[string]string{"retry": "retried", "drop": "dropped"}[op]
		c.Redirect(http.StatusSeeOther, "/console/jobs/"+segment(queue)+"?done="+done+"&job="+url.QueryEscape(id))
	}
}

// summaryJSON gives the page's script the queue counts and adapter states.
func (b *Bridge) summaryJSON(c *gin.Context) {
	_, queues, err := b.feedsAndQueues(c.Request.Context())
	if err != nil {
		b.hub.Log.Warn("console: summary", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "the feed store did not answer"})
		return
	}
	if queues == nil {
		queues = []QueueView{}
	}
	c.JSON(http.StatusOK, gin.H{"queues": queues, "adapters": b.adapters()})
}

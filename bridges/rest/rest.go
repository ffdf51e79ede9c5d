package rest

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// openAPI is the API description served at /v1/openapi.json.
//
//go:embed openapi.json
var openAPI []byte

// Bridge is the REST adapter.
type Bridge struct {
	cfg    Config
	tokens *core.TokenSet
	limits *core.RateLimiter
	ring   *ring
	// streams counts open event streams and long polls.
	streams chan struct{}

	hub    *core.Hub
	engine *gin.Engine
	// spec is the OpenAPI document as served (servers: http.public_url),
	// docs its page.
	spec, docs []byte

	// stopping ends streams and waits when the HTTP server shuts down or
	// Run's context ends, so that neither waits for them.
	stopping context.Context
	stop     context.CancelFunc

	mu       sync.Mutex     // orders starting hijacked streams and stopping
	hijacked sync.WaitGroup // event streams running outside their handlers

	// types caches feed types for single-item reads; a feed's type never
	// changes while it exists, and mirror drops an entry when its feed is
	// created or deleted (everything after lost events).
	types typeCache
}

// maxCachedTypes bounds the type cache; when full it starts over.
const maxCachedTypes = 10000

// typeCache maps feed names to their types.
type typeCache struct {
	mu sync.RWMutex
	m  map[string]thoonk.FeedType
}

func (tc *typeCache) get(feed string) (thoonk.FeedType, bool) {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	t, ok := tc.m[feed]
	return t, ok
}

func (tc *typeCache) set(feed string, t thoonk.FeedType) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.m == nil || len(tc.m) >= maxCachedTypes {
		tc.m = map[string]thoonk.FeedType{}
	}
	tc.m[feed] = t
}

// forget drops feed's entry, or every entry when feed is "".
func (tc *typeCache) forget(feed string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if feed == "" {
		tc.m = nil
	}
	delete(tc.m, feed)
}

var (
	_ core.Adapter     = (*Bridge)(nil)
	_ core.HTTPMounter = (*Bridge)(nil)
)

func newBridge(cfg Config) (*Bridge, error) {
	b := &Bridge{
		cfg:     cfg,
		tokens:  core.NewTokenSet(cfg.Tokens),
		limits:  core.NewRateLimiter(cfg.RateLimit.MaxClients),
		ring:    newRing(cfg.Events.ReplayEvents, cfg.Events.ReplayBytes),
		streams: make(chan struct{}, cfg.Events.MaxStreams),
	}
	b.stopping, b.stop = context.WithCancel(context.Background())
	return b, nil
}

// Name returns "rest".
func (b *Bridge) Name() string { return "rest" }

// MountHTTP serves the API under /v1/ on the shared listener.
func (b *Bridge) MountHTTP(hub *core.Hub, mux *http.ServeMux) error {
	b.hub = hub
	e, err := newEngine(b.cfg.TrustedProxies)
	if err != nil {
		return err
	}
	b.spec = servedSpec(openAPI, hub.PublicURL)
	if b.docs, err = renderDocs(b.spec); err != nil {
		return err
	}
	e.Use(b.recoverer, b.cors, b.strictQuery, b.authenticate)
	e.NoRoute(func(c *gin.Context) { fail(c, "not-found", "no such resource") })
	e.NoMethod(func(c *gin.Context) { fail(c, "method-not-allowed", "") })

	v1 := e.Group("/v1")
	// every GET route answers HEAD too: the same status and headers, and
	// no body (net/http drops what the handler writes)
	read := func(path string, h gin.HandlerFunc) { v1.Match([]string{http.MethodGet, http.MethodHead}, path, h) }
	read("/openapi.json", func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "application/json", b.spec)
	})
	read("/docs", b.serveDocs)
	read("/problems/:kind", serveProblemType)
	read("/feeds", b.listFeeds)
	read("/feeds/:feed", b.getFeed)
	read("/feeds/:feed/items", b.listItems)
	read("/feeds/:feed/items/:id", b.getItem)
	read("/feeds/:feed/events", b.feedEvents)
	read("/feeds/:feed/changes", b.changes)
	read("/events", b.events)
	read("/jobs/:queue/:id", b.jobStatus)
	v1.GET("/ws", b.websocket)
	v1.POST("/feeds/:feed/items", b.publish)
	v1.PUT("/feeds/:feed/items/:id", b.edit)
	v1.DELETE("/feeds/:feed/items/:id", b.retract)
	v1.POST("/feeds/:feed/items/:id/move", b.move)
	v1.POST("/feeds/:feed/actions/:verb", b.custom)
	b.engine = e
	mux.Handle("/v1/", e)
	return nil
}

// specServer is the servers entry of the document as shipped.
const specServer = `"url": "http://127.0.0.1:8080"`

// servedSpec returns the OpenAPI document naming publicURL (the bridge's
// http.public_url) as its server.
func servedSpec(spec []byte, publicURL string) []byte {
	if publicURL == "" {
		return spec
	}
	u, _ := json.Marshal(publicURL)
	return bytes.Replace(spec, []byte(specServer), append([]byte(`"url": `), u...), 1)
}

// newEngine returns a gin engine for an API whose path segments are
// percent-encoded names: routes match the raw path, and each parameter is
// decoded exactly once.
func newEngine(trustedProxies []string) (*gin.Engine, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.UseRawPath = true          // feed names may hold %2F: match the raw path
	e.UnescapePathValues = false // gin would unescape '+' to ' ': see param
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	if err := e.SetTrustedProxies(trustedProxies); err != nil {
		return nil, err
	}
	return e, nil
}

// param returns a path parameter decoded exactly once (gin matched the
// raw path when the request had one).
func param(c *gin.Context, name string) string { return core.PathParam(c.Request, c.Param(name)) }

// Run mirrors the journal's events into the ring until ctx ends. The
// adapter owns no outbound connection: the core listener reconnects to
// Redis (with backoff and jitter) and announces it with an EventResync,
// which starts a new epoch here (the streams then read what they missed
// from the journals). The state is up while the listener is connected.
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	if b.hub == nil {
		b.hub = hub
	}
	sub := hub.Events.SubscribeWith(thoonk.SubscribeOptions{Queue: b.cfg.Events.Queue, Journal: true})
	defer sub.Close()
	b.ring.newEpoch() // whatever happened before this subscription is unknown
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	b.setState(hub)
	for {
		select {
		case <-ctx.Done():
			b.mu.Lock()
			b.stop() // no hijacked stream starts after this
			b.mu.Unlock()
			b.hijacked.Wait()
			return nil
		case <-tick.C:
			b.setState(hub)
		case <-sub.Ready():
			for ev, ok := sub.TryNext(); ok; ev, ok = sub.TryNext() {
				b.mirror(ctx, hub, ev)
			}
		}
	}
}

var errPubsubDown = errors.New("redis pubsub is disconnected: event streams wait, then catch up from the journals")

func (b *Bridge) setState(hub *core.Hub) {
	if hub.Events.Connected() {
		hub.SetState(b.Name(), core.StateUp, nil)
	} else {
		hub.SetState(b.Name(), core.StateReconnecting, errPubsubDown)
	}
}

// mirror puts one journal event into the ring.
func (b *Bridge) mirror(ctx context.Context, hub *core.Hub, ev thoonk.Event) {
	switch ev.Type {
	case thoonk.EventCreate, thoonk.EventDelete:
		b.types.forget(ev.Feed)
	case thoonk.EventResync:
		b.types.forget("")
	}
	switch {
	case ev.Type == thoonk.EventResync:
		hub.Log.Info("rest: event streams catch up from the journals", "reason", ev.Reason.String())
		b.ring.newEpoch()
		b.setState(hub)
		return
	case ev.Rev == "": // the registry's events: the journal has the deletes
		return
	}
	if !hub.Exposed(b.cfg.Feeds).Allows(ev.Feed) {
		return
	}
	if ev.Large {
		evs := []thoonk.Event{ev}
		if err := b.fillLarge(ctx, evs); err != nil {
			b.ring.newEpoch() // the streams read it from the journal when Redis is back
			return
		}
		ev = evs[0]
	}
	b.ring.add(entry{typ: ev.Type.String(), feed: ev.Feed, rev: ev.Rev, data: renderEvent(ev)})
}

// exposed reports whether actor may see feed: the adapter exposes it and
// the ACL lets the actor read it.
func (b *Bridge) exposed(actor core.Actor, feed string) bool {
	return b.hub.Exposed(b.cfg.Feeds).Allows(feed) && b.hub.ACL.Allowed(actor, feed, core.OpRead)
}

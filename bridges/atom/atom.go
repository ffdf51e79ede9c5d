package atom

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Config is the atom section of bridge.yaml.
type Config struct {
	// Enabled turns the adapter on.
	Enabled bool `yaml:"enabled"`
	// Feeds replaces the global feed selection for this adapter.
	Feeds *core.FeedFilter `yaml:"feeds"`
	// BaseURL is the public URL the feed documents link to; empty means
	// the shared listener's public URL (http.public_url).
	BaseURL string `yaml:"base_url"`
	// TagAuthority is the "authority,date" part of the tag: URIs used as
	// feed and entry ids (RFC 4151); it must never change once readers
	// have seen the ids.
	TagAuthority string `yaml:"tag_authority"`
	// Author is the author of feeds and of entries whose item names none.
	Author Person `yaml:"author"`
	// AlternateURL is the feed's rel="alternate" link, with {feed}
	// replaced by the escaped feed name; empty means the discovery page.
	AlternateURL string `yaml:"alternate_url"`
	// EntryURL is an entry's link when its item gives none, with {feed}
	// and {id} replaced; empty means no link.
	EntryURL string `yaml:"entry_url"`
	// Entries is the number of entries per page.
	Entries int `yaml:"entries"`
	// MaxEntryBytes bounds an entry's summary and content; longer text is
	// cut at a character boundary and ends with "…".
	MaxEntryBytes int `yaml:"max_entry_bytes"`
	// TombstoneTTL is how long a retracted item is listed as an
	// at:deleted-entry; 0 lists none.
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
	// CacheBytes bounds the memory of rendered documents; 0 turns the
	// cache off.
	CacheBytes int `yaml:"cache_bytes"`
	// Mappings turn JSON items into entries; the first rule whose feeds
	// match applies, and items no rule maps are shown as text.
	Mappings []Mapping `yaml:"mappings"`
	// Tokens let feed readers prove an identity: a reader presenting a
	// token reads as the actor atom:NAME, the others as atom:anonymous.
	Tokens []core.Token `yaml:"tokens"`
	// RateLimit bounds what one client address may cost.
	RateLimit RateLimit `yaml:"rate_limit"`
	// TrustedProxies are the proxy addresses or CIDRs whose
	// X-Forwarded-For is believed when finding the client address.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// WebSub makes the bridge a WebSub hub for its documents.
	WebSub WebSubConfig `yaml:"websub"`
}

// RateLimit bounds the requests of one client address that cost work.
type RateLimit struct {
	// PerIP limits renders (requests the cache cannot answer) and
	// requests with a wrong token, per client address.
	PerIP core.Rate `yaml:"per_ip"`
	// MaxClients bounds the limiter state kept in memory (token buckets).
	MaxClients int `yaml:"max_clients"`
}

// Person is an Atom person: a feed's or an entry's author.
type Person struct {
	// Name is required.
	Name string `yaml:"name"`
	// Email is optional.
	Email string `yaml:"email"`
	// URI is an optional absolute http(s) URL.
	URI string `yaml:"uri"`
}

// Mapping says which fields of a JSON item give an entry's parts. Field
// names are dotted paths into the object ("meta.title"); an empty name
// means the part is not mapped.
type Mapping struct {
	// Feeds are glob patterns over the feed names the rule applies to.
	Feeds []string `yaml:"feeds"`
	// Title, Summary and Content name text fields.
	Title   string `yaml:"title"`
	Summary string `yaml:"summary"`
	Content string `yaml:"content"`
	// ContentType is text, html or markdown (shown as text).
	ContentType string `yaml:"content_type"`
	// Author names a string (the name) or an object with name, email, uri.
	Author string `yaml:"author"`
	// Link names an absolute http(s) URL.
	Link string `yaml:"link"`
	// Updated and Published name RFC 3339 strings or Unix times (seconds
	// or milliseconds).
	Updated   string `yaml:"updated"`
	Published string `yaml:"published"`
	// Categories names a string or a list of strings.
	Categories string `yaml:"categories"`

	patterns []thoonk.Pattern
}

// Content types of a mapping.
const (
	typeText     = "text"
	typeHTML     = "html"
	typeMarkdown = "markdown"
)

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config {
	return Config{
		TagAuthority:  "feedbridge.invalid,2025",
		Author:        Person{Name: "feedbridge"},
		Entries:       thoonk.DefaultPageSize,
		MaxEntryBytes: 64 << 10,
		TombstoneTTL:  7 * 24 * time.Hour,
		CacheBytes:    32 << 20,
		RateLimit:     RateLimit{PerIP: core.Rate{Rate: 10, Burst: 100}, MaxClients: 10000},
		WebSub:        defaultWebSub(),
		Mappings: []Mapping{{
			Feeds: []string{"*"}, Title: "title", Summary: "summary", Content: "content", ContentType: typeText,
			Author: "author", Link: "link", Updated: "updated", Published: "published", Categories: "categories",
		}},
	}
}

// Factory registers the adapter under the "atom" section.
var Factory = core.Factory{Name: "atom", New: New}

// New decodes and validates the section; it returns nil when disabled.
func New(sec *core.Section) (core.Adapter, error) {
	cfg := defaultConfig()
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(sec); err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return nil, nil
	}
	b := &Bridge{cfg: cfg, cache: newCache(cfg.CacheBytes), mapped: newMappedCache(), tokens: core.NewTokenSet(cfg.Tokens),
		limits: core.NewRateLimiter(cfg.RateLimit.MaxClients)}
	if cfg.WebSub.Enabled {
		b.ws = newWebSub(b, cfg.WebSub)
	}
	return b, nil
}

var tagAuthorityRE = regexp.MustCompile(`^(?i:[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|[^@\s,:]+@[a-z0-9.-]+),(?P<date>\d{4}(-\d{2}(-\d{2})?)?)$`)

// validate checks every key and reports all problems at once.
func (c *Config) validate(sec *core.Section) error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, sec.Errorf(key, format, args...)) }
	if c.Feeds != nil {
		if err := c.Feeds.Compile(sec, "feeds"); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BaseURL != "" {
		if err := checkURL(c.BaseURL, nil); err != nil {
			bad("base_url", "%q %v, such as https://feeds.example.org (or empty for http.public_url)", c.BaseURL, err)
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	}
	if m := tagAuthorityRE.FindStringSubmatch(c.TagAuthority); m == nil || !validTagDate(m[tagAuthorityRE.SubexpIndex("date")]) {
		bad("tag_authority", "%q must be a domain (or email) you own and a date, such as example.org,2025 or example.org,2025-06-01 (RFC 4151)", c.TagAuthority)
	}
	if strings.TrimSpace(c.Author.Name) == "" {
		bad("author.name", "must not be empty (Atom feeds need an author name), for example feedbridge")
	}
	if c.Author.Email != "" && !validEmail(c.Author.Email) {
		bad("author.email", "%q is not an email address such as feeds@example.org", c.Author.Email)
	}
	if c.Author.URI != "" && httpURL(c.Author.URI) == "" {
		bad("author.uri", "%q must be an absolute http(s) URL", c.Author.URI)
	}
	if c.AlternateURL != "" {
		if err := checkURL(c.AlternateURL, []string{"{feed}"}); err != nil {
			bad("alternate_url", "%q %v, such as https://app.example.org/feeds/{feed} (or empty for the discovery page)", c.AlternateURL, err)
		}
	}
	if c.EntryURL != "" {
		if err := checkURL(c.EntryURL, []string{"{feed}", "{id}"}); err != nil {
			bad("entry_url", "%q %v, such as https://app.example.org/feeds/{feed}/{id} (or empty for no link)", c.EntryURL, err)
		}
	}
	if c.Entries < 1 || c.Entries > thoonk.MaxPageSize {
		bad("entries", "must be between 1 and %d, for example %d", thoonk.MaxPageSize, thoonk.DefaultPageSize)
	}
	if c.MaxEntryBytes < 256 {
		bad("max_entry_bytes", "must be at least 256, for example 65536")
	}
	if c.TombstoneTTL < 0 {
		bad("tombstone_ttl", "must not be negative (0s lists no retracted items), for example 168h")
	}
	if c.CacheBytes < 0 {
		bad("cache_bytes", "must not be negative (0 turns the cache off), for example 33554432")
	}
	for i := range c.Mappings {
		errs = append(errs, c.Mappings[i].compile(sec, fmt.Sprintf("mappings[%d]", i)))
	}
	errs = append(errs, core.ValidateTokens(c.Tokens, "atom", sec, "tokens"),
		c.RateLimit.PerIP.Validate(sec, "rate_limit.per_ip"),
		core.ValidateTrustedProxies(c.TrustedProxies, sec, "trusted_proxies"),
		c.WebSub.validate(sec, "websub"))
	if c.RateLimit.MaxClients < 1 {
		bad("rate_limit.max_clients", "must be at least 1, for example 10000")
	}
	return errors.Join(errs...)
}

func (m *Mapping) compile(sec *core.Section, at string) error {
	var errs []error
	if len(m.Feeds) == 0 {
		errs = append(errs, sec.Errorf(at+".feeds", "list the feed patterns the rule applies to, for example [\"news:*\"]"))
	}
	m.patterns = nil
	for j, g := range m.Feeds {
		p, err := thoonk.CompilePattern(g)
		if err != nil {
			errs = append(errs, sec.Errorf(fmt.Sprintf("%s.feeds[%d]", at, j), "%v", err))
		}
		m.patterns = append(m.patterns, p)
	}
	switch m.ContentType {
	case "":
		m.ContentType = typeText
	case typeText, typeHTML, typeMarkdown:
	default:
		errs = append(errs, sec.Errorf(at+".content_type", "%q is not a content type: use text, html or markdown", m.ContentType))
	}
	for key, path := range map[string]string{"title": m.Title, "summary": m.Summary, "content": m.Content, "author": m.Author,
		"link": m.Link, "updated": m.Updated, "published": m.Published, "categories": m.Categories} {
		if path != "" && slices.Contains(strings.Split(path, "."), "") {
			errs = append(errs, sec.Errorf(at+"."+key, "%q is not a field path: use names joined by dots, such as meta.title", path))
		}
	}
	return errors.Join(errs...)
}

// checkURL reports why raw is not an absolute http(s) URL once each of the
// placeholders is filled in; other {...} placeholders are refused.
func checkURL(raw string, placeholders []string) error {
	filled := raw
	for _, p := range placeholders {
		filled = strings.ReplaceAll(filled, p, "x")
	}
	if strings.ContainsAny(filled, "{}") {
		if len(placeholders) == 0 {
			return errors.New("must not contain { or }")
		}
		return fmt.Errorf("may only use the placeholders %s", strings.Join(placeholders, " and "))
	}
	u, err := url.Parse(filled)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if len(placeholders) == 0 && (u.RawQuery != "" || u.Fragment != "") {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

func validTagDate(d string) bool {
	for _, layout := range []string{"2006-01-02", "2006-01", "2006"} {
		if len(d) == len(layout) {
			_, err := time.Parse(layout, d)
			return err == nil
		}
	}
	return false
}

// Bridge is the Atom adapter: it serves Atom, RSS and JSON Feed documents
// on the shared HTTP listener and follows feed events to keep its times,
// tombstones and cache current.
type Bridge struct {
	cfg    Config
	hub    *core.Hub
	cache  *cache
	mapped *mappedCache
	tokens *core.TokenSet
	limits *core.RateLimiter
	// ws is the WebSub hub (nil when atom.websub is off).
	ws *webSub
	// following is true while Run's event subscription keeps the cache
	// current; the cache is bypassed otherwise.
	following atomic.Bool
}

var (
	_ core.Adapter     = (*Bridge)(nil)
	_ core.HTTPMounter = (*Bridge)(nil)
)

// EffectiveConfig returns the section with every default filled in, for
// `bridge check` (tokens are masked).
func (b *Bridge) EffectiveConfig() any { return b.cfg }

// Name returns "atom".
func (b *Bridge) Name() string { return "atom" }

// maxBatch bounds the events recorded in one round trip to Redis.
const maxBatch = 512

// Run follows feed events until ctx ends: it records edit, position and
// retract times in Redis and drops cached documents of changed feeds. The
// events queued at a time are recorded together, in one round trip.
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	// the journal's events: a sorted feed's edit is an edit (the schema
	// announces it as a publish), and each change has its revision
	sub := hub.Events.SubscribeWith(thoonk.SubscribeOptions{Queue: thoonk.DefaultQueueSize, Journal: true})
	defer sub.Close()
	defer func() {
		b.following.Store(false)
		b.cache.reset()
	}()
	b.cache.reset()
	b.following.Store(true)
	hub.SetState(b.Name(), core.StateUp, nil)
	if b.ws != nil && b.hub != nil { // the hub needs the HTTP listener
		hubCtx, stopHub := context.WithCancel(ctx)
		hubDone := make(chan struct{})
		go func() { defer close(hubDone); b.ws.run(hubCtx, hub) }()
		defer func() { stopHub(); <-hubDone }()
	}
	batch := make([]thoonk.Event, 0, maxBatch)
	for ctx.Err() == nil {
		batch = batch[:0]
		for len(batch) < maxBatch {
			ev, ok := sub.TryNext()
			if !ok {
				break
			}
			batch = append(batch, ev)
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
			case <-sub.Ready():
			}
			continue
		}
		if err := b.handle(ctx, hub, batch); err != nil {
			return nil // ctx ended while Redis was unreachable
		}
	}
	return nil
}

// handle records a batch of events, then drops the cached documents they
// change (all of them after a resync); it returns an error only when ctx
// ends.
func (b *Bridge) handle(ctx context.Context, hub *core.Hub, batch []thoonk.Event) error {
	exposed := hub.Exposed(b.cfg.Feeds)
	resync := false
	var changes []thoonk.Event
	for _, ev := range batch {
		switch {
		case ev.Type == thoonk.EventResync:
			resync = true
		case ev.Type != thoonk.EventJobFinish && exposed.Allows(ev.Feed):
			changes = append(changes, ev)
		}
	}
	// one process of a fleet records times and tombstones (all read them)
	if hub.Leading(core.LeaseHousekeeping) {
		if err := b.record(ctx, hub, changes); err != nil {
			return err
		}
	}
	if b.ws != nil {
		b.ws.changed(changes, resync) // after recording: fan-outs render the recorded times
	}
	if resync {
		b.cache.reset()
		return nil
	}
	for _, ev := range changes {
		b.cache.invalidate(ev.Feed)
		if ev.Type == thoonk.EventCreate || ev.Type == thoonk.EventDelete || ev.Type == thoonk.EventConfig {
			b.cache.invalidate(indexKey)
		}
	}
	return nil
}

// record stores what the events tell about times and tombstones. An event
// Redis refuses for good (an error reply such as WRONGTYPE) is logged and
// skipped; the others are retried with backoff while Redis cannot be
// reached, and meanwhile the adapter is reconnecting and the cache is
// bypassed, because the events queued behind cannot invalidate it. It
// returns an error only when ctx ends.
func (b *Bridge) record(ctx context.Context, hub *core.Hub, evs []thoonk.Event) error {
	for attempt := 0; len(evs) > 0; attempt++ {
		retry, refused, err := recordEvents(ctx, hub.Store.Client(), evs, b.cfg.TombstoneTTL)
		for _, r := range refused {
			hub.Log.Error("atom: Redis refused to record a feed event; skipping it (its times or tombstone are not kept)",
				"feed", r.ev.Feed, "event", r.ev.Type, "id", r.ev.ID, "err", r.err)
		}
		if len(retry) == 0 {
			if attempt > 0 {
				b.cache.reset()
				b.following.Store(true)
				hub.SetState(b.Name(), core.StateUp, nil)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.following.Store(false)
		d := thoonk.DefaultBackoff.Delay(attempt)
		hub.SetState(b.Name(), core.StateReconnecting, err)
		hub.Log.Warn("atom: recording feed events failed; retrying", "events", len(retry), "err", err, "retry_in", d.Round(time.Millisecond))
		if thoonk.Sleep(ctx, d) != nil {
			return ctx.Err()
		}
		evs = retry
	}
	return nil
}

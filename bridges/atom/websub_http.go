package atom

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// protocolWebSub is the actor protocol of subscribers: websub:anonymous,
// or websub:NAME for a subscriber presenting the token NAME of atom.tokens.
const protocolWebSub = "websub"

// Limits of subscription requests.
const (
	maxHubRequestBytes = 16 << 10
	// maxSecretBytes: hub.secret "MUST be less than 200 bytes" (WebSub 5.1).
	maxSecretBytes = 199
	resolveTimeout = 5 * time.Second
)

// hubPath is the hub's endpoint on the shared listener.
const hubPath = "/websub"

// mountHub serves the hub endpoint on the adapter's router.
func (w *webSub) mountHub(r *gin.Engine, mux *http.ServeMux) {
	r.POST(hubPath, w.serveHub)
	r.Match([]string{http.MethodGet, http.MethodHead}, hubPath, func(c *gin.Context) {
		hubText(c, http.StatusOK, "This is a WebSub hub (https://www.w3.org/TR/websub/) for the feeds of this bridge: "+
			"POST application/x-www-form-urlencoded hub.mode=subscribe|unsubscribe, hub.topic, hub.callback, "+
			"hub.lease_seconds (optional), hub.secret (optional).")
	})
	mux.Handle(hubPath, r)
}

// advertise adds the WebSub Link headers (hub and self) to a feed
// document's answer; only first pages are topics.
func (w *webSub) advertise(c *gin.Context, format, feed string) {
	if w != nil {
		c.Header("Link", w.links(w.b.baseURL()+"/"+format+"/"+url.PathEscape(feed)))
	}
}

// hubText answers in plain text, as WebSub 5.1.2 asks for errors.
func hubText(c *gin.Context, status int, msg string) {
	c.Header("Cache-Control", "no-store")
	c.Data(status, "text/plain; charset=utf-8", []byte(msg+"\n"))
}

// hubRequest is a subscription request that passed every check.
type hubRequest struct {
	mode string
	sub  subscription // id, topic, self, feed, format, callback, secret, lease, actor
}

// errHub is a refused subscription request: the status and the message
// (naming the parameter and the fix) the subscriber gets.
type errHub struct {
	status int
	msg    string
}

func (e *errHub) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &errHub{status: status, msg: fmt.Sprintf(format, args...)}
}

// serveHub takes a subscription or unsubscription request (WebSub 5.1):
// it checks it at once (a clear 4xx otherwise), answers 202, and verifies
// the subscriber's intent in the background (5.3).
func (w *webSub) serveHub(c *gin.Context) {
	if ok, wait := w.limits.Allow("ip:"+c.ClientIP(), w.cfg.RateLimit.PerIP); !ok {
		c.Header("Retry-After", core.RetryAfter(wait))
		hubText(c, http.StatusTooManyRequests, "too many subscription requests from this address; retry after "+core.RetryAfter(wait)+"s")
		return
	}
	if ctx, _ := w.running(); ctx == nil {
		c.Header("Retry-After", "5")
		hubText(c, http.StatusServiceUnavailable, "the hub is starting or stopping; try again shortly")
		return
	}
	req, err := w.parseRequest(c)
	var eh *errHub
	switch {
	case errors.As(err, &eh):
		hubText(c, eh.status, eh.msg)
		return
	case err != nil:
		w.hub.Log.Warn("websub: cannot take a subscription request", "err", err)
		c.Header("Retry-After", "5")
		hubText(c, http.StatusServiceUnavailable, "the hub's store is unavailable; try again shortly")
		return
	}
	select {
	case w.verifying <- struct{}{}:
	default:
		c.Header("Retry-After", "5")
		hubText(c, http.StatusServiceUnavailable, "too many verifications in progress; try again shortly")
		return
	}
	if !w.spawn(func(ctx context.Context) {
		defer func() { <-w.verifying }()
		w.verify(ctx, req)
	}) {
		<-w.verifying
		c.Header("Retry-After", "5")
		hubText(c, http.StatusServiceUnavailable, "the hub is stopping; try again shortly")
		return
	}
	hubText(c, http.StatusAccepted, "accepted: the hub will verify the request with a GET to hub.callback")
}

// parseRequest reads and checks a request's parameters; an *errHub says
// what the subscriber must fix, another error is the store's.
func (w *webSub) parseRequest(c *gin.Context) (*hubRequest, error) {
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, refuse(http.StatusUnsupportedMediaType, "send the parameters as application/x-www-form-urlencoded (WebSub 5.1)")
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxHubRequestBytes)
	if err := c.Request.ParseForm(); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "the request is over %d bytes", maxHubRequestBytes)
		}
		return nil, refuse(http.StatusBadRequest, "the request body is not a valid form: %v", err)
	}
	form := c.Request.PostForm
	param := func(name string) (string, error) {
		switch v := form[name]; {
		case len(v) == 0:
			return "", nil
		case len(v) > 1:
			return "", refuse(http.StatusBadRequest, "%s is given more than once: give it once", name)
		case !utf8.ValidString(v[0]):
			return "", refuse(http.StatusBadRequest, "%s is not UTF-8 (WebSub 5.1)", name)
		default:
			return v[0], nil
		}
	}
	mode, err := param("hub.mode")
	if err != nil {
		return nil, err
	}
	if mode != "subscribe" && mode != "unsubscribe" {
		return nil, refuse(http.StatusBadRequest, "hub.mode must be subscribe or unsubscribe, not %q", mode)
	}
	topic, err := param("hub.topic")
	if err != nil {
		return nil, err
	}
	feed, format, self, err := w.topicOf(topic)
	if err != nil {
		return nil, err
	}
	actor := core.Actor{Protocol: protocolWebSub, ID: readerOf(c).ID}
	if mode == "subscribe" {
		if err := w.readableFeed(c.Request.Context(), actor, feed); err != nil {
			return nil, err
		}
	}
	callback, err := param("hub.callback")
	if err != nil {
		return nil, err
	}
	if err := w.checkCallback(c.Request.Context(), callback); err != nil {
		return nil, err
	}
	req := &hubRequest{mode: mode, sub: subscription{
		id: subscriptionID(self, callback), topic: topic, self: self, feed: feed, format: format,
		callback: callback, actor: actor.ID,
	}}
	if mode == "unsubscribe" {
		return req, nil // lease and secret are ignored (WebSub 5.1)
	}
	if req.sub.secret, err = param("hub.secret"); err != nil {
		return nil, err
	}
	if len(req.sub.secret) > maxSecretBytes {
		return nil, refuse(http.StatusBadRequest, "hub.secret must be less than 200 bytes (WebSub 5.1)")
	}
	lease, err := param("hub.lease_seconds")
	if err != nil {
		return nil, err
	}
	if req.sub.lease, err = w.leaseOf(lease); err != nil {
		return nil, err
	}
	known, n, err := w.store().exists(c.Request.Context(), req.sub.id)
	if err != nil {
		return nil, err
	}
	if !known && n >= int64(w.cfg.MaxSubscriptions) {
		return nil, refuse(http.StatusServiceUnavailable, "the hub has reached its limit of %d subscriptions", w.cfg.MaxSubscriptions)
	}
	return req, nil
}

// leaseOf reads hub.lease_seconds (a positive decimal integer; empty for
// the default) and keeps it within lease.min and lease.max.
func (w *webSub) leaseOf(raw string) (time.Duration, error) {
	l := w.cfg.Lease
	if raw == "" {
		return l.Default.Truncate(time.Second), nil
	}
	n, err := strconv.ParseUint(raw, 10, 63)
	if err != nil || n == 0 {
		return 0, refuse(http.StatusBadRequest, "hub.lease_seconds must be a positive decimal integer of seconds, not %q", raw)
	}
	lease := l.Max
	if n < uint64(l.Max/time.Second) {
		lease = time.Duration(n) * time.Second
	}
	return max(lease, l.Min).Truncate(time.Second), nil
}

// topicOf maps a topic URL to the feed and format it names, with the
// canonical URL the documents advertise as self: BASE/atom/FEED,
// BASE/rss/FEED or BASE/json/FEED, the feed name one percent-encoded
// segment (non-reserved characters may be encoded or not, WebSub 5.1.1).
func (w *webSub) topicOf(raw string) (feed, format, self string, err error) {
	base := w.b.baseURL()
	foreign := refuse(http.StatusBadRequest, "hub.topic %q is not a feed of this hub: topics are %s/atom/FEED, %s/rss/FEED and %s/json/FEED, as the feeds' rel=\"self\" links say",
		raw, base, base, base)
	if raw == "" {
		return "", "", "", refuse(http.StatusBadRequest, "hub.topic is missing: give the feed's rel=\"self\" URL")
	}
	bu, err := url.Parse(base)
	if err != nil {
		return "", "", "", fmt.Errorf("base url: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, bu.Scheme) || !strings.EqualFold(u.Host, bu.Host) || u.User != nil || u.Opaque != "" {
		return "", "", "", foreign
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", "", refuse(http.StatusBadRequest, "hub.topic must be a feed's first page, without a query or fragment (its rel=\"self\" URL)")
	}
	rest, ok := strings.CutPrefix(u.EscapedPath(), bu.EscapedPath()+"/")
	format, seg, found := strings.Cut(rest, "/")
	if !ok || !found || seg == "" || strings.Contains(seg, "/") || mediaTypes[format] == "" {
		return "", "", "", foreign
	}
	if feed, err = url.PathUnescape(seg); err != nil || thoonk.ValidateFeedName(feed) != nil {
		return "", "", "", foreign
	}
	return feed, format, base + "/" + format + "/" + url.PathEscape(feed), nil
}

// readableFeed checks that actor may subscribe to feed: the adapter
// exposes it, the ACL lets the actor read it and it is a plain or sorted
// feed. Every refusal is the same 404, telling nothing of feeds the
// subscriber may not see.
func (w *webSub) readableFeed(ctx context.Context, actor core.Actor, feed string) error {
	none := refuse(http.StatusNotFound, "hub.topic: no such feed (or not readable by %s)", actor)
	if !w.b.readable(actor, feed) {
		return none
	}
	infos, err := w.b.hub.Store.Describe(ctx, feed)
	if err != nil {
		return err
	}
	if len(infos) == 0 || (infos[0].Type != thoonk.TypeFeed && infos[0].Type != thoonk.TypeSorted) {
		return none
	}
	return nil
}

// checkCallback checks a callback URL: its length, an absolute http(s)
// URL (https only with callbacks.require_https) without a fragment, and a
// host whose every address callbacks may reach.
func (w *webSub) checkCallback(ctx context.Context, raw string) error {
	if raw == "" {
		return refuse(http.StatusBadRequest, "hub.callback is missing: give the URL the hub should deliver to")
	}
	if len(raw) > w.cfg.Callbacks.MaxBytes {
		return refuse(http.StatusBadRequest, "hub.callback is %d bytes, over this hub's limit of %d", len(raw), w.cfg.Callbacks.MaxBytes)
	}
	u, err := url.Parse(raw)
	schemes := "http or https"
	if w.cfg.Callbacks.RequireHTTPS {
		schemes = "https"
	}
	if err != nil || (u.Scheme != "https" && (u.Scheme != "http" || w.cfg.Callbacks.RequireHTTPS)) || u.Host == "" || u.Opaque != "" {
		return refuse(http.StatusBadRequest, "hub.callback must be an absolute %s URL", schemes)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return refuse(http.StatusBadRequest, "hub.callback must not have a fragment (#...)")
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		defer cancel()
		addrs, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return refuse(http.StatusBadRequest, "hub.callback's host %q cannot be resolved", host)
		}
	}
	for _, a := range addrs {
		if !w.allowedAddr(a) {
			return refuse(http.StatusBadRequest, "hub.callback's host %q is at %s, a loopback, private, link-local or special-purpose address this hub does not deliver to", host, a.Unmap())
		}
	}
	return nil
}

// verify checks the subscriber's intent (WebSub 5.3): a GET to the
// callback with hub.mode, hub.topic, a random single-use hub.challenge and
// (subscribe) hub.lease_seconds; a 2xx answer whose body is the challenge
// confirms it, and only then does the subscription change (a renewal
// replaces lease and secret). Anything else leaves it as it was.
func (w *webSub) verify(ctx context.Context, req *hubRequest) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	challenge := base64.RawURLEncoding.EncodeToString(b[:])
	q := url.Values{"hub.mode": {req.mode}, "hub.topic": {req.sub.topic}, "hub.challenge": {challenge}}
	if req.mode == "subscribe" {
		q.Set("hub.lease_seconds", strconv.FormatInt(int64(req.sub.lease/time.Second), 10))
	}
	start := time.Now()
	status, body, err := w.get(ctx, req.sub.callback, q, len(challenge)+1)
	log := w.hub.Log.With("mode", req.mode, "topic", req.sub.self, "callback_host", callbackHost(req.sub.callback))
	if err != nil || status/100 != 2 || string(body) != challenge {
		answer := "HTTP " + strconv.Itoa(status)
		if err != nil {
			answer = shortError(err)
		} else if status/100 == 2 {
			answer += " without the challenge"
		}
		w.m.verifications.WithLabelValues(req.mode, "failed").Inc()
		log.Info("websub: intent not verified; nothing changed", "answer", answer)
		return
	}
	s := w.store()
	if req.mode == "unsubscribe" {
		ok, err := s.remove(ctx, req.sub.id, req.sub.feed, time.Time{})
		if err != nil {
			log.Warn("websub: cannot record a verified unsubscription", "err", err)
			return
		}
		w.m.verifications.WithLabelValues(req.mode, "verified").Inc()
		if ok {
			w.m.dropped.WithLabelValues(reasonUnsubscribed).Inc()
			log.Info("websub: unsubscribed")
		}
		return
	}
	req.sub.expires = start.Add(req.sub.lease) // from the verification request (5.3)
	// known before it is stored, so that no change after the store is
	// missed (a feed noted in vain is forgotten at the next refresh)
	w.addFeed(req.sub.feed)
	isNew, full, err := s.save(ctx, &req.sub, w.cfg.MaxSubscriptions)
	switch {
	case err != nil:
		log.Warn("websub: cannot record a verified subscription", "err", err)
	case full:
		w.m.verifications.WithLabelValues(req.mode, "full").Inc()
		log.Warn("websub: subscription denied: the hub is full", "max_subscriptions", w.cfg.MaxSubscriptions)
		w.deny(req.sub.callback, req.sub.topic, "the hub has reached its limit of subscriptions")
	default:
		w.m.verifications.WithLabelValues(req.mode, "verified").Inc()
		log.Info("websub: subscribed", "new", isNew, "lease", req.sub.lease, "signed", req.sub.secret != "")
	}
}

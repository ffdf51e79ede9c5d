package atom

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// userAgent identifies the hub to subscribers.
const userAgent = "feedbridge-websub/1"

// maxAnswerBytes bounds what is read of a subscriber's answer.
const maxAnswerBytes = 64 << 10

// fanOut renders a changed feed's documents for its subscriptions, keeps
// them in Redis and queues one delivery per subscription (coalesced: a
// subscription owed a delivery already is only marked). Overflow policy:
// while delivery.max_pending jobs wait, the fan-out is deferred (the
// change stays marked) rather than queueing more. Subscriptions whose
// topic is gone or no longer readable by their actor are denied.
func (w *webSub) fanOut(ctx context.Context, feed string) error {
	s := w.store()
	member := fanOutMember(feed)
	changed, err := s.claimMark(ctx, member)
	if err != nil {
		return err
	}
	changed = orNow(changed)
	n, err := w.jobs.Counts(ctx)
	if err != nil {
		return err
	}
	if n.Available >= int64(w.cfg.Delivery.MaxPending) {
		if err := s.retryLater(ctx, member, time.Now().Add(deferPause)); err != nil {
			return err
		}
		w.m.fanouts.WithLabelValues(outcomeDeferred).Inc()
		w.scheduled()
		_, err := s.mark(ctx, changed, []string{member}) // keeps the change's time for the lag
		return err
	}
	subs, err := s.ofFeed(ctx, feed)
	if err != nil || len(subs) == 0 {
		return err
	}
	now := time.Now()
	var owed []string
	var denied []*subscription
	formats := map[string]bool{}
	for _, sub := range subs {
		switch {
		case !sub.expires.After(now): // the sweeper drops it
		case !w.b.readable(core.Actor{Protocol: protocolWebSub, ID: sub.actor}, feed):
			denied = append(denied, sub)
		default:
			owed = append(owed, deliveryMember(sub.id))
			formats[sub.format] = true
		}
	}
	why := "the topic is no longer readable by the subscriber"
	for format := range formats {
		r, err := w.b.renderFeed(ctx, feed, format, pageQuery{})
		if errors.Is(err, errNoFeed) {
			denied, owed, why = subs, nil, "the topic no longer exists"
			break
		}
		if err != nil {
			return err
		}
		if err := s.saveDoc(ctx, format, feed, storedDoc{body: r.body, sum: r.etag, ctype: r.ctype}); err != nil {
			return err
		}
	}
	for _, sub := range denied {
		if err := w.drop(ctx, sub, reasonDenied, why, true); err != nil {
			return err
		}
	}
	w.m.fanouts.WithLabelValues("done").Inc()
	return w.mark(ctx, changed, owed...)
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// deliver POSTs the latest fanned-out document of a subscription's topic
// to its callback, unless that document was delivered already, and
// records the outcome: a success, a 410 (the subscription ends), or a
// failure (retried with backoff, the notification abandoned after
// delivery.retry.attempts retries, the subscription denied after
// delivery.drop_after of failures). It returns an error only when the
// outcome could not be recorded or the process is stopping: the job then
// runs again.
func (w *webSub) deliver(ctx context.Context, id string) error {
	s := w.store()
	member := deliveryMember(id)
	changed, sub, err := s.claimDelivery(ctx, id)
	if err != nil || sub == nil {
		return err
	}
	if !sub.expires.After(time.Now()) {
		return w.drop(ctx, sub, reasonExpired, "", false)
	}
	sum, err := s.docSum(ctx, sub.format, sub.feed)
	if err != nil || sum == "" {
		return err
	}
	if sum == sub.last {
		w.m.deliveries.WithLabelValues(outcomeUnchanged).Inc()
		return nil
	}
	doc := w.docs.get(sum)
	if doc == nil {
		if doc, err = s.doc(ctx, sub.format, sub.feed); err != nil || doc == nil {
			return err
		}
		w.docs.put(doc)
	}
	if !w.acquire(sub.callback) {
		// delivery.per_callback deliveries to this callback are running:
		// try again shortly; this is no failure.
		pause := deferPause/2 + rand.N(deferPause/2)
		if err := s.retryLater(ctx, member, time.Now().Add(pause)); err != nil {
			return err
		}
		w.m.deliveries.WithLabelValues(outcomeDeferred).Inc()
		w.scheduled()
		_, err := s.mark(ctx, orNow(changed), []string{member})
		return err
	}
	defer w.release(sub.callback)
	start := time.Now()
	status, perr := w.post(ctx, sub, doc)
	w.m.latency.Observe(time.Since(start).Seconds())
	if perr != nil && ctx.Err() != nil {
		return ctx.Err() // cut short by the stop: the job runs again
	}
	ctx = context.WithoutCancel(ctx) // an answer is recorded, also while stopping
	switch {
	case perr == nil && status/100 == 2:
		w.m.deliveries.WithLabelValues(outcomeDelivered).Inc()
		if !changed.IsZero() {
			w.m.lag.Observe(time.Since(changed).Seconds())
		}
		return s.update(ctx, id, time.Time{}, "last", doc.sum, "attempt", 0, "failing", 0, "status", strconv.Itoa(status))
	case perr == nil && status == http.StatusGone:
		return w.drop(ctx, sub, reasonGone, "", false)
	}
	return w.failed(ctx, sub, status, perr, orNow(changed))
}

// failed records a failed delivery: a retry after a backoff, or the end of
// this notification's retries, or, after delivery.drop_after without a
// success, the end of the subscription (denied). The subscription stays
// until its lease ends otherwise, and the next change is delivered again.
func (w *webSub) failed(ctx context.Context, sub *subscription, status int, perr error, changed time.Time) error {
	why := "HTTP " + strconv.Itoa(status)
	if perr != nil {
		why = shortError(perr)
	}
	now := time.Now()
	failing := sub.failing
	if failing.IsZero() {
		failing = now
	}
	log := w.hub.Log.With("topic", sub.self, "callback_host", callbackHost(sub.callback), "answer", why)
	if d := w.cfg.Delivery.DropAfter; d > 0 && now.Sub(failing) >= d {
		log.Warn("websub: deliveries failed for too long; ending the subscription", "failing_since", failing.UTC())
		return w.drop(ctx, sub, reasonFailing, "deliveries failed for "+d.String(), true)
	}
	s := w.store()
	attempt := sub.attempt + 1
	if attempt > w.cfg.Delivery.Retry.Attempts {
		w.m.deliveries.WithLabelValues(outcomeAbandoned).Inc()
		log.Warn("websub: delivery failed; retries exhausted, waiting for the next change", "attempts", attempt)
		return s.update(ctx, sub.id, time.Time{}, "attempt", 0, "failing", msOf(failing), "status", why)
	}
	delay := thoonk.Backoff{Min: w.cfg.Delivery.Retry.Min, Max: w.cfg.Delivery.Retry.Max}.Delay(attempt - 1)
	w.m.deliveries.WithLabelValues(outcomeFailed).Inc()
	log.Info("websub: delivery failed; retrying", "attempt", attempt, "retry_in", delay.Round(time.Millisecond))
	if err := s.update(ctx, sub.id, now.Add(delay), "attempt", attempt, "failing", msOf(failing), "status", why); err != nil {
		return err
	}
	w.scheduled()
	_, err := s.mark(ctx, changed, []string{deliveryMember(sub.id)}) // keeps the change's time for the lag
	return err
}

// drop ends a subscription (an expiry only if its lease still ends by
// now: a renewal keeps it), counts it and, with notify, tells the
// subscriber it was denied (WebSub 5.2).
func (w *webSub) drop(ctx context.Context, sub *subscription, reason, why string, notify bool) error {
	var expiredBy time.Time
	if reason == reasonExpired {
		expiredBy = time.Now()
	}
	ok, err := w.store().remove(ctx, sub.id, sub.feed, expiredBy)
	if err != nil || !ok {
		return err
	}
	w.m.dropped.WithLabelValues(reason).Inc()
	w.hub.Log.Info("websub: subscription ended", "reason", reason, "topic", sub.self, "callback_host", callbackHost(sub.callback))
	if notify {
		w.deny(sub.callback, sub.topic, why)
	}
	return nil
}

// deny tells a callback, in the background, that its subscription to
// topic is denied (hub.mode=denied, WebSub 5.2); the answer is ignored.
func (w *webSub) deny(callback, topic, reason string) {
	w.spawn(func(ctx context.Context) {
		q := url.Values{"hub.mode": {"denied"}, "hub.topic": {topic}, "hub.reason": {reason}}
		_, _, _ = w.get(ctx, callback, q, 0)
	})
}

// post sends a document to a subscription's callback, signed when the
// subscription has a secret, and returns the answer's status.
func (w *webSub) post(ctx context.Context, sub *subscription, doc *storedDoc) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Delivery.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.callback, bytes.NewReader(doc.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", doc.ctype)
	req.Header.Set("Link", w.links(sub.self))
	req.Header.Set("User-Agent", userAgent)
	if sub.secret != "" {
		req.Header.Set("X-Hub-Signature", w.signature(sub.secret, doc.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes)) // lets the connection be reused
	return resp.StatusCode, nil
}

// get sends a GET to a callback with params appended to its query (WebSub
// 5.1.1: the callback's own parameters are kept, ours come after) and
// returns the status and up to keep bytes of the answer.
func (w *webSub) get(ctx context.Context, callback string, params url.Values, keep int) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.VerifyTimeout)
	defer cancel()
	u := callback
	switch {
	case !hasQuery(callback):
		u += "?"
	case callback[len(callback)-1] != '?' && callback[len(callback)-1] != '&':
		u += "&"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+params.Encode(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(keep)))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	return resp.StatusCode, body, err
}

func hasQuery(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.RawQuery != "" || u.ForceQuery)
}

// signature is the X-Hub-Signature of body: method=hex(HMAC(secret, body))
// (WebSub 7.1).
func (w *webSub) signature(secret string, body []byte) string {
	mac := hmac.New(w.sign, []byte(secret))
	mac.Write(body)
	return w.cfg.Signature + "=" + hex.EncodeToString(mac.Sum(nil))
}

// links is the Link header of a delivery: the hub and the topic's
// canonical URL, combined in one header (WebSub 7).
func (w *webSub) links(self string) string {
	return "<" + w.hubURL() + `>; rel="hub", <` + self + `>; rel="self"`
}

// hubURL is where subscribers send their requests.
func (w *webSub) hubURL() string { return w.b.baseURL() + "/websub" }

// acquire takes one of a callback's delivery slots, or reports false
// when delivery.per_callback deliveries to it are running.
func (w *webSub) acquire(callback string) bool {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if w.busy[callback] >= w.cfg.Delivery.PerCallback {
		return false
	}
	w.busy[callback]++
	return true
}

func (w *webSub) release(callback string) {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if w.busy[callback]--; w.busy[callback] <= 0 {
		delete(w.busy, callback)
	}
}

// callbackHost is what logs show of a callback: its host (callback URLs
// are capabilities, never logged whole).
func callbackHost(callback string) string {
	if u, err := url.Parse(callback); err == nil {
		return u.Host
	}
	return "?"
}

// shortError names a delivery failure without the URL (a capability).
func shortError(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return err.Error()
}

// ---- callbacks' addresses ----

// errRefusedAddress means a callback's address is loopback, private,
// link-local or otherwise special, and not in callbacks.allow.
var errRefusedAddress = errors.New("address refused: loopback, private, link-local or special-purpose (callbacks.allow can admit it)")

// specialNets are special-purpose ranges refused besides the loopback,
// private (RFC 1918, RFC 4193), link-local, multicast and unspecified
// ones: "this network", shared address space (CGNAT), IETF protocol
// assignments, benchmarking, documentation, reserved, discard, and the
// IPv6 prefixes that reach IPv4 addresses (NAT64, 6to4) or are
// deprecated site-local.
var specialNets = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
		"2001:db8::/32", "2002::/16", "fec0::/10"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// allowedAddr reports whether callbacks may reach ip.
func (w *webSub) allowedAddr(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range w.allow {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range specialNets {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// checkDial refuses connections to addresses callbacks may not reach. It
// runs on the address being connected to, after name resolution, so a
// name that resolves differently at delivery time than when it was
// checked (DNS rebinding) is still refused.
func (w *webSub) checkDial(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if !w.allowedAddr(ip) {
		return fmt.Errorf("%s: %w", ip, errRefusedAddress)
	}
	return nil
}

// newClient returns the HTTP client of verifications and deliveries: no
// proxy, no redirects (a 3xx is a failure, WebSub 7), and every
// connection's address checked.
func (w *webSub) newClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: w.checkDial}
	t := &http.Transport{
		Proxy: nil, DialContext: d.DialContext, ForceAttemptHTTP2: true,
		MaxIdleConns: 256, MaxIdleConnsPerHost: w.cfg.Delivery.Workers, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// ---- documents in memory ----

// docCacheBytes bounds the fanned-out documents a process keeps, so that
// the deliveries of one change read its document from Redis once.
const docCacheBytes = 32 << 20

// docCache keeps fanned-out documents by digest; the oldest go first.
type docCache struct {
	mu    sync.Mutex
	docs  map[string]*storedDoc
	order []string
	bytes int
}

func (c *docCache) get(sum string) *storedDoc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.docs[sum]
}

func (c *docCache) put(d *storedDoc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.docs == nil {
		c.docs = map[string]*storedDoc{}
	}
	if c.docs[d.sum] != nil || len(d.body) > docCacheBytes/4 {
		return
	}
	for len(c.order) > 0 && c.bytes+len(d.body) > docCacheBytes {
		old := c.docs[c.order[0]]
		c.bytes -= len(old.body)
		delete(c.docs, c.order[0])
		c.order = c.order[1:]
	}
	c.docs[d.sum] = d
	c.order = append(c.order, d.sum)
	c.bytes += len(d.body)
}

package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoinfo "mellium.im/xmpp/disco/info"
	discoitems "mellium.im/xmpp/disco/items"
	"mellium.im/xmpp/jid"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// features are the disco#info features of the service: exactly what it
// implements.
var features = []string{
	nsDiscoInfo,
	nsDiscoItems,
	nsPubsub,
	nsRSM,
	nsPubsub + "#delete-items",
	nsPubsub + "#item-ids",
	nsPubsub + "#last-published",
	nsPubsub + "#meta-data",
	nsPubsub + "#persistent-items",
	nsPubsub + "#publish",
	nsPubsub + "#publish-options",
	nsPubsub + "#retract-items",
	nsPubsub + "#retrieve-items",
	nsPubsub + "#retrieve-subscriptions",
	nsPubsub + "#rsm",
	nsPubsub + "#subscribe",
	nsPubsub + "#subscription-options",
	nsOrderBy,
	nsOrderBy + "@" + nsPubsub,
	nsRev, // items carry revisions; publish-options take x-feedbridge#rev
}

// service is the pubsub service: it answers requests and turns feed
// events into notifications.
type service struct {
	cfg     Config
	hub     *core.Hub
	domain  string
	jid     jid.JID // the component's address
	feeds   *core.FeedFilter
	subs    *registry
	cursors *cursors
	notify  *notifier
	// lease is this process's lead of the component (nil: alone).
	lease *core.Lease
	// limiter bounds each sender's (bare JID's) requests, domains each
	// sender domain's.
	limiter, domains *limiter
	log              *slog.Logger
	// reqLimits bound an incoming IQ; itemLimits an item being embedded.
	reqLimits, itemLimits limits

	// queues feed the workers, one per worker.
	queues []chan job
	// waiting bounds the replies waiting for their job's result off the
	// workers; wg tracks every goroutine Run starts, those included.
	waiting chan struct{}
	wg      sync.WaitGroup

	// types caches feed types for the event dispatcher (its goroutine only).
	types map[string]thoonk.FeedType
	// quiet holds the retractions requested without notify.
	quiet quietRetracts
}

func newService(cfg Config, hub *core.Hub, c *conns) *service {
	log := hub.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("adapter", "xmpp")
	self, _ := jid.Parse(cfg.JID) // validated with the config
	return &service{
		cfg: cfg, hub: hub, domain: cfg.JID, jid: self, feeds: hub.Exposed(cfg.Feeds),
		subs:       newRegistry(hub.Store.Client(), cfg.JID),
		cursors:    newCursors(hub.Store, cfg.JID, log),
		notify:     newNotifier(cfg, c, log, hub.Metrics),
		limiter:    newLimiter(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst),
		domains:    newLimiter(cfg.RateLimit.DomainPerSecond, cfg.RateLimit.DomainBurst),
		log:        log,
		reqLimits:  limits{bytes: cfg.MaxItemBytes + 16<<10, depth: 64, elements: 16 << 10},
		itemLimits: limits{bytes: cfg.MaxItemBytes, depth: 64, elements: 16 << 10},
		waiting:    make(chan struct{}, cfg.Workers*workerQueue),
		types:      map[string]thoonk.FeedType{},
	}
}

// caller is who sent a request, as the server stamped it.
type caller struct {
	bare  string
	actor core.Actor
}

// handle answers one request, returning the reply stanza and, when the
// request calls for it, work to do once the reply is sent; or, for a
// publish or retract whose reply waits for its job's result (the job
// being stored already), only the function that waits and replies.
func (s *service) handle(ctx context.Context, req *request, who caller) ([]xml.Token, func(), pending) {
	var (
		payload []xml.Token
		after   func()
		later   pending
		err     *stanzaError
	)
	switch req.Op {
	case opDiscoInfo:
		payload, err = s.discoInfo(ctx, req, who)
	case opDiscoItems:
		payload, err = s.discoItems(ctx, req, who)
	case opItems:
		payload, err = s.items(ctx, req, who)
	case opSubscribe:
		payload, after, err = s.subscribe(ctx, req, who)
	case opUnsubscribe:
		err = s.unsubscribe(ctx, req, who)
	case opSubscriptions:
		payload, err = s.subscriptions(req, who)
	case opOptions:
		payload, err = s.options(ctx, req, who)
	case opPublish:
		payload, later, err = s.publish(ctx, req, who)
	case opRetract:
		later, err = s.retract(ctx, req, who)
	default:
		err = req.Err
	}
	if later != nil {
		return nil, nil, later
	}
	if err != nil {
		after = nil
	}
	return iqReply(req, payload, err), after, nil
}

func (s *service) node(feed string) string { return s.cfg.NodePrefix + feed }

// feedOf returns the feed a node name stands for, if it is one.
func (s *service) feedOf(node string) (string, bool) {
	feed, ok := strings.CutPrefix(node, s.cfg.NodePrefix)
	return feed, ok && thoonk.ValidateFeedName(feed) == nil
}

// resolve finds the feed behind req's node for an operation: "read" or an
// action verb. A node the caller may neither read nor act on, or that
// does not exist, is item-not-found (hidden); a node the caller may read
// but not act on is forbidden.
func (s *service) resolve(ctx context.Context, req *request, who caller, op string) (string, thoonk.FeedType, *stanzaError) {
	if !req.HasNode || req.Node == "" {
		return "", "", errBadRequest("nodeid-required", "name the node")
	}
	hidden := errNotFound("no node " + strconv.Quote(req.Node))
	feed, ok := s.feedOf(req.Node)
	if !ok || !s.feeds.Allows(feed) {
		return "", "", hidden
	}
	acl := s.hub.ACL
	canRead := acl.Allowed(who.actor, feed, core.OpRead)
	canDo := acl.Allowed(who.actor, feed, op)
	if !canRead && !canDo {
		return "", "", hidden
	}
	typ, err := s.hub.Store.Type(ctx, feed)
	switch {
	case errors.Is(err, thoonk.ErrNotFound):
		return "", "", hidden
	case s.hub.Malformed("xmpp", err):
		return "", "", errMalformed(err)
	case err != nil:
		s.log.Warn("xmpp: read feed type", "feed", feed, "err", err)
		return "", "", errInternal("the feed store is unavailable; try again")
	case typ != thoonk.TypeFeed && typ != thoonk.TypeSorted:
		return "", "", hidden
	case !canDo:
		return "", "", errForbidden(who.bare + " may not " + op + " on this node")
	}
	return feed, typ, nil
}

// discoInfo answers XEP-0030 info queries on the service and on nodes
// (XEP-0060 5.1, 5.3, 5.4).
func (s *service) discoInfo(ctx context.Context, req *request, who caller) ([]xml.Token, *stanzaError) {
	query := ns(nsDiscoInfo, "query")
	if req.Node == "" {
		var content []xml.Token
		content = append(content, tokensOf(discoinfo.Identity{Category: "pubsub", Type: "service", Name: s.cfg.Name}.TokenReader())...)
		for _, f := range features {
			content = append(content, tokensOf(discoinfo.Feature{Var: f}.TokenReader())...)
		}
		return el(query, nil, content), nil
	}
	feed, _, e := s.resolve(ctx, req, who, core.OpRead)
	if e != nil {
		return nil, e
	}
	infos, err := s.hub.Store.Describe(ctx, feed)
	if err != nil || len(infos) == 0 {
		return nil, errNotFound("no node " + strconv.Quote(req.Node))
	}
	info := infos[0]
	if s.hub.Malformed("xmpp", info.Err) {
		return nil, errMalformed(info.Err)
	}
	title := info.Config["title"]
	if title == "" {
		title = feed
	}
	fields := join(
		formField("FORM_TYPE", "hidden", nsPubsubMeta),
		formField("pubsub#title", "text-single", title),
	)
	if d := info.Config["description"]; d != "" {
		fields = append(fields, formField("pubsub#description", "text-single", d)...)
	}
	if t := payloadType(s.cfg.format(feed)); t != "" {
		fields = append(fields, formField("pubsub#type", "text-single", t)...)
	}
	access, publish := s.models(feed)
	fields = join(fields,
		formField("pubsub#access_model", "text-single", access),
		formField("pubsub#publish_model", "text-single", publish),
		formField("pubsub#num_subscribers", "text-single", strconv.Itoa(len(s.subs.subscribers(feed)))),
		formField("x-feedbridge#feed_type", "text-single", string(info.Type)),
		formField("x-feedbridge#item_count", "text-single", strconv.FormatInt(info.Count, 10)),
	)
	return el(query, []string{"node", req.Node}, join(
		tokensOf(discoinfo.Identity{Category: "pubsub", Type: "leaf", Name: title}.TokenReader()),
		tokensOf(discoinfo.Feature{Var: nsDiscoInfo}.TokenReader()),
		tokensOf(discoinfo.Feature{Var: nsDiscoItems}.TokenReader()),
		tokensOf(discoinfo.Feature{Var: nsPubsub}.TokenReader()),
		el(ns(nsDataForms, "x"), []string{"type", "result"}, fields),
	)), nil
}

// discoItems lists the nodes (no node) or a node's item ids (XEP-0060
// 5.2, 5.5), paged with RSM.
func (s *service) discoItems(ctx context.Context, req *request, who caller) ([]xml.Token, *stanzaError) {
	query := ns(nsDiscoItems, "query")
	var (
		uids  []string
		parts [][]xml.Token
		pg    thoonk.Page
		want  bool
	)
	if req.Node != "" {
		feed, typ, e := s.resolve(ctx, req, who, core.OpRead)
		if e != nil {
			return nil, e
		}
		if pg, want, e = s.page(ctx, feed, typ, req.RSM, 0, nil); e != nil {
			return nil, e
		}
		for _, it := range pg.Items {
			uids = append(uids, it.ID)
			parts = append(parts, tokensOf(discoitems.Item{JID: s.jid, Name: it.ID}.TokenReader()))
		}
	} else {
		nodes, err := s.visibleNodes(ctx, who)
		if err != nil {
			s.log.Warn("xmpp: list feeds", "err", err)
			return nil, errInternal("the feed store is unavailable; try again")
		}
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = s.node(n.Name)
		}
		index := func(uid string) (int, bool) { return slices.BinarySearch(names, uid) }
		start, end, w, e := pageList(len(names), index, req.RSM, thoonk.MaxPageSize)
		if e != nil {
			return nil, e
		}
		// a list cut short carries a <set/>, as items replies do
		want, pg = w || end < len(names), thoonk.Page{Total: int64(len(names)), Start: int64(start)}
		for i, n := range nodes[start:end] {
			uids = append(uids, names[start+i])
			parts = append(parts, tokensOf(discoitems.Item{JID: s.jid, Node: names[start+i], Name: n.Config["title"]}.TokenReader()))
		}
	}
	content, set := s.fitPage(parts, uids, pg, want)
	return el(query, []string{"node", req.Node}, content, set), nil
}

// models derives a node's XEP-0060 access and publish models from the
// ACL: "open" when it lets any XMPP user read (publish), else "whitelist"
// ("publishers"): only the JIDs its rules name may.
func (s *service) models(feed string) (access, publish string) {
	access, publish = "whitelist", "publishers"
	if s.hub.ACL.Allowed(anyone, feed, core.OpRead) {
		access = "open"
	}
	if s.hub.ACL.Allowed(anyone, feed, core.VerbPublish) {
		publish = "open"
	}
	return access, publish
}

// visibleNodes returns the feeds shown as nodes to who, sorted by name.
func (s *service) visibleNodes(ctx context.Context, who caller) ([]thoonk.FeedInfo, error) {
	all, err := s.hub.Store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	names := slices.DeleteFunc(all, func(f string) bool {
		return !s.feeds.Allows(f) || !s.hub.ACL.Allowed(who.actor, f, core.OpRead)
	})
	infos, err := s.hub.Store.Describe(ctx, names...)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(s.hub.Usable("xmpp", infos), func(i thoonk.FeedInfo) bool {
		return i.Type != thoonk.TypeFeed && i.Type != thoonk.TypeSorted
	}), nil
}

// subscriberJID checks a subscribe/unsubscribe jid attribute against the
// caller and returns it normalized.
func subscriberJID(req *request, who caller) (string, bool) {
	j, err := parseJID(req.JID)
	if err != nil || j.Bare().String() != who.bare {
		return "", false
	}
	return j.String(), true
}

// subscribe answers XEP-0060 6.1; once the reply is out, the node's last
// item follows with a delay stamp (6.1.7).
func (s *service) subscribe(ctx context.Context, req *request, who caller) ([]xml.Token, func(), *stanzaError) {
	if !req.HasNode || req.Node == "" {
		return nil, nil, errBadRequest("nodeid-required", "name the node")
	}
	if req.JID == "" {
		return nil, nil, errBadRequest("jid-required", "say which JID subscribes")
	}
	j, ok := subscriberJID(req, who)
	if !ok {
		return nil, nil, errBadRequest("invalid-jid", "the jid must be your own (bare or full) JID")
	}
	quiet, e := subOptions(req.SubOptions)
	if e != nil {
		return nil, nil, e
	}
	feed, _, e := s.resolve(ctx, req, who, core.OpRead)
	if e != nil {
		return nil, nil, e
	}
	// one sender's requests are handled in order, so the count cannot
	// change between this check and the add
	if _, again := s.subs.get(feed, j); !again && s.cfg.MaxSubscriptionsPerJID > 0 &&
		s.subs.countOf(who.bare) >= s.cfg.MaxSubscriptionsPerJID {
		return nil, nil, &stanzaError{Type: "wait", Condition: "policy-violation", App: "too-many-subscriptions",
			Text: fmt.Sprintf("%s has %d subscriptions, the most this service allows", who.bare, s.cfg.MaxSubscriptionsPerJID)}
	}
	// The subscriber gets the node's last item as of its cursor, then, as
	// notifications, every change after it: the node's lock keeps changes
	// from being queued from the subscription's start until that last
	// item is queued, after the reply, so each reaches the subscriber once
	// and in order.
	nc, err := s.lockCursor(ctx, feed)
	if err != nil {
		s.log.Warn("xmpp: start the notification cursor", "feed", feed, "err", err)
		return nil, nil, errInternal("could not read the node; try again")
	}
	sub, err := s.subs.add(ctx, feed, j, quiet)
	if err != nil {
		nc.mu.Unlock()
		s.log.Warn("xmpp: subscribe", "feed", feed, "jid", j, "err", err)
		return nil, nil, errInternal("could not store the subscription; try again")
	}
	if err := s.cursors.flush(ctx, feed); err != nil {
		// kept for the next flush: only a crash before it would miss changes
		s.log.Warn("xmpp: store the new subscription's cursor", "feed", feed, "err", err)
	}
	last, ok := s.lastItem(ctx, feed, s.cursors.pulledOf(nc))
	return subscribed(req, j, sub), func() {
		defer nc.mu.Unlock()
		if ok && !sub.Quiet {
			s.sendLast(feed, last, j)
		}
	}, nil
}

// subscribed is the reply to a subscribe request that succeeded; when
// the request carried options, the reply carries the options in force
// (XEP-0060 6.3.7).
func subscribed(req *request, j string, sub subscription) []xml.Token {
	var opts []xml.Token
	if req.SubOptions != nil {
		opts = el(local("options"), nil, optionsForm("result", sub))
	}
	return el(ns(nsPubsub, "pubsub"), nil,
		el(local("subscription"), []string{"node", req.Node, "jid", j, "subid", sub.SubID, "subscription", "subscribed"}), opts)
}

// subOptions checks submitted subscription options (XEP-0060 6.3) and
// returns the pubsub#deliver choice (nil when not given). The service
// applies pubsub#deliver; it always sends notifications one by one, with
// the payload and without a body, and ignores presence: pubsub#digest,
// pubsub#include_body and pubsub#subscription_type are accepted with the
// values that describe that and no other. Fields it does not know are
// left out of the options in force the reply shows, so the subscriber
// sees they had no effect. A value that is not valid is a bad-request +
// invalid-options, and nothing is subscribed.
func subOptions(form map[string][]string) (*bool, *stanzaError) {
	if form == nil {
		return nil, nil
	}
	invalid := func(field string) *stanzaError {
		return &stanzaError{Type: "modify", Condition: "bad-request", App: "invalid-options",
			Text: "subscription option " + field + " cannot take that value here (see the options the service offers)"}
	}
	var quiet *bool
	for field, vals := range form {
		v, ok := "", len(vals) == 1
		if ok {
			v = vals[0]
		}
		b, isBool := xsdBool(v)
		switch field {
		case "pubsub#deliver":
			if !ok || !isBool {
				return nil, invalid(field)
			}
			q := !b
			quiet = &q
		case "pubsub#digest", "pubsub#include_body":
			if !ok || !isBool || b {
				return nil, invalid(field)
			}
		case "pubsub#subscription_type":
			if !ok || v != "items" {
				return nil, invalid(field)
			}
		}
	}
	return quiet, nil
}

// optionsForm is the subscription options form of sub (type "form" to
// fill in, "result" to show the options in force).
func optionsForm(typ string, sub subscription) []xml.Token {
	deliver := "true"
	if sub.Quiet {
		deliver = "false"
	}
	return el(ns(nsDataForms, "x"), []string{"type", typ},
		formField("FORM_TYPE", "hidden", nsSubOptions),
		formField("pubsub#deliver", "boolean", deliver),
		formField("pubsub#digest", "boolean", "false"),
		formField("pubsub#include_body", "boolean", "false"),
		formField("pubsub#subscription_type", "list-single", "items"))
}

// options answers XEP-0060 6.3: the subscriber's options form (get), or
// new options (set).
func (s *service) options(ctx context.Context, req *request, who caller) ([]xml.Token, *stanzaError) {
	if !req.HasNode || req.Node == "" {
		return nil, errBadRequest("nodeid-required", "name the node")
	}
	if req.JID == "" {
		return nil, errBadRequest("jid-required", "say whose subscription")
	}
	j, ok := subscriberJID(req, who)
	if !ok {
		return nil, errForbidden("you may only see and change your own subscription options")
	}
	feed, _, e := s.resolve(ctx, req, who, core.OpRead)
	if e != nil {
		return nil, e
	}
	sub, subscribed := s.subs.get(feed, j)
	switch {
	case !subscribed:
		return nil, &stanzaError{Type: "modify", Condition: "unexpected-request", App: "not-subscribed", Text: j + " is not subscribed"}
	case req.SubID != "" && req.SubID != sub.SubID:
		return nil, &stanzaError{Type: "modify", Condition: "not-acceptable", App: "invalid-subid", Text: "no subscription has that subid"}
	case req.Type == "get":
		return el(ns(nsPubsub, "pubsub"), nil,
			el(local("options"), []string{"node", req.Node, "jid", j, "subid", sub.SubID}, optionsForm("form", sub))), nil
	}
	quiet, e := subOptions(req.SubOptions)
	if e != nil {
		return nil, e
	}
	if _, err := s.subs.add(ctx, feed, j, quiet); err != nil {
		s.log.Warn("xmpp: set subscription options", "feed", feed, "jid", j, "err", err)
		return nil, errInternal("could not store the options; try again")
	}
	return nil, nil
}

// lastItem returns a node's last item (a plain feed's newest, a sorted
// feed's last in position order) unless its last change comes after the
// node's cursor pulled, or is not journaled yet (a foreign writer's):
// then that change's notification is on its way, and serves as the last
// item.
func (s *service) lastItem(ctx context.Context, feed, pulled string) (thoonk.Item, bool) {
	items, err := s.newestItems(ctx, feed, 1)
	if err != nil || len(items) == 0 {
		return thoonk.Item{}, false
	}
	it := items[len(items)-1]
	rev, journaled, err := s.hub.Store.Journaled(ctx, feed, it.ID, it.Data)
	if err != nil || !journaled || thoonk.RevBefore(pulled, rev) {
		return thoonk.Item{}, false
	}
	it.Rev = rev
	return it, true
}

// sendLast queues a node's last item for one new subscriber, stamped
// with its publish time when it has one (XEP-0060 6.1.7; sorted feeds
// keep no times).
func (s *service) sendLast(feed string, it thoonk.Item, to string) {
	body := s.itemEvent(feed, itemView{id: it.ID, data: it.Data, rev: it.Rev})
	if !it.Published.IsZero() {
		body = append(body, delayStamp(it.Published)...)
	}
	s.notify.push(feed, body, []string{to}, nil)
}

// unsubscribe answers XEP-0060 6.2.
func (s *service) unsubscribe(ctx context.Context, req *request, who caller) *stanzaError {
	if !req.HasNode || req.Node == "" {
		return errBadRequest("nodeid-required", "name the node")
	}
	if req.JID == "" {
		return errBadRequest("jid-required", "say which JID unsubscribes")
	}
	j, ok := subscriberJID(req, who)
	if !ok {
		return errForbidden("you may only unsubscribe your own JIDs")
	}
	// A subscriber may always leave, even one who may no longer read the
	// node (or whose node is gone): the subscription tells nothing new.
	feed, ok := s.feedOf(req.Node)
	sub, subscribed := s.subs.get(feed, j)
	if !ok || !subscribed {
		if _, _, e := s.resolve(ctx, req, who, core.OpRead); e != nil {
			return e
		}
		return &stanzaError{Type: "cancel", Condition: "unexpected-request", App: "not-subscribed", Text: j + " is not subscribed"}
	}
	if req.SubID != "" && req.SubID != sub.SubID {
		return &stanzaError{Type: "modify", Condition: "not-acceptable", App: "invalid-subid", Text: "no subscription has that subid"}
	}
	if err := s.subs.remove(ctx, feed, j); err != nil {
		s.log.Warn("xmpp: unsubscribe", "feed", feed, "jid", j, "err", err)
		return errInternal("could not remove the subscription; try again")
	}
	s.forgetIdle(feed)
	return nil
}

// subscriptions answers XEP-0060 5.6: the caller's own subscriptions,
// sorted by node then JID, paged with RSM (uids are subids); a list cut
// short to stay below the stanza size limit carries a <set/> saying where
// it stopped, as item and node lists do.
func (s *service) subscriptions(req *request, who caller) ([]xml.Token, *stanzaError) {
	subs := slices.DeleteFunc(s.subs.of(who.bare), func(sub subscription) bool {
		return req.Node != "" && s.node(sub.Feed) != req.Node
	})
	index := func(uid string) (int, bool) {
		i := slices.IndexFunc(subs, func(sub subscription) bool { return sub.SubID == uid })
		return i, i >= 0
	}
	start, end, want, e := pageList(len(subs), index, req.RSM, len(subs))
	if e != nil {
		return nil, e
	}
	var (
		parts [][]xml.Token
		uids  []string
	)
	for _, sub := range subs[start:end] {
		uids = append(uids, sub.SubID)
		parts = append(parts, el(local("subscription"),
			[]string{"node", s.node(sub.Feed), "jid", sub.JID, "subid", sub.SubID, "subscription", "subscribed"}))
	}
	content, set := s.fitPage(parts, uids, thoonk.Page{Total: int64(len(subs)), Start: int64(start)}, want)
	return el(ns(nsPubsub, "pubsub"), nil, el(local("subscriptions"), []string{"node", req.Node}, content), set), nil
}

// delayStamp returns an XEP-0203 delay element.
func delayStamp(at time.Time) []xml.Token {
	return el(ns(nsDelay, "delay"), []string{"stamp", at.UTC().Format(time.RFC3339Nano)})
}

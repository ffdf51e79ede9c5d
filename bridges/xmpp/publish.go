package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// publish turns a publish request (XEP-0060 7.1) into an action. It
// returns the reply's payload or, when the reply waits for the job's
// result, a function that waits and returns the reply.
func (s *service) publish(ctx context.Context, req *request, who caller) ([]xml.Token, pending, *stanzaError) {
	if !req.HasNode || req.Node == "" {
		return nil, nil, errBadRequest("nodeid-required", "name the node")
	}
	switch {
	case req.Item.Payloads == 0:
		return nil, nil, errBadRequest("payload-required", "the item needs a payload element")
	case req.Item.Payloads > 1:
		return nil, nil, errBadRequest("invalid-payload", "the item must hold exactly one payload element")
	}
	feed, typ, e := s.resolve(ctx, req, who, core.VerbPublish)
	if e != nil {
		return nil, nil, e
	}
	if t := payloadType(s.cfg.format(feed)); t != "" && req.Item.Payload.Name.Space != t {
		// XEP-0060 7.1.3.6: the payload must be of the node's pubsub#type
		return nil, nil, errBadRequest("invalid-payload", "this node's payloads are in namespace "+t)
	}
	data, err := decodePayload(req.Item.Payload)
	if err != nil {
		return nil, nil, errBadRequest("invalid-payload", errorText(err))
	}
	if len(data) > s.cfg.MaxItemBytes {
		return nil, nil, errPayloadTooBig(len(data), s.cfg.MaxItemBytes)
	}
	opts, expect := req.Options, ""
	if want, ok := opts[optRev]; ok {
		opts = maps.Clone(opts)
		delete(opts, optRev)
		var e *stanzaError
		if expect, e = s.checkRev(ctx, feed, req.Item.ID, want); e != nil {
			return nil, nil, e
		}
	}
	if len(opts) > 0 {
		if e := s.checkOptions(ctx, feed, typ, opts); e != nil {
			return nil, nil, e
		}
	}
	act := core.Action{Verb: core.VerbPublish, Feed: feed, ID: req.Item.ID, Item: data, Actor: who.actor, ExpectRev: expect}
	switch {
	case typ == thoonk.TypeSorted && act.ID != "":
		act.Verb = core.VerbEdit // a sorted feed numbers new items itself
	case typ == thoonk.TypeFeed && act.ID == "":
		act.ID = thoonk.NewID() // known now, so the reply can carry it
	}
	w, e := s.submit(ctx, act)
	if e != nil {
		return nil, nil, e
	}
	// the reply names the item: the id known now, or the worker's
	published := func(res *core.Result) []xml.Token {
		id := act.ID
		if res != nil && res.ID != "" {
			id = res.ID
		}
		var item []xml.Token
		if id != "" {
			item = el(local("item"), []string{"id", id})
		}
		return el(ns(nsPubsub, "pubsub"), nil, el(local("publish"), []string{"node", req.Node}, item))
	}
	if w == nil {
		return published(nil), nil, nil
	}
	return nil, func(ctx context.Context) []xml.Token {
		res, e := s.settle(ctx, w)
		if e != nil {
			return iqReply(req, nil, e)
		}
		return append(iqReply(req, published(res), nil), workerMessage(req, res)...)
	}, nil
}

// workerMessage is a headline message to the requester carrying the
// worker's message for people (the result's message field), when there
// is one: an IQ result has no room for text.
func workerMessage(req *request, res *core.Result) []xml.Token {
	if res == nil || res.Message == "" {
		return nil
	}
	return el(ns(nsComponent, "message"), []string{"type", "headline", "from", req.To, "to", req.From},
		el(local("body"), nil, text(errorText(errors.New(res.Message)))))
}

func errPayloadTooBig(n, limit int) *stanzaError {
	return &stanzaError{Type: "modify", Condition: "not-acceptable", App: "payload-too-big",
		Text: fmt.Sprintf("the item is %d bytes, over the limit of %d", n, limit)}
}

// retract turns a retract request (XEP-0060 7.2) into an action; like
// publish, it may return a function that waits for the job's result.
func (s *service) retract(ctx context.Context, req *request, who caller) (pending, *stanzaError) {
	if !req.HasNode || req.Node == "" {
		return nil, errBadRequest("nodeid-required", "name the node")
	}
	switch {
	case len(req.ItemIDs) == 0 || req.ItemIDs[0] == "":
		return nil, errBadRequest("item-required", "name the item to retract")
	case len(req.ItemIDs) > 1:
		return nil, errBadRequest("", "retract one item per request")
	}
	feed, _, e := s.resolve(ctx, req, who, core.VerbRetract)
	if e != nil {
		return nil, e
	}
	id := req.ItemIDs[0]
	if !req.Notify {
		s.quiet.hold(feed, id) // before the job exists: its event cannot come first
	}
	w, e := s.submit(ctx, core.Action{Verb: core.VerbRetract, Feed: feed, ID: id, Actor: who.actor})
	if e != nil {
		s.quiet.release(feed, id)
		return nil, e
	}
	if w == nil {
		return nil, nil
	}
	return func(ctx context.Context) []xml.Token {
		res, e := s.settle(ctx, w)
		if e != nil {
			s.quiet.release(feed, id)
		}
		return append(iqReply(req, nil, e), workerMessage(req, res)...)
	}, nil
}

// quietRetractTTL bounds how long a retraction requested without notify
// waits for its event; past it, the retraction notifies like any other.
const quietRetractTTL = 10 * time.Minute

// quietRetracts remembers the retractions requested without notify='true'
// (XEP-0060 7.2.2.1: the service notifies subscribers when the request
// asks for it), so that the dispatcher leaves their retract events
// unannounced. Retractions by any other means (another protocol, a
// Thoonk writer, max_length trimming) are always notified.
type quietRetracts struct {
	mu sync.Mutex
	m  map[string]time.Time // feed NUL id -> until
}

func (q *quietRetracts) hold(feed, id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if q.m == nil || len(q.m) > 4096 {
		for k, until := range q.m {
			if now.After(until) {
				delete(q.m, k)
			}
		}
		if q.m == nil {
			q.m = map[string]time.Time{}
		}
	}
	q.m[feed+"\x00"+id] = now.Add(quietRetractTTL)
}

func (q *quietRetracts) release(feed, id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.m, feed+"\x00"+id)
}

// take reports, once, whether the retraction of id was requested quiet.
func (q *quietRetracts) take(feed, id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	until, ok := q.m[feed+"\x00"+id]
	delete(q.m, feed+"\x00"+id)
	return ok && time.Now().Before(until)
}

// pending is a reply that waits for a job's result: it waits, then
// returns the reply stanza.
type pending func(ctx context.Context) []xml.Token

// submit stores an action as a job, mapping refusals to XEP-0060 errors.
// With wait configured, it also returns a waiter for the job's result,
// registered before the job was stored, for settle.
func (s *service) submit(ctx context.Context, act core.Action) (*thoonk.ResultWaiter, *stanzaError) {
	var (
		w   *thoonk.ResultWaiter
		err error
	)
	if s.cfg.Wait > 0 {
		_, w, err = s.hub.Actions.SubmitWatch(ctx, act)
	} else {
		_, err = s.hub.Actions.Submit(ctx, act)
	}
	switch {
	case err == nil:
	case errors.Is(err, core.ErrDenied):
		return nil, errForbidden(act.Actor.ID + " may not " + act.Verb + " on this node")
	case errors.Is(err, core.ErrTooLarge):
		return nil, errPayloadTooBig(len(act.Item), s.cfg.MaxItemBytes)
	case errors.Is(err, thoonk.ErrNotFound), errors.Is(err, thoonk.ErrWrongType):
		return nil, errNotFound(errorText(err))
	case errors.Is(err, thoonk.ErrInvalid):
		return nil, errBadRequest("", errorText(err))
	default:
		s.log.Warn("xmpp: submit action", "verb", act.Verb, "feed", act.Feed, "err", err)
		return nil, errInternal("could not store the request; try again")
	}
	return w, nil
}

// settle waits up to wait for a submitted job's result and maps a
// worker's refusal to the XEP-0060 error. A nil result with no error
// means the wait ran out (or the result cannot be known): the job is
// stored and will still run.
func (s *service) settle(ctx context.Context, w *thoonk.ResultWaiter) (*core.Result, *stanzaError) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Wait)
	defer cancel()
	r, err := core.WaitResult(wctx, w)
	if err != nil {
		return nil, nil
	}
	res := *r
	if res.OK {
		return &res, nil
	}
	why := res.Error
	if res.Message != "" {
		why = res.Message
	}
	txt := errorText(errors.New(why))
	switch res.Code {
	case 400:
		return nil, errBadRequest("", txt)
	case 403:
		return nil, errForbidden(txt)
	case 404:
		return nil, errNotFound(txt)
	case 409:
		return nil, &stanzaError{Type: "cancel", Condition: "conflict", Text: txt}
	case 412: // the x-feedbridge#rev precondition, checked as the change applied
		return nil, errPrecondition(txt)
	case 413:
		return nil, &stanzaError{Type: "modify", Condition: "not-acceptable", App: "payload-too-big", Text: txt}
	case 422:
		return nil, errBadRequest("invalid-payload", txt)
	case 501:
		return nil, &stanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: txt}
	}
	return nil, &stanzaError{Type: "cancel", Condition: "internal-server-error", Text: txt}
}

// checkOptions checks publish-options (XEP-0060 7.1.5) as preconditions
// against the node's actual configuration; an option the service cannot
// guarantee is not met.
func (s *service) checkOptions(ctx context.Context, feed string, typ thoonk.FeedType, opts map[string][]string) *stanzaError {
	infos, err := s.hub.Store.Describe(ctx, feed)
	if err != nil || len(infos) == 0 {
		return s.storeError(fmt.Errorf("describe %q: %w", feed, thoonk.ErrFeedNotFound))
	}
	maxItems := "max"
	if n, err := strconv.Atoi(infos[0].Config["max_length"]); err == nil && n > 0 && typ == thoonk.TypeFeed {
		maxItems = strconv.Itoa(n)
	}
	access, publish := s.models(feed)
	actual := map[string]string{
		"pubsub#publish_model":            publish,
		"pubsub#persist_items":            "true",
		"pubsub#deliver_payloads":         "true",
		"pubsub#deliver_notifications":    "true",
		"pubsub#max_items":                maxItems,
		"pubsub#access_model":             access,
		"pubsub#notification_type":        s.cfg.NotificationType,
		"pubsub#send_last_published_item": "on_sub",
	}
	if t := payloadType(s.cfg.format(feed)); t != "" {
		actual["pubsub#type"] = t
	}
	for _, name := range slices.Sorted(maps.Keys(opts)) {
		want := opts[name]
		have, known := actual[name]
		if !known {
			return errPrecondition(name + " cannot be guaranteed by this service")
		}
		if len(want) != 1 || normalizeBool(want[0]) != have {
			return errPrecondition(fmt.Sprintf("%s is %s on this node", name, have))
		}
	}
	return nil
}

// optRev is the publish-options field (feedbridge's own) that makes a
// publish conditional: it replaces the item only while the item's last
// change is that revision (the rev attribute its <item/> showed).
const optRev = "x-feedbridge#rev"

// checkRev checks the x-feedbridge#rev precondition as the publish is
// asked for, and returns the revision for the worker to check again as it
// applies the change (a change landing in between is refused there).
func (s *service) checkRev(ctx context.Context, feed, id string, want []string) (string, *stanzaError) {
	switch {
	case len(want) != 1 || !thoonk.ValidRev(want[0]):
		return "", errBadRequest("", optRev+" takes one revision, as an item's rev attribute shows it (such as 1733300000123-0)")
	case id == "":
		return "", errBadRequest("", optRev+" needs the id of the item to replace")
	}
	revs, err := s.hub.Store.Revs(ctx, feed, id)
	if err != nil {
		return "", s.storeError(err)
	}
	if revs[0] != want[0] {
		now := "the item does not exist"
		if revs[0] != "" {
			now = "its revision is now " + revs[0]
		}
		return "", errPrecondition("the item changed since revision " + want[0] + " (" + now + "); nothing was published")
	}
	return want[0], nil
}

// anyone stands for an arbitrary XMPP user: an ACL that lets it read a
// feed lets everybody read it.
var anyone = core.Actor{Protocol: "xmpp", ID: "anyone@anonymous.invalid"}

func errPrecondition(txt string) *stanzaError {
	return &stanzaError{Type: "cancel", Condition: "conflict", App: "precondition-not-met", Text: txt}
}

func normalizeBool(v string) string {
	switch v {
	case "1":
		return "true"
	case "0":
		return "false"
	}
	return v
}

package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"slices"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// fitPage keeps the parts that fit in a stanza and returns them with the
// RSM <set/> describing them; the set is left out when the client did
// not ask for RSM and got the whole list.
func (s *service) fitPage(parts [][]xml.Token, uids []string, pg thoonk.Page, wantSet bool) ([]xml.Token, []xml.Token) {
	n := fit(parts, s.budget())
	if n == 0 && len(parts) > 0 {
		n = 1 // one item always goes: itemTokens dropped its payload if it was too large
	}
	if n < len(parts) {
		wantSet = true // cut short to stay below the stanza size limit
	}
	content := join(parts[:n]...)
	if !wantSet {
		return content, nil
	}
	set := rsmReply{count: pg.Total, index: pg.Start}
	if n > 0 {
		set.first, set.last = uids[0], uids[n-1]
	}
	return content, set.tokens()
}

// budget is the room for a reply's or notification's content below the
// server's stanza size limit.
func (s *service) budget() int { return s.cfg.MaxStanzaBytes - 2048 }

// pageList pages a list of total entries with RSM, index finding an
// entry by its uid: it returns the page's bounds and whether the client
// asked for RSM.
func pageList(total int, index func(uid string) (int, bool), rsm *rsmRequest, limit int) (int, int, bool, *stanzaError) {
	start := 0
	if rsm != nil {
		if rsm.Max >= 0 {
			limit = min(rsm.Max, limit)
		}
		switch {
		case rsm.After != "":
			i, ok := index(rsm.After)
			if !ok {
				return 0, 0, false, errNotFound("the RSM after item is not in the list")
			}
			start = i + 1
		case rsm.HasBefore && rsm.Before != "":
			i, ok := index(rsm.Before)
			if !ok {
				return 0, 0, false, errNotFound("the RSM before item is not in the list")
			}
			start = max(0, i-limit)
			limit = i - start
		case rsm.HasBefore:
			start = max(0, total-limit)
		case rsm.Index >= 0:
			start = int(min(rsm.Index, int64(total)))
		}
	}
	return start, min(start+limit, total), rsm != nil, nil
}

// page reads one page of a feed's items as an items (or disco#items)
// request asks: RSM, or the maxItems most recent, or the page_size most
// recent. It reports whether the reply must carry an RSM <set/>: when the
// client asked for RSM, or when the service cut the list short (not when
// the client asked for max_items).
//
// A plain feed's items are in chronological order (by their last publish
// or edit, as Redis placed them), in the whole result set and within each
// page, as Prosody and MAM give them: index 0 is the oldest item, <after>
// pages towards newer ones, an empty <before/> gives the newest page,
// and without RSM the newest items come, oldest first. XEP-0413
// <order by='modification' desc='true'/> reverses the order (newest
// first, which is the feed's display order). A sorted feed's items are in
// position order, the order its owner arranged, which no ordering changes.
func (s *service) page(ctx context.Context, feed string, typ thoonk.FeedType, rsm *rsmRequest, maxItems int, order *orderBy) (thoonk.Page, bool, *stanzaError) {
	desc := false
	if order != nil {
		switch {
		case typ != thoonk.TypeFeed:
			return thoonk.Page{}, false, errOrder("the items of this node are in the order its owner arranged")
		case order.By != "modification":
			return thoonk.Page{}, false, errOrder("items can be ordered by modification only: Thoonk feeds keep no creation time")
		}
		desc = order.Desc
	}
	limit := s.cfg.PageSize
	if maxItems > 0 {
		limit = min(maxItems, thoonk.MaxPageSize)
	}
	if rsm != nil && rsm.Max > 0 {
		limit = min(rsm.Max, thoonk.MaxPageSize)
	}
	store := s.hub.Store
	count := func() (int64, *stanzaError) {
		n, err := store.Count(ctx, feed)
		if err != nil {
			return 0, s.storeError(err)
		}
		return n, nil
	}
	if rsm != nil && rsm.Max == 0 {
		n, e := count()
		return thoonk.Page{Total: n}, true, e
	}
	// Requests in display order (newest first on plain feeds), and
	// whether the page read must be reversed.
	chrono := typ == thoonk.TypeFeed && !desc
	pr := thoonk.PageRequest{Limit: limit}
	switch {
	case rsm == nil:
		if !chrono && typ == thoonk.TypeSorted && maxItems == 0 {
			break // the first page_size in position order
		}
	case rsm.After != "" && chrono:
		pr.Before = &thoonk.Cursor{ID: rsm.After} // newer: before it in display order
	case rsm.After != "":
		pr.After = &thoonk.Cursor{ID: rsm.After}
	case rsm.HasBefore && rsm.Before != "" && chrono:
		pr.After = &thoonk.Cursor{ID: rsm.Before}
	case rsm.HasBefore && rsm.Before != "":
		pr.Before = &thoonk.Cursor{ID: rsm.Before}
	case rsm.HasBefore && chrono:
		// the newest page: the first in display order
	case rsm.HasBefore, chrono:
		// the last page in display order (an empty <before/> on a
		// sorted or newest-first node), or the first chronological
		// page (RSM without a position): both end the display order
		n, e := count()
		if e != nil {
			return thoonk.Page{}, false, e
		}
		start := int64(0)
		if rsm.Index >= 0 && chrono {
			start = rsm.Index
		}
		pr.Offset = max(0, n-start-int64(limit))
		pr.Limit = int(min(int64(limit), max(0, n-start)))
		if pr.Limit == 0 {
			return thoonk.Page{Total: n, Start: min(start, n)}, true, nil
		}
	case rsm.Index > 0:
		pr.Offset = rsm.Index
	}
	page, err := store.Page(ctx, feed, pr)
	if err != nil {
		return thoonk.Page{}, false, s.storeError(err)
	}
	cut := maxItems == 0 && (page.HasNext() || page.HasPrev())
	if chrono {
		slices.Reverse(page.Items)
		page.Start = max(0, page.Total-page.Start-int64(len(page.Items)))
	}
	return page, rsm != nil || cut, nil
}

// errOrder answers an XEP-0413 ordering the node cannot give.
func errOrder(txt string) *stanzaError {
	return &stanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: txt}
}

// storeError maps a store error to a stanza error.
func (s *service) storeError(err error) *stanzaError {
	switch {
	case s.hub.Malformed("xmpp", err):
		return errMalformed(err)
	case errors.Is(err, thoonk.ErrNotFound):
		return errNotFound("no such item: " + errorText(err))
	case errors.Is(err, thoonk.ErrInvalid):
		return errBadRequest("", errorText(err))
	}
	s.log.Warn("xmpp: read feed", "err", err)
	return errInternal("the feed store is unavailable; try again")
}

// errorText shortens an error for a stanza's <text/>.
func errorText(err error) string {
	t := err.Error()
	if len(t) > 512 {
		t = t[:512]
	}
	return t
}

// itemView is what a reply or a notification shows of one item.
type itemView struct {
	id   string
	data []byte
	// rev is the revision of the item's last change ("" when unknown).
	rev string
	// position is where a sorted feed's insert or move placed the item
	// (notifications of those only).
	position string
}

// nsRev is the namespace of the attributes feedbridge adds to <item/>:
// rev, the revision of the item's last change (what publish-options'
// x-feedbridge#rev expects), and, on the notification of a sorted feed's
// insert or move, position, where it placed the item (docs/xmpp.md).
const nsRev = "urn:feedbridge:rev:0"

// itemTokens renders one item for a reply (parentNS nsPubsub) or a
// notification (nsPubsubEvent); an item too large for one stanza goes
// without its payload.
func (s *service) itemTokens(feed string, it itemView, parentNS string) []xml.Token {
	start := xml.StartElement{Name: local("item"), Attr: []xml.Attr{{Name: local("id"), Value: it.id}}}
	if it.rev != "" {
		start.Attr = append(start.Attr, xml.Attr{Name: ns(nsRev, "rev"), Value: it.rev})
	}
	if it.position != "" {
		start.Attr = append(start.Attr, xml.Attr{Name: ns(nsRev, "position"), Value: it.position})
	}
	bare := []xml.Token{start, start.End()}
	if len(it.data) > s.cfg.MaxItemBytes {
		return bare
	}
	full := join([]xml.Token{start}, renderItem(it.data, s.cfg.format(feed), s.itemLimits, parentNS), []xml.Token{start.End()})
	if encodedSize(full) > s.budget() {
		return bare
	}
	return full
}

// itemEvent returns the notification of an item's publish, edit or move.
func (s *service) itemEvent(feed string, it itemView) []xml.Token {
	return itemsEvent(s.node(feed), s.itemTokens(feed, it, nsPubsubEvent))
}

// items answers item retrieval (XEP-0060 6.5): specific ids, the
// max_items most recent, or pages with RSM.
func (s *service) items(ctx context.Context, req *request, who caller) ([]xml.Token, *stanzaError) {
	feed, typ, e := s.resolve(ctx, req, who, core.OpRead)
	if e != nil {
		return nil, e
	}
	var (
		parts [][]xml.Token
		uids  []string
		pg    thoonk.Page
		want  bool
	)
	if len(req.ItemIDs) > 0 {
		// the revisions first: a change in between pairs newer content
		// with an older revision, which a conditional publish refuses
		revs, err := s.hub.Store.Revs(ctx, feed, req.ItemIDs...)
		if err != nil {
			return nil, s.storeError(err)
		}
		got, err := s.hub.Store.Feed(feed).GetMany(ctx, req.ItemIDs...)
		if err != nil {
			return nil, s.storeError(err)
		}
		// in the order asked for; ids not in the node are left out, and
		// none found is an empty result (XEP-0060 6.5.9.10)
		for i, data := range got {
			if data != nil {
				uids = append(uids, req.ItemIDs[i])
				parts = append(parts, s.itemTokens(feed, itemView{id: req.ItemIDs[i], data: data, rev: revs[i]}, nsPubsub))
			}
		}
		pg.Total = int64(len(parts))
	} else {
		if pg, want, e = s.page(ctx, feed, typ, req.RSM, req.MaxItems, req.Order); e != nil {
			return nil, e
		}
		for _, it := range pg.Items {
			uids = append(uids, it.ID)
			parts = append(parts, s.itemTokens(feed, itemView{id: it.ID, data: it.Data, rev: it.Rev}, nsPubsub))
		}
	}
	content, set := s.fitPage(parts, uids, pg, want)
	return el(ns(nsPubsub, "pubsub"), nil, el(local("items"), []string{"node", req.Node}, content), set), nil
}

package xmpp

import (
	"encoding/xml"
	"strconv"
)

// op is what a request asks for.
type op int

// The operations the service tells apart.
const (
	opInvalid op = iota // answered with Err
	opDiscoInfo
	opDiscoItems
	opItems
	opSubscribe
	opUnsubscribe
	opSubscriptions
	opPublish
	opRetract
	opOptions
)

// request is one parsed IQ addressed to the service.
type request struct {
	// ID, From, To and Type are the IQ's attributes, verbatim.
	ID, From, To, Type string
	Op                 op
	// Err, when set, is the answer: the request is malformed or asks for
	// something the service does not implement.
	Err *stanzaError

	// Node is the node attribute; HasNode tells an empty one from none.
	Node    string
	HasNode bool
	// JID and SubID are the subscribe/unsubscribe attributes.
	JID, SubID string
	// MaxItems is the items request's max_items (0 when absent).
	MaxItems int
	// ItemIDs are the ids asked for (items) or the item to retract.
	ItemIDs []string
	// RSM is the XEP-0059 request, when present.
	RSM *rsmRequest
	// Item is the published item.
	Item *publishItem
	// Options are the publish-options form's fields (nil when absent).
	Options map[string][]string
	// SubOptions are the subscribe_options form's fields sent with a
	// subscribe or an options set (nil when none).
	SubOptions map[string][]string
	// Order is the first XEP-0413 ordering of an items request (nil: the
	// default, chronological).
	Order *orderBy
	// Notify is a retract's notify attribute ("true" or "1").
	Notify bool
}

// orderBy is an XEP-0413 <order/> element.
type orderBy struct {
	// By is "creation", "modification" or another ordering.
	By   string
	Desc bool
}

// rsmRequest is an XEP-0059 <set/> request.
type rsmRequest struct {
	// Max is the page size; -1 when absent.
	Max int
	// After and Before are the uids to page from; HasBefore tells an
	// empty <before/> (the last page) from none.
	After, Before string
	HasBefore     bool
	// Index is the first item's index; -1 when absent.
	Index int64
}

// publishItem is the <item/> of a publish request.
type publishItem struct {
	ID string
	// Payload is the item's single child element (nil when none).
	Payload *element
	// Payloads is the number of child elements.
	Payloads int
}

// parseRequest reads an IQ into a request. A malformed or unsupported
// request comes back with Op opInvalid and Err set; a result or error IQ
// comes back with Op opInvalid and no Err (there is nothing to answer).
func parseRequest(iq *element, tooLarge bool) *request {
	req := &request{}
	req.ID, _ = iq.attr("id")
	req.From, _ = iq.attr("from")
	req.To, _ = iq.attr("to")
	req.Type, _ = iq.attr("type")
	if req.Type != "get" && req.Type != "set" {
		if req.Type != "result" && req.Type != "error" {
			req.Err = errBadRequest("", "an IQ's type must be get or set")
		}
		return req
	}
	kids := iq.children()
	if len(kids) != 1 {
		if tooLarge && len(kids) > 0 {
			kids = kids[:1]
		} else {
			req.Err = errBadRequest("", "an IQ request must carry exactly one payload element")
			return req
		}
	}
	p := kids[0]
	switch p.Name {
	case xml.Name{Space: nsDiscoInfo, Local: "query"}:
		req.Op = opDiscoInfo
		req.Node, req.HasNode = p.attr("node")
		req.want(req.Type == "get", "disco#info queries are IQ get")
	case xml.Name{Space: nsDiscoItems, Local: "query"}:
		req.Op = opDiscoItems
		req.Node, req.HasNode = p.attr("node")
		req.RSM = req.parseRSM(p.child(nsRSM, "set"))
		req.want(req.Type == "get", "disco#items queries are IQ get")
	case xml.Name{Space: nsPubsub, Local: "pubsub"}:
		req.parsePubsub(p, tooLarge)
	case xml.Name{Space: nsPubsubOwner, Local: "pubsub"}:
		req.Err = errUnsupported(ownerFeature(p))
	default:
		// RFC 6120 8.4: a payload namespace the entity does not understand
		req.Err = &stanzaError{Type: "cancel", Condition: "service-unavailable"}
	}
	if tooLarge && req.Err == nil {
		if req.Op == opPublish {
			req.Err = &stanzaError{Type: "modify", Condition: "not-acceptable", App: "payload-too-big", Text: "the item is over the size limit"}
		} else {
			req.Err = errBadRequest("", "the request is over the size limit")
		}
	}
	if req.Err != nil {
		req.Op = opInvalid
	}
	return req
}

// want records a bad-request error unless ok.
func (req *request) want(ok bool, txt string) {
	if !ok && req.Err == nil {
		req.Err = errBadRequest("", txt)
	}
}

// parsePubsub reads a <pubsub xmlns='http://jabber.org/protocol/pubsub'/>
// request: its first child says what is asked; publish may be followed by
// publish-options, items by an RSM set, subscribe by options.
func (req *request) parsePubsub(p *element, tooLarge bool) {
	kids := p.children()
	if len(kids) == 0 {
		req.Err = errBadRequest("", "the pubsub element is empty")
		return
	}
	first := kids[0]
	if first.Name.Space != nsPubsub {
		req.Err = errBadRequest("", "unknown element "+first.Name.Local+" in the pubsub request")
		return
	}
	req.Node, req.HasNode = first.attr("node")
	allowed := map[string]bool{} // names allowed after the first child
	switch first.Name.Local {
	case "items":
		req.Op = opItems
		req.want(req.Type == "get", "item retrieval is an IQ get")
		if v, ok := first.attr("max_items"); ok {
			n, err := strconv.Atoi(v)
			req.want(err == nil && n > 0, "max_items must be a positive integer")
			req.MaxItems = n
		}
		for _, it := range first.children() {
			if it.Name != (xml.Name{Space: nsPubsub, Local: "item"}) {
				req.want(false, "only item elements may appear in items")
				continue
			}
			id, _ := it.attr("id")
			req.want(id != "", "an item of an items request needs an id")
			req.ItemIDs = append(req.ItemIDs, id)
		}
		allowed["set"] = true
	case "subscribe":
		req.Op = opSubscribe
		req.want(req.Type == "set", "subscribe is an IQ set")
		req.JID, _ = first.attr("jid")
		allowed["options"] = true
	case "options":
		// XEP-0060 6.3: get or set one's subscription options
		req.Op = opOptions
		req.JID, _ = first.attr("jid")
		req.SubID, _ = first.attr("subid")
		if req.Type == "set" {
			req.SubOptions = req.parseForm(first.child(nsDataForms, "x"), nsSubOptions)
		}
	case "unsubscribe":
		req.Op = opUnsubscribe
		req.want(req.Type == "set", "unsubscribe is an IQ set")
		req.JID, _ = first.attr("jid")
		req.SubID, _ = first.attr("subid")
	case "subscriptions":
		req.Op = opSubscriptions
		req.want(req.Type == "get", "subscription retrieval is an IQ get")
		allowed["set"] = true
	case "publish":
		req.Op = opPublish
		req.want(req.Type == "set", "publish is an IQ set")
		req.parsePublish(first, tooLarge)
		allowed["publish-options"] = true
	case "retract":
		req.Op = opRetract
		req.want(req.Type == "set", "retract is an IQ set")
		if v, ok := first.attr("notify"); ok {
			b, valid := xsdBool(v)
			req.want(valid, "notify must be true, false, 1 or 0")
			req.Notify = b
		}
		for _, it := range first.children() {
			if it.Name != (xml.Name{Space: nsPubsub, Local: "item"}) {
				req.want(false, "only item elements may appear in retract")
				continue
			}
			id, _ := it.attr("id")
			req.ItemIDs = append(req.ItemIDs, id)
		}
	default:
		if f, ok := pubsubFeatures[first.Name.Local]; ok {
			req.Err = errUnsupported(f)
		} else {
			req.Err = errBadRequest("", "unknown element "+first.Name.Local+" in the pubsub request")
		}
		return
	}
	for _, k := range kids[1:] {
		switch {
		case k.Name.Space != nsPubsub && !((k.Name.Space == nsRSM || k.Name.Space == nsOrderBy) && allowed["set"]):
			req.want(false, "unexpected element "+k.Name.Local+" in the pubsub request")
		case k.Name.Space == nsRSM && k.Name.Local == "set":
			req.RSM = req.parseRSM(k)
		case k.Name.Space == nsOrderBy && k.Name.Local == "order":
			if req.Order == nil { // the first one orders; the others break ties
				req.Order = req.parseOrder(k)
			}
		case !allowed[k.Name.Local]:
			req.want(false, "unexpected element "+k.Name.Local+" in the pubsub request")
		case k.Name.Local == "publish-options":
			req.Options = req.parseForm(k.child(nsDataForms, "x"), nsPublishOpts)
		case k.Name.Local == "options":
			_, hasNode := k.attr("node")
			_, hasJID := k.attr("jid")
			req.want(!hasNode && !hasJID, "the options of a subscribe carry no node or jid (XEP-0060 6.3.7)")
			if len(k.children()) > 0 {
				req.SubOptions = req.parseForm(k.child(nsDataForms, "x"), nsSubOptions)
			}
		}
	}
}

// parsePublish reads <publish node><item id>payload</item></publish>.
func (req *request) parsePublish(pub *element, tooLarge bool) {
	items := pub.children()
	switch {
	case len(items) == 0:
		if req.Err == nil {
			req.Err = errBadRequest("item-required", "publish an item element")
		}
		return
	case len(items) > 1 && !tooLarge:
		req.want(false, "publish one item per request")
		return
	}
	it := items[0]
	if it.Name != (xml.Name{Space: nsPubsub, Local: "item"}) {
		req.want(false, "publish needs an item element")
		return
	}
	req.Item = &publishItem{}
	req.Item.ID, _ = it.attr("id")
	payloads := it.children()
	req.Item.Payloads = len(payloads)
	if len(payloads) > 0 {
		req.Item.Payload = payloads[0]
	}
}

// parseRSM reads an XEP-0059 request; nil in, nil out.
func (req *request) parseRSM(set *element) *rsmRequest {
	if set == nil {
		return nil
	}
	r := &rsmRequest{Max: -1, Index: -1}
	num := func(e *element, what string) int64 {
		n, err := strconv.ParseInt(e.text(), 10, 32)
		req.want(err == nil && n >= 0, "RSM "+what+" must be a whole number, 0 or more")
		return n
	}
	for _, k := range set.children() {
		if k.Name.Space != nsRSM {
			req.want(false, "unexpected element "+k.Name.Local+" in the RSM set")
			continue
		}
		switch k.Name.Local {
		case "max":
			r.Max = int(num(k, "max"))
		case "index":
			r.Index = num(k, "index")
		case "after":
			r.After = k.text()
			req.want(r.After != "", "RSM after must name an item")
		case "before":
			r.Before, r.HasBefore = k.text(), true
		default:
			req.want(false, "unexpected element "+k.Name.Local+" in the RSM set")
		}
	}
	return r
}

// parseOrder reads an XEP-0413 <order/> element.
func (req *request) parseOrder(e *element) *orderBy {
	o := &orderBy{}
	o.By, _ = e.attr("by")
	req.want(o.By != "", "an order element needs a by attribute")
	if v, ok := e.attr("desc"); ok {
		b, valid := xsdBool(v)
		req.want(valid, "desc must be true, false, 1 or 0")
		o.Desc = b
	}
	return o
}

// xsdBool reads an XML Schema boolean.
func xsdBool(v string) (value, ok bool) {
	switch v {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// parseForm reads a submitted data form of the given FORM_TYPE into its
// fields' values; a missing or different FORM_TYPE is a bad request.
func (req *request) parseForm(x *element, formType string) map[string][]string {
	fields := map[string][]string{}
	if x == nil {
		req.want(false, "the request must hold a data form of type "+formType)
		return fields
	}
	for _, f := range x.children() {
		if f.Name != (xml.Name{Space: nsDataForms, Local: "field"}) {
			continue
		}
		v, _ := f.attr("var")
		var vals []string
		for _, val := range f.children() {
			if val.Name == (xml.Name{Space: nsDataForms, Local: "value"}) {
				vals = append(vals, val.text())
			}
		}
		fields[v] = vals
	}
	ft := fields["FORM_TYPE"]
	req.want(len(ft) == 1 && ft[0] == formType, "the form's FORM_TYPE must be "+formType)
	delete(fields, "FORM_TYPE")
	return fields
}

// pubsubFeatures maps the pubsub requests the service does not implement
// to the feature named in its <unsupported/> error.
var pubsubFeatures = map[string]string{
	"create":       "create-nodes",
	"configure":    "config-node",
	"affiliations": "retrieve-affiliations",
	"default":      "retrieve-default-sub",
}

// ownerFeatures does the same for the owner namespace.
var ownerFeatures = map[string]string{
	"configure":     "config-node",
	"default":       "retrieve-default",
	"delete":        "delete-nodes",
	"purge":         "purge-nodes",
	"subscriptions": "manage-subscriptions",
	"affiliations":  "modify-affiliations",
}

func ownerFeature(p *element) string {
	if kids := p.children(); len(kids) > 0 {
		if f, ok := ownerFeatures[kids[0].Name.Local]; ok {
			return f
		}
	}
	return "config-node"
}

package xmpp

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"

	"mellium.im/xmpp/paging"
	"mellium.im/xmpp/stanza"
)

// Namespaces spoken by the service.
const (
	nsPubsub      = "http://jabber.org/protocol/pubsub"
	nsPubsubEvent = "http://jabber.org/protocol/pubsub#event"
	nsPubsubOwner = "http://jabber.org/protocol/pubsub#owner"
	nsPubsubError = "http://jabber.org/protocol/pubsub#errors"
	nsPubsubMeta  = "http://jabber.org/protocol/pubsub#meta-data"
	nsPublishOpts = "http://jabber.org/protocol/pubsub#publish-options"
	nsSubOptions  = "http://jabber.org/protocol/pubsub#subscribe_options"
	nsOrderBy     = "urn:xmpp:order-by:1"
	nsDiscoInfo   = "http://jabber.org/protocol/disco#info"
	nsDiscoItems  = "http://jabber.org/protocol/disco#items"
	nsRSM         = "http://jabber.org/protocol/rsm"
	nsStanzas     = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsDataForms   = "jabber:x:data"
	nsDelay       = "urn:xmpp:delay"
	nsJSON        = "urn:xmpp:json:0"
	// nsPayload is feedbridge's wrapper for items that are neither JSON
	// nor a single XML element (docs/xmpp.md).
	nsPayload = "urn:feedbridge:payload:0"
	// nsComponent is the stanza namespace of an XEP-0114 stream.
	nsComponent = "jabber:component:accept"
)

// el returns the tokens of an element with the given attributes (name,
// value pairs; pairs with an empty value are left out) and content.
func el(name xml.Name, attrs []string, content ...[]xml.Token) []xml.Token {
	start := xml.StartElement{Name: name}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	out := []xml.Token{start}
	for _, c := range content {
		out = append(out, c...)
	}
	return append(out, start.End())
}

// local names an element that inherits its parent's namespace.
func local(name string) xml.Name { return xml.Name{Local: name} }

// ns names an element that declares namespace space.
func ns(space, name string) xml.Name { return xml.Name{Space: space, Local: name} }

// text returns character data as tokens.
func text(s string) []xml.Token { return []xml.Token{xml.CharData(s)} }

// join concatenates token lists.
func join(parts ...[]xml.Token) []xml.Token {
	var out []xml.Token
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// tokenReader replays tokens, copying each start element so that encoders
// which edit attributes in place never touch shared tokens.
type tokenReader struct {
	toks []xml.Token
	i    int
}

func readTokens(toks []xml.Token) *tokenReader { return &tokenReader{toks: toks} }

// Token returns the next token, or io.EOF after the last.
func (r *tokenReader) Token() (xml.Token, error) {
	if r.i >= len(r.toks) {
		return nil, io.EOF
	}
	t := r.toks[r.i]
	r.i++
	if s, ok := t.(xml.StartElement); ok {
		return s.Copy(), nil
	}
	return t, nil
}

// encodedSize returns the number of bytes toks take once encoded.
func encodedSize(toks []xml.Token) int {
	var n countWriter
	encodeTo(&n, toks)
	return int(n)
}

// encodeTokens returns the encoding of a standalone element's tokens.
func encodeTokens(toks []xml.Token) []byte {
	var b bytes.Buffer
	encodeTo(&b, toks)
	return b.Bytes()
}

// encodeTo encodes tokens to w (up to the first that cannot be).
func encodeTo(w io.Writer, toks []xml.Token) {
	enc := xml.NewEncoder(w)
	for _, t := range toks {
		if enc.EncodeToken(t) != nil {
			break
		}
	}
	_ = enc.Flush()
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// fit returns how many of parts, taken in order, fit in budget bytes once
// encoded.
func fit(parts [][]xml.Token, budget int) int {
	used := 0
	for i, p := range parts {
		used += encodedSize(p)
		if used > budget {
			return i
		}
	}
	return len(parts)
}

// iqReply returns an IQ result (or, with a non-nil err, an IQ error)
// answering req.
func iqReply(req *request, payload []xml.Token, err *stanzaError) []xml.Token {
	typ := "result"
	if err != nil {
		typ, payload = "error", err.tokens()
	}
	return el(ns(nsComponent, "iq"), []string{"type", typ, "id", req.ID, "from", req.To, "to", req.From}, payload)
}

// stanzaError is an XMPP stanza error (RFC 6120 8.3), optionally with a
// pubsub application condition (XEP-0060 section 12).
type stanzaError struct {
	// Type is cancel, modify, auth or wait.
	Type string
	// Condition is the RFC 6120 defined condition.
	Condition string
	// App is the pubsub#errors condition, if any.
	App string
	// Feature names the unsupported feature (App "unsupported").
	Feature string
	// Text explains the error to a person.
	Text string
}

// Error returns the condition and the text.
func (e *stanzaError) Error() string {
	s := e.Condition
	if e.App != "" {
		s += "/" + e.App
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// tokens encodes the error with mellium's stanza.Error, the pubsub
// condition (if any) as its application-specific condition.
func (e *stanzaError) tokens() []xml.Token {
	se := stanza.Error{Type: stanza.ErrorType(e.Type), Condition: stanza.Condition(e.Condition)}
	if e.Text != "" {
		se.Text = map[string]string{"": e.Text}
	}
	var app xml.TokenReader
	if e.App != "" {
		app = readTokens(el(ns(nsPubsubError, e.App), []string{"feature", e.Feature}))
	}
	return tokensOf(se.Wrap(app))
}

// tokensOf collects the tokens of a reader (mellium's marshalers give
// readers; replies are built as token lists, measured and cut to size).
func tokensOf(r xml.TokenReader) []xml.Token {
	var out []xml.Token
	for {
		t, err := r.Token()
		if t != nil {
			out = append(out, xml.CopyToken(t))
		}
		if err != nil {
			return out
		}
	}
}

// Constructors for the errors the service returns.
func errBadRequest(app, txt string) *stanzaError {
	return &stanzaError{Type: "modify", Condition: "bad-request", App: app, Text: txt}
}

func errNotFound(txt string) *stanzaError {
	return &stanzaError{Type: "cancel", Condition: "item-not-found", Text: txt}
}

func errForbidden(txt string) *stanzaError {
	return &stanzaError{Type: "auth", Condition: "forbidden", Text: txt}
}

func errUnsupported(feature string) *stanzaError {
	return &stanzaError{Type: "cancel", Condition: "feature-not-implemented", App: "unsupported", Feature: feature,
		Text: "this service does not implement " + feature}
}

func errInternal(txt string) *stanzaError {
	return &stanzaError{Type: "wait", Condition: "internal-server-error", Text: txt}
}

// errMalformed answers a request on a feed whose data in Redis is
// malformed: not the client's fault, and not passing (type cancel).
func errMalformed(err error) *stanzaError {
	return &stanzaError{Type: "cancel", Condition: "internal-server-error", Text: errorText(err)}
}

// errBusy is the answer to a sender over its rate limit or a full queue.
func errBusy(txt string) *stanzaError {
	return &stanzaError{Type: "wait", Condition: "resource-constraint", Text: txt}
}

// itemsEvent returns a notification of published items (XEP-0060 7.1.2.1).
func itemsEvent(node string, items []xml.Token) []xml.Token {
	return el(ns(nsPubsubEvent, "event"), nil, el(local("items"), []string{"node", node}, items))
}

// retractEvent returns a retraction notification (XEP-0060 7.2.2.1).
func retractEvent(node, id string) []xml.Token {
	return itemsEvent(node, el(local("retract"), []string{"id", id}))
}

// deleteEvent returns a node deletion notification (XEP-0060 8.4.2).
func deleteEvent(node string) []xml.Token {
	return el(ns(nsPubsubEvent, "event"), nil, el(local("delete"), []string{"node", node}))
}

// message returns a message stanza around payload.
func message(from, to, typ, id string, payload []xml.Token) []xml.Token {
	return el(ns(nsComponent, "message"), []string{"from", from, "to", to, "type", typ, "id", id}, payload)
}

// rsmReply is an XEP-0059 result set: <first index>, <last>, <count>.
type rsmReply struct {
	first, last string
	index       int64
	count       int64
}

// tokens encodes the set with mellium's paging.Set, except an empty page:
// paging.Set always writes <first/> and <last/>, which XEP-0059 2.6 says
// an empty page has none of (only <count/>).
func (s rsmReply) tokens() []xml.Token {
	count := uint64(max(s.count, 0))
	if s.first == "" {
		return el(ns(nsRSM, "set"), nil, el(local("count"), nil, text(strconv.FormatUint(count, 10))))
	}
	set := paging.Set{Last: s.last, Count: &count}
	index := uint64(max(s.index, 0))
	set.First.ID, set.First.Index = s.first, &index
	return tokensOf(set.TokenReader())
}

// formField returns a data form field with its values.
func formField(v, typ string, values ...string) []xml.Token {
	var content []xml.Token
	for _, val := range values {
		content = append(content, el(local("value"), nil, text(val))...)
	}
	return el(local("field"), []string{"var", v, "type", typ}, content)
}

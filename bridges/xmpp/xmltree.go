package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// element is a parsed XML element: its resolved name, its attributes
// (namespace declarations included, as the decoder reports them) and its
// content in document order, each entry an *element or an xml.CharData.
type element struct {
	Name    xml.Name
	Attr    []xml.Attr
	Content []any
}

// limits bound what readElement accepts from one stanza or item.
type limits struct {
	// bytes bounds the sum of names, attribute values and text.
	bytes int
	// depth bounds element nesting.
	depth int
	// elements bounds the number of elements.
	elements int
}

// errTooLarge means an element went over its limits.
var errTooLarge = errors.New("over the size limit")

// readElement reads the content of start, already consumed from r, up to
// and including its end element, into a tree. Comments, processing
// instructions and directives are dropped. When the element goes over
// lim, it returns the tree read so far and an error wrapping errTooLarge;
// the rest of the element is left unread.
func readElement(r xml.TokenReader, start xml.StartElement, lim limits) (*element, error) {
	used, count := 0, 1
	root := newElement(start)
	used += nameSize(root)
	stack := []*element{root}
	for {
		if used > lim.bytes || count > lim.elements {
			return root, fmt.Errorf("xml element: %w", errTooLarge)
		}
		tok, err := r.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return root, fmt.Errorf("xml element: %w", err)
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= lim.depth {
				return root, fmt.Errorf("xml element nested over %d levels: %w", lim.depth, errTooLarge)
			}
			child := newElement(t)
			used += nameSize(child)
			count++
			top.Content = append(top.Content, child)
			stack = append(stack, child)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			used += len(t)
			if n := len(top.Content); n > 0 {
				if prev, ok := top.Content[n-1].(xml.CharData); ok {
					top.Content[n-1] = append(prev, t...)
					continue
				}
			}
			top.Content = append(top.Content, t.Copy())
		}
	}
}

func newElement(t xml.StartElement) *element {
	return &element{Name: t.Name, Attr: append([]xml.Attr(nil), t.Attr...)}
}

func nameSize(e *element) int {
	n := len(e.Name.Space) + len(e.Name.Local)
	for _, a := range e.Attr {
		n += len(a.Name.Space) + len(a.Name.Local) + len(a.Value)
	}
	return n
}

// parseXMLElement parses data, strictly, as a single XML element: an XML
// declaration, comments and white space may surround it; a DOCTYPE or any
// other content may not.
func parseXMLElement(data []byte, lim limits) (*element, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var root *element
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if root == nil {
				return nil, errors.New("no element")
			}
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root != nil {
				return nil, errors.New("more than one element")
			}
			if root, err = readElement(d, t, lim); err != nil {
				return nil, err
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text outside the element")
			}
		case xml.ProcInst:
			if t.Target != "xml" || root != nil {
				return nil, errors.New("processing instruction")
			}
		case xml.Directive:
			return nil, errors.New("DOCTYPE or other directive")
		}
	}
}

// checkNames reports names that could not be written back faithfully,
// or that Go's decoder accepts but the namespace-aware parsers of XMPP
// servers refuse (Prosody closes the stream on them): a local name that is
// not a plain ASCII XML name (the decoder lets through names such as
// "p:0", whose local part "0" is not a name), a namespace that is not an
// absolute URI (which is what an undeclared prefix leaves behind), the
// reserved xmlns namespace, the xml namespace on an element (it would be
// declared as a default namespace), or one attribute given twice.
func (e *element) checkNames() error {
	if !isLocalName(e.Name.Local) || !isNamespace(e.Name.Space) || e.Name.Space == nsXMLNS || e.Name.Space == nsXML {
		return fmt.Errorf("element name %q in namespace %q cannot be embedded", e.Name.Local, e.Name.Space)
	}
	seen := make(map[xml.Name]bool, len(e.Attr))
	for _, a := range e.Attr {
		if isNSDecl(a) {
			continue
		}
		if !isLocalName(a.Name.Local) || !isNamespace(a.Name.Space) || a.Name.Space == nsXMLNS {
			return fmt.Errorf("attribute %q in namespace %q cannot be embedded", a.Name.Local, a.Name.Space)
		}
		if seen[a.Name] {
			return fmt.Errorf("attribute %q in namespace %q is given twice", a.Name.Local, a.Name.Space)
		}
		seen[a.Name] = true
	}
	for _, c := range e.Content {
		if ch, ok := c.(*element); ok {
			if err := ch.checkNames(); err != nil {
				return err
			}
		}
	}
	return nil
}

// The namespaces reserved by Namespaces in XML: no prefix may be bound to
// nsXMLNS, and only the xml prefix to nsXML.
const (
	nsXMLNS = "http://www.w3.org/2000/xmlns/"
	nsXML   = "http://www.w3.org/XML/1998/namespace"
)

func isNamespace(ns string) bool { return ns == "" || strings.Contains(ns, ":") }

// isLocalName reports an ASCII XML name without a colon: a letter or "_",
// then letters, digits, "_", "-" and ".". Names beyond ASCII are valid XML
// too, but servers' parsers disagree on them; such items go as text.
func isLocalName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func isNSDecl(a xml.Attr) bool {
	return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns")
}

// child returns the first child element with the given name.
func (e *element) child(space, local string) *element {
	for _, c := range e.Content {
		if ch, ok := c.(*element); ok && ch.Name.Space == space && ch.Name.Local == local {
			return ch
		}
	}
	return nil
}

// children returns the child elements.
func (e *element) children() []*element {
	var out []*element
	for _, c := range e.Content {
		if ch, ok := c.(*element); ok {
			out = append(out, ch)
		}
	}
	return out
}

// text returns the element's own character data.
func (e *element) text() string {
	var b strings.Builder
	for _, c := range e.Content {
		if ch, ok := c.(xml.CharData); ok {
			b.Write(ch)
		}
	}
	return b.String()
}

// attr returns an attribute without a namespace, and whether it is present.
func (e *element) attr(local string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// appendTokens appends e's tokens to out as e appears inside an element
// whose default namespace is parentNS. Namespaces are declared again
// where they change: an element in parentNS inherits it, an element in
// another namespace declares it, an element in no namespace inside a
// namespaced parent undeclares it (xmlns=""). The source's namespace
// declarations are dropped: the decoder resolved every name already.
func (e *element) appendTokens(out []xml.Token, parentNS string) []xml.Token {
	start := xml.StartElement{Name: xml.Name{Local: e.Name.Local}}
	switch {
	case e.Name.Space != parentNS && e.Name.Space != "":
		start.Name.Space = e.Name.Space
	case e.Name.Space == "" && parentNS != "":
		start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "xmlns"}})
	}
	for _, a := range e.Attr {
		if !isNSDecl(a) {
			start.Attr = append(start.Attr, a)
		}
	}
	out = append(out, start)
	for _, c := range e.Content {
		switch ch := c.(type) {
		case *element:
			out = ch.appendTokens(out, e.Name.Space)
		case xml.CharData:
			out = append(out, ch)
		}
	}
	return append(out, start.End())
}

// marshal serializes e as a standalone element.
func (e *element) marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	for _, t := range e.appendTokens(nil, "") {
		if err := enc.EncodeToken(t); err != nil {
			return nil, fmt.Errorf("encode xml: %w", err)
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, fmt.Errorf("encode xml: %w", err)
	}
	return b.Bytes(), nil
}

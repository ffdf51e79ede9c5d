package xmpp

import (
	"bytes"
	"strings"
	"testing"
)

var testItemLimits = limits{bytes: 1 << 20, depth: 64, elements: 1 << 16}

// embed renders data as the payload of a notification and parses the
// whole stanza back, as a receiving server would.
func embed(t testing.TB, data []byte, format string) *element {
	t.Helper()
	item := el(local("item"), []string{"id", "1"}, renderItem(data, format, testItemLimits, nsPubsubEvent))
	msg := tokensElement(t, message("pubsub.example.org", "a@example.org", "headline", "m1", itemsEvent("node", item)))
	got := msg.child(nsPubsubEvent, "event").child(nsPubsubEvent, "items").child(nsPubsubEvent, "item")
	if got == nil {
		t.Fatalf("the rendered item broke the stanza's structure")
	}
	kids := got.children()
	if len(kids) != 1 {
		t.Fatalf("the item holds %d elements, want 1", len(kids))
	}
	return kids[0]
}

func TestXMPPRenderItem(t *testing.T) {
	cases := []struct {
		name, data, format string
		wantNS, wantLocal  string
	}{
		{"json object", `{"a":[1,2,"<x>"]}`, formatAuto, nsJSON, "json"},
		{"json array", ` [1] `, formatAuto, nsJSON, "json"},
		{"json scalar is text in auto", `42`, formatAuto, nsPayload, "text"},
		{"json scalar in json format", `42`, formatJSON, nsJSON, "json"},
		{"invalid json in json format", `{`, formatJSON, nsPayload, "text"},
		{"atom entry", `<?xml version="1.0"?><entry xmlns="http://www.w3.org/2005/Atom"><title>t</title></entry>`, formatAuto, "http://www.w3.org/2005/Atom", "entry"},
		{"xml in text format", `<entry xmlns="urn:x"/>`, formatText, nsPayload, "text"},
		{"json in xml format", `{"a":1}`, formatXML, nsPayload, "text"},
		{"element without namespace", `<a>b</a>`, formatAuto, nsPayload, "text"},
		{"two elements", `<a xmlns="urn:a"/><b xmlns="urn:a"/>`, formatAuto, nsPayload, "text"},
		{"doctype", `<!DOCTYPE a [<!ENTITY x "y">]><a xmlns="urn:a">&x;</a>`, formatAuto, nsPayload, "text"},
		{"undeclared prefix", `<p:a xmlns="urn:a"><p:b/></p:a>`, formatAuto, nsPayload, "text"},
		{"local name that is not a name", `<a xmlns="urn:a" xmlns:p="urn:p"><p:0/></a>`, formatAuto, nsPayload, "text"},
		{"non-ASCII name", `<café xmlns="urn:a"/>`, formatAuto, nsPayload, "text"},
		{"stream injection", `</item></items></event></message><message to='victim@example.org'>`, formatAuto, nsPayload, "text"},
		// accepted by Go's decoder, refused by servers' parsers (Prosody closes the stream)
		{"attribute twice", `<a xmlns="urn:a" x="1" x="2"/>`, formatAuto, nsPayload, "text"},
		{"attribute twice by expanded name", `<a xmlns="urn:a" xmlns:p="urn:p" xmlns:q="urn:p" p:x="1" q:x="2"/>`, formatXML, nsPayload, "text"},
		{"xml:lang twice", `<a xmlns="urn:a"><b xml:lang="en" xml:lang="fr"/></a>`, formatAuto, nsPayload, "text"},
		{"xmlns namespace on an element", `<a xmlns="http://www.w3.org/2000/xmlns/"/>`, formatAuto, nsPayload, "text"},
		{"xmlns namespace on a child", `<a xmlns="urn:a"><b xmlns="http://www.w3.org/2000/xmlns/"/></a>`, formatAuto, nsPayload, "text"},
		{"xml namespace on an element", `<xml:a/>`, formatAuto, nsPayload, "text"},
		{"xmlns namespace on an attribute", `<a xmlns="urn:a" xmlns:p="http://www.w3.org/2000/xmlns/" p:x="1"/>`, formatAuto, nsPayload, "text"},
		{"plain text", "hello\r\nworld & co", formatAuto, nsPayload, "text"},
		{"control characters", "a\x00b\x1b", formatAuto, nsPayload, "base64"},
		{"invalid utf-8", "\xff\xfe", formatAuto, nsPayload, "base64"},
		{"empty", "", formatAuto, nsPayload, "text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := embed(t, []byte(c.data), c.format)
			if got.Name.Space != c.wantNS || got.Name.Local != c.wantLocal {
				t.Fatalf("rendered as {%s}%s, want {%s}%s", got.Name.Space, got.Name.Local, c.wantNS, c.wantLocal)
			}
			back, err := decodePayload(got)
			if err != nil {
				t.Fatalf("decode back: %v", err)
			}
			if got.Name.Space == nsJSON || got.Name.Space == nsPayload {
				if !bytes.Equal(back, []byte(c.data)) {
					t.Fatalf("round trip %q, want %q", back, c.data)
				}
			}
		})
	}
}

func TestXMPPRenderItemKeepsNamespaces(t *testing.T) {
	data := `<entry xmlns="http://www.w3.org/2005/Atom" xmlns:th="http://purl.org/syndication/thread/1.0" xml:lang="en">` +
		`<th:in-reply-to ref="x"/><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>a<b>b</b></p></div></content><raw xmlns="">r</raw></entry>`
	got := embed(t, []byte(data), formatAuto)
	reply := got.child("http://purl.org/syndication/thread/1.0", "in-reply-to")
	div := got.child("http://www.w3.org/2005/Atom", "content").child("http://www.w3.org/1999/xhtml", "div")
	raw := got.child("", "raw")
	if reply == nil || div == nil || div.child("http://www.w3.org/1999/xhtml", "p") == nil || raw == nil || raw.text() != "r" {
		b, _ := got.marshal()
		t.Fatalf("namespaces changed in %s", b)
	}
	if lang, _ := attrNS(got, "http://www.w3.org/XML/1998/namespace", "lang"); lang != "en" {
		t.Fatalf("xml:lang = %q", lang)
	}
}

func attrNS(e *element, space, local string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

func TestXMPPDecodePayload(t *testing.T) {
	parse := func(s string) *element {
		e, err := parseXMLElement([]byte(s), testItemLimits)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	cases := []struct {
		in, want string
		bad      bool
	}{
		{`<json xmlns='urn:xmpp:json:0'>{"a": 1}</json>`, `{"a": 1}`, false},
		{`<json xmlns='urn:xmpp:json:0'>{nope</json>`, "", true},
		{`<json xmlns='urn:xmpp:json:0'><x/></json>`, "", true},
		{`<text xmlns='urn:feedbridge:payload:0'>a &lt; b</text>`, `a < b`, false},
		{`<base64 xmlns='urn:feedbridge:payload:0'>AP8=</base64>`, "\x00\xff", false},
		{`<base64 xmlns='urn:feedbridge:payload:0'>!!</base64>`, "", true},
		{`<geoloc xmlns='http://jabber.org/protocol/geoloc' xml:lang='en'><lat>45.44</lat></geoloc>`,
			`<geoloc xmlns="http://jabber.org/protocol/geoloc" xml:lang="en"><lat>45.44</lat></geoloc>`, false},
		{`<a:x xmlns:a='urn:a' xmlns:b='urn:b' b:y='1'><a:z/><w xmlns=''/></a:x>`,
			// prefixes are chosen anew; names keep their namespaces
			`<x xmlns="urn:a" xmlns:_="urn:b" _:y="1"><z></z><w xmlns=""></w></x>`, false},
	}
	for _, c := range cases {
		got, err := decodePayload(parse(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("%s: accepted as %q", c.in, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzXMPPRenderItem checks that no item can break a stanza: whatever the
// bytes, the rendered payload is one well-formed element, and wrapped
// payloads decode back to the very same bytes.
func FuzzXMPPRenderItem(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `[]`, `<entry xmlns="http://www.w3.org/2005/Atom"><title>x</title></entry>`,
		`<a xmlns="urn:a" xmlns:p="urn:p" p:b="1"><p:c/><d xmlns=""/></a>`, "plain\r\ntext",
		"\x00\x01", "\xff", `</item><inject/>`, `<!DOCTYPE x><x xmlns="urn:x"/>`, `<?pi x?><x xmlns="urn:x"/>`,
		`<x xmlns="urn:x"><!-- c --><![CDATA[<y>]]></x>`, strings.Repeat("<a xmlns='urn:a'>", 70) + strings.Repeat("</a>", 70),
		`<a xmlns="urn:a" x="1" x="2"/>`, `<xml:a/>`, `<a xmlns="urn:a" xmlns:p="http://www.w3.org/2000/xmlns/" p:x="1"/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range formats {
			got := embed(t, data, format)
			back, err := decodePayload(got)
			if err != nil {
				t.Fatalf("%s: rendered payload does not decode: %v", format, err)
			}
			if got.Name.Space == nsJSON || got.Name.Space == nsPayload {
				if !bytes.Equal(back, data) {
					t.Fatalf("%s: round trip %q, want %q", format, back, data)
				}
				continue
			}
			// an embedded element is stable: rendering what it decodes to gives it again
			again := embed(t, back, format)
			if err := match(got, again); err != nil {
				t.Fatalf("%s: embedding is not stable: %v", format, err)
			}
		}
	})
}

func TestXMPPReadElementLimits(t *testing.T) {
	parse := func(s string, lim limits) error {
		_, err := parseXMLElement([]byte(s), lim)
		return err
	}
	if err := parse(`<a xmlns="urn:a">`+strings.Repeat("x", 100)+`</a>`, limits{bytes: 50, depth: 8, elements: 8}); err == nil {
		t.Error("text over the byte limit accepted")
	}
	if err := parse(strings.Repeat("<a>", 10)+strings.Repeat("</a>", 10), limits{bytes: 1000, depth: 5, elements: 100}); err == nil {
		t.Error("nesting over the depth limit accepted")
	}
	if err := parse("<a>"+strings.Repeat("<b/>", 10)+"</a>", limits{bytes: 1000, depth: 5, elements: 5}); err == nil {
		t.Error("elements over the count limit accepted")
	}
	if err := parse("<a>"+strings.Repeat("<b/>", 3)+"</a>", limits{bytes: 1000, depth: 5, elements: 5}); err != nil {
		t.Errorf("within limits: %v", err)
	}
}

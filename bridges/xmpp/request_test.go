package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var testReqLimits = limits{bytes: 64 << 10, depth: 64, elements: 1 << 14}

// parseIQ reads the first element of data as an IQ request, as the
// handler does; ok is false when data holds no element.
func parseIQ(data []byte, lim limits) (*request, bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	start, err := nextStart(d)
	if err != nil {
		return nil, false
	}
	iq, err := readElement(d, start, lim)
	tooLarge := errors.Is(err, errTooLarge)
	if err != nil && !tooLarge {
		return nil, false
	}
	return parseRequest(iq, tooLarge), true
}

func mustParse(t *testing.T, s string) *request {
	t.Helper()
	req, ok := parseIQ([]byte(s), testReqLimits)
	if !ok {
		t.Fatalf("not an element: %s", s)
	}
	return req
}

const iqHead = `<iq xmlns='jabber:component:accept' from='a@example.org/r' to='pubsub.example.org' id='x1' `

func TestXMPPParseRequest(t *testing.T) {
	pubsub := func(typ, inner string) string {
		return iqHead + `type='` + typ + `'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` + inner + `</pubsub></iq>`
	}
	t.Run("rsm", func(t *testing.T) {
		req := mustParse(t, pubsub("get", `<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>`))
		if req.Op != opItems || req.RSM == nil || req.RSM.Max != 10 || !req.RSM.HasBefore || req.RSM.Before != "" || req.RSM.Index != -1 {
			t.Fatalf("%+v %+v", req, req.RSM)
		}
		req = mustParse(t, pubsub("get", `<items node='n' max_items='5'/><set xmlns='http://jabber.org/protocol/rsm'><index>3</index><after>i9</after></set>`))
		if req.MaxItems != 5 || req.RSM.Index != 3 || req.RSM.After != "i9" || req.RSM.Max != -1 {
			t.Fatalf("%+v %+v", req, req.RSM)
		}
	})
	t.Run("publish-options", func(t *testing.T) {
		req := mustParse(t, pubsub("set", `<publish node='n'><item id='i'><x xmlns='urn:x'/></item></publish><publish-options>`+
			`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
			`<field var='pubsub#max_items'><value>max</value></field></x></publish-options>`))
		if req.Op != opPublish || req.Item.ID != "i" || req.Item.Payloads != 1 || !slices.Equal(req.Options["pubsub#max_items"], []string{"max"}) {
			t.Fatalf("%+v %+v", req, req.Item)
		}
		if _, ok := req.Options["FORM_TYPE"]; ok {
			t.Error("FORM_TYPE kept among the options")
		}
	})
	t.Run("result and error IQs are not requests", func(t *testing.T) {
		for _, typ := range []string{"result", "error"} {
			req := mustParse(t, iqHead+`type='`+typ+`'/>`)
			if req.Op != opInvalid || req.Err != nil {
				t.Errorf("%s: %+v", typ, req)
			}
		}
	})
	bad := []struct {
		name, iq, cond, app, feature string
	}{
		{"no type", iqHead + `><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, "bad-request", "", ""},
		{"two payloads", iqHead + `type='get'><query xmlns='http://jabber.org/protocol/disco#info'/><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, "bad-request", "", ""},
		{"no payload", iqHead + `type='get'/>`, "bad-request", "", ""},
		{"unknown namespace", iqHead + `type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, "service-unavailable", "", ""},
		{"disco as set", iqHead + `type='set'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, "bad-request", "", ""},
		{"empty pubsub", pubsub("get", ""), "bad-request", "", ""},
		{"foreign first child", pubsub("get", `<items xmlns='urn:other' node='n'/>`), "bad-request", "", ""},
		{"items as set", pubsub("set", `<items node='n'/>`), "bad-request", "", ""},
		{"max_items zero", pubsub("get", `<items node='n' max_items='0'/>`), "bad-request", "", ""},
		{"max_items text", pubsub("get", `<items node='n' max_items='ten'/>`), "bad-request", "", ""},
		{"item without id", pubsub("get", `<items node='n'><item/></items>`), "bad-request", "", ""},
		{"rsm max negative", pubsub("get", `<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>`), "bad-request", "", ""},
		{"rsm empty after", pubsub("get", `<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><after/></set>`), "bad-request", "", ""},
		{"rsm unknown child", pubsub("get", `<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><last/></set>`), "bad-request", "", ""},
		{"set after subscribe", pubsub("set", `<subscribe node='n' jid='a@example.org'/><set xmlns='http://jabber.org/protocol/rsm'/>`), "bad-request", "", ""},
		{"publish without item", pubsub("set", `<publish node='n'/>`), "bad-request", "item-required", ""},
		{"publish two items", pubsub("set", `<publish node='n'><item/><item/></publish>`), "bad-request", "", ""},
		{"publish-options without form", pubsub("set", `<publish node='n'><item><x xmlns='urn:x'/></item></publish><publish-options/>`), "bad-request", "", ""},
		{"publish-options wrong form type", pubsub("set", `<publish node='n'><item><x xmlns='urn:x'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'/></publish-options>`), "bad-request", "", ""},
		{"create", pubsub("set", `<create node='n'/>`), "feature-not-implemented", "unsupported", "create-nodes"},
		{"configure", pubsub("set", `<configure node='n'/>`), "feature-not-implemented", "unsupported", "config-node"},
		{"affiliations", pubsub("get", `<affiliations/>`), "feature-not-implemented", "unsupported", "retrieve-affiliations"},
		{"options set without a form", pubsub("set", `<options node='n' jid='a@example.org'/>`), "bad-request", "", ""},
		{"subscribe options with a node", pubsub("set", `<subscribe node='n' jid='a@example.org'/><options node='n'><x xmlns='jabber:x:data' type='submit'/></options>`), "bad-request", "", ""},
		{"retract notify maybe", pubsub("set", `<retract node='n' notify='maybe'><item id='1'/></retract>`), "bad-request", "", ""},
		{"order without by", pubsub("get", `<items node='n'/><order xmlns='urn:xmpp:order-by:1'/>`), "bad-request", "", ""},
		{"unknown element", pubsub("get", `<frobnicate/>`), "bad-request", "", ""},
		{"owner subscriptions", iqHead + `type='get'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='n'/></pubsub></iq>`, "feature-not-implemented", "unsupported", "manage-subscriptions"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			req := mustParse(t, c.iq)
			if req.Op != opInvalid || req.Err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			if req.Err.Condition != c.cond || req.Err.App != c.app || req.Err.Feature != c.feature {
				t.Fatalf("got %s/%s feature %q, want %s/%s feature %q", req.Err.Condition, req.Err.App, req.Err.Feature, c.cond, c.app, c.feature)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		big := pubsub("set", `<publish node='n'><item><x xmlns='urn:x'>`+strings.Repeat("y", 2000)+`</x></item></publish>`)
		req, ok := parseIQ([]byte(big), limits{bytes: 1000, depth: 64, elements: 100})
		if !ok || req.Err == nil || req.Err.App != "payload-too-big" {
			t.Fatalf("%+v", req)
		}
		big = pubsub("get", `<items node='n'>`+strings.Repeat("<item id='x'/>", 200)+`</items>`)
		req, ok = parseIQ([]byte(big), limits{bytes: 10000, depth: 64, elements: 100})
		if !ok || req.Err == nil || req.Err.Condition != "bad-request" {
			t.Fatalf("%+v", req)
		}
	})
}

// FuzzXMPPParseRequest checks the request parser on arbitrary input: it never
// panics, a request is either valid or carries its error, and the answer
// built for it is always well-formed XML.
func FuzzXMPPParseRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/xep0060/*.xml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		fx, err := parseXMLElement(data, testItemLimits)
		if err != nil {
			f.Fatal(err)
		}
		for _, in := range fx.children() {
			if in.Name.Local == "in" {
				raw, _ := in.children()[0].marshal()
				f.Add(raw)
			}
		}
	}
	for _, s := range []string{
		iqHead + `type='get'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set></pubsub></iq>`,
		iqHead + `type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item><json xmlns='urn:xmpp:json:0'>{}</json></item></publish></pubsub></iq>`,
		`<iq type='set' id='&quot;&lt;'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish><item><a:b xmlns:a='x'/></item></publish></pubsub></iq>`,
		`<iq>`, `<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><index>99999999999</index></set></query></iq>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, ok := parseIQ(data, limits{bytes: 4096, depth: 16, elements: 256})
		if !ok {
			return
		}
		if (req.Op == opInvalid) == (req.Err == nil) && req.Type != "result" && req.Type != "error" {
			t.Fatalf("op %d with error %v", req.Op, req.Err)
		}
		reply := iqReply(req, el(ns(nsPubsub, "pubsub"), []string{"node", req.Node}), req.Err)
		tokensElement(t, reply)
		if req.Op == opPublish && req.Item.Payload != nil {
			if b, err := decodePayload(req.Item.Payload); err == nil {
				for _, format := range formats {
					embed(t, b, format)
				}
			}
		}
	})
}

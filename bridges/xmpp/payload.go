package xmpp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Payload formats: how a feed's items are wrapped in pubsub items.
const (
	// formatAuto embeds JSON objects and arrays in XEP-0335 containers,
	// single XML elements as themselves, and anything else as text.
	formatAuto = "auto"
	// formatJSON embeds any JSON value in an XEP-0335 container.
	formatJSON = "json"
	// formatXML embeds single XML elements as themselves.
	formatXML = "xml"
	// formatText always uses the text wrapper.
	formatText = "text"
)

var formats = []string{formatAuto, formatJSON, formatXML, formatText}

// renderItem returns the tokens of an item's payload element, inside an
// element whose default namespace is parentNS: an XEP-0335 JSON
// container, the item itself when it is a single XML element, or the
// text wrapper; bytes that are not XML text (invalid UTF-8, control
// characters) go base64-encoded. Nothing in data can inject markup: the
// embedded element was parsed strictly and is written back token by token.
func renderItem(data []byte, format string, lim limits, parentNS string) []xml.Token {
	if !xmlText(data) {
		return el(ns(nsPayload, "base64"), nil, text(base64.StdEncoding.EncodeToString(data)))
	}
	if format == formatAuto || format == formatJSON {
		trimmed := bytes.TrimSpace(data)
		isValue := format == formatJSON || (len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '['))
		if isValue && json.Valid(data) {
			return el(ns(nsJSON, "json"), nil, text(string(data)))
		}
	}
	if format == formatAuto || format == formatXML {
		if e, err := parseXMLElement(data, lim); err == nil && e.Name.Space != "" && e.checkNames() == nil {
			return e.appendTokens(nil, parentNS)
		}
	}
	return el(ns(nsPayload, "text"), nil, text(string(data)))
}

// decodePayload turns a published item's payload element back into the
// bytes stored in the feed: the text of an XEP-0335 container (which must
// be JSON) or of the text wrapper, the decoded base64 wrapper, or else the
// element itself, serialized.
func decodePayload(e *element) ([]byte, error) {
	if e.Name.Space == nsJSON && e.Name.Local == "json" || e.Name.Space == nsPayload {
		if len(e.children()) > 0 {
			return nil, fmt.Errorf("%s wrapper holds elements, want text", e.Name.Local)
		}
	}
	switch {
	case e.Name.Space == nsJSON && e.Name.Local == "json":
		b := []byte(e.text())
		if !json.Valid(b) {
			return nil, errors.New("the json element does not hold valid JSON")
		}
		return b, nil
	case e.Name.Space == nsPayload && e.Name.Local == "text":
		return []byte(e.text()), nil
	case e.Name.Space == nsPayload && e.Name.Local == "base64":
		b, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace([]byte(e.text()))))
		if err != nil {
			return nil, errors.New("the base64 element does not hold base64")
		}
		return b, nil
	}
	if err := e.checkNames(); err != nil {
		return nil, err
	}
	return e.marshal()
}

// xmlText reports whether b is UTF-8 made only of characters XML 1.0
// allows, so that it survives as character data.
func xmlText(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if !(r == 0x09 || r == 0x0A || r == 0x0D || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || r >= 0x10000) {
			return false
		}
		b = b[n:]
	}
	return true
}

// payloadType is the pubsub#type a format announces (empty: it varies).
func payloadType(format string) string {
	switch format {
	case formatJSON:
		return nsJSON
	case formatText:
		return nsPayload
	}
	return ""
}

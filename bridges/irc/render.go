package irc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// itemView is what an announcement template sees.
type itemView struct {
	// Event is publish, edit, retract or position.
	Event string
	Feed  string
	ID    string
	// Title is the item's title, name, subject or summary field when it is
	// a JSON object, else its whole text.
	Title string
	// Text is the whole item as text.
	Text string
	// Link is the item's own http(s) link or url field, else URL.
	Link string
	// URL is the item's page on this bridge (links.item), or "".
	URL string
	// Position says where a moved item went: "to the top", "to the end",
	// "before ID" or "after ID".
	Position string
	// Fields are the item's top-level fields when it is a JSON object.
	Fields map[string]any
}

// maxRender bounds a template's output; the line builder caps the lines.
const maxRender = 16 << 10

var titleFields = []string{"title", "name", "subject", "summary", "text", "message", "body"}

// newView describes an item for templates. item may be nil (retract, or
// an item that is gone).
func newView(kind, feed, id string, item []byte, position, itemURL string) itemView {
	v := itemView{Event: kind, Feed: feed, ID: id, URL: itemURL, Link: itemURL, Title: id}
	switch {
	case item == nil:
	case bytes.IndexByte(item, 0) >= 0:
		v.Text = fmt.Sprintf("(binary item, %d bytes)", len(item))
		v.Title = v.Text
	default:
		v.Text = repairUTF8(string(item))
		if strings.TrimSpace(v.Text) != "" {
			v.Title = v.Text
		}
		if t := bytes.TrimSpace(item); len(t) > 0 && t[0] == '{' && json.Unmarshal(t, &v.Fields) == nil {
			if s := firstString(v.Fields, titleFields...); s != "" {
				v.Title = s
			}
			if l := cleanLink(firstString(v.Fields, "link", "url", "href")); l != "" {
				v.Link = l
			}
		}
	}
	if position != "" {
		v.Position = describePosition(position)
	}
	return v
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

func describePosition(pos string) string {
	p, err := thoonk.ParsePosition(pos)
	if err != nil {
		return pos
	}
	switch p.Kind {
	case thoonk.PosBegin:
		return "to the top"
	case thoonk.PosBefore:
		return "before " + p.Rel
	case thoonk.PosAfter:
		return "after " + p.Rel
	}
	return "to the end"
}

// sampleView exercises templates at config time.
var sampleView = newView(kindPublish, "news", "42", []byte(`{"title":"t","link":"https://example.org/42"}`), ":end", "https://example.org/v1/feeds/news/items/42")

// parseTemplate parses an announcement template and runs it once on a
// sample item, so that a misspelt field fails at start, not at runtime.
func parseTemplate(kind, text string) (*template.Template, error) {
	t, err := template.New(kind).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if _, err := render(t, sampleView); err != nil {
		return nil, err
	}
	return t, nil
}

var errTooLong = errors.New("output over 16 KiB")

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRender {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

// render runs a template on a view; output is bounded.
func render(t *template.Template, v itemView) (string, error) {
	var b limitedBuffer
	if err := t.Execute(&b, v); err != nil {
		return "", fmt.Errorf("template %s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// linkURL fills a links template: {feed} and {id} are path-escaped; a
// relative template is resolved against base ("" turns it off).
func linkURL(tmpl, base, feed, id string) string {
	if tmpl == "" || (strings.HasPrefix(tmpl, "/") && base == "") {
		return ""
	}
	u := strings.NewReplacer("{feed}", url.PathEscape(feed), "{id}", url.PathEscape(id)).Replace(tmpl)
	if strings.HasPrefix(u, "/") {
		u = base + u
	}
	return cleanLink(u)
}

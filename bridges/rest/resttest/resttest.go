// Package resttest helps test the REST adapter: it checks responses
// against the adapter's OpenAPI document and reads Server-Sent Events.
package resttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Checker validates responses against an OpenAPI 3.1 document.
type Checker struct {
	doc *openapi3.T
}

func init() {
	// pages (/v1/docs) are documented as text/html strings
	openapi3filter.RegisterBodyDecoder("text/html", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(body)
		return string(b), err
	})
}

// New loads and validates an OpenAPI document.
func New(spec []byte) (*Checker, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return &Checker{doc: doc}, nil
}

// route finds the operation for a request by its raw (escaped) path, so
// that feed names holding %2F stay one segment.
func (c *Checker) route(r *http.Request) (*routers.Route, map[string]string, error) {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	var best *routers.Route
	var bestParams map[string]string
	bestLiterals := -1
	for tmpl, item := range c.doc.Paths.Map() {
		parts := strings.Split(tmpl, "/")
		if len(parts) != len(segs) {
			continue
		}
		params, literals, ok := map[string]string{}, 0, true
		for i, p := range parts {
			if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
				v, err := url.PathUnescape(segs[i])
				if err != nil || v == "" {
					ok = false
					break
				}
				params[p[1:len(p)-1]] = v
				continue
			}
			if p != segs[i] {
				ok = false
				break
			}
			literals++
		}
		op := item.GetOperation(r.Method)
		if ok && op != nil && literals > bestLiterals {
			best = &routers.Route{Spec: c.doc, Path: tmpl, PathItem: item, Method: r.Method, Operation: op}
			bestParams, bestLiterals = params, literals
		}
	}
	if best == nil {
		return nil, nil, routers.ErrPathNotFound
	}
	return best, bestParams, nil
}

// Check validates one response to r: its status must be documented for
// the operation, and its headers and body must match. Responses to paths
// or methods the document does not have must be problems. An event
// stream's body is not read here (check its events with Event). A HEAD
// answer must have no body; its status and headers are held to the
// document's head operation.
func (c *Checker) Check(r *http.Request, status int, header http.Header, body []byte) error {
	head := r.Method == http.MethodHead
	if head && len(body) > 0 {
		return fmt.Errorf("HEAD %s answered %d with a body of %d bytes", r.URL.EscapedPath(), status, len(body))
	}
	route, params, err := c.route(r)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s %s: not in the document, answered %d", r.Method, r.URL.EscapedPath(), status)
		}
		if head {
			return nil
		}
		return c.Schema("Problem", body)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		ExcludeResponseBody: head || strings.HasPrefix(header.Get("Content-Type"), "text/event-stream"),
		AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc}
	if head {
		// kin-openapi accepts any answer to a HEAD request: validate it
		// as a GET of the head operation, without a body
		r = r.Clone(r.Context())
		r.Method = http.MethodGet
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts},
		Status:                 status, Header: header, Options: opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s answered %d against %s: %w\nbody: %s", route.Method, r.URL.EscapedPath(), status, route.Path, err, body)
	}
	return nil
}

// Schema validates a JSON document against a component schema.
func (c *Checker) Schema(name string, doc []byte) error {
	ref := c.doc.Components.Schemas[name]
	if ref == nil {
		return fmt.Errorf("no schema %q in the document", name)
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Errorf("not JSON (%w): %s", err, doc)
	}
	if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("does not match %s: %w\n%s", name, err, doc)
	}
	return nil
}

// Event validates an event's data: a reset against Reset, anything else
// against EventData.
func (c *Checker) Event(ev Event) error {
	if ev.Type == "reset" {
		return c.Schema("Reset", []byte(ev.Data))
	}
	return c.Schema("EventData", []byte(ev.Data))
}

// Event is one Server-Sent Events frame: an event, or a frame that only
// sets the id (Type and Data empty).
type Event struct {
	ID   string
	Type string
	Data string
}

// Reader reads Server-Sent Events frames, skipping comments.
type Reader struct {
	br *bufio.Reader
}

// NewReader reads frames from a stream's body.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReader(r)} }

// ErrNoFrame means the stream ended before a complete frame.
var ErrNoFrame = errors.New("stream ended")

// Next returns the next frame with an id or data.
func (r *Reader) Next() (Event, error) {
	var ev Event
	var data []string
	seen := false
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return Event{}, fmt.Errorf("%w: %v", ErrNoFrame, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if seen {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, val, _ := strings.Cut(line, ":")
		val = strings.TrimPrefix(val, " ")
		switch field {
		case "id":
			ev.ID, seen = val, true
		case "event":
			ev.Type, seen = val, true
		case "data":
			data, seen = append(data, val), true
		}
	}
}

// Body reads a whole response body and closes it.
func Body(resp *http.Response) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

package rest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// docsPage is the template of /v1/docs: the OpenAPI document rendered on
// the server, readable without scripts and from the binary alone.
//
//go:embed docs.html
var docsPage string

// apiDoc is the part of an OpenAPI document the page shows.
type apiDoc struct {
	Info struct {
		Title, Version, Description string
	} `json:"info"`
	Servers []struct {
		URL, Description string
	} `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters map[string]apiParam        `json:"parameters"`
		Responses  map[string]apiResponse     `json:"responses"`
		Schemas    map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type apiOperation struct {
	OperationID string                 `json:"operationId"`
	Summary     string                 `json:"summary"`
	Description string                 `json:"description"`
	Tags        []string               `json:"tags"`
	Parameters  []apiParam             `json:"parameters"`
	RequestBody *apiResponse           `json:"requestBody"`
	Responses   map[string]apiResponse `json:"responses"`
}

type apiParam struct {
	Ref         string          `json:"$ref"`
	Name        string          `json:"name"`
	In          string          `json:"in"`
	Required    bool            `json:"required"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
}

type apiResponse struct {
	Ref         string `json:"$ref"`
	Description string `json:"description"`
	Content     map[string]struct {
		Schema json.RawMessage `json:"schema"`
	} `json:"content"`
}

// docsView is what the template renders.
type docsView struct {
	Doc        apiDoc
	Operations []docsOperation
	Schemas    []docsSchema
}

type docsOperation struct {
	Anchor, Method, Path string
	AlsoHead             bool
	Op                   apiOperation
	Params               []apiParam
	Body                 []docsContent
	Responses            []docsResponse
}

type docsContent struct {
	Type   string
	Schema template.HTML
}

type docsResponse struct {
	Code        string
	Description string
	Content     []docsContent
}

type docsSchema struct {
	Name string
	JSON template.HTML
}

// renderDocs renders the page of an OpenAPI document once, at mount.
func renderDocs(spec []byte) ([]byte, error) {
	var doc apiDoc
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	v := docsView{Doc: doc}
	for _, p := range slices.Sorted(maps.Keys(doc.Paths)) {
		item := doc.Paths[p]
		for _, m := range []string{"get", "post", "put", "delete"} {
			raw, ok := item[m]
			if !ok {
				continue
			}
			var op apiOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("openapi %s %s: %w", m, p, err)
			}
			o := docsOperation{Anchor: "op-" + op.OperationID, Method: strings.ToUpper(m), Path: p, Op: op}
			_, o.AlsoHead = item["head"]
			for _, prm := range op.Parameters {
				if prm.Ref != "" {
					prm = doc.Components.Parameters[strings.TrimPrefix(prm.Ref, "#/components/parameters/")]
				}
				o.Params = append(o.Params, prm)
			}
			if op.RequestBody != nil {
				o.Body = contents(*op.RequestBody)
			}
			for _, c := range slices.Sorted(maps.Keys(op.Responses)) {
				r := op.Responses[c]
				if r.Ref != "" {
					r = doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
				}
				o.Responses = append(o.Responses, docsResponse{Code: c, Description: r.Description, Content: contents(r)})
			}
			v.Operations = append(v.Operations, o)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(doc.Components.Schemas)) {
		v.Schemas = append(v.Schemas, docsSchema{Name: n, JSON: schemaHTML(doc.Components.Schemas[n])})
	}
	t, err := template.New("docs").Parse(docsPage)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func contents(r apiResponse) []docsContent {
	out := make([]docsContent, 0, len(r.Content))
	for _, t := range slices.Sorted(maps.Keys(r.Content)) {
		out = append(out, docsContent{Type: t, Schema: schemaHTML(r.Content[t].Schema)})
	}
	return out
}

// schemaHTML pretty-prints a schema with its $refs as links to the
// schemas on the page; everything else is escaped.
func schemaHTML(raw json.RawMessage) template.HTML {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return template.HTML(template.HTMLEscapeString(string(raw)))
	}
	const ref = `"$ref": "#/components/schemas/`
	var out strings.Builder
	for line := range strings.SplitSeq(b.String(), "\n") {
		if i := strings.Index(line, ref); i >= 0 {
			name, rest, _ := strings.Cut(line[i+len(ref):], `"`)
			esc := template.HTMLEscapeString(name)
			out.WriteString(template.HTMLEscapeString(line[:i]) + `"$ref": <a href="#schema-` + esc + `">` + esc + "</a>" +
				template.HTMLEscapeString(rest) + "\n")
			continue
		}
		out.WriteString(template.HTMLEscapeString(line) + "\n")
	}
	return template.HTML(out.String())
}

// serveDocs answers /v1/docs with the rendered page.
func (b *Bridge) serveDocs(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	c.Data(http.StatusOK, "text/html; charset=utf-8", b.docs)
}

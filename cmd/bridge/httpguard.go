package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/feedbridge/feedbridge/core"
)

// The shared listener answers every error as an RFC 9457 problem
// (application/problem+json), including the ones net/http produces itself
// before any handler runs, and it never redirects to a "cleaned" path:
// feed names are percent-encoded path segments and may hold "//" or "..".

const (
	// maxHeaderBytes bounds a request's header (net/http reads at most
	// this plus 4 KiB and answers 431 beyond, rewritten as a problem).
	maxHeaderBytes = 64 << 10
	// maxHeaderFields bounds the number of header fields of a request.
	maxHeaderFields = 100
)

// problemBody returns an RFC 9457 problem document of the plain kind
// ("about:blank": the status says it all), as the Atom routes write them.
func problemBody(status int, detail string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
	return append(b, '\n')
}

// writeProblem answers with a plain problem.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(problemBody(status, detail))
}

// guardHandler routes with mux's patterns without ever letting it answer
// by itself: no path-cleaning or trailing-slash redirect (the handler
// chosen for the first path segment gets the path as sent, and routes or
// refuses it), and the mux's own 404 and 405 become problems. Requests
// with more than maxHeaderFields header fields are answered 431.
func guardHandler(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerFields(r.Header) > maxHeaderFields {
			writeProblem(w, http.StatusRequestHeaderFieldsTooLarge, "the request has more than "+strconv.Itoa(maxHeaderFields)+" header fields")
			return
		}
		probe := r
		if p := r.URL.EscapedPath(); p == "" || p[0] != '/' || path.Clean(p) != p && !(strings.HasSuffix(p, "/") && path.Clean(p)+"/" == p) {
			// match on the first segment only; the handler sees the real path
			seg, _, more := strings.Cut(strings.TrimPrefix(p, "/"), "/")
			u := *r.URL
			u.Path, u.RawPath = "/"+seg, ""
			if more {
				u.Path += "/x"
			}
			probe = r.Clone(r.Context())
			probe.URL = &u
		}
		h, pattern := mux.Handler(probe)
		if pattern == "" || redirects(pattern, probe.URL.Path) {
			rec := &statusRecorder{header: http.Header{}}
			h.ServeHTTP(rec, probe)
			status := rec.status
			if status == 0 || status < 400 {
				status = http.StatusNotFound
			}
			if allow := rec.header.Get("Allow"); allow != "" && status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", allow)
			}
			writeProblem(w, status, "no such resource")
			return
		}
		core.SetRoute(r, pattern) // (a router below may name a narrower route)
		h.ServeHTTP(w, r)
	})
}

// headerFields counts a request's header fields (a name given twice
// counts twice).
func headerFields(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

// redirects reports a subtree pattern ("/v1/") matched for its root path
// without the slash ("/v1"): the mux would redirect.
func redirects(pattern, p string) bool {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		pattern = pattern[i:]
	}
	return strings.HasSuffix(pattern, "/") && !strings.HasPrefix(p, pattern)
}

// statusRecorder keeps the status and headers a handler answers with.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *statusRecorder) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}

// guardListener wraps a listener so that the error answers net/http writes
// by itself, before any handler runs (431 for a header over the limit,
// 400 for a malformed request or a control character in a header, 501
// for an unknown transfer coding, 505, and 417 for an Expect header it
// cannot meet), go out as problems.
func guardListener(ln net.Listener) net.Listener { return guardedListener{ln} }

type guardedListener struct{ net.Listener }

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return guardedConn{c}, nil
}

type guardedConn struct{ net.Conn }

// serverErrorHeaders follows the status line of net/http's own error
// answers (and no answer of a handler: those always carry a Date).
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write rewrites net/http's own error answers, each written at once with
// one call, into problems; everything else passes unchanged.
func (c guardedConn) Write(p []byte) (int, error) {
	status, detail, ok := serverError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	body := problemBody(status, detail)
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/problem+json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n")
	b.WriteString("Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// serverError recognizes an error answer written by net/http itself and
// returns its status and what it says.
func serverError(p []byte) (int, string, bool) {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok || len(rest) < 4 {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0, "", false
	}
	if status == http.StatusExpectationFailed {
		// answered through a response writer, so it has a Date: no
		// handler of the bridge answers 417
		return status, "the Expect header asks for something this server does not do", true
	}
	line, body, ok := bytes.Cut(rest, []byte(serverErrorHeaders))
	if !ok || bytes.ContainsAny(line, "\r\n") {
		return 0, "", false
	}
	detail := string(body)
	if _, text, ok := strings.Cut(string(line), ": "); ok {
		detail = text // "400 Bad Request: invalid header value"
	}
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		detail = "the request's header is over the limit of " + strconv.Itoa(maxHeaderBytes) + " bytes"
	case http.StatusBadRequest:
		if detail == "400 Bad Request" {
			detail = "the request is not valid HTTP"
		}
	}
	if detail != "" {
		detail = strings.ToLower(detail[:1]) + detail[1:]
	}
	return status, detail, true
}

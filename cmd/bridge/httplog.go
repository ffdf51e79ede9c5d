package main

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/feedbridge/feedbridge/core"
)

// instrument wraps the shared listener's handler: every request is counted
// and timed per route and status (feedbridge_http_requests_total,
// feedbridge_http_request_duration_seconds) and logged at level (info
// with log.requests, else debug). The route is the one the serving
// adapter names (core.SetRoute), else the listener's own pattern, so that
// raw paths (feed names) never become label values. The logged path is
// the escaped path without the query, which may hold an access_token.
func instrument(next http.Handler, m *core.Metrics, log *slog.Logger, level slog.Level) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, route := core.WithRouteSlot(r)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			d := time.Since(start)
			name := route()
			if name == "" {
				name = r.Pattern // set by the ServeMux on this request
			}
			if name == "" {
				name = "unmatched"
			}
			code := sw.status()
			m.HTTPRequest(name, r.Method, code, d)
			if log.Enabled(r.Context(), level) {
				log.LogAttrs(context.WithoutCancel(r.Context()), level, "http request",
					slog.String("method", r.Method), slog.String("path", r.URL.EscapedPath()), slog.String("route", name),
					slog.Int("status", code), slog.Int64("bytes", sw.bytes), slog.Duration("duration", d),
					slog.String("remote", r.RemoteAddr), slog.String("proto", r.Proto))
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status and size of an answer. It keeps the
// writer's optional abilities reachable: Flush, Hijack (event streams and
// WebSockets take the connection over) and Unwrap (http.ResponseController).
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 || w.code < 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// status is the answer's status; a handler that wrote nothing answered 200.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusOK // a stream answers on the connection itself
	}
	return conn, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package core

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// routeSlot holds the route an adapter names for a request.
type routeSlot struct{ route string }

type routeKey struct{}

// WithRouteSlot returns a copy of r whose adapter may name the route that
// serves it (SetRoute), and a function that returns that name afterwards
// ("" when none was set). The HTTP listener uses it for request logs and
// metrics.
func WithRouteSlot(r *http.Request) (*http.Request, func() string) {
	slot := &routeSlot{}
	return r.WithContext(context.WithValue(r.Context(), routeKey{}, slot)), func() string { return slot.route }
}

// SetRoute names the route serving r (a pattern such as
// "/v1/feeds/:feed/items", never the raw path), for request logs and
// metrics; call it from the goroutine that serves r.
func SetRoute(r *http.Request, route string) {
	if slot, ok := r.Context().Value(routeKey{}).(*routeSlot); ok && route != "" {
		slot.route = route
	}
}

// PathParam returns a path parameter of r decoded exactly once: routers
// that match the raw path (so that a name holding %2F stays one segment)
// hand over the still-escaped value when the request has a raw path.
func PathParam(r *http.Request, v string) string {
	if r.URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// PathSegment percent-encodes a name (a feed, an item or job id) as one
// path segment; the dot-segments "." and ".." are encoded too, or paths
// would be shortened.
func PathSegment(name string) string {
	if name == "." || name == ".." {
		return strings.ReplaceAll(name, ".", "%2E")
	}
	return url.PathEscape(name)
}

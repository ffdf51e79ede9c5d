package core

import (
	"context"
	"net/http"
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

package core

import (
	"errors"
	"sync"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// maxMalformedKept bounds the malformed feeds remembered for logging once;
// past it the memory starts over (and each is logged once more).
const maxMalformedKept = 4096

// malformedLog remembers which malformed feeds were logged.
type malformedLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Malformed reports a malformed feed an adapter met (err wraps
// thoonk.ErrMalformed): it is counted in feedbridge_feeds_malformed_total
// and logged once per process for each feed and reason. It reports
// whether err was such an error.
func (h *Hub) Malformed(adapter string, err error) bool {
	var m *thoonk.MalformedError
	if !errors.As(err, &m) {
		return false
	}
	if h.Metrics != nil {
		h.Metrics.malformed.WithLabelValues(adapter).Inc()
	}
	key := m.Feed + "\x00" + m.Reason
	h.malformed.mu.Lock()
	if h.malformed.seen == nil || len(h.malformed.seen) >= maxMalformedKept {
		h.malformed.seen = map[string]bool{}
	}
	first := !h.malformed.seen[key]
	h.malformed.seen[key] = true
	h.malformed.mu.Unlock()
	if first && h.Log != nil {
		h.Log.Error("malformed feed: skipped in listings, refused by name, the other feeds are unaffected; repair or delete its keys in Redis",
			"adapter", adapter, "feed", m.Feed, "reason", m.Reason)
	}
	return true
}

// Usable returns the well-formed feeds of a listing, reporting each
// malformed one (see Malformed).
func (h *Hub) Usable(adapter string, infos []thoonk.FeedInfo) []thoonk.FeedInfo {
	out := infos[:0:0]
	for _, in := range infos {
		if in.Err != nil {
			h.Malformed(adapter, in.Err)
			continue
		}
		out = append(out, in)
	}
	return out
}

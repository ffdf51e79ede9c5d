package core

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Hub is what the runtime hands every adapter: the store, the event
// listener, the action submitter, the ACL, the global feed selection,
// metrics and logging. Its fields are set before any adapter starts and
// never change.
type Hub struct {
	Store   *thoonk.Store
	Events  *thoonk.Listener
	Actions *Actions
	ACL     *ACL
	// Feeds is the global feed selection; an adapter's own selection
	// replaces it (see Exposed).
	Feeds   *FeedFilter
	Metrics *Metrics
	Log     *slog.Logger
	// PublicURL is the shared HTTP listener's base URL as clients reach
	// it, without a trailing slash ("" when HTTP is off).
	PublicURL string

	mu     sync.Mutex
	states map[string]AdapterState
	// malformed remembers the malformed feeds already logged (Malformed).
	malformed malformedLog
}

// Exposed returns the feed selection an adapter serves: its own when
// configured (non-nil), else the hub's.
func (h *Hub) Exposed(own *FeedFilter) *FeedFilter {
	if own != nil {
		return own
	}
	return h.Feeds
}

// State is an adapter's condition.
type State string

// Adapter states shown in logs, /readyz and metrics.
const (
	StateStarting     State = "starting"
	StateUp           State = "up"
	StateReconnecting State = "reconnecting"
	StateRestarting   State = "restarting"
	StateStopped      State = "stopped"
)

// AdapterState is an adapter's condition and its last error.
type AdapterState struct {
	State     State     `json:"state"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
}

// SetState records an adapter's condition (adapters call it when they
// connect and when they lose their connection) and logs changes.
func (h *Hub) SetState(adapter string, st State, err error) {
	h.mu.Lock()
	if h.states == nil {
		h.states = map[string]AdapterState{}
	}
	prev := h.states[adapter]
	next := AdapterState{State: st, Since: prev.Since, LastError: prev.LastError}
	if prev.State != st {
		next.Since = time.Now()
	}
	if err != nil {
		next.LastError = err.Error()
	}
	h.states[adapter] = next
	h.mu.Unlock()
	h.Metrics.adapterState(adapter, st == StateUp)
	if prev.State == st || h.Log == nil {
		return
	}
	if err != nil {
		h.Log.Warn("adapter state", "adapter", adapter, "state", st, "err", err)
	} else {
		h.Log.Info("adapter state", "adapter", adapter, "state", st)
	}
}

// States returns every adapter's condition.
func (h *Hub) States() map[string]AdapterState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.states)
}

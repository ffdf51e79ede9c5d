package core

import (
	"context"
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
	// Fleet holds this process's leases in a fleet of bridges on one
	// Redis; nil when the process is alone (it leads everything).
	Fleet *Leader
	// Internal are the job feeds the bridge itself uses (its action
	// queues): no adapter exposes them as feeds unless a feed selection
	// names one literally.
	Internal []string

	mu     sync.Mutex
	states map[string]AdapterState
	// malformed remembers the malformed feeds already logged (Malformed).
	malformed malformedLog
}

// Exposed returns the feed selection an adapter serves: its own when
// configured (non-nil), else the hub's, never selecting the Internal job
// feeds unless it names them literally.
func (h *Hub) Exposed(own *FeedFilter) *FeedFilter {
	f := h.Feeds
	if own != nil {
		f = own
	}
	if len(h.Internal) == 0 {
		return f
	}
	return f.Hiding(h.Internal)
}

// LeaseHousekeeping names the lease of the work done once per fleet: job
// maintenance, feed upkeep, journaling other writers' changes, the Atom
// adapter's record of times.
const LeaseHousekeeping = "housekeeping"

// Leading reports whether this process holds the named lease: always
// when it is alone.
func (h *Hub) Leading(lease string) bool {
	return h.Fleet == nil || h.Fleet.Holds(lease)
}

// Lead runs fn while this process holds the named lease (at once, with a
// nil lease, when it is alone), for adapter: while another process holds
// it, the adapter's state is standby; when it takes over, starting. See
// Leader.Lead.
func (h *Hub) Lead(ctx context.Context, adapter, lease string, fn func(ctx context.Context, l *Lease) error) error {
	if h.Fleet == nil {
		return fn(ctx, nil)
	}
	standby := func() {
		h.SetState(adapter, StateStandby, nil)
		if h.Log != nil {
			h.Log.Info("standby: another bridge process leads", "adapter", adapter, "lease", lease)
		}
	}
	leader := func() {
		h.SetState(adapter, StateStarting, nil)
		if h.Log != nil {
			h.Log.Info("leader: this process leads", "adapter", adapter, "lease", lease)
		}
	}
	return h.Fleet.Lead(ctx, lease, standby, leader, fn)
}

// State is an adapter's condition.
type State string

// Adapter states shown in logs, /readyz and metrics.
const (
	StateStarting State = "starting"
	StateUp       State = "up"
	// StateStandby: another process of the fleet leads this adapter's
	// connection; this one is ready to take over.
	StateStandby      State = "standby"
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
	h.Metrics.adapterState(adapter, st)
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

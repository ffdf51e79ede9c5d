package core

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Adapter is one protocol's bridge (XMPP, IRC, REST, Atom).
type Adapter interface {
	// Name returns the adapter's config section name.
	Name() string
	// Run serves until ctx ends and returns nil then. It owns its
	// connections and their reconnects; an error means it cannot go on,
	// and the runtime restarts it with backoff without disturbing others.
	Run(ctx context.Context, hub *Hub) error
}

// HTTPMounter is an adapter that serves HTTP on the shared listener; the
// runtime calls MountHTTP once, before the listener starts serving.
type HTTPMounter interface {
	MountHTTP(hub *Hub, mux *http.ServeMux) error
}

// Starter is an adapter with start-up work that must succeed before the
// bridge runs (loading state, checking resources). Adapters start in
// registry order; when one fails, those already started are stopped in
// reverse order (Stopper) and the bridge exits.
type Starter interface {
	Start(ctx context.Context, hub *Hub) error
}

// Stopper undoes a Starter's Start when a later adapter fails to start.
type Stopper interface {
	Stop()
}

// Factory builds an adapter from its config section.
type Factory struct {
	// Name is the adapter's config section name.
	Name string
	// New decodes and validates the section (strictly, with Section.Decode)
	// without touching the network. It returns a nil Adapter when the
	// section is absent or says enabled: false; a disabled section is
	// still validated.
	New func(sec *Section) (Adapter, error)
}

// StartAdapters runs every Starter in order; on failure it stops the ones
// already started, in reverse order, and returns the error.
func StartAdapters(ctx context.Context, hub *Hub, adapters []Adapter) error {
	var started []Adapter
	for _, a := range adapters {
		s, ok := a.(Starter)
		if !ok {
			continue
		}
		hub.SetState(a.Name(), StateStarting, nil)
		if err := s.Start(ctx, hub); err != nil {
			for i := len(started) - 1; i >= 0; i-- {
				if st, ok := started[i].(Stopper); ok {
					st.Stop()
				}
				hub.SetState(started[i].Name(), StateStopped, nil)
			}
			hub.SetState(a.Name(), StateStopped, err)
			return fmt.Errorf("start %s: %w", a.Name(), err)
		}
		started = append(started, a)
	}
	return nil
}

// RunAdapters runs every adapter until ctx ends, restarting one whose Run
// fails (or panics) after a backoff delay. It returns once every adapter
// has returned.
func RunAdapters(ctx context.Context, hub *Hub, adapters []Adapter, bo thoonk.Backoff) {
	var wg sync.WaitGroup
	for _, a := range adapters {
		wg.Go(func() { supervise(ctx, hub, a, bo) })
	}
	wg.Wait()
}

func supervise(ctx context.Context, hub *Hub, a Adapter, bo thoonk.Backoff) {
	name := a.Name()
	attempt := 0
	for {
		started := time.Now()
		err := runGuarded(ctx, hub, a)
		if ctx.Err() != nil {
			hub.SetState(name, StateStopped, nil)
			return
		}
		if err == nil {
			err = fmt.Errorf("%s stopped by itself", name)
		}
		if time.Since(started) > time.Minute {
			attempt = 0 // it ran well for a while: start the backoff over
		}
		d := bo.Delay(attempt)
		attempt++
		hub.SetState(name, StateRestarting, err)
		if hub.Log != nil {
			hub.Log.Error("adapter failed; restarting", "adapter", name, "err", err, "retry_in", d.Round(time.Millisecond))
		}
		hub.Metrics.Reconnect(name)
		if thoonk.Sleep(ctx, d) != nil {
			hub.SetState(name, StateStopped, nil)
			return
		}
	}
}

// runGuarded runs an adapter, turning a panic into an error.
func runGuarded(ctx context.Context, hub *Hub, a Adapter) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return a.Run(ctx, hub)
}

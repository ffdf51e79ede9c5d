package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// run starts the bridge and blocks until ctx ends, then stops it within the
// configured shutdown timeout. Start-up is ordered, and anything started
// before a failing step is stopped again (rollback).
func run(ctx context.Context, path string, logOut io.Writer) error {
	l, err := load(path)
	if err != nil {
		return err
	}
	cfg := l.cfg
	log := newLogger(cfg.Log, logOut)
	slog.SetDefault(log)
	redis.SetLogger(redisLog{log.With("component", "redis")})
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}

	rdb, err := connectRedis(ctx, cfg, log, &undo)
	if err != nil {
		rollback()
		return err
	}
	store, err := thoonk.NewStore(rdb, storeOptions(cfg))
	if err != nil {
		rollback()
		return err
	}
	if err := prepareFeeds(ctx, store, cfg, log); err != nil {
		rollback()
		return err
	}

	// From here on, background parts run under runCtx and stop in order.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	var bg sync.WaitGroup
	undo = append(undo, func() { cancelRun(); bg.Wait() })

	metrics := core.NewMetrics()
	metrics.SetBuildInfo(version, buildCommit(), runtime.Version())
	actionQueues := cfg.ActionQueues()
	fleet := core.NewLeader(rdb, store.Instance(), cfg.Fleet.LeaseTTL)
	listener := thoonk.NewListener(store, thoonk.ListenerOptions{Logger: log.With("component", "events"),
		RecordFeeds: func(feed string) bool { return slices.Contains(actionQueues, feed) },
		Notify:      map[string]func(string){core.LeaseChannel: func(string) { fleet.Released() }}})
	bg.Go(func() { _ = listener.Run(runCtx) })
	// Adapters start with events flowing when Redis allows it (a failure
	// here is not fatal: the listener keeps retrying, readiness says so).
	wctx, cancelWait := context.WithTimeout(ctx, 5*time.Second)
	_ = listener.WaitConnected(wctx)
	cancelWait()
	acl := cfg.CompiledACL()
	hub := &core.Hub{
		Store: store, Events: listener, ACL: acl, Feeds: &cfg.Feeds, Metrics: metrics, Log: log,
		PublicURL: cfg.PublicBase(), Internal: internalFeeds(cfg), Fleet: fleet,
		Actions: core.NewActions(store, listener, acl, core.ActionsOptions{
			Queue: cfg.Actions.Queue, CustomQueue: cfg.Actions.CustomQueue, Routes: cfg.Actions.Routes,
			MaxItemBytes: cfg.Actions.MaxItemBytes, ResultTTL: cfg.Actions.ResultTTL,
		}, metrics),
	}
	journaler := core.NewJournaler(store, listener, log.With("component", "journal"))
	metrics.Register(core.NewRedisCollector(store, listener, hub.Actions.Queues), core.NewJournalCollector(journaler))
	// housekeeping stops, and hands its lease to a standby, as soon as
	// shutdown begins
	hkCtx, stopHousekeeping := context.WithCancel(runCtx)
	defer stopHousekeeping()
	bg.Go(func() { housekeeping(hkCtx, hub, cfg, journaler) })

	workerCtx, stopWorker := context.WithCancel(runCtx)
	var workerDone sync.WaitGroup
	if cfg.Worker.Enabled {
		w := core.NewWorker(store, core.WorkerOptions{
			Queues: cfg.WorkerQueues(), Concurrency: cfg.Worker.Concurrency, Schemas: l.schemas,
			ACL: acl, Log: log.With("component", "worker"), Metrics: metrics,
		})
		workerDone.Go(func() { _ = w.Run(workerCtx) })
		log.Info("built-in worker started", "queues", cfg.WorkerQueues(), "concurrency", cfg.Worker.Concurrency)
	}

	srv, err := startHTTP(runCtx, cfg, hub, l.adapters, log, &bg)
	if err != nil {
		stopWorker()
		workerDone.Wait()
		rollback()
		return err
	}
	adapterCtx, stopAdapters := context.WithCancel(runCtx)
	if srv != nil {
		// Shutdown waits for open requests: end the adapters' long-lived
		// ones (event streams, long polls) as soon as it begins.
		srv.RegisterOnShutdown(stopAdapters)
	}
	if err := core.StartAdapters(adapterCtx, hub, l.adapters); err != nil {
		stopAdapters()
		stopWorker()
		workerDone.Wait()
		if srv != nil {
			_ = srv.Close()
		}
		rollback()
		return err
	}
	var adaptersDone sync.WaitGroup
	adaptersDone.Go(func() { core.RunAdapters(adapterCtx, hub, l.adapters, thoonk.DefaultBackoff) })
	log.Info("feedbridge running", "version", version, "http", cfg.HTTP.Listen, "public_url", cfg.PublicBase(),
		"adapters", adapterNames(l.adapters))

	<-ctx.Done()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	deadline, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 1. stop taking input: HTTP stops accepting and drains requests
		// while the adapters close their connections and housekeeping
		// stops (each handing its lease to a standby at once).
		var drained sync.WaitGroup
		if srv != nil {
			drained.Go(func() { _ = srv.Shutdown(deadline) })
		}
		stopAdapters()
		stopHousekeeping()
		adaptersDone.Wait()
		drained.Wait()
		// 2. the worker finishes the jobs in hand.
		stopWorker()
		workerDone.Wait()
		// 3. events, maintenance, Redis.
		rollback()
	}()
	select {
	case <-done:
		log.Info("stopped")
		return nil
	case <-deadline.Done():
		// what still runs, for the operator (and the developer) to see
		buf := make([]byte, 1<<20)
		log.Warn("shutdown is stuck; running goroutines follow", "stacks", string(buf[:runtime.Stack(buf, true)]))
		return fmt.Errorf("shutdown took longer than %s", cfg.ShutdownTimeout)
	}
}

// storeOptions returns the store's options from the config.
func storeOptions(cfg *core.Config) thoonk.StoreOptions {
	return thoonk.StoreOptions{
		Instance: cfg.Instance,
		Journal: thoonk.JournalOptions{MaxEvents: cfg.Journal.MaxEvents, MaxItemBytes: cfg.Journal.MaxItemBytes,
			MaxAge: cfg.Journal.MaxAge},
		ReplicaAcks: cfg.Redis.ReplicaAcks, ReplicaTimeout: cfg.Redis.ReplicaTimeout,
	}
}

// internalFeeds are the bridge's own job feeds: the action queues and the
// built-in worker's queues.
func internalFeeds(cfg *core.Config) []string {
	qs := append(cfg.ActionQueues(), cfg.WorkerQueues()...)
	slices.Sort(qs)
	return slices.Compact(qs)
}

// jobConfig is the config of the action queues (timeout, retries, backoff).
func jobConfig(cfg *core.Config) map[string]string {
	return map[string]string{
		thoonk.ConfigJobTimeout:    fmt.Sprint(cfg.Jobs.Timeout.Milliseconds()),
		thoonk.ConfigJobRetries:    fmt.Sprint(cfg.Jobs.Retries),
		thoonk.ConfigJobBackoff:    fmt.Sprint(cfg.Jobs.RetryBackoff.Milliseconds()),
		thoonk.ConfigJobBackoffMax: fmt.Sprint(cfg.Jobs.RetryBackoffMax.Milliseconds()),
		"title":                    "feedbridge actions",
	}
}

func adapterNames(as []core.Adapter) []string {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.Name()
	}
	return names
}

// redisLog routes go-redis' own messages (dial failures, pool events) to slog.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.Log(ctx, slog.LevelWarn, fmt.Sprintf(format, v...))
}

func newLogger(c core.LogConfig, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// durationsAsText logs durations as "1.5s" rather than nanoseconds (the
// JSON handler's default), in every format.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// connectRedis starts the embedded Redis when asked, connects, and checks
// that Redis answers: an unreachable Redis at start is an error.
func connectRedis(ctx context.Context, cfg *core.Config, log *slog.Logger, undo *[]func()) (redis.UniversalClient, error) {
	url, mode := cfg.Redis.URL.Reveal(), cfg.Redis.Mode
	if cfg.Redis.Embedded() {
		m, err := startEmbedded(cfg.Redis.EmbeddedAddr)
		if err != nil {
			return nil, fmt.Errorf("embedded redis on %s: %w (choose another redis.embedded_addr)", cfg.Redis.EmbeddedAddr, err)
		}
		*undo = append(*undo, m.Close)
		log.Warn("using the embedded in-process Redis: data lives in memory only and is lost when the bridge stops; set redis.url to a real Redis to keep it",
			"addr", m.Addr(), "connect", "redis-cli -h "+m.Host()+" -p "+m.Port())
		url, mode = "redis://"+m.Addr(), thoonk.RedisSingle
	}
	// one connection per worker goroutine waiting in BRPOP, and room for the rest
	pool := 0
	if cfg.Worker.Enabled {
		pool = len(cfg.WorkerQueues())*cfg.Worker.Concurrency + 20
	}
	rdb, err := thoonk.NewRedisClient(url, mode, pool)
	if err != nil {
		return nil, err
	}
	*undo = append(*undo, func() { _ = rdb.Close() })
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return nil, fmt.Errorf("redis is unreachable at start (%s mode): %w; check redis.url", mode, err)
	}
	return rdb, nil
}

// prepareFeeds creates the action queues (when actions.create_queues) and
// the create_feeds that are missing.
func prepareFeeds(ctx context.Context, s *thoonk.Store, cfg *core.Config, log *slog.Logger) error {
	var want []core.FeedSpec
	if cfg.Actions.CreateQueues {
		for _, q := range internalFeeds(cfg) {
			want = append(want, core.FeedSpec{Name: q, Type: thoonk.TypeJob, Config: jobConfig(cfg)})
		}
	}
	for _, f := range append(want, cfg.CreateFeeds...) {
		err := s.Create(ctx, f.Name, f.Type, f.Config)
		switch {
		case err == nil:
			log.Info("created feed", "feed", f.Name, "type", f.Type)
		case errors.Is(err, thoonk.ErrFeedExists):
			typ, err := s.Type(ctx, f.Name)
			if err == nil && typ != f.Type {
				return fmt.Errorf("feed %q exists but is a %s, not a %s", f.Name, typ, f.Type)
			}
			if err == nil && typ == thoonk.TypeJob && cfg.Actions.CreateQueues && slices.Contains(internalFeeds(cfg), f.Name) {
				// the bridge's own queues follow its jobs: settings
				if err := s.SetConfig(ctx, f.Name, jobConfig(cfg)); err != nil {
					return fmt.Errorf("configure job feed %q: %w", f.Name, err)
				}
			}
		default:
			return fmt.Errorf("create feed %q: %w", f.Name, err)
		}
	}
	return nil
}

// housekeeping does, in one process of the fleet at a time (the holder
// of the housekeeping lease), the work a fleet needs done once: job
// maintenance, keeping the configured feeds, journaling other writers'
// changes.
func housekeeping(ctx context.Context, hub *core.Hub, cfg *core.Config, j *core.Journaler) {
	log := hub.Log
	_ = hub.Fleet.Lead(ctx, core.LeaseHousekeeping,
		func() { log.Info("standby: another bridge process does the fleet's housekeeping") },
		func() { log.Info("leader: this process does the fleet's housekeeping") },
		func(ctx context.Context, _ *core.Lease) error {
			var wg sync.WaitGroup
			if cfg.Actions.CreateQueues || len(cfg.CreateFeeds) > 0 {
				wg.Go(func() { keepFeeds(ctx, hub.Events, hub.Store, cfg, log) })
			}
			if cfg.Jobs.MaintenanceInterval > 0 {
				wg.Go(func() {
					thoonk.MaintainJobs(ctx, hub.Store, cfg.Jobs.MaintenanceInterval, cfg.MaintainedJobs, log.With("component", "jobs"))
				})
			}
			wg.Go(func() { _ = j.Run(ctx) })
			wg.Wait()
			return nil
		})
}

// keepFeeds re-creates the action queues and create_feeds after Redis lost
// them: when it starts (the fleet's housekeeper changed), when the
// listener reconnects (a restarted Redis may come back empty) or when one
// is deleted.
func keepFeeds(ctx context.Context, l *thoonk.Listener, s *thoonk.Store, cfg *core.Config, log *slog.Logger) {
	sub := l.Subscribe(64)
	defer sub.Close()
	if err := prepareFeeds(ctx, s, cfg, log); err != nil && ctx.Err() == nil {
		log.Warn("re-create feeds", "err", err)
	}
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		// a resync (reconnect, or this consumer's overflow) may hide a delete
		lost := ev.Type == thoonk.EventResync ||
			(ev.Type == thoonk.EventDelete && (cfg.MaintainedJobs(ev.Feed) ||
				slices.ContainsFunc(cfg.CreateFeeds, func(f core.FeedSpec) bool { return f.Name == ev.Feed })))
		if !lost {
			continue
		}
		if err := prepareFeeds(ctx, s, cfg, log); err != nil && ctx.Err() == nil {
			log.Warn("re-create feeds", "err", err)
		}
	}
}

// startHTTP binds the shared listener and serves health, readiness,
// metrics and the HTTP adapters; nil when HTTP is off.
func startHTTP(ctx context.Context, cfg *core.Config, hub *core.Hub, adapters []core.Adapter, log *slog.Logger, bg *sync.WaitGroup) (*http.Server, error) {
	if cfg.HTTP.Listen == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", readyHandler(hub, adapters))
	if cfg.HTTP.Metrics {
		mux.Handle("GET /metrics", hub.Metrics.Handler())
	}
	for _, a := range adapters {
		if m, ok := a.(core.HTTPMounter); ok {
			if err := m.MountHTTP(hub, mux); err != nil {
				return nil, fmt.Errorf("mount %s: %w", a.Name(), err)
			}
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w (choose another http.listen)", err)
	}
	reqLevel := slog.LevelDebug
	if cfg.Log.Requests {
		reqLevel = slog.LevelInfo
	}
	srv := &http.Server{
		Handler: instrument(guardHandler(mux), hub.Metrics, log.With("component", "http"), reqLevel), ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout, ReadTimeout: cfg.HTTP.ReadTimeout,
		WriteTimeout: cfg.HTTP.WriteTimeout, IdleTimeout: cfg.HTTP.IdleTimeout, MaxHeaderBytes: maxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	bg.Go(func() {
		if err := srv.Serve(guardListener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	})
	log.Info("http listening", "addr", ln.Addr().String())
	return srv, nil
}

// readiness is the /readyz body.
type readiness struct {
	Ready    bool                         `json:"ready"`
	Redis    string                       `json:"redis"`
	Events   string                       `json:"events"`
	Adapters map[string]core.AdapterState `json:"adapters"`
}

func readyHandler(hub *core.Hub, adapters []core.Adapter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rd := readiness{Ready: true, Redis: "ok", Events: "connected", Adapters: hub.States()}
		if err := hub.Store.Health(ctx); err != nil {
			rd.Ready, rd.Redis = false, err.Error()
		}
		if !hub.Events.Connected() {
			rd.Ready, rd.Events = false, "disconnected"
		}
		if rd.Adapters == nil {
			rd.Adapters = map[string]core.AdapterState{}
		}
		for _, a := range adapters {
			// a standby is ready: it serves HTTP and takes over when needed
			if st := rd.Adapters[a.Name()].State; st != core.StateUp && st != core.StateStandby {
				rd.Ready = false
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rd)
	}
}

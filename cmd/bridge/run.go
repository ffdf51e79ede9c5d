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
	"slices"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
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
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Instance: cfg.Instance})
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
	actionQueues := cfg.ActionQueues()
	listener := thoonk.NewListener(store, thoonk.ListenerOptions{Logger: log.With("component", "events"),
		RecordFeeds: func(feed string) bool { return slices.Contains(actionQueues, feed) }})
	bg.Go(func() { _ = listener.Run(runCtx) })
	// Adapters start with events flowing when Redis allows it (a failure
	// here is not fatal: the listener keeps retrying, readiness says so).
	wctx, cancelWait := context.WithTimeout(ctx, 5*time.Second)
	_ = listener.WaitConnected(wctx)
	cancelWait()
	acl := cfg.CompiledACL()
	hub := &core.Hub{
		Store: store, Events: listener, ACL: acl, Feeds: &cfg.Feeds, Metrics: metrics, Log: log,
		PublicURL: cfg.PublicBase(),
		Actions: core.NewActions(store, listener, acl, core.ActionsOptions{
			Queue: cfg.Actions.Queue, CustomQueue: cfg.Actions.CustomQueue, Routes: cfg.Actions.Routes,
			MaxItemBytes: cfg.Actions.MaxItemBytes, ResultTTL: cfg.Actions.ResultTTL,
		}, metrics),
	}
	metrics.Register(core.NewRedisCollector(store, listener, hub.Actions.Queues))
	if cfg.Actions.CreateQueues || len(cfg.CreateFeeds) > 0 {
		bg.Go(func() { keepFeeds(runCtx, listener, store, cfg, log) })
	}

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
	if cfg.Jobs.MaintenanceInterval > 0 {
		bg.Go(func() {
			thoonk.MaintainJobs(runCtx, store, cfg.Jobs.MaintenanceInterval, cfg.MaintainedJobs, log.With("component", "jobs"))
		})
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
		// 1. stop taking input: HTTP stops accepting and drains requests,
		// adapters close their connections.
		if srv != nil {
			_ = srv.Shutdown(deadline)
		}
		stopAdapters()
		adaptersDone.Wait()
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
		return fmt.Errorf("shutdown took longer than %s", cfg.ShutdownTimeout)
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
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// connectRedis starts the embedded Redis when asked, connects, and checks
// that Redis answers: an unreachable Redis at start is an error.
func connectRedis(ctx context.Context, cfg *core.Config, log *slog.Logger, undo *[]func()) (redis.UniversalClient, error) {
	url, mode := cfg.Redis.URL.Reveal(), cfg.Redis.Mode
	if cfg.Redis.Embedded() {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr(cfg.Redis.EmbeddedAddr); err != nil {
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
		queues := append(cfg.ActionQueues(), cfg.WorkerQueues()...)
		slices.Sort(queues)
		for _, q := range slices.Compact(queues) {
			want = append(want, core.FeedSpec{Name: q, Type: thoonk.TypeJob, Config: map[string]string{
				thoonk.ConfigJobTimeout: fmt.Sprint(cfg.Jobs.Timeout.Milliseconds()),
				thoonk.ConfigJobRetries: fmt.Sprint(cfg.Jobs.Retries),
				"title":                 "feedbridge actions",
			}})
		}
	}
	for _, f := range append(want, cfg.CreateFeeds...) {
		err := s.Create(ctx, f.Name, f.Type, f.Config)
		switch {
		case err == nil:
			log.Info("created feed", "feed", f.Name, "type", f.Type)
		case errors.Is(err, thoonk.ErrFeedExists):
			if typ, err := s.Type(ctx, f.Name); err == nil && typ != f.Type {
				return fmt.Errorf("feed %q exists but is a %s, not a %s", f.Name, typ, f.Type)
			}
		default:
			return fmt.Errorf("create feed %q: %w", f.Name, err)
		}
	}
	return nil
}

// keepFeeds re-creates the action queues and create_feeds after Redis lost
// them: when the listener reconnects (a restarted Redis may come back
// empty) or when one is deleted.
func keepFeeds(ctx context.Context, l *thoonk.Listener, s *thoonk.Store, cfg *core.Config, log *slog.Logger) {
	sub := l.Subscribe(64)
	defer sub.Close()
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
	srv := &http.Server{
		Handler: guardHandler(mux), ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout, ReadTimeout: cfg.HTTP.ReadTimeout,
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
		if _, err := hub.Store.Ping(ctx); err != nil {
			rd.Ready, rd.Redis = false, "unreachable"
		}
		if !hub.Events.Connected() {
			rd.Ready, rd.Events = false, "disconnected"
		}
		if rd.Adapters == nil {
			rd.Adapters = map[string]core.AdapterState{}
		}
		for _, a := range adapters {
			if rd.Adapters[a.Name()].State != core.StateUp {
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

package core

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Metrics holds the bridge's Prometheus metrics, in a registry of its own.
// A nil *Metrics records nothing, so tests and tools may pass nil.
type Metrics struct {
	reg        *prometheus.Registry
	eventsOut  *prometheus.CounterVec
	eventsIn   *prometheus.CounterVec
	actions    *prometheus.CounterVec
	results    *prometheus.CounterVec
	reconnects *prometheus.CounterVec
	adapterUp  *prometheus.GaugeVec
	standby    *prometheus.GaugeVec
	httpCount  *prometheus.CounterVec
	httpTime   *prometheus.HistogramVec
	buildInfo  *prometheus.GaugeVec
	malformed  *prometheus.CounterVec
}

// NewMetrics creates the metrics, with Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		eventsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_events_out_total", Help: "Feed events delivered to protocol clients, by adapter.",
		}, []string{"adapter"}),
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_requests_in_total", Help: "Requests received from protocol clients, by adapter.",
		}, []string{"adapter"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_actions_total", Help: "Actions by protocol, verb and outcome (submitted, denied, invalid, failed).",
		}, []string{"protocol", "verb", "outcome"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_job_results_total", Help: "Action jobs finished by the built-in worker, by queue and result code.",
		}, []string{"queue", "code"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_reconnects_total", Help: "Connections re-established after a loss, by component.",
		}, []string{"component"}),
		adapterUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbridge_adapter_up", Help: "1 when the adapter is connected and serving, else 0.",
		}, []string{"adapter"}),
		standby: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbridge_adapter_standby", Help: "1 when another process of the fleet leads the adapter's connection and this one stands by, else 0.",
		}, []string{"adapter"}),
		httpCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_http_requests_total", Help: "HTTP requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		httpTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "feedbridge_http_request_duration_seconds", Help: "Time to answer HTTP requests (event streams: until the stream starts), by route, method and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "code"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbridge_build_info", Help: "Always 1; the labels say which build runs.",
		}, []string{"version", "commit", "goversion"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_feeds_malformed_total", Help: "Malformed feeds (keys of the wrong Redis type, an unknown type, an invalid name) skipped in listings or refused by name, by adapter.",
		}, []string{"adapter"}),
	}
	m.reg.MustRegister(m.eventsOut, m.eventsIn, m.actions, m.results, m.reconnects, m.adapterUp, m.standby, m.httpCount, m.httpTime, m.buildInfo, m.malformed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Register adds collectors (for example, queue depths read on scrape). A
// collector already registered is kept, so an adapter restarted by the
// runtime may register again; any other registration error panics, as it
// is a programming error.
func (m *Metrics) Register(cs ...prometheus.Collector) {
	if m == nil {
		return
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			panic(err)
		}
	}
}

// EventOut counts n feed events delivered by an adapter.
func (m *Metrics) EventOut(adapter string, n int) {
	if m != nil {
		m.eventsOut.WithLabelValues(adapter).Add(float64(n))
	}
}

// RequestIn counts one request received by an adapter.
func (m *Metrics) RequestIn(adapter string) {
	if m != nil {
		m.eventsIn.WithLabelValues(adapter).Inc()
	}
}

// SetBuildInfo records the running build in feedbridge_build_info.
func (m *Metrics) SetBuildInfo(version, commit, goVersion string) {
	if m != nil {
		m.buildInfo.Reset()
		m.buildInfo.WithLabelValues(version, commit, goVersion).Set(1)
	}
}

// HTTPRequest counts one answered HTTP request and its duration; route is
// the pattern that served it (never the raw path, which would make every
// feed name a label value).
func (m *Metrics) HTTPRequest(route, method string, code int, d time.Duration) {
	if m != nil {
		c := strconv.Itoa(code)
		m.httpCount.WithLabelValues(route, method, c).Inc()
		m.httpTime.WithLabelValues(route, method, c).Observe(d.Seconds())
	}
}

// Reconnect counts one re-established connection of a component.
func (m *Metrics) Reconnect(component string) {
	if m != nil {
		m.reconnects.WithLabelValues(component).Inc()
	}
}

func (m *Metrics) action(protocol, verb, outcome string) {
	if m != nil {
		m.actions.WithLabelValues(protocol, verb, outcome).Inc()
	}
}

func (m *Metrics) result(queue string, code int) {
	if m != nil {
		m.results.WithLabelValues(queue, strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) adapterState(adapter string, st State) {
	if m != nil {
		m.adapterUp.WithLabelValues(adapter).Set(boolGauge(st == StateUp))
		m.standby.WithLabelValues(adapter).Set(boolGauge(st == StateStandby))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// redisCollector reads Redis latency, listener counters and queue depths on
// each scrape.
type redisCollector struct {
	s      *thoonk.Store
	l      *thoonk.Listener
	queues func() []string

	latency, depth, received, overflows, relisten, dropped, invalid *prometheus.Desc
	unreplicated, reloads                                           *prometheus.Desc
}

// NewRedisCollector reports Redis round-trip latency, the listener's
// counters and the depth of each queue (available, in flight, stalled).
func NewRedisCollector(s *thoonk.Store, l *thoonk.Listener, queues func() []string) prometheus.Collector {
	return &redisCollector{
		s: s, l: l, queues: queues,
		latency:   prometheus.NewDesc("feedbridge_redis_latency_seconds", "Round-trip time of a Redis PING at scrape time.", nil, nil),
		depth:     prometheus.NewDesc("feedbridge_queue_depth", "Jobs per action queue and state.", []string{"queue", "state"}, nil),
		received:  prometheus.NewDesc("feedbridge_events_received_total", "Events received from Redis pubsub.", nil, nil),
		overflows: prometheus.NewDesc("feedbridge_subscription_overflows_total", "Consumer queues emptied by the overflow policy (consumers resynced).", nil, nil),
		relisten:  prometheus.NewDesc("feedbridge_pubsub_reconnects_total", "Pubsub re-subscriptions after a lost connection.", nil, nil),
		dropped:   prometheus.NewDesc("feedbridge_job_results_unrecorded_total", "Job results from other workers not recorded because the record queue was full.", nil, nil),
		invalid:   prometheus.NewDesc("feedbridge_events_invalid_total", "Pubsub messages dropped because their feed name or id is not valid.", nil, nil),
		unreplicated: prometheus.NewDesc("feedbridge_redis_unreplicated_writes_total",
			"Accepted actions and applied changes confirmed before the replicas waited for had them (redis.replica_timeout ran out).", nil, nil),
		reloads: prometheus.NewDesc("feedbridge_redis_topology_reloads_total",
			"Redis Cluster topology reloads asked for after a connection error (failovers).", nil, nil),
	}
}

func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.latency
	ch <- c.depth
	ch <- c.received
	ch <- c.overflows
	ch <- c.relisten
	ch <- c.dropped
	ch <- c.invalid
	ch <- c.unreplicated
	ch <- c.reloads
}

func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if d, err := c.s.Ping(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, d.Seconds())
	}
	st := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(st.Received))
	ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(st.Overflows))
	ch <- prometheus.MustNewConstMetric(c.relisten, prometheus.CounterValue, float64(st.Reconnects))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.DroppedRecords))
	ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.CounterValue, float64(st.Invalid))
	ss := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.unreplicated, prometheus.CounterValue, float64(ss.Unreplicated))
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(ss.TopologyReloads))
	for _, q := range c.queues() {
		n, err := c.s.Jobs(q).Counts(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n.Available), q, "available")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n.InFlight), q, "in_flight")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n.Stalled), q, "stalled")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n.Delayed), q, "retry_wait")
	}
}

// journalCollector reads the journaler's counters on each scrape.
type journalCollector struct {
	j    *Journaler
	desc *prometheus.Desc
}

// NewJournalCollector reports the journal entries the journaler wrote for
// other writers' changes, by how they were found, and those trimmed.
func NewJournalCollector(j *Journaler) prometheus.Collector {
	return &journalCollector{j: j, desc: prometheus.NewDesc("feedbridge_journal_entries_total",
		"Journal entries written for other Thoonk writers' changes (observed, reconciled) and entries trimmed by age.",
		[]string{"kind"}, nil)}
}

func (c *journalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *journalCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.j.Stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.Observed), "observed")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.Reconciled), "reconciled")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.Trimmed), "trimmed")
}

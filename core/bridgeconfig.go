package core

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Config is bridge.yaml's shared part; each adapter's section is decoded
// by the adapter itself (see Factory).
type Config struct {
	// Instance names this process in Thoonk notices; empty = random.
	Instance string `yaml:"instance"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             LogConfig     `yaml:"log"`
	Redis           RedisConfig   `yaml:"redis"`
	HTTP            HTTPConfig    `yaml:"http"`
	// Feeds selects the feeds every adapter exposes (each may override it).
	Feeds   FeedFilter    `yaml:"feeds"`
	Actions ActionsConfig `yaml:"actions"`
	Jobs    JobsConfig    `yaml:"jobs"`
	Journal JournalConfig `yaml:"journal"`
	Fleet   FleetConfig   `yaml:"fleet"`
	ACL     []ACLRule     `yaml:"acl"`
	Worker  WorkerConfig  `yaml:"worker"`
	// CreateFeeds are created at start when missing (and again when Redis
	// comes back empty).
	CreateFeeds []FeedSpec `yaml:"create_feeds"`

	root     *Section
	adapters map[string]*Section
	maintain []thoonk.Pattern // Jobs.Maintain, compiled
}

// FeedSpec declares a feed to create when it is missing.
type FeedSpec struct {
	Name string `yaml:"name"`
	// Type is feed, sorted_feed, queue or job.
	Type thoonk.FeedType `yaml:"type"`
	// Config holds extra config fields (title, max_length, ...).
	Config map[string]string `yaml:"config"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
	// Requests logs every HTTP request (always on at level debug).
	Requests bool `yaml:"requests"`
}

// RedisConfig says where the feeds live.
type RedisConfig struct {
	// URL is a redis:// or rediss:// URL, or "embedded" for an in-process
	// Redis (data in memory only) listening on EmbeddedAddr.
	URL SecretURL `yaml:"url"`
	// Mode is single, sentinel or cluster (see NewRedisClient).
	Mode string `yaml:"mode"`
	// EmbeddedAddr is the loopback address the embedded Redis listens on.
	EmbeddedAddr string `yaml:"embedded_addr"`
	// ReplicaAcks is how many replicas must have an accepted action (and
	// an applied change) before the bridge says so, so that it survives a
	// master's failover; a master with fewer replicas connected waits for
	// those it has (a single server: none). 0 answers at once.
	ReplicaAcks int `yaml:"replica_acks"`
	// ReplicaTimeout bounds that wait; past it the change is confirmed all
	// the same (it is on the master) and counted in metrics.
	ReplicaTimeout time.Duration `yaml:"replica_timeout"`
}

// Embedded reports whether the config asks for the in-process Redis.
func (r RedisConfig) Embedded() bool { return r.URL == "embedded" }

// HTTPConfig is the one HTTP listener REST, Atom, health and metrics share.
type HTTPConfig struct {
	// Listen is host:port; empty turns HTTP off.
	Listen string `yaml:"listen"`
	// PublicURL is the base URL clients use (behind a proxy: the public
	// one); empty means http://Listen.
	PublicURL         string        `yaml:"public_url"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds ordinary responses; event streams clear it.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// Metrics serves /metrics when true.
	Metrics bool `yaml:"metrics"`
}

// ActionsConfig routes actions to job feeds.
type ActionsConfig struct {
	// Queue is the default job feed for the standard verbs (publish, edit,
	// retract, move), served by the built-in worker.
	Queue string `yaml:"queue"`
	// CustomQueue is the default job feed for custom verbs, left for the
	// application's own workers.
	CustomQueue string `yaml:"custom_queue"`
	// Routes send some feeds' (and verbs') actions elsewhere; first match wins.
	Routes []ActionRoute `yaml:"routes"`
	// Verbs declares the custom verbs the ACL may grant (a route's verbs
	// are declared too): an ACL operation that is none of the known ones
	// is a typo, and an error.
	Verbs []string `yaml:"verbs"`
	// MaxItemBytes bounds an action's payload.
	MaxItemBytes int `yaml:"max_item_bytes"`
	// ResultTTL is how long a job's status and result stay readable.
	ResultTTL time.Duration `yaml:"result_ttl"`
	// CreateQueues creates missing action job feeds at start.
	CreateQueues bool `yaml:"create_queues"`
}

// JobsConfig tunes job maintenance.
type JobsConfig struct {
	// MaintenanceInterval is the time between maintenance passes; 0 turns
	// maintenance off in this process.
	MaintenanceInterval time.Duration `yaml:"maintenance_interval"`
	// Maintain lists glob patterns of more job feeds (your workers') to
	// maintain besides the action queues, which always are.
	Maintain []string `yaml:"maintain"`
	// Timeout, Retries, RetryBackoff and RetryBackoffMax are written into
	// the config of the action queues (job_timeout_ms, job_max_retries,
	// job_retry_backoff_ms, job_retry_backoff_max_ms): a failed job runs
	// again after RetryBackoff, doubled for each further failure up to
	// RetryBackoffMax (with jitter), and stalls after Retries retries.
	Timeout         time.Duration `yaml:"timeout"`
	Retries         int           `yaml:"retries"`
	RetryBackoff    time.Duration `yaml:"retry_backoff"`
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
}

// FleetConfig tunes how the bridge processes sharing one Redis divide the
// work: one leads each XMPP component, each IRC network and the fleet's
// housekeeping, the others stand by.
type FleetConfig struct {
	// LeaseTTL is how long a leader's lease lasts without renewal: a
	// standby takes over within about this long after a leader dies (at
	// once after a graceful stop).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// JournalConfig bounds the per-feed journals every protocol resumes from.
type JournalConfig struct {
	// MaxEvents is how many changes a feed's journal keeps.
	MaxEvents int `yaml:"max_events"`
	// MaxAge is how long changes are kept at most.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxItemBytes is the largest item a change holds; a larger one is
	// kept by its content sum and read from the feed when replayed.
	MaxItemBytes int `yaml:"max_item_bytes"`
}

// ActionQueues returns every job feed actions go to: the default queue,
// the custom-verb queue and the routes' queues.
func (c *Config) ActionQueues() []string {
	return actionQueues(c.Actions.Queue, c.Actions.CustomQueue, c.Actions.Routes)
}

// MaintainedJobs reports whether job maintenance in this process covers feed.
func (c *Config) MaintainedJobs(feed string) bool {
	if slices.Contains(c.ActionQueues(), feed) || slices.Contains(c.WorkerQueues(), feed) {
		return true
	}
	return anyMatch(c.maintain, feed)
}

// WorkerConfig configures the built-in worker.
type WorkerConfig struct {
	Enabled bool `yaml:"enabled"`
	// Queues are the job feeds it takes actions from; empty = every action queue.
	Queues []string `yaml:"queues"`
	// Concurrency is the number of jobs handled at once per queue.
	Concurrency int `yaml:"concurrency"`
	// Schemas validate items by feed pattern before publish and edit.
	Schemas []SchemaRule `yaml:"schemas"`
}

// SchemaRule applies a JSON Schema file to the items of matching feeds.
type SchemaRule struct {
	Feeds []string `yaml:"feeds"`
	File  string   `yaml:"file"`
}

// DefaultConfig returns every default, in one place.
func DefaultConfig() Config {
	return Config{
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: "info", Format: "text"},
		Redis: RedisConfig{URL: "embedded", Mode: thoonk.RedisSingle, EmbeddedAddr: "127.0.0.1:6399",
			ReplicaAcks: 1, ReplicaTimeout: time.Second},
		HTTP: HTTPConfig{
			Listen: "127.0.0.1:8080", ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, Metrics: true,
		},
		Feeds:   FeedFilter{Include: []string{"*"}, Exclude: []string{"feedbridge.*"}},
		Actions: ActionsConfig{Queue: "feedbridge.actions", CustomQueue: "feedbridge.custom", MaxItemBytes: 256 << 10, ResultTTL: 24 * time.Hour, CreateQueues: true},
		Jobs: JobsConfig{MaintenanceInterval: 5 * time.Second, Timeout: thoonk.DefaultJobTimeout, Retries: thoonk.DefaultJobRetries,
			RetryBackoff: thoonk.DefaultJobBackoff, RetryBackoffMax: thoonk.DefaultJobBackoffMax},
		Journal: JournalConfig{MaxEvents: 10000, MaxAge: 7 * 24 * time.Hour, MaxItemBytes: 8 << 10},
		Fleet:   FleetConfig{LeaseTTL: 3 * time.Second},
		Worker:  WorkerConfig{Enabled: true, Concurrency: 4},
	}
}

// LoadConfig parses and validates a config file's data. adapters names the
// registered adapters' sections, which are kept raw for their factories.
// The error lists every problem found, each with file, line and key; the
// Config is returned along with validation errors (nil only when the file
// does not parse), so that adapter sections can be checked too.
func LoadConfig(file string, data []byte, adapters []string) (*Config, error) {
	root, envErr := ParseYAML(file, data)
	if root == nil {
		return nil, envErr
	}
	cfg := DefaultConfig()
	cfg.root = root
	cfg.adapters = map[string]*Section{}
	for _, name := range adapters {
		cfg.adapters[name] = root.Sub(name)
	}
	errs := []error{envErr} // unset variables hide nothing: the rest is checked too
	if m := mapping(root.Node); m != nil {
		shared := *m
		shared.Content = nil
		allowed := append(structKeys(reflect.TypeFor[Config]()), adapters...)
		slices.Sort(allowed)
		for i := 0; i+1 < len(m.Content); i += 2 {
			key := m.Content[i].Value
			switch {
			case slices.Contains(adapters, key):
			case slices.Contains(allowed, key):
				shared.Content = append(shared.Content, m.Content[i], m.Content[i+1])
			default:
				errs = append(errs, fmt.Errorf("%s:%d: unknown section %q (allowed: %s)", file, m.Content[i].Line, key, strings.Join(allowed, ", ")))
			}
		}
		sec := &Section{File: file, Node: &shared, lines: root.lines}
		if err := sec.Decode(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, cfg.validate()) // a key that failed to decode keeps its (valid) default
	return &cfg, errors.Join(errs...)
}

// Adapter returns an adapter's raw section (Node nil when absent).
func (c *Config) Adapter(name string) *Section {
	if s, ok := c.adapters[name]; ok {
		return s
	}
	return &Section{File: c.root.File, Path: name, lines: c.root.lines}
}

// Root returns the whole file's section, for messages about any key.
func (c *Config) Root() *Section { return c.root }

// PublicBase returns the HTTP base URL clients reach, without a trailing slash.
func (c *Config) PublicBase() string {
	if c.HTTP.PublicURL != "" {
		return strings.TrimRight(c.HTTP.PublicURL, "/")
	}
	if c.HTTP.Listen == "" {
		return ""
	}
	return "http://" + c.HTTP.Listen
}

func (c *Config) validate() error {
	s := c.root
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, s.Errorf(key, format, args...)) }
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be more than 0, for example 10s")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "%q is not a level: use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not a format: use text or json", c.Log.Format)
	}
	if !slices.Contains([]string{"", thoonk.RedisSingle, thoonk.RedisSentinel, thoonk.RedisCluster}, c.Redis.Mode) {
		bad("redis.mode", "%q is not a mode: use single, sentinel or cluster", c.Redis.Mode)
	}
	if c.Redis.Embedded() {
		host, _, err := net.SplitHostPort(c.Redis.EmbeddedAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			bad("redis.embedded_addr", "%q must be a loopback host:port such as 127.0.0.1:6399 (the embedded Redis has no password)", c.Redis.EmbeddedAddr)
		}
		if c.Redis.Mode != "" && c.Redis.Mode != thoonk.RedisSingle {
			bad("redis.mode", "the embedded Redis is a single node: use mode: single, or a redis:// url")
		}
	} else if c.Redis.URL == "" {
		bad("redis.url", "set a redis:// URL, or embedded for the in-process Redis")
	} else if rdb, err := thoonk.NewRedisClient(c.Redis.URL.Reveal(), c.Redis.Mode, 0); err != nil {
		bad("redis.url", "%v (the URL is not repeated here: it may hold a password)", urlProblem(err))
	} else {
		_ = rdb.Close()
	}
	if c.Redis.Mode == thoonk.RedisCluster {
		errs = append(errs, c.clusterNames()...)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q must be host:port, such as 127.0.0.1:8080 (or empty to turn HTTP off)", c.HTTP.Listen)
		}
	}
	if c.HTTP.PublicURL != "" {
		u, err := url.Parse(c.HTTP.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			bad("http.public_url", "%q must be an absolute http(s) URL such as https://feeds.example.org", c.HTTP.PublicURL)
		}
	}
	for key, d := range map[string]time.Duration{"http.read_header_timeout": c.HTTP.ReadHeaderTimeout,
		"http.read_timeout": c.HTTP.ReadTimeout, "http.write_timeout": c.HTTP.WriteTimeout, "http.idle_timeout": c.HTTP.IdleTimeout} {
		if d < 0 {
			bad(key, "must not be negative (0 means no limit)")
		}
	}
	if err := c.Feeds.Compile(s, "feeds"); err != nil {
		errs = append(errs, err)
	}
	if err := thoonk.ValidateFeedName(c.Actions.Queue); err != nil {
		bad("actions.queue", "name the default job feed for actions: %v", err)
	}
	if c.Actions.CustomQueue != "" {
		if err := thoonk.ValidateFeedName(c.Actions.CustomQueue); err != nil {
			bad("actions.custom_queue", "name the job feed for custom verbs, or leave it empty to use actions.queue: %v", err)
		}
	}
	if err := CompileRoutes(c.Actions.Routes, s, "actions.routes"); err != nil {
		errs = append(errs, err)
	}
	if c.Actions.MaxItemBytes <= 0 {
		bad("actions.max_item_bytes", "must be more than 0, for example 262144")
	}
	if c.Actions.ResultTTL < time.Second {
		bad("actions.result_ttl", "must be at least 1s, for example 24h")
	}
	if c.Jobs.MaintenanceInterval < 0 {
		bad("jobs.maintenance_interval", "must not be negative (0 turns maintenance off here)")
	}
	var perrs []error
	c.maintain, perrs = compilePatterns(c.Jobs.Maintain, s, "jobs.maintain")
	errs = append(errs, perrs...)
	if c.Jobs.RetryBackoff < 0 {
		bad("jobs.retry_backoff", "must not be negative (0 retries at once)")
	}
	if c.Jobs.RetryBackoffMax < c.Jobs.RetryBackoff {
		bad("jobs.retry_backoff_max", "must be at least jobs.retry_backoff (%s)", c.Jobs.RetryBackoff)
	}
	if c.Redis.ReplicaAcks < 0 {
		bad("redis.replica_acks", "must be 0 (answer at once) or more replicas")
	}
	if c.Redis.ReplicaTimeout <= 0 {
		bad("redis.replica_timeout", "must be more than 0, for example 1s")
	}
	if c.Fleet.LeaseTTL < time.Second {
		bad("fleet.lease_ttl", "must be at least 1s, for example 3s (a standby takes over within about this long)")
	}
	if c.Journal.MaxEvents < 100 {
		bad("journal.max_events", "must be at least 100, for example 10000 (clients resume from the journal)")
	}
	if c.Journal.MaxAge < time.Minute {
		bad("journal.max_age", "must be at least 1m, for example 168h")
	}
	if c.Journal.MaxItemBytes < 0 {
		bad("journal.max_item_bytes", "must not be negative (0 keeps only content sums)")
	}
	if c.Jobs.Timeout < time.Second {
		bad("jobs.timeout", "must be at least 1s, for example 60s")
	}
	for i, f := range c.CreateFeeds {
		at := fmt.Sprintf("create_feeds[%d]", i)
		if err := thoonk.ValidateFeedName(f.Name); err != nil {
			bad(at+".name", "%v", err)
		}
		if !f.Type.Valid() {
			bad(at+".type", "%q is not a feed type: use feed, sorted_feed, queue or job", f.Type)
		}
		if _, ok := f.Config["type"]; ok {
			bad(at+".config.type", "set the type with %s.type", at)
		}
	}
	for i, v := range c.Actions.Verbs {
		at := fmt.Sprintf("actions.verbs[%d]", i)
		if err := ValidateVerb(v); err != nil {
			bad(at, "%v", err)
		} else if slices.Contains(knownOperations, v) {
			bad(at, "%q is a built-in operation: list only your custom verbs", v)
		}
	}
	if _, err := NewACL(c.ACL, s, "acl", c.CustomVerbs()...); err != nil {
		errs = append(errs, err)
	}
	if c.Worker.Concurrency < 1 || c.Worker.Concurrency > 256 {
		bad("worker.concurrency", "must be between 1 and 256")
	}
	for i, q := range c.Worker.Queues {
		if err := thoonk.ValidateFeedName(q); err != nil {
			bad(fmt.Sprintf("worker.queues[%d]", i), "%v", err)
		}
	}
	for i, r := range c.Worker.Schemas {
		at := fmt.Sprintf("worker.schemas[%d]", i)
		if r.File == "" {
			bad(at+".file", "name the JSON Schema file")
		}
		_, perrs := compilePatterns(r.Feeds, s, at+".feeds")
		errs = append(errs, perrs...)
	}
	return errors.Join(errs...)
}

// clusterNames checks that the feeds the bridge itself uses carry a hash
// tag, as every feed on Redis Cluster must.
func (c *Config) clusterNames() []error {
	var errs []error
	check := func(key, name string) {
		if name != "" && thoonk.HashTag(name) == "" {
			errs = append(errs, c.root.Errorf(key, "%q: on Redis Cluster a feed name needs a hash tag so that its keys share a slot, such as {feedbridge}.actions", name))
		}
	}
	check("actions.queue", c.Actions.Queue)
	check("actions.custom_queue", c.Actions.CustomQueue)
	for i, r := range c.Actions.Routes {
		check(fmt.Sprintf("actions.routes[%d].queue", i), r.Queue)
	}
	for i, q := range c.Worker.Queues {
		check(fmt.Sprintf("worker.queues[%d]", i), q)
	}
	for i, f := range c.CreateFeeds {
		check(fmt.Sprintf("create_feeds[%d].name", i), f.Name)
	}
	return errs
}

// CustomVerbs returns the declared custom verbs: actions.verbs and the
// routes' verbs.
func (c *Config) CustomVerbs() []string {
	verbs := slices.Clone(c.Actions.Verbs)
	for _, r := range c.Actions.Routes {
		verbs = append(verbs, r.Verbs...)
	}
	return verbs
}

// CompiledACL returns the config's ACL (valid once LoadConfig succeeded).
func (c *Config) CompiledACL() *ACL {
	a, err := NewACL(c.ACL, c.root, "acl", c.CustomVerbs()...)
	if err != nil {
		return &ACL{}
	}
	return a
}

// WorkerQueues returns the job feeds the built-in worker serves: the
// default action queue unless worker.queues says otherwise (routes and the
// custom-verb queue are for the application's workers).
func (c *Config) WorkerQueues() []string {
	if len(c.Worker.Queues) > 0 {
		return c.Worker.Queues
	}
	return []string{c.Actions.Queue}
}

// urlProblem describes what is wrong with a URL without repeating it:
// url.Error quotes the whole URL, password included.
func urlProblem(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// MarshalEffective renders the shared config as YAML with secrets masked
// and every default resolved to the value the bridge uses (the public URL,
// the worker's queues), commented where a value is chosen at start.
func (c *Config) MarshalEffective() ([]byte, error) {
	eff := *c
	eff.HTTP.PublicURL = c.PublicBase()
	if eff.Worker.Enabled {
		eff.Worker.Queues = c.WorkerQueues()
	}
	var n yaml.Node
	if err := n.Encode(&eff); err != nil {
		return nil, err
	}
	if eff.Instance == "" {
		setComment(&n, "instance", "empty: a random id at each start")
	}
	if c.HTTP.PublicURL == "" && c.HTTP.Listen != "" {
		setComment(mappingValue(&n, "http"), "public_url", "from http.listen")
	}
	return MarshalYAML(&n)
}

// MarshalYAML renders v as YAML indented by two spaces, as bridge.yaml is.
func MarshalYAML(v any) ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// mappingValue returns the value node of key in mapping n (nil if none).
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n = mapping(n); n == nil {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// setComment puts a line comment on key's value in mapping n.
func setComment(n *yaml.Node, key, comment string) {
	if v := mappingValue(n, key); v != nil {
		v.LineComment = comment
	}
}

package core_test

import (
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func load(t *testing.T, yml string) (*core.Config, error) {
	t.Helper()
	return core.LoadConfig("bridge.yaml", []byte(yml), []string{"rest", "irc"})
}

func TestConfigDefaultsAndOverrides(t *testing.T) {
	cfg, err := load(t, "http:\n  listen: 127.0.0.1:9000\nactions:\n  result_ttl: 2h\n")
	thoonktest.Must(t, err)
	def := core.DefaultConfig()
	if cfg.HTTP.Listen != "127.0.0.1:9000" || cfg.Actions.ResultTTL != 2*time.Hour {
		t.Fatalf("overrides not applied: %+v", cfg.HTTP)
	}
	if cfg.HTTP.ReadTimeout != def.HTTP.ReadTimeout || cfg.Actions.Queue != def.Actions.Queue || !cfg.Redis.Embedded() {
		t.Fatal("defaults lost for keys the file does not set")
	}
	if cfg.PublicBase() != "http://127.0.0.1:9000" {
		t.Fatalf("public base %q", cfg.PublicBase())
	}
	empty, err := load(t, "")
	thoonktest.Must(t, err)
	if empty.Log.Level != "info" {
		t.Fatal("an empty file does not give the defaults")
	}
}

// Every problem is reported at once, each with the file, line and key.
func TestConfigErrorsNameFileLineAndKey(t *testing.T) {
	_, err := load(t, `log:
  level: loud
http:
  listen: 127.0.0.1:9000
  read_timeout: soon
  colour: blue
actions:
  max_item_bytes: -1
  queue: "bad*name"
acl:
  - actors: ["*"]
    feeds: ["[x"]
    allow: [read, fly high]
mystery: 1
`)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`bridge.yaml:6: http.colour: unknown key "colour" (allowed: idle_timeout, listen, metrics, public_url, read_header_timeout, read_timeout, write_timeout)`,
		`bridge.yaml:5: http.read_timeout: "soon" is not a duration such as 0, 500ms, 10s or 1h30m`,
		`bridge.yaml:14: unknown section "mystery" (allowed: acl, actions, create_feeds, feeds, fleet, http, instance, irc, jobs, journal, log, redis, rest, shutdown_timeout, worker)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	// value problems are reported once the file decodes
	_, err = load(t, "create_feeds:\n  - {name: x, type: blog}\nlog:\n  level: loud\nactions:\n  max_item_bytes: -1\n  queue: \"bad\\u202ename\"\nacl:\n  - actors: [\"*\"]\n    feeds: [\"[x\"]\n    allow: [read, fly high]\n")
	msg = err.Error()
	for _, want := range []string{
		`bridge.yaml:2: create_feeds[0].type: "blog" is not a feed type: use feed, sorted_feed, queue or job`,
		`bridge.yaml:4: log.level: "loud" is not a level: use debug, info, warn or error`,
		`bridge.yaml:6: actions.max_item_bytes: must be more than 0`,
		`bridge.yaml:7: actions.queue: name the default job feed for actions`,
		`bridge.yaml:10: acl[0].feeds[0]: pattern "[x" has an unclosed '['`,
		`bridge.yaml:11: acl[0].allow[1]: "fly high" is not an operation`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestConfigEnvExpansion(t *testing.T) {
	t.Setenv("FB_TEST_METRICS", "false")
	t.Setenv("FB_TEST_WORKERS", "7")
	t.Setenv("FB_TEST_QUEUE", "q$$x")
	cfg, err := load(t, "http:\n  metrics: ${FB_TEST_METRICS}\nworker:\n  concurrency: ${FB_TEST_WORKERS}\nactions:\n  queue: ${FB_TEST_QUEUE}\n  custom_queue: \"lit$${NOT_EXPANDED}\"\n")
	thoonktest.Must(t, err)
	if cfg.HTTP.Metrics || cfg.Worker.Concurrency != 7 {
		t.Fatalf("typed values from the environment: metrics=%v concurrency=%d", cfg.HTTP.Metrics, cfg.Worker.Concurrency)
	}
	if cfg.Actions.Queue != "q$$x" || cfg.Actions.CustomQueue != "lit${NOT_EXPANDED}" {
		t.Fatalf("$$ handling: queue %q (environment values stay as they are), custom %q (a literal ${...})", cfg.Actions.Queue, cfg.Actions.CustomQueue)
	}
	t.Setenv("FB_TEST_LISTEN", "127.0.0.1:7777")
	cfg, err = load(t, "http:\n  listen: ${FB_TEST_LISTEN}\n  public_url: ${FB_UNSET_URL:-https://feeds.example.org}\n")
	thoonktest.Must(t, err)
	if cfg.HTTP.Listen != "127.0.0.1:7777" || cfg.HTTP.PublicURL != "https://feeds.example.org" {
		t.Fatalf("expansion: %+v", cfg.HTTP)
	}
	_, err = load(t, "\nredis:\n  url: redis://:${FB_UNSET_PASSWORD}@db:6379\n")
	if err == nil || !strings.Contains(err.Error(), "bridge.yaml:3: ${FB_UNSET_PASSWORD} is not set in the environment") {
		t.Fatalf("unset variable: %v", err)
	}
}

func TestConfigSecretsAreMasked(t *testing.T) {
	cfg, err := load(t, "redis:\n  url: redis://user:hunter2@db.example.org:6379/0\n")
	thoonktest.Must(t, err)
	out, err := cfg.MarshalEffective()
	thoonktest.Must(t, err)
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "redis://user:xxxxx@db.example.org:6379/0") {
		t.Fatalf("effective config:\n%s", out)
	}
	// a failover URL carries the master's password in the query
	sentinel := core.SecretURL("redis://:spw@s1:26379?master_name=m&password=hunter2&addr=s2:26379")
	if s := sentinel.String(); strings.Contains(s, "hunter2") || strings.Contains(s, "spw") {
		t.Fatalf("sentinel URL printed as %q", s)
	}
	// a URL that does not parse is neither printed nor quoted in the error
	_, err = load(t, "redis:\n  url: \"redis://:s3cr%t@host:6379\"\n")
	if err == nil || strings.Contains(err.Error(), "s3cr") || !strings.Contains(err.Error(), "bridge.yaml:2: redis.url: ") {
		t.Fatalf("bad URL: %v", err)
	}
	if s := core.SecretURL("redis://:s3cr%t@host:6379").String(); s != "***" {
		t.Fatalf("unparsable URL printed as %q", s)
	}
	if s := core.Secret("hunter2"); s.String() != "***" || s.Reveal() != "hunter2" {
		t.Fatal("Secret does not mask")
	}
}

func TestSectionDecodeStrict(t *testing.T) {
	type inner struct {
		Name string `yaml:"name"`
	}
	type section struct {
		Enabled bool             `yaml:"enabled"`
		Every   time.Duration    `yaml:"every"`
		Items   []inner          `yaml:"items"`
		Token   core.Secret      `yaml:"token"`
		Feeds   *core.FeedFilter `yaml:"feeds"`
	}
	root, err := core.ParseYAML("f.yaml", []byte("irc:\n  enabled: yes\n  every: 0\n  token: abc\n  items:\n    - name: a\n    - nmae: b\n"))
	thoonktest.Must(t, err)
	s := section{Every: time.Hour} // a default the file's bare 0 must replace
	err = root.Sub("irc").Decode(&s)
	if err == nil || !strings.Contains(err.Error(), `f.yaml:7: irc.items[1].nmae: unknown key "nmae" (allowed: name)`) {
		t.Fatalf("got %v", err)
	}
	if !s.Enabled || s.Every != 0 || s.Token.Reveal() != "abc" || s.Items[0].Name != "a" {
		t.Fatalf("decoded %+v", s)
	}
	root, _ = core.ParseYAML("f.yaml", []byte("irc:\n  enabled: maybe\n"))
	if err := root.Sub("irc").Decode(&s); err == nil || !strings.Contains(err.Error(), `f.yaml:2: irc.enabled: "maybe" is not true or false`) {
		t.Fatalf("got %v", err)
	}
	if got := root.Sub("irc").Errorf("enabled", "nope"); got.Error() != "f.yaml:2: irc.enabled: nope" {
		t.Fatalf("Errorf = %q", got)
	}
	if root.Sub("absent").Present() {
		t.Fatal("absent section present")
	}
	if _, err := core.ParseYAML("f.yaml", []byte("- a\n- b\n")); err == nil {
		t.Fatal("a list as the whole config was accepted")
	}
	if _, err := core.ParseYAML("f.yaml", []byte("a: [\n")); err == nil || !strings.Contains(err.Error(), "f.yaml") {
		t.Fatalf("broken YAML: %v", err)
	}
}

func TestConfigClusterNamesNeedHashTags(t *testing.T) {
	_, err := load(t, "redis:\n  url: redis://n1:6379\n  mode: cluster\ncreate_feeds:\n  - {name: news, type: feed}\n")
	if err == nil {
		t.Fatal("cluster config without hash tags accepted")
	}
	for _, want := range []string{
		`actions.queue: "feedbridge.actions": on Redis Cluster a feed name needs a hash tag`,
		`create_feeds[0].name: "news": on Redis Cluster`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = load(t, "redis:\n  url: redis://n1:6379\n  mode: cluster\nactions:\n  queue: \"{fb}.actions\"\n  custom_queue: \"{fb}.custom\"\n")
	thoonktest.Must(t, err)
	_, err = load(t, "redis:\n  mode: bogus\n")
	if err == nil || !strings.Contains(err.Error(), `bridge.yaml:2: redis.mode: "bogus" is not a mode`) {
		t.Fatalf("bad mode with the embedded Redis: %v", err)
	}
}

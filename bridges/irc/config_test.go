package irc

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/feedbridge/feedbridge/core"
)

func TestConfigDefaults(t *testing.T) {
	a, err := New(parseSection(t, "  enabled: true\n  server: irc.example.org:6697\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := a.(*Bridge)
	if b.c.tls == nil || b.c.tls.ServerName != "irc.example.org" {
		t.Error("TLS is not on by default for a remote server")
	}
	if b.cfg.Rate.Interval.Seconds() != 1 || b.cfg.Rate.Burst != 4 {
		t.Errorf("default rate %+v, want about 1 line/s with a small burst", b.cfg.Rate)
	}
	a, err = New(parseSection(t, "  enabled: true\n  server: 127.0.0.1:6667\n"))
	if err != nil || a.(*Bridge).c.tls != nil {
		t.Errorf("loopback server: TLS %v, err %v; want plain TCP", a.(*Bridge).c.tls != nil, err)
	}
	if a, err := New(parseSection(t, "  enabled: false\n")); a != nil || err != nil {
		t.Errorf("disabled: %v, %v", a, err)
	}
	if a, err := New(&core.Section{File: "bridge.yaml", Path: "irc"}); a != nil || err != nil {
		t.Errorf("absent: %v, %v", a, err)
	}
}

// TestConfigErrors: every problem is reported at once, each naming its
// key and the fix; a disabled section is still checked.
func TestConfigErrors(t *testing.T) {
	_, err := New(parseSection(t, `  enabled: false
  server: "no-port"
  tls: maybe
  nick: "9lives"
  sasl: {username: bot}
  rate: {interval: 1s, burst: 0}
  formatting: bold
  catch_up: -1
  links: {item: "javascript:x"}
  announce:
    templates: {publish: "{{.Nope}}"}
  channels:
    - name: "news"
      feeds: ["[oops"]
      verbs: {publish: news, Ship: x}
      events: [created]
      message: shout
    - name: "#a b"
  auto_channels: {enabled: true, prefix: "feed-"}
  commands: {reply: everywhere, prefix: "", ignore: ["[x"]}
`))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"irc.server", "host:port",
		"irc.tls", "auto",
		"irc.nick", "not allowed",
		"irc.sasl", "both username and password",
		"irc.rate", "burst must be 1 to 100",
		"irc.formatting", "strip or keep",
		"irc.catch_up",
		"irc.links.item",
		"irc.announce.templates.publish", "can't evaluate field Nope",
		"irc.channels[0].name", "must start with",
		"irc.channels[0].feeds[0]", "unclosed",
		"irc.channels[0].verbs.publish", "built-in command",
		"irc.channels[0].verbs.Ship",
		"irc.channels[0].events[0]", `"created" is not an event`,
		"irc.channels[0].message", "privmsg or notice",
		"irc.channels[1].name", "space",
		"irc.auto_channels.prefix",
		"irc.commands.reply", "irc.commands.prefix", "irc.commands.ignore[0]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := New(parseSection(t, "  enabled: true\n  srever: x\n")); err == nil || !strings.Contains(err.Error(), `unknown key "srever"`) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := New(parseSection(t, "  enabled: true\n")); err == nil || !strings.Contains(err.Error(), "irc.server") {
		t.Errorf("enabled without a server: %v", err)
	}
}

// TestSecretsMasked: passwords never show in the effective config, as
// values nor in the YAML that `bridge check` prints.
func TestSecretsMasked(t *testing.T) {
	a, err := New(parseSection(t, `  enabled: true
  server: irc.example.org:6697
  password: serverpw
  sasl: {username: bot, password: saslpw}
  nickserv: {password: nspw}
  channels: [{name: "#k", key: chankey, feeds: [x]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var out string
	cfg := a.(*Bridge).EffectiveConfig().(Config)
	for _, s := range []any{cfg.Password, cfg.SASL.Password, cfg.NickServ.Password, cfg.Channels[0].Key} {
		out += " " + s.(interface{ String() string }).String()
	}
	printed, err := yaml.Marshal(map[string]any{"irc": a.(*Bridge).EffectiveConfig()}) // as bridge check prints it
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"serverpw", "saslpw", "nspw", "chankey"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q shown: %s", secret, out)
		}
		if strings.Contains(string(printed), secret) {
			t.Errorf("secret %q printed by bridge check:\n%s", secret, printed)
		}
	}
	if n := strings.Count(string(printed), "***"); n != 4 {
		t.Errorf("%d masked values printed, want 4 (password, sasl, nickserv, key):\n%s", n, printed)
	}
}

func TestChannelInheritsAnnounce(t *testing.T) {
	a, err := New(parseSection(t, `  enabled: true
  server: 127.0.0.1:6667
  announce:
    events: [publish]
    message: notice
    backlog: 3
  channels:
    - {name: "#a", feeds: [x]}
    - name: "#b"
      feeds: [y]
      events: [retract]
      backlog: 0
      templates: {retract: "gone: {{.ID}}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	chs := a.(*Bridge).c.channels
	if !chs[0].spec.events[kindPublish] || chs[0].spec.events[kindEdit] || chs[0].spec.command != "NOTICE" || chs[0].spec.backlog != 3 {
		t.Errorf("#a = %+v, want the section's announce", chs[0].spec)
	}
	if chs[1].spec.events[kindPublish] || !chs[1].spec.events[kindRetract] || chs[1].spec.backlog != 0 || chs[1].spec.command != "NOTICE" {
		t.Errorf("#b = %+v, want its own events and backlog", chs[1].spec)
	}
	out, _ := render(chs[1].spec.templates[kindRetract], itemView{ID: "7"})
	if out != "gone: 7" {
		t.Errorf("#b retract template = %q", out)
	}
	if out, _ := render(chs[1].spec.templates[kindPublish], sampleView); !strings.HasPrefix(out, "[news] t") {
		t.Errorf("#b publish template (inherited) = %q", out)
	}
}

// TestQueueLinesFitAnItem: a lane smaller than one item's lines would
// only ever show summaries; the config says so.
func TestQueueLinesFitAnItem(t *testing.T) {
	_, err := New(parseSection(t, "  enabled: true\n  server: 127.0.0.1:6667\n  queue_lines: 2\n  max_lines: 4\n"))
	if err == nil || !strings.Contains(err.Error(), "irc.queue_lines") || !strings.Contains(err.Error(), "max_lines") {
		t.Errorf("queue_lines below max_lines: %v; want an error naming both", err)
	}
}

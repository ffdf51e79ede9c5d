package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func section(t *testing.T, yml string) *core.Section {
	t.Helper()
	root, err := core.ParseYAML("bridge.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return root.Sub("console")
}

func TestConfigIsStrictAndNamesEveryProblem(t *testing.T) {
	_, err := New(section(t, "console:\n  enabled: true\n  itmes: 3\n  page_size: 0\n  tokens:\n    - {name: ops, token: short}\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`bridge.yaml:3: console.itmes: unknown key "itmes"`,
		"bridge.yaml:4: console.page_size: must be between 1 and 1000",
		"console.tokens[0].token: is 5 characters",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	a, err := New(section(t, "console:\n  enabled: false\n"))
	if a != nil || err != nil {
		t.Fatalf("disabled: %v %v", a, err)
	}
}

// newConsole mounts the console on a miniredis-backed hub.
func newConsole(t *testing.T, acl *core.ACL) (*httptest.Server, *thoonk.Store) {
	t.Helper()
	b := thoonktest.Mini(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	feeds := &core.FeedFilter{Include: []string{"*"}, Exclude: []string{"feedbridge.*"}}
	if err := feeds.Compile(&core.Section{File: "t"}, "feeds"); err != nil {
		t.Fatal(err)
	}
	hub := &core.Hub{Store: b.Store, ACL: acl, Feeds: feeds, Log: log}
	a, err := New(section(t, "console:\n  enabled: true\n  tokens:\n    - {name: ops, token: ops-token-0123456789}\n    - {name: viewer, token: viewer-token-0123456789}\n"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := a.(core.HTTPMounter).MountHTTP(hub, mux); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, b.Store
}

// Only a token whose actor the ACL grants admin may retry; the pages
// escape feed content and say live updates need the REST adapter.
func TestConsolePagesAndAdmin(t *testing.T) {
	acl := core.MustACL(
		core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}},
		core.ACLRule{Actors: []string{"console:ops"}, Feeds: []string{"feedbridge.*"}, Allow: []string{"admin"}},
	)
	srv, store := newConsole(t, acl)
	ctx := context.Background()
	for _, f := range []struct {
		name string
		typ  thoonk.FeedType
	}{{"news", thoonk.TypeFeed}, {"a/b", thoonk.TypeSorted}, {"feedbridge.q", thoonk.TypeJob}} {
		if err := store.Create(ctx, f.name, f.typ, map[string]string{"title": "T <x>"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Feed("news").Publish(ctx, []byte(`{"title":"<script>alert(1)</script>"}`), "x"); err != nil {
		t.Fatal(err)
	}
	jobs := store.Jobs("feedbridge.q")
	id, _ := jobs.Put(ctx, []byte("job"), thoonk.PutOptions{})
	if _, err := jobs.Get(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Stall(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, body := get("/")
	if code != 200 || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") ||
		!strings.Contains(body, `href="/console/feeds/a%2Fb"`) || !strings.Contains(body, "Live updates need the REST adapter") {
		t.Fatalf("dashboard %d:\n%s", code, body)
	}
	if code, _ := get("/console/feeds/a%2Fb"); code != 200 {
		t.Fatalf("feed page of a/b: %d", code)
	}
	for _, p := range []string{"/console/feeds/nope", "/console/feeds/feedbridge.q", "/console/jobs/news", "/elsewhere"} {
		if code, _ := get(p); code != 404 {
			t.Errorf("%s: %d", p, code)
		}
	}
	if code, body := get("/console/jobs/feedbridge.q"); code != 200 || !strings.Contains(body, id) {
		t.Fatalf("jobs page %d", code)
	}
	post := func(token string) int {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := c.PostForm(srv.URL+"/console/jobs/feedbridge.q/"+id+"/retry", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("viewer-token-0123456789"); code != 403 {
		t.Fatalf("retry without admin: %d", code)
	}
	if code := post(""); code != 401 {
		t.Fatalf("retry without a token: %d", code)
	}
	if st, _ := jobs.State(ctx, id); st.State != thoonk.JobStalled {
		t.Fatalf("a refused retry changed the job: %s", st.State)
	}
	if code := post("ops-token-0123456789"); code != 303 {
		t.Fatalf("retry: %d", code)
	}
	if st, _ := jobs.State(ctx, id); st.State != thoonk.JobQueued {
		t.Fatalf("retried job is %s", st.State)
	}
	res, _ := http.Get(srv.URL + "/console/static/console.js")
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("script: %d %v", res.StatusCode, res.Header)
	}
	res.Body.Close()
}

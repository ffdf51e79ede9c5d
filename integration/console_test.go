package integration

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// screenshot saves a page's picture: in docs/ when
// FEEDBRIDGE_UPDATE_SCREENSHOTS=1 (the committed ones), else in a temp
// dir; either way it must be a PNG.
func screenshot(t *testing.T, p *testenv.Page, name string) {
	t.Helper()
	dir := t.TempDir()
	if os.Getenv("FEEDBRIDGE_UPDATE_SCREENSHOTS") == "1" {
		dir = "../docs"
	}
	path := filepath.Join(dir, name)
	p.Screenshot(path)
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %d bytes, %v", path, len(b), err)
	}
}

// TestConsoleInABrowser: the console at / in a real Chromium on the quick
// start: the server-rendered lists, then live updates through the REST
// adapter's events (publish, edit, retract; a sorted feed's inserts and
// moves in their places), queue counts refreshed, and
// the keyboard's first stop is the skip link.
func TestConsoleInABrowser(t *testing.T) {
	q := startQuickStart(t)
	q.publish("news", `{"title":"First story"}`, "first")
	q.publish("news", `{"title":"Second <b>story</b>"}`, "second")
	browser := testenv.StartChromium(t)
	page := browser.Open(q.Base + "/")
	// server-rendered (readable without scripts): the items are there
	dom := page.DOM()
	for _, want := range []string{"First story", "Second &lt;b&gt;story&lt;/b&gt;", `href="/console/feeds/news"`, "feedbridge.actions", `href="/v1/docs"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dashboard lacks %s", want)
		}
	}
	page.WaitFor(`document.body.getAttribute("data-live-state") === "open"`, 20*time.Second)
	q.publish("news", `{"title":"Live <i>one</i>"}`, "live")
	page.WaitFor(`[...document.querySelectorAll('ul[data-feed="news"] li[data-live="1"]')].some(li => li.textContent.includes("Live <i>one</i>"))`, 20*time.Second)
	if page.String(`document.querySelector('ul[data-feed="news"] li').getAttribute("data-id")`) != "live" {
		t.Error("the new item is not first in the newest-first list")
	}
	if strings.Contains(page.DOM(), "<i>one</i>") {
		t.Error("feed content became markup")
	}
	q.publish("news", `{"title":"First story, edited"}`, "first")
	page.WaitFor(`document.querySelector('ul[data-feed="news"] li[data-id="first"]').textContent.includes("edited")`, 20*time.Second)
	if err := q.Store.Feed("news").Retract(context.Background(), "second"); err != nil {
		t.Fatal(err)
	}
	page.WaitFor(`!document.querySelector('ul[data-feed="news"] li[data-id="second"]')`, 20*time.Second)
	// a job waiting in the custom queue shows up in the counts (refreshed every 5 s)
	if _, err := q.Store.Jobs("feedbridge.custom").Put(context.Background(), []byte(`{}`), thoonk.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	page.WaitFor(`document.querySelector('tr[data-queue="feedbridge.custom"] td[data-state="available"]').textContent === "1"`, 20*time.Second)
	screenshot(t, page, "console.png")
	// keyboard: the first Tab reaches the skip link, Enter follows it
	page.Key("Tab")
	if got := page.String(`document.activeElement.textContent`); got != "Skip to the content" {
		t.Errorf("first Tab stop is %q", got)
	}
	page.Key("Enter")
	page.WaitFor(`document.activeElement.id === "main"`, 5*time.Second)

	// the feed page pages with cursors
	for i := range 25 {
		q.publish("news", `{"title":"bulk `+string(rune('a'+i))+`"}`, "")
	}
	feed := browser.Open(q.Base + "/console/feeds/news")
	feed.WaitFor(`document.querySelectorAll("ul.items li").length === 20`, 10*time.Second)
	next := feed.String(`document.querySelector('a[rel="next"]').getAttribute("href")`)
	second := browser.Open(q.Base + next)
	second.WaitFor(`document.querySelector('a[rel="prev"]') && document.querySelectorAll("ul.items li").length === 7`, 10*time.Second)

	// a sorted feed: live inserts and moves land where their positions say
	ctx := context.Background()
	if err := q.Store.Create(ctx, "todo", thoonk.TypeSorted, nil); err != nil {
		t.Fatal(err)
	}
	todo := q.Store.Sorted("todo")
	a, err := todo.Append(ctx, []byte(`{"title":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := todo.Append(ctx, []byte(`{"title":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	list := browser.Open(q.Base + "/console/feeds/todo")
	list.WaitFor(`document.body.getAttribute("data-live-state") === "open"`, 20*time.Second)
	order := `[...document.querySelectorAll("ul.items li")].map(li => li.getAttribute("data-id")).join(",")`
	c, err := todo.PublishAfter(ctx, a, []byte(`{"title":"c"}`))
	if err != nil {
		t.Fatal(err)
	}
	list.WaitFor(order+` === "`+a+","+c+","+b+`"`, 20*time.Second)
	if err := todo.Move(ctx, a, thoonk.Position{Kind: thoonk.PosBefore, Rel: b}); err != nil {
		t.Fatal(err)
	}
	list.WaitFor(order+` === "`+c+","+a+","+b+`"`, 20*time.Second)
}

// TestConsoleStalledJobs: an operator sees a stalled job with its last
// error, and retries it from the keyboard with the token; without a valid
// token nothing changes.
func TestConsoleStalledJobs(t *testing.T) {
	q := startQuickStart(t)
	ctx := context.Background()
	jobs := q.Store.Jobs("feedbridge.custom")
	stall := func(item string) string {
		id, err := jobs.Put(ctx, []byte(item), thoonk.PutOptions{RecordTTL: time.Hour, Submitter: "rest:local"})
		if err != nil {
			t.Fatal(err)
		}
		j, err := jobs.Get(ctx, time.Second)
		if err != nil || j.ID != id {
			t.Fatalf("claim: %v", err)
		}
		if err := jobs.Stall(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := stall(`{"v":1,"verb":"ship","feed":"news","args":["42"],"actor":{"protocol":"rest","id":"local"}}`)
	second := stall("plain text job")
	if err := q.Store.Client().HSet(ctx, "feedbridge.job:feedbridge.custom:"+first, "last_error", "deploy target 42 unreachable").Err(); err != nil {
		t.Fatal(err)
	}
	browser := testenv.StartChromium(t)
	page := browser.Open(q.Base + "/console/jobs/feedbridge.custom")
	dom := page.DOM()
	for _, want := range []string{"deploy target 42 unreachable", "ship on news by rest:local", first, second, "not recorded"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the job page lacks %q", want)
		}
	}
	screenshot(t, page, "console-jobs.png")
	// keyboard only: focus the token field, type, Tab to this job's Retry, Enter
	page.Eval(`document.getElementById("token").focus()`)
	page.Type(quickStartToken)
	for range 10 {
		page.Key("Tab")
		if page.String(`document.activeElement.getAttribute("aria-label") || ""`) == "Retry job "+first {
			break
		}
	}
	if got := page.String(`document.activeElement.getAttribute("aria-label") || ""`); got != "Retry job "+first {
		t.Fatalf("Tab never reached the Retry button (at %q)", got)
	}
	page.Key("Enter")
	page.WaitFor(`document.querySelector(".flash") && document.querySelector(".flash").textContent.includes("available to workers again")`, 20*time.Second)
	if st, _ := jobs.State(ctx, first); st.State != thoonk.JobQueued {
		t.Fatalf("retried job is %s", st.State)
	}

	// without a browser: a wrong token changes nothing (401), the right
	// one drops the other job (303 back to the page)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(token string) int {
		res, err := noRedirect.PostForm(q.Base+"/console/jobs/feedbridge.custom/"+second+"/drop", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("not-the-token-0123456789"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if st, _ := jobs.State(ctx, second); st.State != thoonk.JobStalled {
		t.Fatalf("a refused drop changed the job: %s", st.State)
	}
	if code := post(quickStartToken); code != 303 {
		t.Fatalf("drop: %d", code)
	}
	if _, err := jobs.Item(ctx, second); err == nil {
		t.Fatal("the dropped job is still there")
	}
	if code := post(quickStartToken); code != 409 {
		t.Fatalf("dropping it again: %d", code)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/atom/atomtest"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// appBridge is the bridge with REST and Atom over a real Redis, with a
// custom verb routed to a queue that the test's own worker serves.
func appBridge(t *testing.T) (base string, rdb *redis.Client, store *thoonk.Store) {
	t.Helper()
	r := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	testenv.StartBridge(t, fmt.Sprintf(`
redis: {url: %s}
http: {listen: %s}
actions: {queue: feedbridge.actions, custom_queue: app.jobs}
acl:
  - {actors: ["rest:load"], feeds: ["*"], allow: ["*"]}
  - {actors: ["*"], feeds: ["*"], allow: [read]}
rest:
  enabled: true
  tokens: [{name: load, token: %q}]
  rate_limit: {per_token: {rate: 0}, per_ip: {rate: 0}}
atom: {enabled: true}
create_feeds:
  - {name: news, type: feed}
`, r.URL, addr, loadToken), addr)
	rdb = redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr, rdb, store
}

// post sends a REST request with the load token and returns the status
// and the JSON body.
func post(t *testing.T, url, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+loadToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	return res.StatusCode, doc
}

// TestWorkerResultsReachClients: whatever an application's worker finishes
// a job with reaches the REST client as written: extra fields kept, a
// plain string as a success message, a finish without a result as a
// finished job (not a wait that runs out), and unreadable results as a
// 502 that says why.
func TestWorkerResultsReachClients(t *testing.T) {
	base, rdb, store := appBridge(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := map[string][]byte{
		"extra":     []byte(`{"ok":true,"code":200,"shipped":"42"}`),
		"plain":     []byte("done"),
		"binary":    {0xff, 0xfe, 0x00},
		"huge":      []byte(`"` + strings.Repeat("x", 100<<10) + `"`),
		"wrongtype": []byte(`{"ok":"yes","code":200}`),
		"refused":   []byte(`{"ok":false,"code":409,"message":"the release train left"}`),
	}
	// the application's worker, as any Thoonk worker: claim, then finish
	go func() {
		jobs := store.Jobs("app.jobs")
		for ctx.Err() == nil {
			job, err := jobs.Get(ctx, time.Second)
			if err != nil {
				continue
			}
			var j struct{ Args []string }
			_ = json.Unmarshal(job.Item, &j)
			if j.Args[0] == "none" { // thoonk.py's finish(id): nothing published
				_ = thoonktest.PyFinish(ctx, rdb, "app.jobs", job.ID)
				continue
			}
			_ = jobs.FinishWithResult(ctx, job.ID, results[j.Args[0]])
		}
	}()
	ship := func(arg string) (int, map[string]any, time.Duration) {
		start := time.Now()
		code, doc := post(t, base+"/v1/feeds/news/actions/ship", `{"args":["`+arg+`"]}`, "Prefer", "wait=10")
		return code, doc, time.Since(start)
	}
	code, doc, _ := ship("extra")
	if res, _ := doc["result"].(map[string]any); code != 200 || res["shipped"] != "42" {
		t.Errorf("extra fields: %d %v", code, doc)
	}
	code, doc, _ = ship("plain")
	if res, _ := doc["result"].(map[string]any); code != 200 || res["message"] != "done" || res["ok"] != true {
		t.Errorf("plain string: %d %v", code, doc)
	}
	code, doc, took := ship("none")
	if code != 200 || doc["state"] != "finished" || took > 5*time.Second {
		t.Errorf("finished without a result: %d %v after %v", code, doc, took)
	}
	for _, arg := range []string{"binary", "huge", "wrongtype"} {
		code, doc, _ = ship(arg)
		if detail, _ := doc["detail"].(string); code != 502 || !strings.Contains(detail, "worker's result") {
			t.Errorf("%s: %d %v", arg, code, doc)
		}
	}
	code, doc, _ = ship("refused")
	if detail, _ := doc["detail"].(string); code != 409 || !strings.Contains(detail, "release train") {
		t.Errorf("a worker's refusal: %d %v", code, doc)
	}
}

// TestMixedWritersShowNewestFirst: on a feed that thoonk.py writes (scores
// in seconds) and the bridge writes too, REST pages and the Atom feed
// show items newest first by real time, and max_length trims the oldest.
func TestMixedWritersShowNewestFirst(t *testing.T) {
	base, rdb, store := appBridge(t)
	ctx := context.Background()
	if err := store.SetConfig(ctx, "news", map[string]string{"max_length": "4"}); err != nil {
		t.Fatal(err)
	}
	var want []string // newest first
	for i := range 6 {
		if i%2 == 0 {
			id, err := thoonktest.PyPublish(ctx, rdb, "news", fmt.Sprintf("py%d", i), []byte(fmt.Sprintf("python %d", i)))
			if err != nil {
				t.Fatal(err)
			}
			want = append([]string{id}, want...)
		} else {
			code, doc := post(t, base+"/v1/feeds/news/items?id="+fmt.Sprintf("br%d", i), fmt.Sprintf("bridge %d", i),
				"Prefer", "wait=10", "Content-Type", "text/plain")
			if code != 201 {
				t.Fatalf("publish through the bridge: %d %v", code, doc)
			}
			want = append([]string{fmt.Sprintf("br%d", i)}, want...)
		}
		time.Sleep(5 * time.Millisecond)
	}
	want = want[:4]
	res, err := http.Get(base + "/v1/feeds/news/items")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items []struct{ ID string }
	}
	_ = json.NewDecoder(res.Body).Decode(&page)
	res.Body.Close()
	var got []string
	for _, it := range page.Items {
		got = append(got, it.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("REST items %v, want %v", got, want)
	}
	res, err = http.Get(base + "/atom/news")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	f := atomtest.Parse(t, body)
	got = got[:0]
	for _, it := range f.Items {
		got = append(got, it.Title)
	}
	wantTitles := make([]string, len(want))
	for i, id := range want {
		wantTitles[i] = strings.Replace(strings.Replace(id, "py", "python ", 1), "br", "bridge ", 1)
	}
	if strings.Join(got, "|") != strings.Join(wantTitles, "|") {
		t.Errorf("Atom entries %q, want %q", got, wantTitles)
	}
}

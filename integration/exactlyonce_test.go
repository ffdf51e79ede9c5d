package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

const loadToken = "exactly-once-token-0123456789"

// actionLoad submits numbered actions to a bridge's REST API, each with
// its own Idempotency-Key, retrying every one until the bridge accepts it
// (a crashed or failing-over bridge answers nothing, or 503): what a
// careful client does. It records when each was first accepted.
type actionLoad struct {
	t     *testing.T
	base  string
	feeds []string // action i goes to feeds[i % len(feeds)]

	accepted atomic.Int64
	failures atomic.Int64 // answers other than 2xx, or none
	mu       sync.Mutex
	// lastFail and firstOK record, per feed, the last failed attempt and
	// the first acceptance after it (see resumeGap).
	lastFail map[string]time.Time
	okAfter  map[string]time.Time
}

// run submits n actions with conc clients at most rate per second (0: as
// fast as they are answered) and returns when all are accepted or ctx ends.
func (l *actionLoad) run(ctx context.Context, n, conc int, rate float64) {
	l.lastFail, l.okAfter = map[string]time.Time{}, map[string]time.Time{}
	next := make(chan int)
	go func() {
		defer close(next)
		var tick <-chan time.Time
		if rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			tick = t.C
		}
		for i := range n {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range conc {
		wg.Go(func() {
			for i := range next {
				l.submit(ctx, client, i)
			}
		})
	}
	wg.Wait()
}

func (l *actionLoad) submit(ctx context.Context, client *http.Client, i int) {
	feed := l.feeds[i%len(l.feeds)]
	for attempt := 0; ctx.Err() == nil; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, "POST", l.base+"/v1/feeds/"+feed+"/items",
			strings.NewReader(fmt.Sprintf("action-%d", i)))
		req.Header.Set("Authorization", "Bearer "+loadToken)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("key-%d", i))
		res, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode/100 == 2 {
				l.accepted.Add(1)
				l.mu.Lock()
				if f, ok := l.lastFail[feed]; ok && l.okAfter[feed].Before(f) {
					l.okAfter[feed] = time.Now()
				}
				l.mu.Unlock()
				return
			}
			if res.StatusCode/100 == 4 {
				l.t.Errorf("action %d refused: %d", i, res.StatusCode)
				return
			}
		}
		l.failures.Add(1)
		l.mu.Lock()
		l.lastFail[feed] = time.Now()
		l.mu.Unlock()
		time.Sleep(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
	}
}

// drained waits until an action queue holds no job in any state but
// stalled, and fails the test if any job stalled.
func drained(t *testing.T, rdb redis.UniversalClient, queue string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		items := rdb.HLen(ctx, "feed.items:"+queue).Val()
		stalled := rdb.SCard(ctx, "feed.stalled:"+queue).Val()
		if stalled > 0 {
			t.Fatalf("%d jobs stalled in %s", stalled, queue)
		}
		if items == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still in %s after %v", items, queue, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countApplied returns how many actions' items each feed holds, by their
// payload, and fails the test for any action missing or applied twice.
func countApplied(t *testing.T, rdb redis.UniversalClient, n int, feeds []string) (lost, dup int) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]int{}
	for _, f := range feeds {
		vals, err := rdb.HVals(ctx, "feed.items:"+f).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			seen[v]++
		}
	}
	for i := range n {
		switch c := seen[fmt.Sprintf("action-%d", i)]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	return lost, dup
}

// crashConfig is a bridge whose worker holds many jobs at once and whose
// jobs run again soon after a crash.
func crashConfig(redisURL, mode, addr, queue string) string {
	return fmt.Sprintf(`
log: {level: info}
redis: {url: %q, mode: %s}
http: {listen: %s}
shutdown_timeout: 5s
feeds: {include: ["*"]}
actions: {queue: %q, custom_queue: %q, max_item_bytes: 1024}
jobs: {timeout: 2s, retries: 10, retry_backoff: 50ms, retry_backoff_max: 500ms, maintenance_interval: 300ms}
worker: {enabled: true, concurrency: 8}
acl:
  - {actors: ["rest:load"], feeds: ["*"], allow: ["*"]}
rest:
  enabled: true
  anonymous: false
  tokens: [{name: load, token: %q}]
  rate_limit: {per_token: {rate: 0}, per_ip: {rate: 0}}
atom: {enabled: false}
`, redisURL, mode, addr, queue, strings.Replace(queue, "actions", "custom", 1), loadToken)
}

// crashWhileClaimed kills the bridge with SIGKILL three times, each time
// while its worker holds claimed jobs, restarts it, and reports how many
// jobs each crash left claimed.
func crashWhileClaimed(t *testing.T, b *testenv.Bridge, rdb redis.UniversalClient, queue string, done <-chan struct{}) []int64 {
	t.Helper()
	ctx := context.Background()
	var left []int64
	for len(left) < 3 {
		deadline := time.Now().Add(30 * time.Second)
		for rdb.ZCard(ctx, "feed.claimed:"+queue).Val() == 0 {
			select {
			case <-done:
				t.Fatalf("the load ended after %d crashes", len(left))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("the worker never held a claimed job")
			}
			time.Sleep(time.Millisecond)
		}
		b.Kill()
		left = append(left, rdb.ZCard(ctx, "feed.claimed:"+queue).Val())
		time.Sleep(200 * time.Millisecond)
		b.Start()
	}
	return left
}

// TestCrashAppliesEachActionOnce: kill -9 the bridge three times while its
// worker holds claimed jobs, on one redis-server: every accepted action is
// applied once (none lost, none twice), publishes without an id on plain
// feeds and inserts on sorted feeds alike.
func TestCrashAppliesEachActionOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	queue := "feedbridge.actions"
	b := testenv.StartBridge(t, crashConfig(r.URL, "single", addr, queue)+`
create_feeds:
  - {name: news, type: feed}
  - {name: list, type: sorted_feed}
`, addr)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	crashUnderLoad(t, b, rdb, "http://"+addr, queue, []string{"news", "list"}, 1800)
}

// crashUnderLoad sends n actions to the bridge at base, 16 at a time, while
// killing it (-9) three times with jobs claimed, then checks that every
// action was accepted and applied exactly once.
func crashUnderLoad(t *testing.T, b *testenv.Bridge, rdb redis.UniversalClient, base, queue string, feeds []string, n int) {
	t.Helper()
	load := &actionLoad{t: t, base: base, feeds: feeds}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); load.run(ctx, n, 16, 0) }()
	left := crashWhileClaimed(t, b, rdb, queue, done)
	<-done
	drained(t, rdb, queue, time.Minute)
	lost, dup := countApplied(t, rdb, n, feeds)
	t.Logf("%d actions, %d accepted, 3 kill -9 leaving %v jobs claimed, %d client retries: %d lost, %d applied twice",
		n, load.accepted.Load(), left, load.failures.Load(), lost, dup)
	if load.accepted.Load() != int64(n) || lost != 0 || dup != 0 {
		t.Fatalf("%d of %d accepted; %d lost, %d applied twice", load.accepted.Load(), n, lost, dup)
	}
}

// clusterURL is the bridge's URL for a cluster's seed nodes.
func clusterURL(c *testenv.RedisCluster) string {
	u := "redis://" + c.Addrs[0] + "?"
	for _, a := range c.Addrs[1:] {
		u += "addr=" + a + "&"
	}
	return strings.TrimSuffix(u, "&")
}

// TestCrashAppliesEachActionOnceOnCluster: the same on a real Redis
// Cluster of 3 masters and 3 replicas, where the feeds and the action
// queue live in different slots (each change is written with its marker,
// and the job finished apart).
func TestCrashAppliesEachActionOnceOnCluster(t *testing.T) {
	c := testenv.StartRedisClusterWithReplicas(t, 3, 1)
	addr := testenv.FreeAddr(t)
	queue := "{feedbridge}.actions"
	b := testenv.StartBridge(t, crashConfig(clusterURL(c), "cluster", addr, queue)+`
create_feeds:
  - {name: "{news}:items", type: feed}
  - {name: "{lists}:todo", type: sorted_feed}
`, addr)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	crashUnderLoad(t, b, rdb, "http://"+addr, queue, []string{"{news}:items", "{lists}:todo"}, 1200)
	// a crash between a job's finish and its marker's removal leaves the
	// marker to expire by itself
	var (
		mu      sync.Mutex // ForEachMaster runs the masters at once
		markers []string
	)
	_ = rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		keys := c.Keys(ctx, "feedbridge.applied:*").Val()
		mu.Lock()
		defer mu.Unlock()
		markers = append(markers, keys...)
		return nil
	})
	for _, m := range markers {
		if ttl := rdb.PTTL(context.Background(), m).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("apply marker %s outlived its job without expiring (TTL %v)", m, ttl)
		}
	}
	// at most one per job the worker held (concurrency 8) at each crash
	if len(markers) > 3*8 {
		t.Errorf("%d apply markers outlived their jobs after 3 crashes of a worker holding at most 8", len(markers))
	}
}

// TestClusterFailoverLosesNothing: kill -9 the master of a feed's slot
// while actions on it flow: the bridge follows the promoted replica
// (writes to that feed are accepted again within 10 s), /readyz says 503
// while the master does not answer, and every accepted action is applied
// once.
func TestClusterFailoverLosesNothing(t *testing.T) {
	c := testenv.StartRedisClusterWithReplicas(t, 3, 1)
	addr := testenv.FreeAddr(t)
	queue := "{feedbridge}.actions"
	feed := ""
	for i := 0; feed == "" || c.MasterOf(feed) == c.MasterOf(queue); i++ {
		feed = fmt.Sprintf("{news%d}:items", i) // on another master than the queue
	}
	testenv.StartBridge(t, crashConfig(clusterURL(c), "cluster", addr, queue)+fmt.Sprintf(`
create_feeds:
  - {name: %q, type: feed}
`, feed), addr)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	master := c.MasterOf(feed)
	load := &actionLoad{t: t, base: "http://" + addr, feeds: []string{feed}}
	const n = 600
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); load.run(ctx, n, 4, 60) }() // 10 s of actions
	time.Sleep(2 * time.Second)
	killed := time.Now()
	master.Kill()
	sawUnready := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 503 && strings.Contains(string(body), master.Addr) {
			sawUnready = true
		}
		if sawUnready && res.StatusCode == 200 {
			break
		}
	}
	<-done
	drained(t, rdb, queue, time.Minute)
	lost, dup := countApplied(t, rdb, n, []string{feed})
	load.mu.Lock()
	resumed := load.okAfter[feed].Sub(killed)
	load.mu.Unlock()
	t.Logf("failover: %d actions, writes to the failed slot accepted again %.1f s after the kill; %d lost, %d applied twice",
		n, resumed.Seconds(), lost, dup)
	switch {
	case !sawUnready:
		t.Error("/readyz never said the dead master was down")
	case resumed <= 0 || resumed > 10*time.Second:
		t.Errorf("writes to the failed slot resumed %v after the kill, want within 10 s", resumed)
	case load.accepted.Load() != n || lost != 0 || dup != 0:
		t.Errorf("%d of %d accepted; %d lost, %d applied twice", load.accepted.Load(), n, lost, dup)
	}
}

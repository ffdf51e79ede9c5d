package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// restBenchBridge starts the built bridge on a real Redis with REST open to
// anonymous readers, no rate limits, and the given events settings.
func restBenchBridge(b *testing.B, events string) (*testenv.Bridge, *testenv.Redis, *thoonk.Store, string) {
	b.Helper()
	r := testenv.StartRedis(b)
	addr := testenv.FreeAddr(b)
	config := fmt.Sprintf(`
log: {level: info}
redis: {url: %s}
http: {listen: %s}
worker: {enabled: false}
acl: [{actors: ["*"], feeds: ["*"], allow: [read]}]
rest:
  enabled: true
  rate_limit: {per_token: {rate: 0}, per_ip: {rate: 0}}
  events: {%s}
`, r.URL, addr, events)
	proc := testenv.StartBridge(b, config, addr)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 4})
	b.Cleanup(func() { _ = rdb.Close() })
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return proc, r, store, "http://" + addr
}

var restRPSRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// BenchmarkRESTGetItem measures GET /v1/feeds/{feed}/items/{id} with wrk
// (2 threads, 50 connections, 10s) next to redis-benchmark's HGET of the
// same item on the same Redis (50 clients, 200,000 requests), and, as the
// ceiling of the HTTP stack itself, the bridge's /healthz with wrk.
func BenchmarkRESTGetItem(b *testing.B) {
	for _, tool := range []string{"wrk", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (apt-get install wrk redis-tools)", tool)
		}
	}
	_, r, store, base := restBenchBridge(b, "heartbeat: 15s")
	ctx := context.Background()
	if err := store.Create(ctx, "bench:items", thoonk.TypeFeed, nil); err != nil {
		b.Fatal(err)
	}
	item := []byte(`{"title":"a typical task","done":false,"tags":["x","y"],"n":12345}`)
	if _, err := store.Feed("bench:items").Publish(ctx, item, "item-1"); err != nil {
		b.Fatal(err)
	}
	url := base + "/v1/feeds/bench:items/items/item-1"
	if res, err := http.Get(url); err != nil || res.StatusCode != 200 {
		b.Fatalf("GET: %v %v", res, err)
	}
	b.ResetTimer()
	out, err := exec.Command("wrk", "-t2", "-c50", "-d10s", "--latency", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	m := restRPSRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("wrk output: %s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	if strings.Contains(string(out), "Non-2xx") {
		b.Fatalf("wrk saw errors:\n%s", out)
	}
	rb, err := exec.Command("redis-benchmark", "-p", strconv.Itoa(r.Port), "-c", "50", "-n", "200000", "-q",
		"HGET", "feed.items:bench:items", "item-1").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, rb)
	}
	hm := regexp.MustCompile(`([0-9.]+) requests per second`).FindSubmatch(rb)
	if hm == nil {
		b.Fatalf("redis-benchmark output: %s", rb)
	}
	hget, _ := strconv.ParseFloat(string(hm[1]), 64)
	// the HTTP stack's own ceiling on this machine, same run: the bridge's
	// /healthz does no Redis read, no routing of /v1 and no JSON
	hz, err := exec.Command("wrk", "-t2", "-c50", "-d10s", base+"/healthz").CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, hz)
	}
	hm2 := restRPSRE.FindSubmatch(hz)
	if hm2 == nil {
		b.Fatalf("wrk output: %s", hz)
	}
	healthz, _ := strconv.ParseFloat(string(hm2[1]), 64)
	b.ReportMetric(rps, "GET/s")
	b.ReportMetric(hget, "HGET/s")
	b.ReportMetric(healthz, "healthz/s")
	b.ReportMetric(rps/hget, "GET/HGET")
	b.Logf("wrk:\n%s\nredis-benchmark: %s", out, strings.TrimSpace(string(rb)))
}

// BenchmarkRESTFanout: 100 SSE clients on one feed while 1,000 items/s are
// published through core for 10s; reports publish-to-client latency
// percentiles over every delivery and fails if any client missed an item.
func BenchmarkRESTFanout(b *testing.B) {
	const clients, rate, seconds = 100, 1000, 10
	_, _, store, base := restBenchBridge(b, "heartbeat: 15s, replay_events: 20000")
	ctx := context.Background()
	if err := store.Create(ctx, "bench:fan", thoonk.TypeFeed, nil); err != nil {
		b.Fatal(err)
	}
	type delivery struct {
		n       int
		latency []time.Duration
		err     error
	}
	results := make(chan delivery, clients)
	ready := make(chan struct{}, clients)
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := rate * seconds
	for range clients {
		go func() {
			var d delivery
			defer func() { results <- d }()
			req, _ := http.NewRequestWithContext(streamCtx, "GET", base+"/v1/feeds/bench:fan/events", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				d.err = err
				ready <- struct{}{}
				return
			}
			defer res.Body.Close()
			rd := resttest.NewReader(res.Body)
			if _, err := rd.Next(); err != nil { // the resume point: subscribed
				d.err = err
				ready <- struct{}{}
				return
			}
			ready <- struct{}{}
			d.latency = make([]time.Duration, 0, total)
			for d.n < total {
				ev, err := rd.Next()
				if err != nil {
					d.err = err
					return
				}
				now := time.Now()
				var data struct {
					Item struct{ T int64 } `json:"item"`
				}
				if ev.Type != "publish" || json.Unmarshal([]byte(ev.Data), &data) != nil {
					d.err = fmt.Errorf("unexpected event %+v", ev)
					return
				}
				d.latency = append(d.latency, now.Sub(time.Unix(0, data.Item.T)))
				d.n++
			}
		}()
	}
	for range clients {
		<-ready
	}
	b.ResetTimer()
	f := store.Feed("bench:fan")
	tick := time.NewTicker(time.Second / rate)
	for i := range total {
		<-tick.C
		item := fmt.Sprintf(`{"t":%d,"i":%d}`, time.Now().UnixNano(), i)
		if _, err := f.Publish(ctx, []byte(item), ""); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	var all []time.Duration
	deadline := time.After(30 * time.Second)
	for range clients {
		select {
		case d := <-results:
			if d.err != nil || d.n != total {
				b.Fatalf("a client got %d of %d items: %v", d.n, total, d.err)
			}
			all = append(all, d.latency...)
		case <-deadline:
			b.Fatal("clients did not receive every item within 30s")
		}
	}
	slices.Sort(all)
	p := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(p(1), "max-ms")
	b.ReportMetric(float64(len(all)), "deliveries")
}

// BenchmarkRESTIdleStreams opens 10,000 idle SSE connections and reports
// the bridge process's resident memory (VmRSS) before and with them.
func BenchmarkRESTIdleStreams(b *testing.B) {
	const conns = 10000
	proc, _, store, base := restBenchBridge(b, "heartbeat: 60s, max_streams: 20000")
	if err := store.Create(context.Background(), "bench:idle", thoonk.TypeFeed, nil); err != nil {
		b.Fatal(err)
	}
	pid := restPIDOf(b, proc.ConfigPath)
	before := restRSSMB(b, pid)
	addr := strings.TrimPrefix(base, "http://")
	b.ResetTimer()
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	var failed error
	for range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addr)
			if err == nil {
				_, err = fmt.Fprintf(c, "GET /v1/feeds/bench:idle/events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			}
			if err == nil {
				var line string
				line, err = bufio.NewReader(c).ReadString('\n')
				if err == nil && !strings.Contains(line, " 200 ") {
					err = fmt.Errorf("status %q", line)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				open = append(open, c)
			}
			if err != nil && failed == nil {
				failed = err
			}
		})
	}
	wg.Wait()
	if failed != nil {
		b.Fatalf("opening %d streams: %v", conns, failed)
	}
	time.Sleep(2 * time.Second) // let the bridge settle; memory is what is measured
	with := restRSSMB(b, pid)
	b.ReportMetric(before, "rss-idle-MB")
	b.ReportMetric(with, "rss-10k-streams-MB")
	b.ReportMetric((with-before)*1024/conns, "KB/stream")
}

// restPIDOf finds the bridge process started with the given config file.
func restPIDOf(b *testing.B, config string) int {
	b.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(cmd), config) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	b.Fatal("bridge process not found")
	return 0
}

// restRSSMB reads a process's resident set size in MB.
func restRSSMB(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

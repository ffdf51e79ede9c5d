package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// benchIRC starts Redis, ngircd (no penalties) and the bridge with the
// given irc section, and a person in channels; it returns the store and
// the person's receive log (text -> arrival time).
type benchIRC struct {
	store  *thoonk.Store
	bridge *testenv.Bridge
	mu     sync.Mutex
	got    map[string]time.Time
}

func startBenchIRC(b *testing.B, section string, feeds []string, channels []string) *benchIRC {
	b.Helper()
	rs := testenv.StartRedis(b)
	ng := testenv.StartNgircd(b, testenv.NgircdOptions{})
	st := storeFor(b, rs.URL)
	for _, f := range feeds {
		if err := st.Create(context.Background(), f, thoonk.TypeFeed, nil); err != nil {
			b.Fatal(err)
		}
	}
	bi := &benchIRC{store: st, got: map[string]time.Time{}}
	conn, err := net.DialTimeout("tcp", ng.Addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	in, joinedAll := make(chan struct{}), make(chan struct{})
	var names, botJoins atomic.Int32
	c := irc.NewClient(conn, irc.ClientConfig{Nick: "watcher", User: "w", Name: "w",
		Handler: irc.HandlerFunc(func(c *irc.Client, m *irc.Message) {
			switch {
			case m.Command == "001":
				for i := 0; i < len(channels); i += 20 {
					_ = c.Write("JOIN " + strings.Join(channels[i:min(i+20, len(channels))], ","))
				}
			case m.Command == "366":
				if names.Add(1) == int32(len(channels)) {
					close(in)
				}
			case m.Command == "JOIN" && m.Prefix.Name == ircBot:
				if botJoins.Add(1) == int32(len(channels)) {
					close(joinedAll)
				}
			case m.Command == "PRIVMSG" && m.Prefix.Name == ircBot:
				bi.mu.Lock()
				bi.got[m.Trailing()] = time.Now()
				bi.mu.Unlock()
			}
		})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.RunContext(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for _, ch := range []chan struct{}{in, joinedAll} {
		if ch == joinedAll {
			addr := testenv.FreeAddr(b)
			cfg := strings.Replace(ircConfig(rs.URL, addr, ng.Addr, section), "maintenance_interval: 200ms", "maintenance_interval: 5s", 1)
			bi.bridge = testenv.StartBridge(b, cfg, addr)
		}
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			b.Fatalf("watcher in %d channels, bot in %d, of %d", names.Load(), botJoins.Load(), len(channels))
		}
	}
	return bi
}

// publishPaced publishes n items at rate per second, round-robin over
// feeds, and returns each item's text and publish time.
func (bi *benchIRC) publishPaced(b *testing.B, feeds []string, n, rate int) map[string]time.Time {
	b.Helper()
	sent := map[string]time.Time{}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range n {
		<-tick.C
		f := feeds[i%len(feeds)]
		text := fmt.Sprintf("bench item %d", i)
		sent["["+f+"] "+text] = time.Now()
		if _, err := bi.store.Feed(f).Publish(context.Background(), []byte(text), ""); err != nil {
			b.Fatal(err)
		}
	}
	return sent
}

// latencies waits for every sent item to arrive and returns the delays.
func (bi *benchIRC) latencies(b *testing.B, sent map[string]time.Time) []time.Duration {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		bi.mu.Lock()
		var out []time.Duration
		for text, at := range sent {
			if got, ok := bi.got[text]; ok {
				out = append(out, got.Sub(at))
			}
		}
		bi.mu.Unlock()
		if len(out) == len(sent) {
			slices.Sort(out)
			return out
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d items arrived", len(out), len(sent))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ircPct(ds []time.Duration, p float64) float64 {
	return float64(ds[int(float64(len(ds)-1)*p)].Microseconds()) / 1000
}

// BenchmarkIRCLatency: publish through core -> line received by a person,
// rate limit off, at 50 items/s; b.N items.
func BenchmarkIRCLatency(b *testing.B) {
	bi := startBenchIRC(b, `  rate: {interval: 0s}
  links: {item: ""}
  queue_lines: 10000
  channels:
    - {name: "#news", feeds: [news]}
`, []string{"news"}, []string{"#news"})
	b.ResetTimer()
	sent := bi.publishPaced(b, []string{"news"}, max(b.N, 50), 50)
	ds := bi.latencies(b, sent)
	b.StopTimer()
	b.ReportMetric(ircPct(ds, 0.50), "p50-ms")
	b.ReportMetric(ircPct(ds, 0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIRC200Channels: the bridge's memory and CPU with 200 mapped
// channels: idle after joining, then while announcing 50 items/s spread
// over the 200 feeds (rate limit off).
func BenchmarkIRC200Channels(b *testing.B) {
	var feeds, chans []string
	var section strings.Builder
	section.WriteString("  rate: {interval: 0s}\n  links: {item: \"\"}\n  queue_lines: 10000\n  channels:\n")
	for i := range 200 {
		f := fmt.Sprintf("f%03d", i)
		feeds = append(feeds, f)
		chans = append(chans, "#"+f)
		fmt.Fprintf(&section, "    - {name: \"#%s\", feeds: [%s]}\n", f, f)
	}
	bi := startBenchIRC(b, section.String(), feeds, chans)
	pid := ircBridgePID(b, bi.bridge)
	cpu0, at0 := ircCPUSeconds(b, pid), time.Now()
	time.Sleep(5 * time.Second)
	idle := (ircCPUSeconds(b, pid) - cpu0) / time.Since(at0).Seconds()
	rssIdle := ircRSSMB(b, pid)
	b.ResetTimer()
	cpu1, at1 := ircCPUSeconds(b, pid), time.Now()
	sent := bi.publishPaced(b, feeds, max(b.N, 500), 50)
	bi.latencies(b, sent)
	busy := (ircCPUSeconds(b, pid) - cpu1) / time.Since(at1).Seconds()
	b.StopTimer()
	b.ReportMetric(rssIdle, "rss-idle-MB")
	b.ReportMetric(ircRSSMB(b, pid), "rss-busy-MB")
	b.ReportMetric(100*idle, "cpu-idle-%")
	b.ReportMetric(100*busy, "cpu-busy-%")
	b.ReportMetric(0, "ns/op")
}

// ircBridgePID finds the bridge process by its config path.
func ircBridgePID(b *testing.B, br *testenv.Bridge) int {
	b.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d)
		if err == nil && strings.Contains(string(cmd), br.ConfigPath) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return pid
		}
	}
	b.Fatal("bridge process not found")
	return 0
}

// ircCPUSeconds is a process's user+system CPU time.
func ircCPUSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// ircRSSMB is a process's resident memory.
func ircRSSMB(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

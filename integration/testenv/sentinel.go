package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "mymaster"

// Sentinel is a Redis Sentinel (redis-server --sentinel) monitoring one
// master under the name SentinelMaster.
type Sentinel struct {
	// Addr is the sentinel's host:port.
	Addr string
	// URL is a go-redis failover URL: redis://ADDR?master_name=mymaster.
	URL string

	*Redis
}

// StartSentinel starts a sentinel on a free loopback port that monitors
// master, and waits until it answers PING and knows the master.
func StartSentinel(tb testing.TB, master *Redis) *Sentinel {
	tb.Helper()
	port := freePort(tb)
	r := newRedis(tb, port, nil)
	conf := filepath.Join(r.Dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\n"+
		"sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\n",
		port, r.Dir, r.proc.logPath, SentinelMaster, master.Port, SentinelMaster)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	r.args = []string{conf, "--sentinel"}
	r.Start()
	if err := r.proc.waitReady(redisReadyTimeout, func() error {
		reply, err := redisInline(r.Addr, "SENTINEL get-master-addr-by-name "+SentinelMaster)
		if err != nil {
			return err
		}
		if !strings.Contains(reply, strconv.Itoa(master.Port)) {
			return fmt.Errorf("sentinel does not know the master yet: %q", reply)
		}
		return nil
	}); err != nil {
		tb.Fatalf("testenv: sentinel on %s: %v", r.Addr, err)
	}
	return &Sentinel{Addr: r.Addr, URL: fmt.Sprintf("redis://%s?master_name=%s", r.Addr, SentinelMaster), Redis: r}
}

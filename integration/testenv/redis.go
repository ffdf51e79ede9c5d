package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	redisReadyTimeout   = 10 * time.Second
	clusterReadyTimeout = 20 * time.Second
	clusterSlots        = 16384
)

// Redis is a redis-server process listening on a free loopback port, with
// persistence disabled and all files in its own temporary directory.
type Redis struct {
	// Addr is the host:port the server listens on, e.g. "127.0.0.1:41234".
	Addr string
	// URL is a redis:// URL for database 0, e.g. "redis://127.0.0.1:41234/0".
	URL string
	// Port is the TCP port of Addr.
	Port int
	// Dir is the server's working directory; it holds redis.log.
	Dir string

	tb   testing.TB
	args []string
	proc *process
}

// StartRedis starts redis-server on a free loopback port in a fresh
// t.TempDir(), waits until it answers PING and stops it when the test ends.
// It skips the test (fails it when CI=true) if redis-server is not installed.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	r := newRedis(tb, freePort(tb), nil)
	r.Start()
	return r
}

// newRedis prepares (but does not start) a redis-server on port with extra
// command-line arguments; extra may refer to the placeholders "{dir}" and
// "{port}".
func newRedis(tb testing.TB, port int, extra []string) *Redis {
	tb.Helper()
	bin := requireBinary(tb, "redis-server", "redis-server")
	dir := tb.TempDir()
	r := &Redis{
		Addr: loopback(port),
		URL:  fmt.Sprintf("redis://%s/0", loopback(port)),
		Port: port,
		Dir:  dir,
		tb:   tb,
		proc: &process{
			name:    "redis-server",
			bin:     bin,
			dir:     dir,
			logPath: filepath.Join(dir, "redis.log"),
		},
	}
	r.args = []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", r.proc.logPath,
	}
	repl := strings.NewReplacer("{dir}", dir, "{port}", strconv.Itoa(port))
	for _, a := range extra {
		r.args = append(r.args, repl.Replace(a))
	}
	r.proc.registerCleanup(tb)
	return r
}

// Start starts the server again on the same port after Stop and waits until
// it answers PING. It fails the test if the server is already running or
// does not become ready.
func (r *Redis) Start() {
	r.tb.Helper()
	if err := r.proc.start(r.args...); err != nil {
		r.tb.Fatalf("testenv: %v", err)
	}
	if err := r.proc.waitReady(redisReadyTimeout, r.ping); err != nil {
		r.tb.Fatalf("testenv: redis on %s: %v (log file %s)", r.Addr, err, r.proc.logPath)
	}
}

// Stop stops the server (SIGTERM to its process group, SIGKILL after a
// grace period) and waits for it to exit. Data is not persisted, so a
// restarted server starts empty. Stop is a no-op if the server is stopped.
func (r *Redis) Stop() { r.proc.stop() }

// Kill kills the server with SIGKILL (a crash) and waits for it to exit.
func (r *Redis) Kill() { r.proc.kill() }

// Restart stops the server and starts it again on the same port, waiting
// until it is ready.
func (r *Redis) Restart() {
	r.tb.Helper()
	r.Stop()
	r.Start()
}

// LogTail returns the last n lines of the server's log file.
func (r *Redis) LogTail(n int) string { return r.proc.logTail(n) }

// ping sends an inline PING and expects +PONG.
func (r *Redis) ping() error {
	reply, err := redisInline(r.Addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING: unexpected reply %q", reply)
	}
	return nil
}

// redisInline sends one inline command (words separated by spaces) on a new
// connection and returns the reply of a simple string (+), error (-,
// returned as an error), integer (:) or bulk string ($) type.
func redisInline(addr, command string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s: reading reply: %w", command, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%s: empty reply", command)
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("%s: %s", command, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%s: bad bulk reply %q", command, line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", fmt.Errorf("%s: reading bulk reply: %w", command, err)
		}
		return string(buf[:n]), nil
	case '*': // an array of bulk strings, joined with spaces
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%s: bad array reply %q", command, line)
		}
		parts := make([]string, 0, n)
		for range n {
			head, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(head, "$") {
				return "", fmt.Errorf("%s: bad array element %q", command, head)
			}
			size, err := strconv.Atoi(strings.TrimRight(head[1:], "\r\n"))
			if err != nil || size < 0 {
				return "", fmt.Errorf("%s: bad array element %q", command, head)
			}
			buf := make([]byte, size+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return "", fmt.Errorf("%s: reading array element: %w", command, err)
			}
			parts = append(parts, string(buf[:size]))
		}
		return strings.Join(parts, " "), nil
	default:
		return "", fmt.Errorf("%s: unsupported reply %q", command, line)
	}
}

// RedisCluster is a Redis Cluster of master-only redis-server processes on
// free loopback ports, each node in its own temporary directory.
type RedisCluster struct {
	// Addrs are the host:port addresses of the nodes, in node order.
	Addrs []string
	// Nodes are the individual servers. A single node can be stopped and
	// restarted through it; use RedisCluster.Start to wait for the whole
	// cluster to become healthy again.
	Nodes []*Redis

	tb       testing.TB
	busPorts []int
}

// StartRedisCluster starts masters redis-server nodes in cluster mode, joins
// them into one cluster covering all 16384 slots without replicas, waits
// until every node reports cluster_state:ok and stops them when the test
// ends. With three or more masters the cluster is created with
// `redis-cli --cluster create`; with one or two (which redis-cli refuses)
// slots are assigned with CLUSTER ADDSLOTSRANGE and joined with CLUSTER MEET.
func StartRedisCluster(tb testing.TB, masters int) *RedisCluster {
	tb.Helper()
	return startCluster(tb, masters, 0)
}

// StartRedisClusterWithReplicas starts a cluster of masters (3 or more)
// with replicas replicas each, joined with `redis-cli --cluster create
// --cluster-replicas`, and waits until it is healthy and every replica's
// link to its master is up, so that killing a master fails over to its
// replica (replicas are started with --cluster-replica-validity-factor 0,
// so a replica may take over however long its link was down).
func StartRedisClusterWithReplicas(tb testing.TB, masters, replicas int) *RedisCluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("testenv: a cluster with replicas needs 3 masters or more, got %d", masters)
	}
	c := startCluster(tb, masters, replicas)
	c.waitReplicas()
	return c
}

func startCluster(tb testing.TB, masters, replicas int) *RedisCluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("testenv: StartRedisCluster: need at least 1 master, got %d", masters)
	}
	cli := requireBinary(tb, "redis-cli", "redis-tools")
	c := &RedisCluster{tb: tb}
	// Client and cluster bus ports for all nodes, allocated together so
	// they are distinct. The bus gets its own free port instead of the
	// default port+10000, which might be taken or exceed 65535.
	nodes := masters * (1 + replicas)
	ports := freePorts(tb, 2*nodes)
	for i := range nodes {
		port, busPort := ports[2*i], ports[2*i+1]
		n := newRedis(tb, port, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "{dir}/nodes-{port}.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-replica-validity-factor", "0",
		})
		c.Nodes = append(c.Nodes, n)
		c.busPorts = append(c.busPorts, busPort)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	for _, n := range c.Nodes {
		n.Start()
	}
	if masters >= 3 {
		args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
		ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		if err != nil {
			tb.Fatalf("testenv: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	} else {
		c.joinManually()
	}
	c.waitHealthy()
	return c
}

// joinManually assigns slot ranges and introduces the nodes to the first one.
func (c *RedisCluster) joinManually() {
	c.tb.Helper()
	per := clusterSlots / len(c.Nodes)
	for i, n := range c.Nodes {
		lo, hi := i*per, (i+1)*per-1
		if i == len(c.Nodes)-1 {
			hi = clusterSlots - 1
		}
		if _, err := redisInline(n.Addr, fmt.Sprintf("CLUSTER ADDSLOTSRANGE %d %d", lo, hi)); err != nil {
			c.tb.Fatalf("testenv: redis cluster node %s: %v", n.Addr, err)
		}
	}
	first := c.Nodes[0]
	for _, n := range c.Nodes[1:] {
		if _, err := redisInline(n.Addr, fmt.Sprintf("CLUSTER MEET 127.0.0.1 %d %d", first.Port, c.busPorts[0])); err != nil {
			c.tb.Fatalf("testenv: redis cluster node %s: %v", n.Addr, err)
		}
	}
}

// waitHealthy polls CLUSTER INFO on every node until all report
// cluster_state:ok, know every node and have all slots assigned.
func (c *RedisCluster) waitHealthy() {
	c.tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	want := strconv.Itoa(len(c.Nodes))
	var lastErr error
	for {
		lastErr = nil
		for _, n := range c.Nodes {
			info, err := redisInline(n.Addr, "CLUSTER INFO")
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", n.Addr, err)
				break
			}
			fields := parseInfo(info)
			if fields["cluster_state"] != "ok" || fields["cluster_known_nodes"] != want ||
				fields["cluster_slots_assigned"] != strconv.Itoa(clusterSlots) {
				lastErr = fmt.Errorf("%s: cluster_state:%s cluster_known_nodes:%s cluster_slots_assigned:%s",
					n.Addr, fields["cluster_state"], fields["cluster_known_nodes"], fields["cluster_slots_assigned"])
				break
			}
		}
		if lastErr == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("testenv: redis cluster not healthy after %v: %v", clusterReadyTimeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// waitReplicas waits until every replica reports master_link_status:up.
func (c *RedisCluster) waitReplicas() {
	c.tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		var lastErr error
		for _, n := range c.Nodes {
			info, err := redisInline(n.Addr, "INFO replication")
			if err != nil {
				lastErr = err
				break
			}
			f := parseInfo(info)
			if f["role"] == "slave" && f["master_link_status"] != "up" {
				lastErr = fmt.Errorf("%s: master_link_status:%s", n.Addr, f["master_link_status"])
				break
			}
		}
		if lastErr == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("testenv: redis cluster replicas not linked after %v: %v", clusterReadyTimeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// MasterOf returns the node that is the master of key's slot now, asking
// the cluster (CLUSTER KEYSLOT, CLUSTER NODES) through any live node.
func (c *RedisCluster) MasterOf(key string) *Redis {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if !n.proc.running() {
			continue
		}
		slotS, err := redisInline(n.Addr, "CLUSTER KEYSLOT "+key)
		if err != nil {
			continue
		}
		slot, _ := strconv.Atoi(slotS)
		nodes, err := redisInline(n.Addr, "CLUSTER NODES")
		if err != nil {
			continue
		}
		for line := range strings.Lines(nodes) {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				l, e1 := strconv.Atoi(lo)
				h, e2 := strconv.Atoi(hi)
				if e1 == nil && e2 == nil && slot >= l && slot <= h {
					for _, m := range c.Nodes {
						if m.Addr == addr {
							return m
						}
					}
				}
			}
		}
	}
	c.tb.Fatalf("testenv: no master found for key %q", key)
	return nil
}

// parseInfo parses "key:value" lines as returned by INFO and CLUSTER INFO.
func parseInfo(s string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(s) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Stop stops every node and waits for them to exit.
func (c *RedisCluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// Start starts every stopped node again on its ports (each node reloads its
// nodes-PORT.conf, so the cluster keeps its node IDs and slot assignment)
// and waits until the cluster is healthy. Nodes are empty after a restart.
func (c *RedisCluster) Start() {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if !n.proc.running() {
			n.Start()
		}
	}
	c.waitHealthy()
}

// Restart stops all nodes and starts them again on the same ports, waiting
// until the cluster is healthy.
func (c *RedisCluster) Restart() {
	c.tb.Helper()
	c.Stop()
	c.Start()
}

// LogTail returns the last n lines of every node's log file, each preceded
// by a header naming the node.
func (c *RedisCluster) LogTail(n int) string {
	var b strings.Builder
	for _, node := range c.Nodes {
		fmt.Fprintf(&b, "==> %s (%s) <==\n%s\n", node.Addr, node.proc.logPath, node.LogTail(n))
	}
	return b.String()
}

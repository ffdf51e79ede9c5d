package thoonk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicaCache remembers how many replicas each master has connected, so
// that a write waits only for replicas that exist.
type replicaCache struct {
	mu sync.Mutex
	m  map[string]replicaCount
}

type replicaCount struct {
	n  int
	at time.Time
}

// replicaTTL is how long a master's replica count is trusted.
const replicaTTL = 5 * time.Second

// replicas returns how many replicas the master behind c has connected
// (ROLE), cached for replicaTTL; 0 when it cannot tell.
func (rc *replicaCache) replicas(ctx context.Context, addr string, c nodeClient) int {
	rc.mu.Lock()
	got, ok := rc.m[addr]
	rc.mu.Unlock()
	if ok && time.Since(got.at) < replicaTTL {
		return got.n
	}
	n := 0
	if role, err := c.Do(ctx, "ROLE").Slice(); err == nil && len(role) >= 3 && stringOf(role[0]) == "master" {
		if list, ok := role[2].([]any); ok {
			n = len(list)
		}
	}
	rc.mu.Lock()
	if rc.m == nil {
		rc.m = map[string]replicaCount{}
	}
	rc.m[addr] = replicaCount{n: n, at: time.Now()}
	rc.mu.Unlock()
	return n
}

// nodeClient is what runDurable needs of a master's client.
type nodeClient interface {
	Pipeline() redis.Pipeliner
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// master returns a client bound to the master holding key, and its address.
func (s *Store) master(ctx context.Context, key string) (nodeClient, string, error) {
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, "", err
		}
		return node, node.Options().Addr, nil
	case *redis.Client:
		return c, c.Options().Addr, nil
	}
	return s.rdb, "master", nil
}

// runDurable runs a script like run and, when the store waits for
// replicas (StoreOptions.ReplicaAcks) and the key's master has any, waits
// until they have the change too, on the same connection (WAIT): a change
// confirmed to the caller survives the master's failover. Fewer replicas
// confirming within the timeout is not an error (the change is on the
// master); it is counted in Stats.
func (s *Store) runDurable(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	if s.acks <= 0 {
		return s.run(ctx, sc, keys, args...)
	}
	c, addr, err := s.master(ctx, keys[0])
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("route %s: %w", keys[0], err))
		return cmd
	}
	need := min(s.acks, s.replicaCounts.replicas(ctx, addr, c))
	if need == 0 {
		return s.run(ctx, sc, keys, args...)
	}
	wait := func(eval bool) (*redis.Cmd, *redis.IntCmd) {
		pipe := c.Pipeline()
		var cmd *redis.Cmd
		if eval {
			cmd = sc.Eval(ctx, pipe, keys, args...)
		} else {
			cmd = sc.EvalSha(ctx, pipe, keys, args...)
		}
		w := pipe.Do(ctx, "WAIT", need, s.ackTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx) // each command's error is read below
		return cmd, redis.NewIntResult(w.Int64())
	}
	cmd, w := wait(false)
	if isNoScript(cmd.Err()) {
		cmd, w = wait(true)
	}
	if cmd.Err() == nil && w.Val() < int64(need) {
		s.unreplicated.Add(1)
	}
	s.noteErr(ctx, cmd.Err())
	return cmd
}

// StoreStats are counters since the store was created.
type StoreStats struct {
	// Unreplicated counts changes confirmed before the replicas waited for
	// had them (see StoreOptions.ReplicaAcks).
	Unreplicated uint64
	// TopologyReloads counts Redis Cluster topology reloads asked for
	// after a connection error.
	TopologyReloads uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() StoreStats {
	return StoreStats{Unreplicated: s.unreplicated.Load(), TopologyReloads: s.reloads.Load()}
}

// counters the store keeps (embedded in Store).
type storeCounters struct {
	unreplicated atomic.Uint64
	reloads      atomic.Uint64
}

// clusterFollower makes a Cluster client follow a failover at once: a
// connection error on any path (commands, scripts, pipelines, blocking
// pops) asks for a topology reload, which go-redis otherwise does only on
// MOVED replies or once a minute, and would keep sending a dead master's
// slots to it meanwhile.
type clusterFollower struct {
	s  *Store
	cc *redis.ClusterClient
}

func (f clusterFollower) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			f.reload()
		}
		return conn, err
	}
}

func (f clusterFollower) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if connError(err) {
			f.reload()
		}
		return err
	}
}

func (f clusterFollower) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if connError(err) {
			f.reload()
		}
		return err
	}
}

func (f clusterFollower) reload() {
	f.s.reloads.Add(1)
	f.cc.ReloadState(context.Background()) // lazy, coalesced by go-redis
}

// noteErr asks for a topology reload after a connection error on a path
// that bypasses the cluster client's hooks (a node's own client).
func (s *Store) noteErr(_ context.Context, err error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok && connError(err) {
		clusterFollower{s: s, cc: cc}.reload()
	}
}

// connError reports an error of the connection (refused, reset, timed
// out, closed), as opposed to a reply of the server or a cancelled call.
func connError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN") ||
			strings.HasPrefix(msg, "READONLY") || strings.HasPrefix(msg, "LOADING")
	}
	return true
}

// Health checks that every master of the deployment answers: each master
// of a Redis Cluster (by the current topology), or the Sentinel-provided
// master, or the single server. The error names the first master that
// does not answer.
func (s *Store) Health(ctx context.Context) error {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var bad []string
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := c.Ping(ctx).Err(); err != nil {
				mu.Lock()
				bad = append(bad, c.Options().Addr)
				mu.Unlock()
				s.noteErr(ctx, err)
				return err
			}
			return nil
		})
		if len(bad) > 0 {
			return fmt.Errorf("redis cluster master %s does not answer: %w", strings.Join(bad, ", "), err)
		}
		if err != nil {
			return fmt.Errorf("redis cluster: %w", err)
		}
		return nil
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis master does not answer: %w", err)
	}
	return nil
}

package thoonk

import (
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis deployment modes accepted by NewRedisClient.
const (
	RedisSingle   = "single"
	RedisSentinel = "sentinel"
	RedisCluster  = "cluster"
)

// NewRedisClient builds a go-redis universal client from a redis:// or
// rediss:// URL and a mode: "single" (one server), "sentinel" (the URL
// names the sentinels: ?master_name=NAME&addr=HOST:PORT for more) or
// "cluster" (the URL names seed nodes: ?addr=HOST:PORT for more). Query
// parameters tune timeouts and pools as go-redis documents for
// ParseURL, ParseFailoverURL and ParseClusterURL.
//
// minPool raises the connection pool to at least that many connections
// (0 keeps go-redis' default of 10 per CPU): every goroutine waiting in a
// blocking pop holds one.
func NewRedisClient(url, mode string, minPool int) (redis.UniversalClient, error) {
	switch mode {
	case "", RedisSingle:
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		o.PoolSize = poolSize(o.PoolSize, minPool)
		return redis.NewClient(o), nil
	case RedisSentinel:
		o, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis sentinel url: %w", err)
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("redis sentinel url: add ?master_name=NAME: %w", ErrInvalid)
		}
		o.PoolSize = poolSize(o.PoolSize, minPool)
		return redis.NewFailoverClient(o), nil
	case RedisCluster:
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		o.PoolSize = poolSize(o.PoolSize, minPool)
		if o.ClusterStateReloadInterval == 0 {
			// go-redis' default is a minute: after a failover, a dead
			// master's slots would be sent to it that long
			o.ClusterStateReloadInterval = 2 * time.Second
		}
		return redis.NewClusterClient(o), nil
	}
	return nil, fmt.Errorf("redis mode %q: want single, sentinel or cluster: %w", mode, ErrInvalid)
}

// poolSize keeps a configured pool size, else go-redis' default raised to min.
func poolSize(configured, min int) int {
	if configured > 0 || min <= 0 {
		return configured
	}
	return max(10*runtime.GOMAXPROCS(0), min)
}

package integration

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// quickStart is the built bridge running the shipped bridge.yaml, with its
// addresses moved to free ports: the quick start as a newcomer runs it.
type quickStart struct {
	t *testing.T
	// Base is the HTTP base URL (the shipped http://127.0.0.1:8080).
	Base string
	// RedisAddr is the embedded Redis (the shipped 127.0.0.1:6399).
	RedisAddr string
	// ExamplesOrigin is the origin the shipped CORS config allows for
	// the example pages (the shipped http://127.0.0.1:8000).
	ExamplesOrigin string
	Proc           *testenv.Bridge
	Store          *thoonk.Store
}

// quickStartToken is the shipped config's default token.
const quickStartToken = "feedbridge-local-dev-token"

func startQuickStart(t *testing.T) *quickStart {
	t.Helper()
	shipped, err := os.ReadFile("../bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, redisAddr, examples := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, examplesPort, _ := strings.Cut(examples, ":")
	cfg := string(shipped)
	for _, r := range [][2]string{{"127.0.0.1:8080", httpAddr}, {"127.0.0.1:6399", redisAddr},
		{"http://127.0.0.1:8000", "http://" + examples}, {"http://localhost:8000", "http://localhost:" + examplesPort}} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("the shipped bridge.yaml no longer names %s: update this test", r[0])
		}
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	t.Setenv("FEEDBRIDGE_TOKEN", "") // the shipped default token applies...
	os.Unsetenv("FEEDBRIDGE_TOKEN")  // ...when the variable is unset
	q := &quickStart{t: t, Base: "http://" + httpAddr, RedisAddr: redisAddr, ExamplesOrigin: "http://" + examples}
	q.Proc = testenv.StartBridge(t, cfg, httpAddr)
	q.Store = storeFor(t, "redis://"+redisAddr)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(q.Base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return q
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quick start never became ready:\n%s", q.Proc.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publish publishes an item through the store (as any Thoonk program).
func (q *quickStart) publish(feed, item, id string) {
	q.t.Helper()
	if _, err := q.Store.Feed(feed).Publish(context.Background(), []byte(item), id); err != nil {
		q.t.Fatal(err)
	}
}

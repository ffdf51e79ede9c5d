package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShippedConfigIsValid(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := cli([]string{"check", "-config", "../../bridge.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("bridge check on the shipped bridge.yaml: exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "is valid") || !strings.Contains(out.String(), "rest:") {
		t.Fatalf("check output:\n%s", out.String())
	}
}

func TestCheckListsEveryProblem(t *testing.T) {
	p := writeConfig(t, "log:\n  level: loud\nhttp:\n  lisen: x\nirc:\n  enabled: maybe\n")
	var out, errOut bytes.Buffer
	if code := cli([]string{"check", "-config", p}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	msg := errOut.String()
	for _, want := range []string{p + ":4: http.lisen: unknown key", p + `:6: irc.enabled: "maybe" is not true or false`} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if code := cli([]string{"check", "-config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard, &errOut); code != 1 {
		t.Fatalf("missing file: exit %d", code)
	}
	if code := cli([]string{"bogus-arg"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad usage: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := cli([]string{"version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "feedbridge ") {
		t.Fatalf("exit %d, %q", code, out.String())
	}
}

func TestRunFailsWhenRedisIsUnreachable(t *testing.T) {
	dead := testenv.FreeAddr(t) // nothing listens there
	p := writeConfig(t, "redis:\n  url: redis://"+dead+"\nhttp:\n  listen: "+testenv.FreeAddr(t)+"\n")
	err := run(context.Background(), p, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "redis is unreachable at start") {
		t.Fatalf("got %v", err)
	}
}

// When a later start-up step fails, the earlier ones are undone: here the
// HTTP port is taken, and the embedded Redis must release its port again.
func TestRunRollsBackWhenHTTPCannotListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	redisAddr := testenv.FreeAddr(t)
	p := writeConfig(t, "redis:\n  embedded_addr: "+redisAddr+"\nhttp:\n  listen: "+taken.Addr().String()+"\n")
	err = run(context.Background(), p, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("got %v", err)
	}
	ln, err := net.Listen("tcp", redisAddr)
	if err != nil {
		t.Fatalf("the embedded Redis still holds %s after the failed start: %v", redisAddr, err)
	}
	ln.Close()
}

func TestRunServesHealthReadinessMetricsAndStops(t *testing.T) {
	httpAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := writeConfig(t, "redis:\n  embedded_addr: "+redisAddr+"\nhttp:\n  listen: "+httpAddr+
		"\ncreate_feeds:\n  - {name: demo, type: sorted_feed, config: {title: Demo}}\nrest:\n  enabled: false\natom:\n  enabled: false\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, p, io.Discard) }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 200 && strings.Contains(body, `"ready":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "feedbridge_redis_latency_seconds") ||
		!strings.Contains(body, `feedbridge_queue_depth{queue="feedbridge.actions",state="available"} 0`) {
		t.Fatalf("metrics %d %s", code, body)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if cfg, _ := rdb.HGetAll(context.Background(), "feed.config:demo").Result(); cfg["type"] != "sorted_feed" || cfg["title"] != "Demo" {
		t.Fatalf("create_feeds: demo config %v", cfg)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
}

// The shipped bridge.yaml runs as is (only its two listen addresses are
// moved to free ports): the README's quick start works end to end.
func TestShippedConfigRuns(t *testing.T) {
	shipped, err := os.ReadFile("../../bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := strings.ReplaceAll(string(shipped), "127.0.0.1:8080", httpAddr)
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:6399", redisAddr)
	if cfg == string(shipped) || strings.Count(cfg, httpAddr) == 0 || strings.Count(cfg, redisAddr) == 0 {
		t.Fatal("the shipped config no longer names 127.0.0.1:8080 and 127.0.0.1:6399: update this test")
	}
	p := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, p, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	base := "http://" + httpAddr
	if err := waitReady(httpAddr); err != nil {
		t.Fatalf("the shipped config never became ready: %v", err)
	}
	// the README's quick start: publish with the local token, read it back
	req, _ := http.NewRequest("POST", base+"/v1/feeds/news/items", strings.NewReader(`{"title":"Hello","content":"first item"}`))
	req.Header.Set("Authorization", "Bearer feedbridge-local-dev-token")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "wait=10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/v1/feeds/news/items", "/atom/news"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	// anonymous readers may not publish (the shipped ACL)
	resp, err = http.Post(base+"/v1/feeds/news/items", "application/json", strings.NewReader(`{"title":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("anonymous publish: %d", resp.StatusCode)
	}
}

// waitReady polls /readyz at addr until it answers 200 (20s at most).
func waitReady(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("readyz answered %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

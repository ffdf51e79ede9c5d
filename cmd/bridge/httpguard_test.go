package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// guardedBridge is one bridge process for the tests of the shared
// listener: embedded Redis, REST and Atom on, a feed "a..b//c" with an
// item; started once per test process (fuzz workers are processes).
var guardedBridge struct {
	once sync.Once
	addr string
	err  error
}

func startGuarded(tb testing.TB) string {
	tb.Helper()
	guardedBridge.once.Do(func() {
		dir, err := os.MkdirTemp("", "httpguard")
		if err != nil {
			guardedBridge.err = err
			return
		}
		httpAddr, redisAddr := testenv.FreeAddr(tb), testenv.FreeAddr(tb)
		p := filepath.Join(dir, "bridge.yaml")
		cfg := "redis:\n  embedded_addr: " + redisAddr + "\nhttp:\n  listen: " + httpAddr +
			"\ncreate_feeds:\n  - {name: \"a..b//c\", type: feed}\n  - {name: news, type: feed}\n" +
			"acl:\n  - {actors: [\"*\"], feeds: [\"*\"], allow: [read]}\nrest:\n  enabled: true\n  rate_limit: {per_ip: {rate: 0}}\n" +
			"atom:\n  enabled: true\n  rate_limit: {per_ip: {rate: 0}}\n"
		if guardedBridge.err = os.WriteFile(p, []byte(cfg), 0o600); guardedBridge.err != nil {
			return
		}
		go func() { _ = run(context.Background(), p, io.Discard) }() // lives as long as the test process
		guardedBridge.addr = httpAddr
		if err := waitReady(httpAddr); err != nil {
			guardedBridge.err = fmt.Errorf("the bridge never got ready: %w", err)
		}
	})
	if guardedBridge.err != nil {
		tb.Fatal(guardedBridge.err)
	}
	return guardedBridge.addr
}

// rawExchange writes raw bytes on a new connection, closes its writing
// side, and returns every response read back (with bodies), for requests
// methods (to know which answers have no body).
func rawExchange(tb testing.TB, addr string, raw []byte) []*http.Response {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = c.Write(raw)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	// the requests as the server will read them, for their methods
	var methods []string
	rd := bufio.NewReader(bytes.NewReader(raw))
	for {
		req, err := http.ReadRequest(rd)
		if err != nil {
			break
		}
		methods = append(methods, req.Method)
		_, _ = io.Copy(io.Discard, req.Body)
	}
	var out []*http.Response
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		var req *http.Request
		if i < len(methods) {
			req = &http.Request{Method: methods[i]}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return out
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			tb.Fatalf("reading a response body: %v", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
}

// checkAnswer asserts what every answer on the shared listener promises:
// never a redirect, never a 500 (this bridge's data is well formed), and
// every error a problem document stating its own status.
func checkAnswer(tb testing.TB, raw []byte, resp *http.Response) {
	tb.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.StatusCode != http.StatusNotModified {
		tb.Fatalf("%q: a redirect %s to %q", raw, resp.Status, resp.Header.Get("Location"))
	}
	if resp.StatusCode == http.StatusInternalServerError {
		tb.Fatalf("%q: 500 %s", raw, body)
	}
	if resp.StatusCode < 400 {
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("%q: %s with Content-Type %q: %s", raw, resp.Status, ct, body)
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode || p.Type == "" {
		tb.Fatalf("%q: %s with problem %s", raw, resp.Status, body)
	}
}

func TestSharedListenerAnswersProblems(t *testing.T) {
	addr := startGuarded(t)
	huge := "X-Big: " + strings.Repeat("a", maxHeaderBytes+8<<10) + "\r\n"
	many := strings.Repeat("X-N: 1\r\n", maxHeaderFields+1)
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n" + huge + "\r\n", 431},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + "\r\n", 431},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Del: a\x7fb\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\n\r\n", 400},            // no Host
		{"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 505}, // unknown version
		{"POST /v1/feeds/news/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417},
		{"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n", 404}, // no slash redirect
		{"GET /atom HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET /v1//feeds HTTP/1.1\r\nHost: x\r\n\r\n", 404}, // no clean-path redirect
		{"GET /v1/feeds/../feeds HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET //healthz HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
		{"GET /v1/feeds/a..b%2F%2Fc HTTP/1.1\r\nHost: x\r\n\r\n", 200}, // a name with .. and //
		{"GET /v1/feeds/a..b%2F%2Fc/items HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"GET /atom/a..b%2F%2Fc HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	} {
		resps := rawExchange(t, addr, []byte(tc.raw))
		if len(resps) == 0 {
			t.Errorf("%.80q: no answer", tc.raw)
			continue
		}
		if resps[0].StatusCode != tc.status {
			body, _ := io.ReadAll(resps[0].Body)
			t.Errorf("%.80q: %s, want %d: %s", tc.raw, resps[0].Status, tc.status, body)
			continue
		}
		checkAnswer(t, []byte(tc.raw), resps[0])
		if tc.status == 405 && resps[0].Header.Get("Allow") == "" {
			t.Errorf("%.80q: 405 without Allow", tc.raw)
		}
	}
}

// FuzzRawRequest sends any bytes to the shared listener (REST, Atom,
// health, readiness and metrics behind it) and checks every answer:
// never a redirect, never a 500, every error a problem document. Its
// seeds (bad queries, conditions, bodies, paths, headers, pipelined
// requests, and what fuzzing found) are in testdata/fuzz/FuzzRawRequest
// and run with the unit tests.
func FuzzRawRequest(f *testing.F) {
	addr := startGuarded(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, resp := range rawExchange(t, addr, raw) {
			checkAnswer(t, raw, resp)
		}
	})
}

package atomtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Subscriber is a WebSub subscriber for tests: an HTTP server on loopback
// whose every path is a callback. It confirms verifications of intent
// (echoing hub.challenge) unless told to refuse them, answers deliveries
// 204 unless told otherwise, and records every request.
type Subscriber struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string

	mu       sync.Mutex
	gets     []Request
	posts    []Request
	fail     map[string]int
	status   map[string]int
	refuse   map[string]bool
	hold     map[string]chan struct{}
	inFlight map[string]int
	maxIn    map[string]int
}

// Request is a request a Subscriber received.
type Request struct {
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	At     time.Time
}

// NewSubscriber starts a subscriber, stopped when the test ends.
func NewSubscriber(tb testing.TB) *Subscriber {
	s := &Subscriber{fail: map[string]int{}, status: map[string]int{}, refuse: map[string]bool{},
		hold: map[string]chan struct{}{}, inFlight: map[string]int{}, maxIn: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(func() {
		s.mu.Lock()
		for p, ch := range s.hold { // let held deliveries end
			close(ch)
			delete(s.hold, p)
		}
		s.mu.Unlock()
		srv.Close()
	})
	s.URL = srv.URL
	return s
}

func (s *Subscriber) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body, At: time.Now()}
	s.mu.Lock()
	if r.Method == http.MethodGet {
		s.gets = append(s.gets, req)
		refuse := s.refuse[req.Path]
		s.mu.Unlock()
		if req.Query.Get("hub.mode") == "denied" {
			return
		}
		if refuse {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, req.Query.Get("hub.challenge"))
		return
	}
	s.posts = append(s.posts, req)
	s.inFlight[req.Path]++
	s.maxIn[req.Path] = max(s.maxIn[req.Path], s.inFlight[req.Path])
	hold := s.hold[req.Path]
	status := http.StatusNoContent
	switch {
	case s.fail[req.Path] > 0:
		s.fail[req.Path]--
		status = http.StatusInternalServerError
	case s.status[req.Path] != 0:
		status = s.status[req.Path]
	}
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}
	s.mu.Lock()
	s.inFlight[req.Path]--
	s.mu.Unlock()
	w.WriteHeader(status)
}

// Callback returns the callback URL of path.
func (s *Subscriber) Callback(path string) string { return s.URL + path }

// FailNext answers the next n deliveries to path with 500.
func (s *Subscriber) FailNext(path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[path] = n
}

// Answer answers every delivery to path with status (0: 204 again).
func (s *Subscriber) Answer(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[path] = status
}

// Refuse answers verifications of intent at path with 404 (the
// subscriber does not agree) while refuse is true.
func (s *Subscriber) Refuse(path string, refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[path] = refuse
}

// Hold makes deliveries to path wait until release is called.
func (s *Subscriber) Hold(path string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold[path] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold[path] == ch {
				delete(s.hold, path)
				close(ch)
			}
			s.mu.Unlock()
		})
	}
}

// Verifications returns the GETs received at path, denials included.
func (s *Subscriber) Verifications(path string) []Request { return s.filter(&s.gets, path) }

// Deliveries returns the POSTs received at path.
func (s *Subscriber) Deliveries(path string) []Request { return s.filter(&s.posts, path) }

// MaxInFlight returns the most deliveries to path seen at once.
func (s *Subscriber) MaxInFlight(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxIn[path]
}

func (s *Subscriber) filter(list *[]Request, path string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range *list {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// WaitDeliveries waits until path received at least n deliveries and
// returns them; it fails the test after 20s.
func (s *Subscriber) WaitDeliveries(tb testing.TB, path string, n int) []Request {
	tb.Helper()
	return wait(tb, fmt.Sprintf("%d deliveries at %s", n, path), func() []Request {
		if d := s.Deliveries(path); len(d) >= n {
			return d
		}
		return nil
	})
}

// WaitDelivery waits until path received a delivery whose body contains
// text and returns it; it fails the test after 20s.
func (s *Subscriber) WaitDelivery(tb testing.TB, path, text string) Request {
	tb.Helper()
	return wait(tb, fmt.Sprintf("a delivery at %s with %q", path, text), func() []Request {
		for _, d := range s.Deliveries(path) {
			if strings.Contains(string(d.Body), text) {
				return []Request{d}
			}
		}
		return nil
	})[0]
}

// WaitVerification waits until path received a GET with hub.mode mode
// and returns the last one; it fails the test after 20s.
func (s *Subscriber) WaitVerification(tb testing.TB, path, mode string) Request {
	tb.Helper()
	return wait(tb, fmt.Sprintf("a %s request at %s", mode, path), func() []Request {
		var out []Request
		for _, v := range s.Verifications(path) {
			if slices.Contains(v.Query["hub.mode"], mode) {
				out = []Request{v}
			}
		}
		return out
	})[0]
}

func wait(tb testing.TB, what string, got func() []Request) []Request {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r := got(); r != nil {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// HubRequest POSTs form to a hub (with optional header pairs) as
// application/x-www-form-urlencoded and returns the status and body.
func HubRequest(tb testing.TB, hub string, form url.Values, header ...string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, hub, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Subscription is the form of a subscription request.
func Subscription(mode, topic, callback string, more ...string) url.Values {
	f := url.Values{"hub.mode": {mode}, "hub.topic": {topic}, "hub.callback": {callback}}
	for i := 0; i+1 < len(more); i += 2 {
		f.Set(more[i], more[i+1])
	}
	return f
}

// VerifySignature checks an X-Hub-Signature header (method=hex) against
// body and secret, as a subscriber does (WebSub 7.1.2).
func VerifySignature(header, secret string, body []byte) error {
	method, sig, ok := strings.Cut(header, "=")
	algs := map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}
	if !ok || algs[method] == nil {
		return fmt.Errorf("X-Hub-Signature %q: want sha256=HEX (or sha384, sha512)", header)
	}
	want, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("X-Hub-Signature %q: not hex", header)
	}
	mac := hmac.New(algs[method], []byte(secret))
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), want) {
		return errors.New("X-Hub-Signature does not match the body and secret")
	}
	return nil
}

package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// idemPrefix prefixes the Redis keys that remember Idempotency-Keys.
const idemPrefix = "feedbridge.rest.idem:"

// bodyKey holds the request body in the gin context (for fingerprints).
const bodyKey = "feedbridge.body"

// maxIdemKeyLen bounds an Idempotency-Key.
const maxIdemKeyLen = 255

// idemPendingTTL is how long an Idempotency-Key is held for a request
// whose job is not stored yet (then idempotency_ttl): a bridge that dies
// meanwhile blocks the key's retries (409) this long at most.
const idemPendingTTL = 2 * time.Minute

// MoveRequest is the body of POST .../items/{id}/move.
type MoveRequest struct {
	// Position is :end, begin:, :ID (before ID) or ID: (after ID).
	Position string `json:"position"`
}

// ActionRequest is the body of POST .../actions/{verb}: every field is
// optional and passed to the worker as is.
type ActionRequest struct {
	ID string `json:"id"`
	// Item is the payload: a JSON string is taken as its text, any other
	// JSON value as its JSON.
	Item json.RawMessage `json:"item"`
	// ItemBase64 is a binary payload, instead of Item.
	ItemBase64 []byte   `json:"item_base64"`
	Position   string   `json:"position"`
	Args       []string `json:"args"`
}

func (b *Bridge) publish(c *gin.Context) {
	item, ok := b.itemBody(c)
	if !ok {
		return
	}
	b.act(c, core.Action{Verb: core.VerbPublish, ID: c.Query("id"), Item: item, Position: c.Query("position")})
}

func (b *Bridge) edit(c *gin.Context) {
	item, ok := b.itemBody(c)
	if !ok {
		return
	}
	b.act(c, core.Action{Verb: core.VerbEdit, ID: param(c, "id"), Item: item})
}

func (b *Bridge) retract(c *gin.Context) {
	b.act(c, core.Action{Verb: core.VerbRetract, ID: param(c, "id")})
}

func (b *Bridge) move(c *gin.Context) {
	var req MoveRequest
	if !b.jsonBody(c, &req, false) {
		return
	}
	b.act(c, core.Action{Verb: core.VerbMove, ID: param(c, "id"), Position: req.Position})
}

func (b *Bridge) custom(c *gin.Context) {
	var req ActionRequest
	if !b.jsonBody(c, &req, true) {
		return
	}
	act := core.Action{Verb: param(c, "verb"), ID: req.ID, Position: req.Position, Args: req.Args}
	switch {
	case len(req.Item) > 0 && req.ItemBase64 != nil:
		fail(c, "bad-request", "send item or item_base64, not both")
		return
	case req.ItemBase64 != nil:
		act.Item = req.ItemBase64
	case len(req.Item) > 0 && req.Item[0] == '"':
		var s string
		_ = json.Unmarshal(req.Item, &s) // valid: the body decoded
		act.Item = []byte(s)
	case len(req.Item) > 0 && !bytes.Equal(req.Item, []byte("null")):
		act.Item = req.Item
	}
	b.act(c, act)
}

// readBody reads the request body within max_body_bytes (413 beyond).
func (b *Bridge) readBody(c *gin.Context) ([]byte, bool) {
	if c.Request.ContentLength > b.cfg.MaxBodyBytes {
		fail(c, "too-large", "the body is over the limit of "+strconv.FormatInt(b.cfg.MaxBodyBytes, 10)+" bytes")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, b.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		fail(c, "too-large", "the body is over the limit of "+strconv.FormatInt(b.cfg.MaxBodyBytes, 10)+" bytes")
		return nil, false
	case err != nil:
		fail(c, "bad-request", "the body could not be read")
		return nil, false
	}
	c.Set(bodyKey, body)
	return body, true
}

// isJSON reports whether the request declares a JSON body.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// itemBody reads an item payload: the body as is, which must be valid
// JSON when it is declared as JSON.
func (b *Bridge) itemBody(c *gin.Context) ([]byte, bool) {
	body, ok := b.readBody(c)
	if !ok {
		return nil, false
	}
	if len(body) == 0 {
		fail(c, "bad-request", "the body is the item, and it is empty")
		return nil, false
	}
	if isJSON(c.Request) && (!utf8.Valid(body) || !json.Valid(body)) {
		fail(c, "bad-request", "the body is declared as JSON but is not valid JSON in UTF-8")
		return nil, false
	}
	return body, true
}

// jsonBody decodes a JSON request body strictly into v; an empty body is
// allowed when optional.
func (b *Bridge) jsonBody(c *gin.Context, v any, optional bool) bool {
	body, ok := b.readBody(c)
	if !ok {
		return false
	}
	if len(body) == 0 && optional {
		return true
	}
	if ct := c.GetHeader("Content-Type"); ct != "" && !isJSON(c.Request) {
		fail(c, "unsupported-media", "send the body as application/json")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if !utf8.Valid(body) { // JSON is UTF-8 (RFC 8259 8.1); the decoder would replace bad bytes
		fail(c, "bad-request", "the body is not valid UTF-8")
		return false
	}
	if err := dec.Decode(v); err != nil || !atEOF(dec) {
		fail(c, "bad-request", "the body is not the JSON object this request takes (see /v1/openapi.json)")
		return false
	}
	return true
}

// atEOF reports whether nothing but white space follows the decoded value
// (dec.More misses a stray '}' or ']').
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// act checks an action, applies If-Match and Idempotency-Key, stores the
// job and answers with its status (or, with Prefer: wait, its result).
func (b *Bridge) act(c *gin.Context, act core.Action) {
	feed, actor := param(c, "feed"), actorOf(c)
	act.Feed, act.Actor = feed, actor
	if err := thoonk.ValidateFeedName(feed); err != nil {
		fail(c, "bad-request", err.Error())
		return
	}
	if !b.hub.Exposed(b.cfg.Feeds).Allows(feed) {
		fail(c, "not-found", "")
		return
	}
	ctx := c.Request.Context()
	if err := b.hub.Actions.Check(ctx, act); err != nil {
		if errors.Is(err, core.ErrDenied) && !b.hub.ACL.Allowed(actor, feed, core.OpRead) {
			err = thoonk.ErrFeedNotFound // may neither read nor do this: no existence leak
		}
		b.failErr(c, err)
		return
	}
	im, err := core.ParseETags("If-Match", c.Request.Header.Values("If-Match"))
	if err != nil {
		fail(c, "bad-request", err.Error())
		return
	}
	if im.Any || len(im.Tags) > 0 {
		etag := ""
		it, err := readItem(ctx, b.hub.Store, feed, act.ID)
		switch {
		case err == nil:
			body, _ := json.Marshal(it)
			etag = etagOf(append(body, '\n'))
		case !errors.Is(err, thoonk.ErrNotFound):
			b.failErr(c, err)
			return
		}
		if !im.Matches(etag, false) {
			fail(c, "precondition-failed", "the item changed (or is gone) since the If-Match version; no job was created")
			return
		}
	}
	wait := preferWait(c.Request.Header.Values("Prefer"), b.cfg.MaxWait)
	if wait > 0 {
		_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(wait + b.cfg.Events.WriteTimeout))
	}
	if key := c.GetHeader("Idempotency-Key"); key != "" && c.Request.Method == http.MethodPost {
		b.idempotent(c, act, key, wait)
		return
	}
	t, res, err := b.submitWait(ctx, act, wait, nil)
	if err != nil {
		b.failErr(c, err)
		return
	}
	b.answerJob(c, submitted(t, res), wait)
}

// submitWait stores the action's job, calls stored (when not nil) once it
// is in Redis, and waits up to wait for its result. A nil result means the
// wait ran out, the client left or the bridge is stopping: the job is
// stored and runs all the same. The wait ends when the bridge stops, so
// that a graceful shutdown never waits for a worker.
func (b *Bridge) submitWait(ctx context.Context, act core.Action, wait time.Duration,
	stored func(core.Ticket)) (core.Ticket, *core.Result, error) {
	var w *thoonk.ResultWaiter
	var t core.Ticket
	var err error
	if wait > 0 {
		t, w, err = b.hub.Actions.SubmitWatch(ctx, act)
	} else {
		t, err = b.hub.Actions.Submit(ctx, act)
	}
	if err != nil {
		return core.Ticket{}, nil, err
	}
	if stored != nil {
		stored(t)
	}
	if w == nil {
		return t, nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	defer context.AfterFunc(b.stopping, cancel)()
	raw, err := w.Wait(wctx) // unregisters the waiter
	if err != nil {
		return t, nil, nil
	}
	r := core.ParseResult(raw)
	return t, &r, nil
}

// submitted is the status of a job just stored: finished when its result
// is known, else queued.
func submitted(t core.Ticket, res *core.Result) core.JobStatus {
	st := core.JobStatus{Queue: t.Queue, JobID: t.JobID, State: thoonk.JobQueued, Result: res}
	if res != nil {
		st.State = thoonk.JobFinished
	}
	return st
}

// preferWait reads RFC 7240 "Prefer: wait=N", capped at max.
func preferWait(headers []string, max time.Duration) time.Duration {
	for _, h := range headers {
		for pref := range strings.SplitSeq(h, ",") {
			pref, _, _ = strings.Cut(pref, ";")
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err == nil && n > 0 {
				return seconds(n, max)
			}
		}
	}
	return 0
}

// seconds returns n seconds, at most max (without overflowing).
func seconds(n int, max time.Duration) time.Duration {
	if n >= int(max/time.Second) {
		return max
	}
	return time.Duration(n) * time.Second
}

func jobPath(t core.Ticket) string {
	return "/v1/jobs/" + pathSegment(t.Queue) + "/" + pathSegment(t.JobID)
}

// pathSegment percent-encodes a name as one path segment; the
// dot-segments "." and ".." are encoded too, or paths would be shortened.
func pathSegment(name string) string {
	if name == "." || name == ".." {
		return strings.ReplaceAll(name, ".", "%2E")
	}
	return url.PathEscape(name)
}

// answerJob answers 202 with the job's status, or, once it has a result,
// the result's 2xx code and the finished status, or the worker's failure
// as a problem with the worker's status code.
func (b *Bridge) answerJob(c *gin.Context, st core.JobStatus, wait time.Duration) {
	if wait > 0 {
		c.Header("Preference-Applied", "wait="+strconv.Itoa(int(wait.Seconds())))
	}
	c.Header("Cache-Control", "no-store")
	t, res := core.Ticket{Queue: st.Queue, JobID: st.JobID}, st.Result
	switch {
	case res == nil:
		c.Header("Location", jobPath(t))
		writeJSON(c, http.StatusAccepted, st)
	case res.OK:
		code := http.StatusOK
		if res.Code == http.StatusCreated {
			code = http.StatusCreated
			c.Header("Location", "/v1/feeds/"+pathSegment(param(c, "feed"))+"/items/"+pathSegment(res.ID))
		}
		c.Header("Content-Location", jobPath(t))
		writeJSON(c, code, st)
	default:
		k, ok := kindByStatus[res.Code]
		code := res.Code
		if !ok {
			k, code = "job-failed", http.StatusInternalServerError
			if res.Code >= 500 && res.Code <= 599 {
				code = res.Code
			}
		}
		p := newProblem(k, code, res.Error)
		p.Job = &t
		writeProblem(c, p)
	}
}

// idemRecord is what Redis remembers of an Idempotency-Key: the request's
// fingerprint, and the job once it is stored.
type idemRecord struct {
	Fingerprint string `json:"f"`
	Queue       string `json:"q,omitempty"`
	JobID       string `json:"j,omitempty"`
}

// idempotent submits act at most once per (actor, key) within
// idempotency_ttl. SET NX claims the key (for idemPendingTTL) before the
// job is stored, and the job is recorded there (for idempotency_ttl) once
// it is, so two concurrent requests with one key create one job: the
// second gets 409 while the first is being stored, and the first job's
// status once it is (also while the first still waits for its result). A
// key reused for a different request gets 422.
func (b *Bridge) idempotent(c *gin.Context, act core.Action, key string, wait time.Duration) {
	actor := act.Actor
	key = strings.Trim(key, `"`) // the draft standard's sf-string form
	if key == "" || len(key) > maxIdemKeyLen || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		fail(c, "bad-request", "Idempotency-Key must be 1 to 255 printable ASCII characters")
		return
	}
	ctx, rdb := c.Request.Context(), b.hub.Store.Client()
	rk := idemPrefix + hash(actor.String(), key)
	body, _ := c.Get(bodyKey)
	bs, _ := body.([]byte)
	fp := hash(c.Request.Method, c.Request.URL.RequestURI(), string(bs))
	pending, _ := json.Marshal(idemRecord{Fingerprint: fp})
	won, err := rdb.SetNX(ctx, rk, pending, min(idemPendingTTL, b.cfg.IdempotencyTTL)).Result()
	if err != nil {
		b.failErr(c, err)
		return
	}
	if !won {
		raw, err := rdb.Get(ctx, rk).Bytes()
		var rec idemRecord
		switch {
		case errors.Is(err, redis.Nil):
			c.Header("Retry-After", "1")
			fail(c, "conflict", "a request with this Idempotency-Key just expired; retry")
			return
		case err != nil:
			b.failErr(c, err)
			return
		case json.Unmarshal(raw, &rec) != nil || rec.Fingerprint != fp:
			fail(c, "invalid-item", "this Idempotency-Key was used for a different request")
			return
		case rec.JobID == "":
			c.Header("Retry-After", "1")
			fail(c, "conflict", "a request with this Idempotency-Key is still in progress")
			return
		}
		t := core.Ticket{Queue: rec.Queue, JobID: rec.JobID}
		st, err := b.hub.Actions.Status(ctx, t.Queue, t.JobID)
		if err != nil {
			b.failErr(c, err)
			return
		}
		c.Header("Idempotent-Replayed", "true")
		b.answerJob(c, st, 0)
		return
	}
	// the key's record is written even when the client has left meanwhile:
	// its retry must find the job
	bg := context.WithoutCancel(ctx)
	t, res, err := b.submitWait(ctx, act, wait, func(t core.Ticket) {
		done, _ := json.Marshal(idemRecord{Fingerprint: fp, Queue: t.Queue, JobID: t.JobID})
		if err := rdb.Set(bg, rk, done, b.cfg.IdempotencyTTL).Err(); err != nil {
			b.hub.Log.Warn("rest: remember idempotency key", "err", err)
		}
	})
	if err != nil {
		_ = rdb.Del(bg, rk).Err() // nothing was stored: a retry may try again
		b.failErr(c, err)
		return
	}
	b.answerJob(c, submitted(t, res), wait)
}

// hash returns a hex SHA-256 of NUL-separated parts.
func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// jobStatus shows a job to the actor who submitted it; anyone else, and
// unknown or expired jobs, get the same 404.
func (b *Bridge) jobStatus(c *gin.Context) {
	queue, id := param(c, "queue"), param(c, "id")
	if !slices.Contains(b.hub.Actions.Queues(), queue) {
		fail(c, "not-found", "")
		return
	}
	st, err := b.hub.Actions.Status(c.Request.Context(), queue, id)
	if err != nil {
		b.failErr(c, err)
		return
	}
	if st.State == thoonk.JobUnknown || st.Submitter != actorOf(c).String() {
		fail(c, "not-found", "") // another actor's job looks like no job
		return
	}
	c.Header("Cache-Control", "no-store")
	writeJSON(c, http.StatusOK, st)
}

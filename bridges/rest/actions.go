package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// bodyKey holds the request body in the gin context (for fingerprints).
const bodyKey = "feedbridge.body"

// maxIdemKeyLen bounds an Idempotency-Key.
const maxIdemKeyLen = 255

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
	act, err := req.action(param(c, "verb"))
	if err != nil {
		fail(c, "bad-request", err.Error())
		return
	}
	b.act(c, act)
}

// action builds the action the request describes, for verb: an item that
// is a JSON string is its text, any other JSON value its JSON.
func (req ActionRequest) action(verb string) (core.Action, error) {
	act := core.Action{Verb: verb, ID: req.ID, Position: req.Position, Args: req.Args}
	switch {
	case len(req.Item) > 0 && req.ItemBase64 != nil:
		return act, fmt.Errorf("send item or item_base64, not both: %w", thoonk.ErrInvalid)
	case req.ItemBase64 != nil:
		act.Item = req.ItemBase64
	case len(req.Item) > 0 && req.Item[0] == '"':
		var s string
		_ = json.Unmarshal(req.Item, &s) // valid: the message decoded
		act.Item = []byte(s)
	case len(req.Item) > 0 && !bytes.Equal(req.Item, []byte("null")):
		act.Item = req.Item
	}
	return act, nil
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
	feed := param(c, "feed")
	act.Feed, act.Actor = feed, actorOf(c)
	ctx := c.Request.Context()
	if err := b.checkAction(ctx, act); err != nil {
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
			etag = itemETag(it, append(body, '\n'))
		case !errors.Is(err, thoonk.ErrNotFound):
			b.failErr(c, err)
			return
		}
		if !im.Matches(etag, false) {
			now := "the item is gone"
			if etag != "" {
				now = "its version is now " + etag
			}
			fail(c, "precondition-failed", "the item changed since the If-Match version ("+now+"); no job was created")
			return
		}
		// the worker checks the revision again as it applies the change,
		// atomically: a change landing between here and there is refused
		if rev, ok := revTag(im); ok {
			act.ExpectRev = rev
		}
	}
	wait := preferWait(c.Request.Header.Values("Prefer"), b.cfg.MaxWait)
	if wait > 0 {
		_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(wait + b.cfg.Events.WriteTimeout))
	}
	opts := core.SubmitOptions{Watch: wait > 0}
	if key := c.GetHeader("Idempotency-Key"); key != "" && c.Request.Method == http.MethodPost {
		key = strings.Trim(key, `"`) // the draft standard's sf-string form
		if key == "" || len(key) > maxIdemKeyLen || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			fail(c, "bad-request", "Idempotency-Key must be 1 to 255 printable ASCII characters")
			return
		}
		body, _ := c.Get(bodyKey)
		bs, _ := body.([]byte)
		opts.Key, opts.Fingerprint = key, hash(c.Request.Method, c.Request.URL.RequestURI(), string(bs))
	}
	sub, res, err := b.submitWait(ctx, act, wait, opts)
	switch {
	case errors.Is(err, core.ErrKeyReused):
		fail(c, "invalid-item", "this Idempotency-Key was used for a different request")
		return
	case err != nil:
		b.failErr(c, err)
		return
	}
	st := submitted(sub.Ticket, res)
	if sub.Replayed {
		c.Header("Idempotent-Replayed", "true")
		if res == nil { // the first request's job: show where it stands
			if st, err = b.hub.Actions.Status(ctx, sub.Queue, sub.JobID); err != nil {
				b.failErr(c, err)
				return
			}
		}
	}
	b.answerJob(c, st, wait)
}

// checkAction checks an action from this adapter without storing it: a
// feed the adapter does not expose, or one the actor may neither read nor
// act on, is not found (no existence leak).
func (b *Bridge) checkAction(ctx context.Context, act core.Action) error {
	if err := thoonk.ValidateFeedName(act.Feed); err != nil {
		return err
	}
	if !b.hub.Exposed(b.cfg.Feeds).Allows(act.Feed) {
		return thoonk.ErrFeedNotFound
	}
	err := b.hub.Actions.Check(ctx, act)
	if errors.Is(err, core.ErrDenied) && !b.hub.ACL.Allowed(act.Actor, act.Feed, core.OpRead) {
		return thoonk.ErrFeedNotFound
	}
	return err
}

// submitWait stores the action's job (once per idempotency key) and waits
// up to wait for its result (see awaitResult).
func (b *Bridge) submitWait(ctx context.Context, act core.Action, wait time.Duration, opts core.SubmitOptions) (core.Submitted, *core.Result, error) {
	sub, err := b.hub.Actions.SubmitWith(ctx, act, opts)
	if err != nil {
		return sub, nil, err
	}
	return sub, b.awaitResult(ctx, sub.Waiter, wait), nil
}

// store stores the action's job; with watch, it also returns the waiter
// for its result, registered before the job is stored.
func (b *Bridge) store(ctx context.Context, act core.Action, watch bool) (core.Ticket, *thoonk.ResultWaiter, error) {
	sub, err := b.hub.Actions.SubmitWith(ctx, act, core.SubmitOptions{Watch: watch})
	return sub.Ticket, sub.Waiter, err
}

// awaitResult waits up to wait for a job's result (nil w: none awaited);
// nil when the wait runs out, ctx ends or the bridge stops, so that a
// graceful shutdown never waits for a worker: the job is stored and runs
// all the same. A job finished without a result gives a plain success.
func (b *Bridge) awaitResult(ctx context.Context, w *thoonk.ResultWaiter, wait time.Duration) *core.Result {
	if w == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	defer context.AfterFunc(b.stopping, cancel)()
	res, err := core.WaitResult(wctx, w) // unregisters the waiter
	if err != nil {
		return nil
	}
	return res
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

// pathSegment percent-encodes a name as one path segment.
func pathSegment(name string) string { return core.PathSegment(name) }

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
		detail := res.Error
		if res.Message != "" {
			detail = strings.TrimPrefix(detail+": "+res.Message, ": ")
		}
		p := newProblem(k, code, detail)
		p.Job = &t
		writeProblem(c, p)
	}
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

package rest

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// problemPath is where problem type URIs live; each kind is served there.
const problemPath = "/v1/problems/"

// A kind is one stable problem type (RFC 9457): its type URI is
// /v1/problems/{kind}, which also serves its description.
type kind struct {
	status int
	title  string
	about  string
}

// The problem types; their names are part of the API and never change.
var kinds = map[string]kind{
	"bad-request":         {400, "Bad request", "The request is malformed: a bad parameter, header, cursor, name or body. Fix the request; retrying it unchanged fails again."},
	"unauthorized":        {401, "Unauthorized", "No valid bearer token was sent, and anonymous access is off or the token is wrong."},
	"forbidden":           {403, "Forbidden", "The token is valid and may read the feed, but the ACL does not allow this operation."},
	"not-found":           {404, "Not found", "The feed or item does not exist, is not exposed by this bridge, or may not be read with this token: all look the same."},
	"method-not-allowed":  {405, "Method not allowed", "The resource exists but does not support this method; see the Allow header."},
	"conflict":            {409, "Conflict", "The request conflicts with the feed's current state, such as its type."},
	"history-gone":        {410, "History gone", "The changes after that revision are no longer kept (older than the journal's bounds), or the revision is not from this feed's journal. Reload the feed, then follow its changes from the revision this problem gives."},
	"precondition-failed": {412, "Precondition failed", "If-Match names a version of the item that is no longer current (or the item is gone). Reload it and try again."},
	"too-large":           {413, "Content too large", "The request body or item is over the configured limit."},
	"unsupported-media":   {415, "Unsupported media type", "The body must be JSON (application/json) for this request."},
	"invalid-item":        {422, "Unprocessable item", "The request is well-formed but cannot be applied: the item does not fit the feed's schema, or an Idempotency-Key was reused for a different request."},
	"rate-limited":        {429, "Too many requests", "The client went over its request rate; wait for the Retry-After seconds."},
	"job-failed":          {500, "Job failed", "The worker finished the job with a failure."},
	"internal":            {500, "Internal error", "The bridge failed unexpectedly; the error is logged on the server."},
	"upgrade-required":    {426, "Upgrade required", "This resource is a WebSocket: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)."},
	"malformed-feed":      {500, "Malformed feed", "The feed's data in Redis does not follow the Thoonk schema (a key of another type, an unknown feed type, an invalid name): an operator must repair or delete it. Other feeds are not affected."},
	"not-implemented":     {501, "Not implemented", "No worker handles this verb on its queue (the built-in worker handles publish, edit, retract and move only)."},
	"unavailable":         {503, "Service unavailable", "The feed store or the bridge is temporarily unavailable, or too many streams are open; retry after Retry-After seconds."},
}

// kindByStatus maps a worker result code to its problem kind.
var kindByStatus = map[int]string{
	400: "bad-request", 403: "forbidden", 404: "not-found", 409: "conflict", 412: "precondition-failed",
	413: "too-large", 422: "invalid-item", 501: "not-implemented",
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Job is the job a failed action became, when there is one.
	Job *core.Ticket `json:"job,omitempty"`
}

// newProblem builds a problem of a kind; status 0 means the kind's own.
func newProblem(k string, status int, detail string) Problem {
	kd := kinds[k]
	if status == 0 {
		status = kd.status
	}
	return Problem{Type: problemPath + k, Title: kd.title, Status: status, Detail: detail}
}

// writeProblem answers with a problem and stops the handler chain.
func writeProblem(c *gin.Context, p Problem) {
	if p.Instance == "" {
		p.Instance = c.Request.URL.EscapedPath() // not the query: it may hold access_token
	}
	b, _ := json.Marshal(p) // cannot fail: plain fields
	c.Header("Cache-Control", "no-store")
	c.Data(p.Status, "application/problem+json", append(b, '\n'))
	c.Abort()
}

// fail answers with a problem of kind k.
func fail(c *gin.Context, k, detail string) { writeProblem(c, newProblem(k, 0, detail)) }

// problemOf maps a core error to its problem kind and detail; ok is false
// for errors that are not the client's fault (Redis unreachable), which
// are logged and never shown.
func problemOf(err error) (kind, detail string, ok bool) {
	switch {
	case errors.Is(err, core.ErrDenied):
		return "forbidden", err.Error(), true
	case errors.Is(err, thoonk.ErrNotFound):
		return "not-found", "", true
	case errors.Is(err, core.ErrTooLarge):
		return "too-large", err.Error(), true
	case errors.Is(err, thoonk.ErrWrongType):
		return "conflict", err.Error(), true
	case errors.Is(err, thoonk.ErrInvalid):
		return "bad-request", err.Error(), true
	}
	return "", "", false
}

// failErr maps a core error to its problem; errors that are not the
// client's fault are logged and answered without their text, so Redis
// errors never reach a client.
func (b *Bridge) failErr(c *gin.Context, err error) {
	if !errors.Is(err, core.ErrDenied) && b.hub.Malformed(b.Name(), err) {
		fail(c, "malformed-feed", err.Error())
		return
	}
	if k, detail, ok := problemOf(err); ok {
		fail(c, k, detail)
		return
	}
	if c.Request.Context().Err() != nil {
		c.Abort() // the client is gone
		return
	}
	b.hub.Log.Error("rest: request failed", "method", c.Request.Method, "path", c.Request.URL.EscapedPath(), "err", err)
	c.Header("Retry-After", "1")
	fail(c, "unavailable", "the feed store did not answer; retry later")
}

// serveProblemType describes a problem type, so that type URIs resolve.
func serveProblemType(c *gin.Context) {
	k, ok := kinds[param(c, "kind")]
	if !ok {
		fail(c, "not-found", "")
		return
	}
	c.Header("Cache-Control", "public, max-age=86400")
	c.JSON(http.StatusOK, gin.H{"type": problemPath + param(c, "kind"), "title": k.title, "status": k.status, "description": k.about})
}

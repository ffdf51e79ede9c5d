// Package rest is feedbridge's REST adapter: feeds as HTTP resources under
// /v1 (gin, mounted on the shared listener), actions as jobs, and live
// Server-Sent Events and WebSocket messages.
//
// The model in a few lines:
//
//   - Reads go straight to the store: feeds, pages of items in display
//     order with opaque cursors, single items whose ETag is their journal
//     revision; every GET route answers HEAD too. A feed the adapter does
//     not expose, or the client may not read, is a 404 exactly like an
//     unknown one.
//   - Writes never touch a feed: POST, PUT, DELETE, move and custom verbs
//     become core actions stamped with the token's actor (rest:NAME, or
//     rest:anonymous), stored as jobs before the 202 answer; Prefer: wait
//     waits for the worker's result, Idempotency-Key makes retries safe,
//     If-Match is checked before the job is stored and again, atomically,
//     by the worker (412 with the current revision). A job's status is
//     shown to the actor who submitted it only.
//   - Event ids are journal revisions (one feed) or a millisecond with the
//     revisions at it (several feeds), so a client that reconnects with
//     Last-Event-ID, to any process and after restarts, gets exactly what
//     it missed, read from the feeds' journals, or a reset event when the
//     journals no longer hold it. One core subscription to the journals'
//     announcements feeds a bounded ring of rendered events: a cache the
//     streams read live events from; what it cannot tell comes from the
//     journals. GET /v1/feeds/{feed}/changes pages through one journal.
//   - Every SSE stream and every WebSocket subscription (GET /v1/ws, with
//     github.com/coder/websocket) reads events through one follower:
//     the same events, ids, replay and resets on both. The socket also
//     takes actions and answers with their jobs' results; it keeps the
//     SSE rules (auth, ACL, rate limit per message, a max_streams slot,
//     write_timeout, heartbeats).
//   - Errors are RFC 9457 problems with stable type URIs under
//     /v1/problems/; the API is described by /v1/openapi.json (its
//     servers entry is http.public_url) and, for people, by /v1/docs,
//     rendered on the server from the same document.
package rest

// Package atom is feedbridge's Atom adapter: it serves every exposed plain
// and sorted feed as an Atom 1.0 document (RFC 4287) at /atom/{feed}, and
// the same entries as RSS 2.0 at /rss/{feed} and JSON Feed 1.1 at
// /json/{feed}, for feed readers and aggregators. It is read only.
//
// The model in a few lines:
//
//   - An item becomes an entry whose id is a tag: URI made of the
//     configured authority, the feed name and the item id, so it never
//     changes across renders or edits. JSON items are read through the
//     mappings of the config; anything else is shown as escaped text.
//   - Thoonk keeps publish times for plain feeds only. Run follows the
//     feed events and records in Redis (feedbridge.atom.* keys) when items
//     are published, edited, moved and retracted, so that every bridge
//     process and restart shows the same updated and published times and
//     lists recently retracted items as RFC 6721 tombstones. The events
//     queued at a time are recorded in one pipelined round trip; an event
//     Redis refuses (an error reply) is logged and skipped, the others are
//     retried while Redis cannot be reached.
//   - Pages hold the newest entries of plain feeds (position order for
//     sorted feeds); RFC 5005 next/previous links carry opaque cursors.
//   - Rendered documents are cached per feed until the feed's next change
//     event (and dropped on every resync); a strong ETag and Last-Modified
//     let polling readers get 304 answers without any render.
//   - Only feeds the reader may read (ACL operation read) and the feed
//     selection exposes are served; every other name is a 404. A reader
//     without a token is atom:anonymous; one with a token from the config
//     (Bearer, HTTP Basic password, or ?access_token=) is atom:NAME, and a
//     wrong token is a 401 before the feed is looked at. Documents do not
//     depend on the reader, so one cached copy serves every reader allowed
//     to see it; answers to token readers are private.
//   - Requests the cache cannot answer (renders) and wrong tokens are
//     limited per client address (core.RateLimiter): 429 with Retry-After.
//   - With atom.websub, the adapter is a WebSub hub (websub*.go) for its
//     documents: first pages advertise it, POST /websub takes
//     subscriptions (verified at the callback, leased, optionally signed
//     with HMAC), and every change is pushed to the subscriptions. Its
//     state lives in Redis (feedbridge.{websub}.*): one process of a fleet
//     takes each feed event (a SET NX dedup key), and fan-out and delivery
//     jobs on a Thoonk job feed share the work between processes, one job
//     at a time per feed and per subscription, newest document first.
//     Callbacks reach only public addresses (checked at every connection)
//     unless allowed.
package atom

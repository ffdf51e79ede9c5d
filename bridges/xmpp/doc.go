// Package xmpp is feedbridge's XMPP adapter: an XEP-0060 publish-subscribe
// service on an XEP-0114 component attached to an existing XMPP server.
//
// The model in a few lines:
//
//   - Every exposed plain or sorted feed is a leaf node (node name = the
//     configured prefix + the feed name). Discovery, item retrieval (with
//     max_items and XEP-0059 paging), subscriptions and publish/retract
//     are served; everything else is answered feature-not-implemented.
//   - The stanza handler only parses a request and hands it to a worker
//     (sharded by sender, so one sender's requests keep their order);
//     workers read Redis, submit actions and send the reply.
//   - Publish and retract become core actions stamped with the sender's
//     bare JID as the server proved it; the reply comes once the job is in
//     Redis (or, with wait, once a worker finished it).
//   - Subscriptions live in Redis (hash feedbridge.xmpp.subscriptions:JID,
//     JID being the component's) and are mirrored in memory for fan-out;
//     an account holds at most max_subscriptions_per_jid of them.
//   - Feed events become notifications queued per node (bounded per node
//     and in bytes across nodes, oldest dropped on overflow); one sender
//     writes them, nodes taking turns, so a node with thousands of
//     subscribers never stalls the others.
//   - Notifications follow each feed's journal (every change, with its
//     revision): a node's cursor is the last change queued for its
//     subscribers, kept in Redis (hash feedbridge.xmpp.cursors:JID, only
//     ever moved forward). Live journal events after the cursor are
//     queued; after a start, a takeover or lost events (a resync) the
//     journal is read from the cursor, so edits, retractions and sorted
//     feeds' moves are delivered in order, each once, whoever wrote them.
//   - Items carry the revision of their last change (attribute rev in
//     urn:feedbridge:rev:0), and publish-options' x-feedbridge#rev makes a
//     publish conditional on it (checked again atomically by the worker).
//   - The component runs in one process of a fleet at a time (a lease);
//     every write to the server checks the lease first.
//   - Every write to the server is bounded by a deadline, the handler's
//     immediate answers included; requests are rate limited per bare JID
//     and per domain.
//   - The component reconnects with backoff and jitter and rebuilds all of
//     its state from the config and Redis.
//
// # What mellium.im/xmpp (v0.23.0) does here, and what it does not
//
// The session, the XEP-0114 handshake and the stream are mellium's
// (component, xmpp, jid, xmlstream). Replies are built from mellium's
// marshalers where they fit: stanza.Error for every error (the pubsub
// condition as its application-specific condition), disco/info Identity
// and Feature, disco/items Item, and paging.Set for the RSM <set/> of a
// page that holds items. The rest is this package's own, for these
// reasons:
//
//   - mux: its handlers run on the session's read loop and answer there.
//     Here the read loop only parses a request within size limits, applies
//     the sender's and its domain's rate limits, and hands it to a worker
//     chosen by sender (whose replies may wait for a job's result); an IQ
//     that waited for Redis in a mux handler would stall every other
//     sender's requests and the server's stream (see handler in bridge.go).
//   - disco's Handle answers from a fixed list of features and identities;
//     nodes here are feeds, and which exist, and what their meta-data says
//     (title, models, counts), depends on Redis and on the asking JID's ACL.
//   - paging: Set writes <first/> and <last/> even for an empty page, which
//     XEP-0059 2.6 forbids (an empty page carries only <count/>: rsmReply
//     writes that itself); the package parses no requests (its request
//     types are the client side, and RequestPrev cannot tell an empty
//     <before/> from none), so parseRSM is ours.
//   - stanza: its IQ and Message types marshal through xml.Encoder per
//     stanza; a notification to 1,000 subscribers is the same payload
//     1,000 times, so it is encoded once and each message around it is
//     written as bytes (notifier.write). The end-to-end fan-out time is
//     set by the server parsing the stanzas, not by this (see
//     docs/benchmarks.md).
//   - xmltree.go: mellium reads streams as tokens but has no element tree
//     with limits; a request is read into a tree bounded in bytes, depth
//     and elements before anything else looks at it, and items published
//     as XML are parsed strictly and re-encoded token by token (payload.go).
package xmpp

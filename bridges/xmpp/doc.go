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
//   - Plain feeds are notified from a per-node cursor kept in Redis (hash
//     feedbridge.xmpp.cursors:JID): an event only wakes the dispatcher,
//     which reads every item published since the cursor; so a restart or
//     lost events (a resync) deliver what was missed, each item once.
//   - Every write to the server is bounded by a deadline, the handler's
//     immediate answers included; requests are rate limited per bare JID
//     and per domain.
//   - The component reconnects with backoff and jitter and rebuilds all of
//     its state from the config and Redis.
package xmpp

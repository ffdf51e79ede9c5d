// Package core is feedbridge's shared foundation: the Thoonk schema on Redis,
// the live event mirror, actions turned into jobs, and the contract adapters
// implement.
//
// The model in a few lines:
//
//   - [Store] speaks the Thoonk schema byte for byte: the feed registry, plain
//     feeds, sorted feeds, queues and job feeds. Every multi-step operation is
//     one embedded Lua script run with EVALSHA, all of whose keys share the
//     feed name (so a hash-tagged feed lives in one Redis Cluster slot).
//   - [Listener] holds one pubsub connection per process, pattern-subscribed
//     to every feed's channels, and fans typed [Event] values out to any
//     number of [Subscription] values, each with a bounded queue. A consumer
//     that falls behind, or that was following while Redis was unreachable,
//     receives an [EventResync] and must reload its state: it never sees a
//     silent gap.
//   - Job feeds never lose work: [JobFeed.Maintain] puts back lost jobs,
//     cancels jobs claimed for too long and stalls jobs that keep failing.
//   - Adapters (XMPP, IRC, REST, Atom) implement [Adapter] and receive a
//     [Hub]: the store, the listener, the action submitter and the ACL.
//     Whatever a user does through a protocol becomes an [Action], stamped
//     with the [Actor] the protocol proved, and is stored as a job for a
//     worker to validate and apply.
package core

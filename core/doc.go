// Package core is feedbridge's runtime: the contract adapters implement,
// the actions users submit through them, the ACL that decides, the
// built-in worker that applies them, the strict config, and metrics. The
// Thoonk schema itself (feeds, jobs, the event listener) lives in package
// [github.com/feedbridge/feedbridge/core/thoonk], which core builds on and
// which imports nothing of feedbridge.
//
// The model in a few lines:
//
//   - Adapters (XMPP, IRC, REST, Atom) implement [Adapter] and receive a
//     [Hub]: the thoonk store and listener, the action submitter, the ACL,
//     the feed selection, metrics and logging.
//   - Whatever a user does through a protocol becomes an [Action], stamped
//     with the [Actor] the protocol proved. [Actions.Submit] validates it,
//     asks the [ACL] and stores it as a job on a Thoonk job feed; it
//     returns once the job is in Redis.
//   - The built-in [Worker] applies the standard verbs (publish, edit,
//     retract, move) and finishes each job with a [Result]; the change then
//     reaches every protocol through the feeds' events.
//   - [StartAdapters] starts adapters in order with rollback;
//     [RunAdapters] supervises them, restarting one that fails with
//     backoff, without disturbing the others.
//   - Config is strict: [Section.Decode] reports unknown keys and bad values
//     with file, line and key; [LoadConfig] lists every problem at once.
package core

// Package core is feedbridge's runtime: the contract adapters implement,
// the actions users submit through them, the ACL that decides, the
// built-in worker that applies them, the fleet's leases, the journaler,
// the strict config, and metrics. The Thoonk schema itself (feeds, jobs,
// journals, the event listener) lives in package
// [github.com/feedbridge/feedbridge/core/thoonk], which core builds on and
// which imports nothing of feedbridge.
//
// The model in a few lines:
//
//   - Adapters (XMPP, IRC, REST, Atom, the console) implement [Adapter]
//     and receive a [Hub]: the thoonk store and listener, the action
//     submitter, the ACL, the feed selection, the fleet, metrics and
//     logging.
//   - Whatever a user does through a protocol becomes an [Action], stamped
//     with the [Actor] the protocol proved. [Actions.Submit] validates it,
//     asks the [ACL] and stores it as a job on a Thoonk job feed; it
//     returns once the job is in Redis (and, with redis.replica_acks, on
//     its replicas). A publish on a plain feed gets its item id then, and
//     an idempotency key ([SubmitOptions].Key) fixes the job's id, so
//     neither a retried job nor a retried request makes a second item.
//   - The built-in [Worker] applies the standard verbs (publish, edit,
//     retract, move) exactly once (thoonk.Store.ApplyJob) and finishes
//     each job with a [Result]; a job failing on a Redis error runs again
//     after the job feed's retry backoff. [ParseResult] reads any
//     worker's result as written (extra fields, plain strings, 502 for
//     what cannot be read); [Admin] retries or drops stalled jobs.
//   - Several processes may share one Redis: a [Leader] holds leases
//     there, so that one process leads each stateful connection
//     ([Hub.Lead]: the others are [StateStandby]) and the fleet's
//     housekeeping ([LeaseHousekeeping]: job maintenance, feed upkeep, the
//     [Journaler], which journals other Thoonk writers' changes).
//   - [StartAdapters] starts adapters in order with rollback;
//     [RunAdapters] supervises them, restarting one that fails with
//     backoff, without disturbing the others.
//   - Config is strict: [Section.Decode] reports unknown keys and bad values
//     with file, line and key; [LoadConfig] lists every problem at once.
package core

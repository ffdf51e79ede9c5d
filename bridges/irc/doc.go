// Package irc is feedbridge's IRC adapter: feeds are announced in
// channels, and what people type to the bot becomes actions (jobs).
//
// The model in a few lines:
//
//   - One connection at a time (a new one per reconnect, with backoff and
//     jitter): CAP LS 302 with the IRCv3 capabilities the server offers,
//     SASL PLAIN or NickServ when configured, alternate nicks on
//     collisions; channels are rejoined from the config and the feed list,
//     never from memory, and a kick or a refused join is retried later.
//   - Every outgoing line is made by one function (wire.buildLines): it
//     strips controls and CTCP, repairs UTF-8, splits on word and rune
//     boundaries so that the relayed line fits in 512 bytes, and caps the
//     lines per item. Lines leave through one rate-limited queue: control
//     lines first, announcements round-robin per channel, bounded, with
//     the overflow summarized as "…and N more in feed X"; PONG, PING and
//     registration never wait.
//   - Announcements and catch-up read the feeds' journals (see
//     thoonk.Journal): each line carries its change's revision as its
//     mark, and the last delivered mark of each channel and feed is kept
//     in Redis (feedbridge.irc.last:*), where it only moves forward. After
//     a reconnect, a restart, a refusal, an EventResync or a hand-over the
//     bot posts the changes after the mark in order (publishes, edits,
//     retractions, trims, moves), up to catch_up of them after a count of
//     the rest, or one line when the mark is older than the journal; a
//     first join starts at the journal's end as read before the JOIN
//     goes out. An announcement counts as
//     delivered once the server answers a PING written after it: a
//     refusal (404) comes first.
//   - In a fleet of bridges, one process holds the network's lease
//     (server and nick; core.Hub.Lead) and connects; the others stand by.
//     The leader checks its lease before every line it writes, so a
//     paused process that lost it sends nothing more.
//   - Refused channels (kick, ban and the other join refusals, 404 cannot
//     send) are retried later; kept job results wait for their channel's
//     JOIN; the configured nick is taken back when it becomes free.
//   - Commands in mapped channels or in private become core actions,
//     stamped with the identity the server proved: the services account
//     (account-tag, or else WHOIS 330 when the command needs an identity)
//     or nick!user@host. The ACL decides; the bot answers with the job id
//     and later with the job's result.
//
// gopkg.in/irc.v4 provides the message parser and the ISUPPORT tracker; the
// connection itself is driven here, because its Client ends CAP
// negotiation on its own (no room for SASL) and renames the bot on nick
// collisions in a way that ignores configured alternates.
package irc

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
//     lists recently retracted items as RFC 6721 tombstones.
//   - Pages hold the newest entries of plain feeds (position order for
//     sorted feeds); RFC 5005 next/previous links carry opaque cursors.
//   - Rendered documents are cached per feed until the feed's next change
//     event (and dropped on every resync); a strong ETag and Last-Modified
//     let polling readers get 304 answers without any render.
//   - Only feeds the anonymous reader may read (ACL operation read) and
//     the feed selection exposes are served; every other name is a 404.
package atom

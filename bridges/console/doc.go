// Package console is feedbridge's web console for people: an HTML page at
// / (and under /console/) rendered on the server, readable without
// JavaScript and usable from the keyboard, with a little embedded script
// for live updates. No build step, no CDN: templates, style and script are
// embedded in the binary.
//
// The model in a few lines:
//
//   - The dashboard lists the feeds the console exposes with their newest
//     items, the job feeds with their jobs by state, the adapters and
//     their state, and links to the API description (/v1/docs).
//   - A feed page pages through a feed's items (cursors, as the REST API).
//   - A job feed's page lists its stalled jobs (failed too often, waiting
//     for a person) with their last error; Retry and Drop need a console
//     token whose actor (console:NAME) the ACL grants admin on the job
//     feed. Reading needs read, as everywhere; readers without a token
//     are console:anonymous.
//   - Live updates: the page's script follows the REST adapter's public
//     Server-Sent Events (/v1/events, /v1/feeds/{feed}/events) from the
//     browser, with the same ids and resume as any client; the console
//     keeps no event stream of its own, and imports no other adapter.
//     Without the REST adapter the pages say so and stay static. Queue
//     counts and adapter states are refreshed from /console/summary.json.
package console

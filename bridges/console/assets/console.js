// feedbridge console: live updates on top of server-rendered pages. The
// pages work without this script; with it, item lists follow the REST
// adapter's Server-Sent Events (the same public stream any client reads)
// and queue counts and adapter states are refreshed every few seconds.
(function () {
  'use strict';
  var body = document.body;
  var status = document.getElementById('live-status');

  function say(text) { if (status) { status.textContent = text; } }

  // summary renders an event's item as the server renders items: a JSON
  // item's title (or its JSON), text as is, binary as its size.
  function summary(data) {
    var s = '';
    if (data.encoding === 'json') {
      s = (data.item && typeof data.item === 'object' && typeof data.item.title === 'string' && data.item.title) ?
        data.item.title : JSON.stringify(data.item);
    } else if (data.encoding === 'text') {
      s = String(data.item);
    } else {
      return '(binary data)';
    }
    s = s.replace(/\s+/g, ' ').trim();
    return s.length > 200 ? s.slice(0, 199) + '\u2026' : s;
  }

  function listsFor(feed) {
    return Array.prototype.filter.call(document.querySelectorAll('ul.items[data-feed]'), function (ul) {
      return ul.getAttribute('data-feed') === feed;
    });
  }

  function itemNode(data) {
    var li = document.createElement('li');
    li.setAttribute('data-id', data.id);
    li.setAttribute('data-live', '1');
    li.className = 'live';
    var id = document.createElement('code');
    id.className = 'id';
    id.textContent = data.id;
    var sum = document.createElement('span');
    sum.className = 'summary';
    sum.textContent = summary(data); // text only: feed content never becomes markup
    li.appendChild(id);
    li.appendChild(document.createTextNode(' '));
    li.appendChild(sum);
    return li;
  }

  function findItem(ul, id) {
    return Array.prototype.find.call(ul.children, function (li) { return li.getAttribute('data-id') === id; });
  }

  function onItem(type, data) {
    listsFor(data.feed).forEach(function (ul) {
      var old = findItem(ul, data.id);
      if (type === 'retract') {
        if (old) { ul.removeChild(old); }
        return;
      }
      var li = itemNode(data);
      if (type === 'position' || (type === 'publish' && data.position)) {
        // a sorted feed: the item goes where its position says, if that
        // is within the items shown (else it leaves the list)
        if (old) { ul.removeChild(old); }
        place(ul, li, data.position);
      } else if (old) {
        ul.replaceChild(li, old); // an edit keeps its place
      } else if (type === 'publish') {
        var empty = ul.querySelector('li.empty');
        if (empty) { ul.removeChild(empty); }
        ul.insertBefore(li, ul.firstChild); // a plain feed's newest come first
      }
      var max = Math.max(parseInt(ul.getAttribute('data-max'), 10) || 0, 5);
      while (ul.children.length > max) { ul.removeChild(ul.lastChild); }
    });
    if (type === 'publish' && !findItemAnywhere(data)) { return; }
    say(type === 'retract' ? 'Item ' + data.id + ' retracted from ' + data.feed + '.' :
      (type === 'edit' ? 'Item ' + data.id + ' of ' + data.feed + ' edited.' :
        (type === 'position' ? 'Item ' + data.id + ' of ' + data.feed + ' moved.' : 'New item in ' + data.feed + '.')));
  }

  // place puts li where a Thoonk position string puts it: "begin:",
  // ":end", "ID:" (after ID) or ":ID" (before ID); a place outside the
  // items shown leaves it out.
  function place(ul, li, position) {
    var pos = String(position || '');
    var empty = ul.querySelector('li.empty');
    var full = ul.children.length >= (Math.max(parseInt(ul.getAttribute('data-max'), 10) || 0, 5));
    if (pos === 'begin:') {
      if (empty) { ul.removeChild(empty); }
      ul.insertBefore(li, ul.firstChild);
    } else if (pos === ':end') {
      if (empty) { ul.removeChild(empty); }
      if (!full) { ul.appendChild(li); }
    } else if (pos.slice(-1) === ':') {
      var after = findItem(ul, pos.slice(0, -1));
      if (after) { ul.insertBefore(li, after.nextSibling); }
    } else if (pos.charAt(0) === ':') {
      var before = findItem(ul, pos.slice(1));
      if (before) { ul.insertBefore(li, before); }
    }
  }

  function findItemAnywhere(data) { return listsFor(data.feed).length > 0; }

  function follow(path) {
    if (!window.EventSource) { say('This browser has no EventSource: the page shows what was there when it loaded.'); return; }
    var es = new EventSource(path);
    var reloading = false;
    ['publish', 'edit', 'retract', 'position'].forEach(function (type) {
      es.addEventListener(type, function (ev) {
        try { onItem(type, JSON.parse(ev.data)); } catch (e) { /* an event the page cannot show */ }
      });
    });
    es.addEventListener('delete', function () { if (!reloading) { reloading = true; location.reload(); } });
    // a reset means events were missed: the page reloads what is there now
    es.addEventListener('reset', function () { if (!reloading) { reloading = true; location.reload(); } });
    es.onopen = function () { body.setAttribute('data-live-state', 'open'); };
    es.onerror = function () {
      body.setAttribute('data-live-state', 'retrying');
      say('Live updates interrupted; reconnecting…');
    };
  }

  function refreshSummary() {
    if (!window.fetch) { return; }
    fetch('/console/summary.json', { cache: 'no-store' }).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s) { return; }
      s.queues.forEach(function (q) {
        Array.prototype.forEach.call(document.querySelectorAll('tr[data-queue]'), function (tr) {
          if (tr.getAttribute('data-queue') !== q.name) { return; }
          Object.keys(q.counts).forEach(function (state) {
            var td = tr.querySelector('td[data-state="' + state + '"]');
            if (td && td.textContent !== String(q.counts[state])) { td.textContent = String(q.counts[state]); }
            if (td && state === 'stalled') { td.className = q.counts[state] > 0 ? 'warn' : ''; }
          });
        });
      });
      s.adapters.forEach(function (a) {
        Array.prototype.forEach.call(document.querySelectorAll('tr[data-adapter]'), function (tr) {
          if (tr.getAttribute('data-adapter') !== a.name) { return; }
          var td = tr.querySelector('td.state');
          if (td) { td.textContent = a.state; td.className = 'state state-' + a.state; }
        });
      });
    }).catch(function () { /* the next refresh tries again */ });
  }

  // the operator token is kept for this tab only, never in a cookie
  function rememberToken() {
    var input = document.getElementById('token');
    if (!input || !window.sessionStorage) { return; }
    input.value = sessionStorage.getItem('feedbridge-console-token') || '';
    input.form.addEventListener('submit', function () { sessionStorage.setItem('feedbridge-console-token', input.value); });
  }

  var live = body.getAttribute('data-live');
  if (live) { follow(live); }
  if (document.querySelector('tr[data-queue], tr[data-adapter]')) { setInterval(refreshSummary, 5000); }
  rememberToken();
}());

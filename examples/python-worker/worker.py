#!/usr/bin/env python3
"""An example feedbridge worker in Python with redis-py.

It serves the custom verb "reverse" on the job feed feedbridge.custom
(where the bridge puts custom verbs): it publishes the text it was given,
reversed, to the action's feed, and finishes the job with a JSON result.

It speaks the Thoonk schema through feedbridge's own Lua scripts
(core/thoonk/lua: prelude.lua + one file per operation), so it claims,
finishes and publishes exactly as the bridge does: atomically, with the
same keys and pubsub messages, and the bridge records the result for
GET /v1/jobs/{queue}/{id}.

    apt-get install python3-redis            # Debian's redis-py
    python3 examples/python-worker/worker.py --redis redis://127.0.0.1:6399
    curl -H 'Authorization: Bearer feedbridge-local-dev-token' -H 'Prefer: wait=5' \\
         -H 'Content-Type: application/json' -d '{"args":["hello"]}' \\
         http://127.0.0.1:8080/v1/feeds/news/actions/reverse

The bridge checked the ACL before it stored the job and stamped the actor
the protocol proved; a real worker applies its own rules to job["actor"].
"""
import argparse
import json
import os
import signal
import sys

import redis

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core", "thoonk", "lua")


def script(client, name):
    """Loads a feedbridge script: the prelude, then the operation."""
    with open(os.path.join(LUA, "prelude.lua")) as p, open(os.path.join(LUA, name + ".lua")) as s:
        return client.register_script(p.read() + "\n" + s.read())


class Worker:
    def __init__(self, client, queue):
        self.r = client
        self.queue = queue
        self.claim = script(client, "job_claim")
        self.finish_script = script(client, "job_finish")
        self.publish = script(client, "publish")

    def keys(self, kind, feed):
        return "feed.%s:%s" % (kind, feed)

    def job_keys(self, job_id):
        """The keys a job script takes (prelude.lua fbjob): the schema's,
        the bridge's retry backoff set and the job's status record."""
        q = self.queue
        return [self.keys(k, q) for k in ("config", "ids", "items", "published", "claimed", "stalled",
                                          "cancelled", "finishes", "publishes")] + [
            "feedbridge.delayed:" + q, "feedbridge.job:%s:%s" % (q, job_id)]

    def feed_keys(self, feed):
        """The keys a feed script takes (prelude.lua fbfeed): the schema's
        and the bridge's journal of the feed."""
        return [self.keys(k, feed) for k in ("config", "ids", "items", "publishes", "idincr")] + [
            "feedbridge.journal:" + feed, "feedbridge.revs:" + feed, "feedbridge.journal.meta:" + feed]

    def take(self, timeout=1):
        """Waits for a job and claims it: (id, payload) or None."""
        popped = self.r.brpop([self.keys("ids", self.queue)], timeout=timeout)
        if popped is None:
            return None
        q = self.queue
        got = self.claim(keys=self.job_keys(""), args=[popped[1]])
        if not got or len(got) < 3:
            return None  # retracted meanwhile, or already claimed
        return got[0].decode(), got[1]

    def finish(self, job_id, result):
        self.finish_script(keys=self.job_keys(job_id), args=[self.queue, job_id, "1", json.dumps(result), "0"])

    def handle(self, payload):
        """Applies one action job and returns its result (docs/actions.md)."""
        try:
            job = json.loads(payload)
        except ValueError:
            return {"ok": False, "code": 400, "error": "not an action job"}
        if job.get("v") != 1:
            return {"ok": False, "code": 400, "error": "unknown job format"}
        if job.get("verb") != "reverse":
            return {"ok": False, "code": 501, "error": "this worker serves reverse only"}
        text = " ".join(job.get("args") or []) or job.get("item") or ""
        if not text:
            return {"ok": False, "code": 400, "error": "reverse what? send args or an item"}
        feed = job["feed"]
        item = json.dumps({"title": text[::-1], "by": "%s:%s" % (job["actor"]["protocol"], job["actor"]["id"])})
        item_id = os.urandom(16).hex()
        try:
            # journal bound 0: this worker leaves the journal entry to the
            # bridge, which journals every change it sees on the feed
            self.publish(keys=self.feed_keys(feed), args=[feed, "0", "0", item_id, item, ""])
        except redis.ResponseError as e:  # FBNOFEED, FBTYPE ...: the action cannot apply
            return {"ok": False, "code": 422, "error": "feed %s: %s" % (feed, e)}
        return {"ok": True, "code": 201, "id": item_id}

    def run(self, once=False):
        while True:
            got = self.take()
            if got is None:
                if stopping:
                    return
                continue
            job_id, payload = got
            result = self.handle(payload)
            self.finish(job_id, result)
            print("job %s done: %d" % (job_id, result["code"]), flush=True)
            if once or stopping:
                return


stopping = False


def main():
    global stopping
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:6399", help="the Redis the bridge uses")
    ap.add_argument("--queue", default="feedbridge.custom", help="the job feed to serve (actions.custom_queue)")
    ap.add_argument("--once", action="store_true", help="handle one job, then exit")
    a = ap.parse_args()

    def stop(*_):
        global stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = redis.Redis.from_url(a.redis)
    client.ping()
    print("serving the verb reverse on %s" % a.queue, flush=True)
    Worker(client, a.queue).run(once=a.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())

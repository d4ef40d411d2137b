# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider patroni: the provider's decisions against a fake REST API.

The real thing (Patroni 4 + etcd + two PostgreSQL 15) is driven by
tests/integration/test_replica_promote_patroni.py; here ``open_url`` is replaced by a small
fake of Patroni's ``GET /cluster``, ``POST /switchover`` and ``POST /failover`` so that every
branch (failover without a leader, LOCKED, unknown lag, auth, unreachable members, 412/503
answers) runs in milliseconds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _promote_patroni
from ansible_collections.resilience.dr.plugins.modules import replica_promote
from modrun import run_main  # pylint: disable=import-error

SECRET = "api-Pa55word-xyz"
URL1, URL2 = "http://db1.test:8008", "http://db2.test:8008"


@pytest.fixture(autouse=True)
def fast_polls(captured, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(_promote_patroni.PatroniPromote, "poll_interval", 0.0)


class Response(object):
    def __init__(self, status, body):
        self.status = status
        self.body = body if isinstance(body, str) else json.dumps(body)

    def getcode(self):
        return self.status

    def read(self):
        return self.body.encode()


class FakePatroni(object):
    """Cluster state plus the requests seen; ``post_status`` overrides POST answers."""

    def __init__(self):
        self.members = [
            {"name": "pg1", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432, "timeline": 3,
             "api_url": URL1 + "/patroni"},
            {"name": "pg2", "role": "replica", "state": "streaming", "host": "10.0.0.2", "port": 5432, "timeline": 3,
             "lag": 0, "receive_lag": 0, "replay_lag": 0, "lsn": "0/5000000", "api_url": URL2 + "/patroni"},
        ]
        self.extra = {}
        self.requests = []
        self.down = set()
        self.post_status = None
        self.polls_until_done = 2
        self.password = SECRET

    def member(self, name):
        return next(m for m in self.members if m["name"] == name)

    def promote(self, candidate):
        tl = max(m["timeline"] for m in self.members) + 1
        for m in self.members:
            if m["role"] == "leader":
                m.update(role="replica", state="streaming", lag=0)
        self.member(candidate).update(role="leader", state="running", timeline=tl)
        for m in self.members:
            m["timeline"] = tl
            if m["name"] == candidate:
                for key in ("lag", "receive_lag", "replay_lag", "lsn"):
                    m.pop(key, None)

    def open_url(self, url, data=None, method="GET", url_username=None, url_password=None, **kwargs):
        base = url.split("/", 3)
        base, path = "/".join(base[:3]), "/" + base[3]
        self.requests.append((method, base, path, json.loads(data) if data else None, url_username))
        if base in self.down:
            raise URLError("[Errno 111] Connection refused")
        if method == "GET" and path == "/cluster":
            self.polls_until_done -= 1
            if self.polls_until_done == 0 and self.pending:
                self.promote(self.pending)
                self.pending = None
            return Response(200, dict({"members": copy.deepcopy(self.members), "scope": "batman"}, **self.extra))
        if method == "POST":
            if url_password != self.password:
                raise HTTPError(url, 401, "Unauthorized", {}, io.BytesIO(b"no auth header received"))
            if self.post_status is not None:
                status, text = self.post_status
                raise HTTPError(url, status, text, {}, io.BytesIO(text.encode()))
            body = json.loads(data)
            self.pending = body["candidate"]
            self.polls_until_done = 2
            return Response(200, 'Successfully %s over to "%s"' % ("switched" if path == "/switchover" else "failed",
                                                                   body["candidate"]))
        return Response(404, "not found")

    pending = None

    def posts(self):
        return [(r[2], r[3]) for r in self.requests if r[0] == "POST"]


@pytest.fixture
def fake(monkeypatch):
    f = FakePatroni()
    monkeypatch.setattr(_promote_patroni, "open_url", f.open_url)
    return f


BASE = dict(provider="patroni", patroni_url=[URL1, URL2], patroni_username="patroni", patroni_password=SECRET,
            candidate="pg2", promote_timeout="5s")


def run(args, check=False):
    out = run_main(replica_promote.main, args, check)
    assert SECRET not in json.dumps(out.payload, default=str)
    return out


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_check_mode_lists_the_steps_and_posts_nothing(fake):
    out = run(BASE, check=True)
    assert out.kind == "exit" and out.payload["changed"] is True and out.payload["mode"] == "switchover"
    assert keys(out.payload["steps"]) == [("switchover", "pg2"), ("wait_for_leader", "pg2")]
    assert out.payload["plan"][0]["detail"]["body"] == {"leader": "pg1", "candidate": "pg2"}
    assert out.payload["after"]["leader"] == "pg2" and out.payload["after"]["timeline"] == 4
    assert fake.posts() == [] and fake.member("pg1")["role"] == "leader"


def test_switchover_then_rerun_is_unchanged(fake):
    plan = keys(run(BASE, check=True).payload["steps"])
    out = run(BASE)
    assert out.kind == "exit", out.payload
    assert keys(out.payload["steps"]) == plan
    assert fake.posts() == [("/switchover", {"leader": "pg1", "candidate": "pg2"})]
    assert out.payload["promoted"] is True and out.payload["old_leader"] == "pg1" and out.payload["new_leader"] == "pg2"
    assert (out.payload["timeline_before"], out.payload["timeline_after"]) == (3, 4)
    assert out.payload["steps"][1]["result"]["timeline"] == 4
    again = run(BASE)
    assert again.payload["changed"] is False and again.payload["already_primary"] is True
    assert len(fake.posts()) == 1


def test_no_running_leader_means_failover(fake):
    fake.members[0].update(role="replica", state="stopped")
    out = run(BASE)
    assert out.kind == "exit", out.payload
    assert out.payload["mode"] == "failover" and fake.posts() == [("/failover", {"candidate": "pg2"})]
    assert fake.member("pg2")["role"] == "leader"


def test_forced_failover_and_switchover_without_leader(fake):
    out = run(dict(BASE, patroni_mode="failover"), check=True)
    assert out.payload["plan"][0]["detail"] == {"request": "POST /failover", "body": {"candidate": "pg2"}}
    fake.members[0]["state"] = "stopped"
    out = run(dict(BASE, patroni_mode="switchover"))
    assert out.kind == "fail" and out.payload["error"] == "PRECONDITION_FAILED" and "pg1" in out.payload["msg"]
    assert fake.posts() == []


def test_lag_guard(fake):
    fake.member("pg2").update(lag=10, replay_lag=5 * 1048576)
    out = run(dict(BASE, max_lag_bytes=1048576))
    assert out.kind == "fail" and out.payload["error"] == "LAG_TOO_HIGH"
    assert out.payload["lag"]["bytes"] == 5 * 1048576 and out.payload["changed"] is False
    fake.member("pg2").update(lag="unknown", receive_lag="unknown", replay_lag="unknown")
    out = run(BASE)
    assert out.payload["error"] == "LAG_TOO_HIGH" and "unknown" in out.payload["msg"]
    assert fake.posts() == []
    out = run(dict(BASE, allow_data_loss=True, reason="INC-1 site lost"))
    assert out.kind == "exit" and out.payload["lag"]["overridden"] is True and out.payload["reason"] == "INC-1 site lost"
    assert len(fake.posts()) == 1


def test_scheduled_switchover_is_locked(fake):
    fake.extra["scheduled_switchover"] = {"at": "2030-01-01T00:00:00+00:00", "from": "pg1", "to": "pg2"}
    out = run(BASE)
    assert out.payload["error"] == "LOCKED" and "2030-01-01" in out.payload["msg"] and fake.posts() == []


def test_unknown_or_unfit_candidate(fake):
    out = run(dict(BASE, candidate="pg7"))
    assert out.payload["error"] == "NOT_FOUND" and "pg1, pg2" in out.payload["msg"]
    fake.member("pg2")["state"] = "starting"
    out = run(BASE)
    assert out.payload["error"] == "PRECONDITION_FAILED" and "starting" in out.payload["msg"]
    fake.member("pg2").update(state="streaming", tags={"nofailover": True})
    out = run(BASE)
    assert out.payload["error"] == "PRECONDITION_FAILED" and "nofailover" in out.payload["msg"]
    assert fake.posts() == []


def test_first_member_down_the_next_answers(fake):
    fake.down.add(URL1)
    out = run(BASE)
    assert out.kind == "exit" and out.payload["promoted"] is True
    # URL1 refused the connection, so the request went to URL2 (and only there was it taken)
    assert [r[1] for r in fake.requests if r[0] == "POST"] == [URL1, URL2]
    fake.down.add(URL2)
    out = run(BASE)
    assert out.payload["error"] == "CONNECTION_FAILED" and URL1 in out.payload["msg"] and URL2 in out.payload["msg"]


def test_wrong_password_and_refusals_from_patroni(fake):
    out = run(dict(BASE, patroni_password="wrong-one"))
    assert out.payload["error"] == "AUTH_FAILED" and out.payload["changed"] is False
    assert fake.member("pg1")["role"] == "leader"
    fake.post_status = (412, "candidate name does not match with sync_standby")
    out = run(BASE)
    assert out.payload["error"] == "PRECONDITION_FAILED" and "sync_standby" in out.payload["msg"]
    fake.post_status = (503, "Switchover failed")
    out = run(BASE)
    assert out.payload["error"] == "APPLY_FAILED"


def test_a_post_that_times_out_is_not_sent_again_and_polling_decides(fake):
    orig = fake.open_url

    def timing_out(url, data=None, method="GET", **kwargs):
        if method == "POST":
            orig(url, data=data, method=method, **kwargs)
            raise URLError(_promote_patroni.socket.timeout("timed out"))
        return orig(url, data=data, method=method, **kwargs)

    _promote_patroni.open_url = timing_out
    out = run(BASE)
    assert out.kind == "exit" and out.payload["promoted"] is True
    assert len(fake.posts()) == 1 and out.payload["steps"][0]["result"]["status"] == 0


def test_status_unknown_answer_is_followed_by_polling(fake):
    orig = fake.open_url

    def slow(url, data=None, method="GET", **kwargs):
        if method == "POST":
            orig(url, data=data, method=method, **kwargs)
            raise HTTPError(url, 503, "x", {}, io.BytesIO(b"Switchover status unknown"))
        return orig(url, data=data, method=method, **kwargs)

    fake.open_url = slow
    _promote_patroni.open_url = slow
    out = run(BASE)
    assert out.kind == "exit" and out.payload["promoted"] is True
    assert out.payload["steps"][0]["result"]["status"] == 503


def test_the_candidate_never_becomes_leader_times_out(fake):
    fake.polls_until_done = -1000

    def never(url, data=None, method="GET", **kwargs):
        resp = FakePatroni.open_url(fake, url, data=data, method=method, **kwargs)
        fake.pending = None
        return resp

    _promote_patroni.open_url = never
    out = run(dict(BASE, promote_timeout="1s"))
    assert out.payload["error"] == "TIMEOUT" and out.payload["changed"] is True
    assert keys(out.payload["completed_steps"]) == [("switchover", "pg2")]


def test_arguments(fake):
    out = run(dict(BASE, candidate=None))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "candidate" in out.payload["msg"]
    out = run(dict(BASE, patroni_url=["db1:8008"]))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "http://" in out.payload["msg"]
    out = run(dict(BASE, patroni_url=[URL1 + "/patroni/"]), check=True)
    assert out.kind == "exit" and fake.requests[-1][1] == URL1
    # options of another provider are refused, and patroni options with another provider
    out = run(dict(BASE, fence="read_only"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "fence" in out.payload["msg"]
    out = run(dict(provider="postgres", pg_login_host="h", candidate="pg2", patroni_url=[URL1]))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    assert "candidate" in out.payload["msg"] and "patroni_url" in out.payload["msg"]


def test_lag_of():
    assert _promote_patroni.lag_of({"lag": 3, "receive_lag": "unknown", "replay_lag": 9}) == 9
    assert _promote_patroni.lag_of({"lag": "unknown"}) is None
    assert _promote_patroni.lag_of({}) is None


class _Echo(BaseHTTPRequestHandler):
    """Loopback server for open_url: /redirect answers 307, /missing 404, anything else echoes the request."""

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.end_headers()
            return
        status = 404 if self.path == "/missing" else 200
        out = json.dumps({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                          "type": self.headers.get("Content-Type"), "body": body}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer


def test_open_url_sends_basic_auth_and_the_body_and_follows_no_redirect():
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        resp = _promote_patroni.open_url(base + "/switchover", data='{"candidate": "pg2"}', method="POST",
                                         headers={"Content-Type": "application/json"}, url_username="patroni", url_password=SECRET)
        seen = json.loads(resp.read())
        assert resp.getcode() == 200
        assert seen["method"] == "POST" and seen["body"] == '{"candidate": "pg2"}' and seen["type"] == "application/json"
        assert seen["auth"] == "Basic " + base64.b64encode(("patroni:" + SECRET).encode()).decode()
        assert json.loads(_promote_patroni.open_url(base + "/cluster").read())["auth"] is None
        with pytest.raises(HTTPError) as redirect:
            _promote_patroni.open_url(base + "/redirect")
        assert redirect.value.code == 307
        with pytest.raises(HTTPError) as missing:
            _promote_patroni.open_url(base + "/missing")
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(URLError):
        _promote_patroni.open_url(base + "/cluster", timeout=2)

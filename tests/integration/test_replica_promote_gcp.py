# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider gcp_cloudsql, against a local fake of the Cloud SQL Admin API
v1 and Cloud Monitoring v3 on 127.0.0.1:21520.

No Cloud SQL emulator exists. The fake keeps instances and operations, checks the bearer
token, refuses a failover whose settingsVersion is stale, serves operations that are
PENDING on the first poll and DONE (with the change applied) on the second, and records
every request; the tests read the fake's state back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_replica_promote_lab import run_module  # noqa: E402  pylint: disable=wrong-import-position

PORT = 21520
TOKEN = "ya29.fake-token-%d" % os.getpid()
PROJECT = "shop-dr"


class FakeCloudSql(object):
    def __init__(self):
        self.instances = {}
        self.operations = {}
        self.lag = {}
        self.requests = []
        self.lock = threading.Lock()

    def add(self, name, **fields):
        inst = {"name": name, "project": PROJECT, "state": "RUNNABLE", "databaseVersion": "POSTGRES_15",
                "instanceType": "CLOUD_SQL_INSTANCE", "gceZone": "europe-west1-b",
                "settings": {"settingsVersion": "3", "availabilityType": "ZONAL"}}
        inst.update(fields)
        self.instances[name] = inst
        return inst

    def posts(self, suffix):
        return [r for r in self.requests if r[0] == "POST" and r[1].endswith(suffix)]

    # -- routing ------------------------------------------------------------------------
    def handle(self, method, path, query, body, auth):
        self.requests.append((method, path, query, body))
        if auth != "Bearer " + TOKEN:
            return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}}
        m = re.match(r"^/v1/projects/([^/]+)/instances/([^/]+)(/promoteReplica|/failover)?$", path)
        if m and m.group(1) == PROJECT:
            inst = self.instances.get(m.group(2))
            if inst is None:
                return 404, {"error": {"code": 404, "message": "The Cloud SQL instance does not exist."}}
            if method == "GET" and not m.group(3):
                return 200, inst
            if method == "POST" and m.group(3) == "/promoteReplica":
                if inst["instanceType"] != "READ_REPLICA_INSTANCE":
                    return 400, {"error": {"code": 400, "message": "The instance is not a read replica."}}
                return 200, self._operation(inst, "PROMOTE_REPLICA")
            if method == "POST" and m.group(3) == "/failover":
                ctx = (body or {}).get("failoverContext") or {}
                if ctx.get("settingsVersion") != inst["settings"]["settingsVersion"] or ctx.get("kind") != "sql#failoverContext":
                    return 412, {"error": {"code": 412, "message": "Condition does not match."}}
                return 200, self._operation(inst, "FAILOVER")
        m = re.match(r"^/v1/projects/([^/]+)/operations(?:/([^/]+))?$", path)
        if m and method == "GET":
            if m.group(2) is None:
                items = [op for op in self.operations.values() if op["targetId"] == query.get("instance", [""])[0]]
                return 200, {"kind": "sql#operationsList", "items": items}
            op = self.operations.get(m.group(2))
            if op is None:
                return 404, {"error": {"code": 404, "message": "no such operation"}}
            self._advance(op)
            return 200, op
        m = re.match(r"^/v3/projects/([^/]+)/timeSeries$", path)
        if m and method == "GET":
            flt = query.get("filter", [""])[0]
            assert "cloudsql.googleapis.com/database/replication/replica_lag" in flt
            assert query.get("interval.startTime") and query.get("interval.endTime")
            db = re.search(r'database_id = "([^"]+)"', flt).group(1)
            values = self.lag.get(db.split(":", 1)[1], [])
            points = [{"interval": {"endTime": "2026-01-01T00:0%d:00Z" % i}, "value": {"doubleValue": v}}
                      for i, v in enumerate(values)]
            return 200, {"timeSeries": [{"points": points}]} if points else {}
        return 404, {"error": {"code": 404, "message": "no route %s %s" % (method, path)}}

    def _operation(self, inst, kind):
        name = str(uuid.uuid4())
        op = {"kind": "sql#operation", "name": name, "operationType": kind, "status": "PENDING",
              "targetId": inst["name"], "targetProject": PROJECT, "polls": 0}
        self.operations[name] = op
        return dict(op)

    def _advance(self, op):
        op["polls"] += 1
        if op["status"] == "DONE" or op["polls"] < 2:
            op["status"] = "RUNNING" if op["status"] != "DONE" else "DONE"
            return
        op["status"] = "DONE"
        inst = self.instances[op["targetId"]]
        if op["operationType"] == "PROMOTE_REPLICA":
            inst["instanceType"] = "CLOUD_SQL_INSTANCE"
            master = inst.pop("masterInstanceName", "").split(":")[-1]
            if master in self.instances:
                self.instances[master]["replicaNames"].remove(inst["name"])
        else:
            inst["gceZone"], inst["secondaryGceZone"] = inst["secondaryGceZone"], inst["gceZone"]
            inst["settings"]["settingsVersion"] = str(int(inst["settings"]["settingsVersion"]) + 1)


@pytest.fixture(scope="module")
def fake():
    state = FakeCloudSql()

    class Handler(BaseHTTPRequestHandler):
        def _go(self, method):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with state.lock:
                code, payload = state.handle(method, url.path, parse_qs(url.query), body, self.headers.get("Authorization"))
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._go("GET")

        def do_POST(self):  # noqa: N802
            self._go("POST")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


BASE = dict(provider="gcp_cloudsql", gcp_project=PROJECT, gcp_access_token=TOKEN, gcp_endpoint="http://127.0.0.1:%d" % PORT)


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_promote_replica_check_real_rerun(fake):
    fake.add("orders", replicaNames=["orders-replica"])
    fake.add("orders-replica", instanceType="READ_REPLICA_INSTANCE", masterInstanceName="%s:orders" % PROJECT)
    fake.lag["orders-replica"] = [1.0, 3.5, 0.5]
    args = dict(BASE, cloudsql_instance="orders-replica", max_lag="60s")

    dry = run_module(args, check=True)
    assert not dry.get("failed"), dry
    assert keys(dry["steps"]) == [("promote_replica", "orders-replica"), ("wait_operation", "orders-replica")]
    assert dry["lag"]["seconds"] == 3.5
    assert fake.posts("/promoteReplica") == [] and fake.instances["orders-replica"]["instanceType"] == "READ_REPLICA_INSTANCE"

    real = run_module(args)
    assert not real.get("failed"), real
    assert keys(real["steps"]) == keys(dry["steps"])
    assert real["promoted"] is True
    assert len(fake.posts("/promoteReplica")) == 1
    assert fake.instances["orders-replica"]["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert "masterInstanceName" not in fake.instances["orders-replica"]
    assert fake.instances["orders"]["replicaNames"] == []
    op = fake.operations[real["steps"][0]["result"]["operation"]]
    assert op["status"] == "DONE" and op["polls"] >= 2, "the module did not poll the operation to DONE"
    assert TOKEN not in real["_raw"]

    again = run_module(args)
    assert not again.get("failed") and again["changed"] is False and again["steps"] == [], again
    assert len(fake.posts("/promoteReplica")) == 1


def test_lag_guard_lock_and_auth(fake):
    fake.add("billing", replicaNames=["billing-replica"])
    fake.add("billing-replica", instanceType="READ_REPLICA_INSTANCE", masterInstanceName="%s:billing" % PROJECT)
    fake.lag["billing-replica"] = [200.0]
    args = dict(BASE, cloudsql_instance="billing-replica")
    out = run_module(args)
    assert out.get("failed") and out["error"] == "LAG_TOO_HIGH", out
    fake.lag["billing-replica"] = []
    out = run_module(args)
    assert out.get("failed") and out["error"] == "LAG_TOO_HIGH" and "unknown" in out["msg"], out
    assert fake.posts("/billing-replica/promoteReplica") == []

    fake.lag["billing-replica"] = [1.0]
    fake.operations["busy"] = {"kind": "sql#operation", "name": "busy", "operationType": "BACKUP_VOLUME",
                               "status": "RUNNING", "targetId": "billing-replica", "polls": 0}
    out = run_module(args)
    assert out.get("failed") and out["error"] == "LOCKED" and "BACKUP_VOLUME" in out["msg"], out
    assert fake.instances["billing-replica"]["instanceType"] == "READ_REPLICA_INSTANCE"

    bad = "ya29.not-the-token-%d" % os.getpid()
    out = run_module(dict(args, gcp_access_token=bad))
    assert out.get("failed") and out["error"] == "AUTH_FAILED", out
    assert bad not in out["_raw"]
    out = run_module(dict(BASE, cloudsql_instance="nope"))
    assert out.get("failed") and out["error"] == "NOT_FOUND", out


def test_ha_failover_to_the_standby_zone_then_idempotent(fake):
    fake.add("ledger", gceZone="europe-west1-b", secondaryGceZone="europe-west1-c",
             settings={"settingsVersion": "7", "availabilityType": "REGIONAL"})
    args = dict(BASE, cloudsql_instance="ledger", cloudsql_mode="ha_failover", cloudsql_target_zone="europe-west1-c")
    dry = run_module(args, check=True)
    assert keys(dry["steps"]) == [("failover", "ledger"), ("wait_operation", "ledger")]
    assert fake.instances["ledger"]["gceZone"] == "europe-west1-b"

    real = run_module(args)
    assert not real.get("failed"), real
    assert keys(real["steps"]) == keys(dry["steps"])
    sent = fake.posts("/ledger/failover")
    assert len(sent) == 1 and sent[0][3] == {"failoverContext": {"kind": "sql#failoverContext", "settingsVersion": "7"}}
    assert fake.instances["ledger"]["gceZone"] == "europe-west1-c"

    again = run_module(args)
    assert again["changed"] is False and again["steps"] == [], again
    assert len(fake.posts("/ledger/failover")) == 1

    out = run_module(dict(args, cloudsql_target_zone=None))
    assert out.get("failed") and out["error"] == "INVALID_ARGUMENT", out

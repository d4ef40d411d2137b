# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider azure_pg_flexible, against a local fake of Azure Resource
Manager on 127.0.0.1:21530.

No Azure emulator exists. The fake keeps flexible servers, checks the bearer token, the
api-version and the PATCH body, answers the PATCH with 202 and an Azure-AsyncOperation URL
that is InProgress on the first poll and Succeeded (change applied) on the second, and
records every request; the tests read the fake's state back.
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

PORT = 21530
ENDPOINT = "http://127.0.0.1:%d" % PORT
TOKEN = "eyJ0eXAi.fake-arm-token-%d" % os.getpid()
SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-dr"
API = "2024-08-01"
SERVER_PATH = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.DBforPostgreSQL/flexibleServers/([^/]+)$")
OP_PATH = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.DBforPostgreSQL/locations/[^/]+/azureAsyncOperation/([^/]+)$")


class FakeArm(object):
    def __init__(self):
        self.servers = {}
        self.operations = {}
        self.requests = []
        self.lock = threading.Lock()

    def add(self, name, **props):
        base = {"state": "Ready", "version": "15", "replicationRole": "Primary", "replica": {"role": "Primary"}}
        base.update(props)
        self.servers[name] = {
            "id": "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/%s" % (SUB, RG, name),
            "name": name, "type": "Microsoft.DBforPostgreSQL/flexibleServers", "location": "westeurope",
            "properties": base}
        return self.servers[name]

    def patches(self, name):
        return [r for r in self.requests if r[0] == "PATCH" and r[1].endswith("/" + name)]

    def handle(self, method, path, query, body, auth):
        self.requests.append((method, path, query, body))
        if auth != "Bearer " + TOKEN:
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}, {}
        m = SERVER_PATH.match(path)
        if m:
            if query.get("api-version") != [API]:
                return 400, {"error": {"code": "InvalidApiVersionParameter", "message": "bad api-version"}}, {}
            server = self.servers.get(m.group(3)) if (m.group(1), m.group(2)) == (SUB, RG) else None
            if server is None:
                return 404, {"error": {"code": "ResourceNotFound", "message": "The Resource was not found."}}, {}
            if method == "GET":
                return 200, server, {}
            if method == "PATCH":
                replica = ((body or {}).get("properties") or {}).get("replica") or {}
                if set(replica) != {"promoteMode", "promoteOption"} or replica["promoteMode"] not in ("standalone", "switchover") \
                        or replica["promoteOption"] not in ("planned", "forced"):
                    return 400, {"error": {"code": "InvalidParameterValue", "message": "bad replica body %s" % body}}, {}
                if server["properties"]["replica"].get("role") not in ("AsyncReplica", "GeoAsyncReplica"):
                    return 400, {"error": {"code": "NotAReplica", "message": "not a replica"}}, {}
                op = str(uuid.uuid4())
                self.operations[op] = {"server": server["name"], "polls": 0, "body": replica, "status": "InProgress"}
                server["properties"]["state"] = "Updating"
                url = "%s/subscriptions/%s/providers/Microsoft.DBforPostgreSQL/locations/westeurope/azureAsyncOperation/%s" \
                      "?api-version=%s" % (ENDPOINT, SUB, op, API)
                return 202, None, {"Azure-AsyncOperation": url, "Retry-After": "0"}
        m = OP_PATH.match(path)
        if m and method == "GET":
            op = self.operations[m.group(1)]
            op["polls"] += 1
            if op["polls"] >= 2 and op["status"] == "InProgress":
                op["status"] = "Succeeded"
                props = self.servers[op["server"]]["properties"]
                props.update(state="Ready", replicationRole="None")
                props["replica"] = {"role": "Primary", "promoteMode": op["body"]["promoteMode"],
                                    "promoteOption": op["body"]["promoteOption"]}
                props.pop("sourceServerResourceId", None)
            return 200, {"name": m.group(1), "status": op["status"]}, {"Retry-After": "0"}
        return 404, {"error": {"code": "NoRoute", "message": "%s %s" % (method, path)}}, {}


@pytest.fixture(scope="module")
def fake():
    state = FakeArm()

    class Handler(BaseHTTPRequestHandler):
        def _go(self, method):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with state.lock:
                code, payload, headers = state.handle(method, url.path, parse_qs(url.query), body,
                                                      self.headers.get("Authorization"))
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._go("GET")

        def do_PATCH(self):  # noqa: N802
            self._go("PATCH")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


BASE = dict(provider="azure_pg_flexible", azure_subscription_id=SUB, azure_resource_group=RG,
            azure_access_token=TOKEN, azure_resource_manager_endpoint=ENDPOINT)


def replica(fake, name, state="Active"):
    fake.add("%s-src" % name)
    return fake.add(name, replicationRole="AsyncReplica", replica={"role": "AsyncReplica", "replicationState": state},
                    sourceServerResourceId=fake.servers["%s-src" % name]["id"])


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_planned_promotion_check_real_rerun(fake):
    replica(fake, "orders-weu")
    args = dict(BASE, azure_server_name="orders-weu")
    dry = run_module(args, check=True)
    assert not dry.get("failed"), dry
    assert keys(dry["steps"]) == [("promote_replica", "orders-weu"), ("wait_operation", "orders-weu")]
    assert dry["steps"][0]["detail"]["body"] == {"properties": {"replica": {"promoteMode": "standalone", "promoteOption": "planned"}}}
    assert fake.patches("orders-weu") == []

    real = run_module(args)
    assert not real.get("failed"), real
    assert keys(real["steps"]) == keys(dry["steps"])
    assert real["promoted"] is True
    sent = fake.patches("orders-weu")
    assert len(sent) == 1 and sent[0][3] == {"properties": {"replica": {"promoteMode": "standalone", "promoteOption": "planned"}}}
    props = fake.servers["orders-weu"]["properties"]
    assert props["replica"]["role"] == "Primary" and props["state"] == "Ready" and "sourceServerResourceId" not in props
    assert [op["polls"] >= 2 and op["status"] == "Succeeded" for op in fake.operations.values()] == [True]
    assert TOKEN not in real["_raw"]

    again = run_module(args)
    assert not again.get("failed") and again["changed"] is False and again["steps"] == [], again
    assert len(fake.patches("orders-weu")) == 1


def test_guards(fake):
    replica(fake, "billing-weu", state="Broken")
    args = dict(BASE, azure_server_name="billing-weu")
    out = run_module(args)
    assert out.get("failed") and out["error"] == "LAG_TOO_HIGH", out
    out = run_module(dict(args, azure_promote_option="forced"))
    assert out.get("failed") and out["error"] == "INVALID_ARGUMENT" and "allow_data_loss" in out["msg"], out
    assert fake.patches("billing-weu") == []

    out = run_module(dict(args, azure_promote_option="forced", azure_promote_mode="switchover",
                          allow_data_loss=True, reason="region down"))
    assert not out.get("failed"), out
    assert fake.patches("billing-weu")[0][3]["properties"]["replica"] == {"promoteMode": "switchover", "promoteOption": "forced"}
    assert fake.servers["billing-weu"]["properties"]["replica"]["role"] == "Primary"

    busy = replica(fake, "search-weu")
    busy["properties"]["state"] = "Updating"
    out = run_module(dict(BASE, azure_server_name="search-weu"))
    assert out.get("failed") and out["error"] == "LOCKED", out

    bad = "eyJ.not-the-token-%d" % os.getpid()
    out = run_module(dict(BASE, azure_server_name="search-weu", azure_access_token=bad))
    assert out.get("failed") and out["error"] == "AUTH_FAILED", out
    assert bad not in out["_raw"]
    out = run_module(dict(BASE, azure_server_name="nope"))
    assert out.get("failed") and out["error"] == "NOT_FOUND", out
    assert fake.patches("search-weu") == []

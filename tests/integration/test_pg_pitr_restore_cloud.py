# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore engines gcp_cloudsql and azure_pg_flexible against a local HTTP fake.

No emulator exists for Cloud SQL's admin API or Azure Resource Manager: the fake below
implements the calls the engines make, checks them (auth header, bodies), keeps state, and
the tests read the result back from that state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import json
import os
import re
import subprocess
import threading
from http.server import ThreadingHTTPServer

import pytest

import lablib
from fakes.base import JsonHandler

MODULE = "resilience.dr.pg_pitr_restore"
PORT = 22610
BASE = "http://127.0.0.1:%d" % PORT
TOKEN = "fake-token-do-not-leak"
UTC = datetime.timezone.utc


def run_module(args, check=False):
    """lablib.run_module, or the minimal callback when ansible.builtin.json is missing."""
    try:
        return lablib.run_module(MODULE, args, check=check)
    except AssertionError as exc:
        if "Could not load" not in str(exc):
            raise
    argv = [os.path.join(lablib.VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", MODULE,
            "-a", json.dumps(args)] + (["--check"] if check else [])
    proc = subprocess.run(argv, cwd=lablib.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False, env=lablib.ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"))
    out = proc.stdout
    assert " => {" in out, out + proc.stderr
    result = json.loads(out[out.index(" => {") + 4:])
    if "| FAILED!" in out.split(" => {")[0]:
        result["failed"] = True
    return result


def iso(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class State(object):
    def __init__(self):
        now = datetime.datetime.now(UTC)
        self.now = now
        self.sql = {
            "orders": {"name": "orders", "state": "RUNNABLE", "createTime": iso(now - datetime.timedelta(days=30)),
                       "settings": {"userLabels": {"team": "shop"}, "backupConfiguration": {
                           "enabled": True, "pointInTimeRecoveryEnabled": True, "transactionLogRetentionDays": 7}}},
            "nopitr": {"name": "nopitr", "state": "RUNNABLE", "createTime": iso(now - datetime.timedelta(days=30)),
                       "settings": {"backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": False}}},
            "squatter": {"name": "squatter", "state": "RUNNABLE", "settings": {}},
        }
        self.servers = {
            "orders-pg": {"name": "orders-pg", "location": "westeurope", "id": "/subscriptions/sub-1/resourceGroups/rg/providers/"
                          "Microsoft.DBforPostgreSQL/flexibleServers/orders-pg",
                          "properties": {"state": "Ready", "backup": {"earliestRestoreDate": iso(now - datetime.timedelta(days=7))}}},
        }
        self.ops = {}
        self.calls = []
        self.lock = threading.Lock()


class Handler(JsonHandler):
    state = None

    def _route(self, method):
        st = self.state
        if self.headers.get("Authorization") != "Bearer %s" % TOKEN:
            return self._send(401, {"error": "no or wrong token"})
        path = self.path.split("?")[0]
        body = self._body() if method in ("POST", "PUT", "PATCH") else None
        with st.lock:
            st.calls.append({"method": method, "path": self.path, "body": body})
            # ---- Cloud SQL admin API
            match = re.match(r"^/v1/projects/shop/operations/([\w-]+)$", path)
            if match and method == "GET":
                op = st.ops[match.group(1)]
                op["polls"] += 1
                return self._send(200, {"name": match.group(1), "status": "DONE" if op["polls"] > 1 else "RUNNING"})
            match = re.match(r"^/v1/projects/shop/instances/([\w-]+)(/clone|/getLatestRecoveryTime)?$", path)
            if match:
                name, action = match.group(1), match.group(2)
                if action == "/getLatestRecoveryTime":
                    return self._send(200, {"latestRecoveryTime": iso(st.now - datetime.timedelta(seconds=30))})
                if action == "/clone" and method == "POST":
                    if name not in st.sql:
                        return self._send(404, {})
                    ctx = body["cloneContext"]
                    if ctx["destinationInstanceName"] in st.sql:
                        return self._send(409, {"error": "exists"})
                    clone = copy.deepcopy(st.sql[name])
                    clone["name"] = ctx["destinationInstanceName"]
                    clone["settings"]["userLabels"] = {}
                    clone["clonedFrom"] = {"source": name, "pointInTime": ctx.get("pointInTime")}
                    st.sql[clone["name"]] = clone
                    op = "op-%d" % (len(st.ops) + 1)
                    st.ops[op] = {"polls": 0}
                    return self._send(200, {"name": op, "status": "PENDING"})
                if method == "GET":
                    return self._send(200, st.sql[name]) if name in st.sql else self._send(404, {"error": "not found"})
                if method == "PATCH" and name in st.sql:
                    st.sql[name]["settings"]["userLabels"] = body["settings"]["userLabels"]
                    op = "op-%d" % (len(st.ops) + 1)
                    st.ops[op] = {"polls": 0}
                    return self._send(200, {"name": op, "status": "PENDING"})
            # ---- Azure Resource Manager
            match = re.match(r"^/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/([\w-]+)$",
                             path)
            if match:
                name = match.group(1)
                if "api-version=" not in self.path:
                    return self._send(400, {"error": "api-version missing"})
                if method == "GET":
                    return self._send(200, st.servers[name]) if name in st.servers else self._send(404, {"error": "ResourceNotFound"})
                if method == "PUT":
                    props = body["properties"]
                    if props.get("createMode") != "PointInTimeRestore" or props.get("sourceServerResourceId") != st.servers["orders-pg"]["id"]:
                        return self._send(400, {"error": "bad restore body"})
                    st.servers[name] = {"name": name, "location": body["location"], "tags": body.get("tags"), "id": "id-" + name,
                                        "properties": {"state": "Updating", "pointInTimeUTC": props["pointInTimeUTC"],
                                                       "fullyQualifiedDomainName": name + ".postgres.database.azure.com"}}
                    op = "az-%d" % (len(st.ops) + 1)
                    st.ops[op] = {"polls": 0, "server": name}
                    return self._send(201, st.servers[name], headers={"Azure-AsyncOperation": "%s/asyncops/%s" % (BASE, op)})
            match = re.match(r"^/asyncops/([\w-]+)$", path)
            if match:
                op = st.ops[match.group(1)]
                op["polls"] += 1
                if op["polls"] > 1:
                    st.servers[op["server"]]["properties"]["state"] = "Ready"
                    return self._send(200, {"status": "Succeeded"})
                return self._send(200, {"status": "InProgress"})
        return self._send(404, {"error": "no route %s %s" % (method, path)})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_PATCH(self):
        self._route("PATCH")


@pytest.fixture
def fake():
    state = State()
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", PORT), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def gcp_args(target_id, **extra):
    args = dict(engine="gcp_cloudsql", gcp_project="shop", gcp_endpoint=BASE, gcp_access_token=TOKEN, source_db_instance="orders",
                target_db_instance=target_id)
    args.update(extra)
    return args


def test_cloudsql_clone_at_point_in_time(fake):
    target = fake.now - datetime.timedelta(hours=1)
    offset = target.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()
    args = gcp_args("orders-pitr", target_time=offset)
    check = run_module(args, check=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert "orders-pitr" not in fake.sql
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    clone = fake.sql["orders-pitr"]
    assert clone["clonedFrom"] == {"source": "orders", "pointInTime": iso(target)}  # the UTC twin of the +02:00 target
    assert clone["settings"]["userLabels"]["resilience-dr-pitr-source"] == "orders"
    assert clone["settings"]["userLabels"]["resilience-dr-pitr-target"] == iso(target).lower().replace(":", "-").replace(".", "-")
    assert any(c["path"].endswith("/operations/op-1") for c in fake.calls)  # the operation was polled
    assert TOKEN not in json.dumps(result)
    calls = len(fake.calls)
    again = run_module(args)
    assert again["changed"] is False and again["steps"] == [], again
    assert not [c for c in fake.calls[calls:] if c["method"] != "GET"]


def test_cloudsql_refusals_create_nothing(fake):
    before = set(fake.sql)
    old = run_module(gcp_args("orders-old", target_time=iso(fake.now - datetime.timedelta(days=10))))
    assert old.get("failed") and old["error"] == "NO_BACKUP_BEFORE_TARGET", old
    late = run_module(gcp_args("orders-late", target_time=iso(fake.now + datetime.timedelta(minutes=5))))
    assert late.get("failed") and late["error"] == "TARGET_NOT_REACHED", late
    nopitr = run_module(gcp_args("np", source_db_instance="nopitr", latest=True))
    assert nopitr.get("failed") and nopitr["error"] == "NO_BACKUP_BEFORE_TARGET", nopitr
    squat = run_module(gcp_args("squatter", latest=True))
    assert squat.get("failed") and squat["error"] == "PRECONDITION_FAILED", squat
    assert set(fake.sql) == before
    assert not [c for c in fake.calls if c["method"] != "GET"]


def azure_args(target_id, **extra):
    args = dict(engine="azure_pg_flexible", azure_subscription_id="sub-1", resource_group="rg", azure_access_token=TOKEN,
                azure_resource_manager_endpoint=BASE, source_db_instance="orders-pg", target_db_instance=target_id)
    args.update(extra)
    return args


def test_azure_flexible_point_in_time_restore(fake):
    target = fake.now - datetime.timedelta(hours=3)
    args = azure_args("orders-pg-pitr", target_time=target.astimezone(datetime.timezone(datetime.timedelta(hours=-4))).isoformat())
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    server = fake.servers["orders-pg-pitr"]
    assert server["properties"]["pointInTimeUTC"] == iso(target)
    assert server["properties"]["state"] == "Ready" and server["location"] == "westeurope"
    assert server["tags"]["resilience-dr-pitr-source"] == "orders-pg"
    assert result["db_instance"]["status"] == "Ready"
    assert run_module(args)["changed"] is False
    old = run_module(azure_args("orders-pg-old", target_time=iso(fake.now - datetime.timedelta(days=8))))
    assert old.get("failed") and old["error"] == "NO_BACKUP_BEFORE_TARGET", old
    assert "orders-pg-old" not in fake.servers
    clash = run_module(azure_args("orders-pg-pitr", latest=True))
    assert clash.get("failed") and clash["error"] == "PRECONDITION_FAILED", clash

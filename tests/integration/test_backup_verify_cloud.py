# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engines gcp_cloudsql and azure_pg_flexible against local HTTP fakes of the
REST calls they make (no emulator exists). The fake keeps instances, servers, backup runs and
backups as state, refuses a wrong bearer token, pages its lists, and logs every request; the
tests compare the module's figures with that state and check what was asked."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

import pytest

from test_backup_verify import run_module, MODULE

httpserver_mod = pytest.importorskip("pytest_httpserver")
from werkzeug.wrappers import Response  # noqa: E402  pylint: disable=wrong-import-position

PORT = 23700
TOKEN = "fake-token-bv-123"
ENDPOINT = "http://127.0.0.1:%d" % PORT


def iso(delta_seconds):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=delta_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Fake(object):
    def __init__(self):
        self.requests = []
        self.cloudsql = {}     # (project, instance) -> {"instance": {...}, "runs": [...], "latest": str}
        self.flexible = {}     # (sub, rg, server) -> {"server": {...}, "backups": [...]}

    def handle(self, request):
        self.requests.append({"method": request.method, "path": request.path, "query": request.query_string.decode(),
                              "auth": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != "Bearer " + TOKEN:
            return Response(json.dumps({"error": {"code": 401, "message": "bad token"}}), status=401, content_type="application/json")
        if request.method != "GET":
            return Response("only GET is expected from backup_verify", status=405)
        match = re.match(r"^/v1/projects/([^/]+)/instances/([^/]+)(/backupRuns|/getLatestRecoveryTime)?$", request.path)
        if match:
            entry = self.cloudsql.get((match.group(1), match.group(2)))
            if entry is None:
                return Response(json.dumps({"error": {"code": 404}}), status=404, content_type="application/json")
            if match.group(3) is None:
                return self.json(entry["instance"])
            if match.group(3) == "/getLatestRecoveryTime":
                return self.json({"kind": "sql#getLatestRecoveryTime", "latestRecoveryTime": entry["latest"]})
            # two runs per page, newest first as Cloud SQL lists them
            runs = sorted(entry["runs"], key=lambda r: r["startTime"], reverse=True)
            start = int(request.args.get("pageToken") or 0)
            body = {"kind": "sql#backupRunsList", "items": runs[start:start + 2]}
            if start + 2 < len(runs):
                body["nextPageToken"] = str(start + 2)
            return self.json(body)
        match = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft.DBforPostgreSQL/"
                         r"flexibleServers/([^/]+)(/backups)?$", request.path)
        if match:
            if request.args.get("api-version") != "2022-12-01":
                return Response("unexpected api-version", status=400)
            entry = self.flexible.get(match.groups()[:3])
            if entry is None:
                return Response(json.dumps({"error": {"code": "ResourceNotFound"}}), status=404, content_type="application/json")
            if match.group(4) is None:
                return self.json(entry["server"])
            start = int(request.args.get("skip") or 0)
            body = {"value": entry["backups"][start:start + 2]}
            if start + 2 < len(entry["backups"]):
                body["nextLink"] = "%s%s?api-version=2022-12-01&skip=%d" % (ENDPOINT, request.path, start + 2)
            return self.json(body)
        return Response("no such path", status=404)

    @staticmethod
    def json(body):
        return Response(json.dumps(body), status=200, content_type="application/json")


@pytest.fixture(scope="module")
def fake():
    server = httpserver_mod.HTTPServer(host="127.0.0.1", port=PORT)
    state = Fake()
    server.expect_request(re.compile(".*")).respond_with_handler(state.handle)
    server.start()
    try:
        yield state
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def gcp_args(**extra):
    args = {"engine": "gcp_cloudsql", "gcp_project": "proj-1", "cloudsql_instance": "appdb", "gcp_access_token": TOKEN,
            "gcp_endpoint": ENDPOINT, "max_age": "1h"}
    args.update(extra)
    return args


def test_gcp_cloudsql_backup_runs(fake):
    fake.cloudsql[("proj-1", "appdb")] = {
        "instance": {"name": "appdb", "settings": {"backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True}}},
        "runs": [
            {"id": "1", "status": "SUCCESSFUL", "type": "AUTOMATED", "startTime": iso(90000), "endTime": iso(89900)},
            {"id": "2", "status": "SUCCESSFUL", "type": "AUTOMATED", "startTime": iso(1900), "endTime": iso(1800)},
            {"id": "3", "status": "SUCCESSFUL", "type": "ON_DEMAND", "startTime": iso(700), "endTime": iso(600)},
            {"id": "4", "status": "FAILED", "type": "AUTOMATED", "startTime": iso(100), "endTime": iso(90)},
            {"id": "5", "status": "RUNNING", "type": "ON_DEMAND", "startTime": iso(10)},
        ],
        "latest": iso(30),
    }
    del fake.requests[:]
    res = run_module(MODULE, gcp_args())
    assert not res.get("failed"), res.get("msg")
    # the newest SUCCESSFUL run, found on the second page; the FAILED and RUNNING ones are not backups
    assert res["backup"]["label"] == "3" and res["backup"]["type"] == "ON_DEMAND"
    assert res["backup"]["completed_at"] == fake.cloudsql[("proj-1", "appdb")]["runs"][2]["endTime"]
    assert res["backup"]["count"] == 3 and res["backup"]["failed_runs"] == 1
    assert 590 < res["backup"]["age_seconds"] < 700
    assert res["backup"]["latest_recovery_time"][:19] == fake.cloudsql[("proj-1", "appdb")]["latest"][:19]
    assert res["checks"]["max_age"]["status"] == "passed"
    paths = [r["path"] for r in fake.requests]
    assert paths.count("/v1/projects/proj-1/instances/appdb/backupRuns") == 3  # paged
    assert "/v1/projects/proj-1/instances/appdb/getLatestRecoveryTime" in paths
    assert all(r["method"] == "GET" and r["auth"] == "Bearer " + TOKEN for r in fake.requests)
    assert TOKEN not in json.dumps(res)

    res = run_module(MODULE, gcp_args(max_age="5m"))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    assert "newest backup run is" in res["msg"] and "older than max_age 5m" in res["msg"]
    assert "latest recovery time" not in res["msg"]  # 30 s old: fine

    fake.cloudsql[("proj-1", "appdb")]["instance"]["settings"]["backupConfiguration"]["enabled"] = False
    res = run_module(MODULE, gcp_args())
    assert res.get("failed") and "automated backups are disabled on appdb" in res["msg"]

    res = run_module(MODULE, gcp_args(gcp_access_token="wrong-token"))
    assert res.get("failed") and "HTTP 401" in res["msg"]
    assert "wrong-token" not in json.dumps(res)
    res = run_module(MODULE, gcp_args(cloudsql_instance="missing"))
    assert res.get("failed") and "not found (HTTP 404" in res["msg"]


def az_args(**extra):
    args = {"engine": "azure_pg_flexible", "azure_subscription_id": "sub-1", "resource_group": "rg-db",
            "flexible_server": "appdb", "azure_access_token": TOKEN, "azure_resource_manager_endpoint": ENDPOINT,
            "max_age": "1h"}
    args.update(extra)
    return args


def test_azure_flexible_server_backups(fake):
    fake.flexible[("sub-1", "rg-db", "appdb")] = {
        "server": {"name": "appdb", "properties": {"state": "Ready", "backup": {
            "backupRetentionDays": 7, "geoRedundantBackup": "Disabled", "earliestRestoreDate": iso(7 * 86400)}}},
        "backups": [
            {"name": "backup_1", "properties": {"backupType": "Full", "completedTime": iso(86400 + 1200)}},
            {"name": "backup_3", "properties": {"backupType": "Full", "completedTime": iso(1200)}},
            {"name": "backup_2", "properties": {"backupType": "Full", "completedTime": iso(43200)}},
        ],
    }
    del fake.requests[:]
    res = run_module(MODULE, az_args())
    assert not res.get("failed"), res.get("msg")
    assert res["backup"]["label"] == "backup_3" and res["backup"]["count"] == 3
    assert res["backup"]["backup_retention_days"] == 7 and res["backup"]["state"] == "Ready"
    assert 1190 < res["backup"]["age_seconds"] < 1300
    lists = [r for r in fake.requests if r["path"].endswith("/backups")]
    assert len(lists) == 2 and "skip=2" in lists[1]["query"]  # followed nextLink
    assert all(r["auth"] == "Bearer " + TOKEN for r in fake.requests)

    res = run_module(MODULE, az_args(max_age="15m"))
    assert res.get("failed") and "newest backup is" in res["msg"] and "older than max_age 15m" in res["msg"]

    fake.flexible[("sub-1", "rg-db", "appdb")]["backups"] = []
    res = run_module(MODULE, az_args())
    assert res.get("failed") and "no newest backup found" in res["msg"]

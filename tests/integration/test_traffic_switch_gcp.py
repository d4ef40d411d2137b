# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider gcp_cloud_run against a local fake of the Cloud Run Admin API v2
(fakes/fake_gcp_run.py). Assertions read the fake's stored service, not the return value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from fakes.fake_gcp_run import FakeCloudRun
from test_traffic_switch_lab import MODULE, run_module

pytest.importorskip("google.auth")

PORT = 20530
UNUSED_PORT = 20595
SVC = "projects/shop-prod/locations/europe-west1/services/web"


@pytest.fixture
def fake():
    server = FakeCloudRun(PORT).start()
    server.add_service(SVC, ["web-00001-abc", "web-00002-def"], [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "web-00001-abc", "percent": 100, "tag": "stable"}])
    try:
        yield server
    finally:
        server.stop()


def args(fake, **extra):
    out = {"provider": "gcp_cloud_run", "gcp_endpoint": fake.url, "gcp_access_token": fake.token, "gcp_project": "shop-prod",
           "cloud_run_region": "europe-west1", "cloud_run_service": "web"}
    out.update(extra)
    return out


def split(fake):
    return dict((t.get("revision") or "LATEST", t["percent"]) for t in fake.services[SVC]["traffic"])


def test_canary_then_full_switch_and_undo(fake):
    a = args(fake, weights={"web-00001-abc": 90, "web-00002-def": 10})
    check = run_module(MODULE, a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["previous"] == {"web-00001-abc": 100, "web-00002-def": 0, "LATEST": 0}
    assert split(fake) == {"web-00001-abc": 100}
    assert [m for m, p in fake.requests if m == "PATCH"] == []

    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]]
    assert split(fake) == {"web-00001-abc": 90, "web-00002-def": 10}
    tags = dict((t["revision"], t.get("tag")) for t in fake.services[SVC]["traffic"])
    assert tags["web-00001-abc"] == "stable"  # tags survive the switch
    assert any(p.startswith("projects/p/locations/l/operations/") for m, p in fake.requests if m == "GET")  # LRO polled
    assert run_module(MODULE, a)["changed"] is False
    assert run_module(MODULE, a, check=True)["changed"] is False

    full = run_module(MODULE, args(fake, active="LATEST"))
    assert not full["failed"], full
    assert split(fake) == {"LATEST": 100, "web-00001-abc": 0}
    assert fake.token not in str(full)
    back = run_module(MODULE, dict(full["undo"], gcp_access_token=fake.token))
    assert not back["failed"], back
    assert split(fake) == {"web-00001-abc": 90, "web-00002-def": 10}


def test_verify_failure_reverts_and_bad_input(fake):
    before = list(fake.services[SVC]["traffic"])
    failed = run_module(MODULE, args(fake, active="web-00002-def",
                                     verify={"host": "127.0.0.1", "port": UNUSED_PORT, "retries": 0}))
    assert failed["failed"] and failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"]
    assert fake.services[SVC]["traffic"] == before
    for a, code, needle in [
        (args(fake, active="web-00009-zzz"), "NOT_FOUND", "web-00009-zzz"),
        (args(fake, cloud_run_service="api", active="LATEST"), "NOT_FOUND", "api"),
        (args(fake, gcp_access_token="wrong", active="LATEST"), "AUTH_FAILED", "refused"),
        (args(fake, gcp_endpoint="http://127.0.0.1:%d" % UNUSED_PORT, active="LATEST"), "CONNECTION_FAILED", str(UNUSED_PORT)),
        (args(fake, weights={"web-00001-abc": 70, "web-00002-def": 20}), "INVALID_ARGUMENT", "sum to 90"),
    ]:
        result = run_module(MODULE, a)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
        assert "wrong" not in result["msg"]
    assert fake.services[SVC]["traffic"] == before

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider gcp_cloud_dns against a local fake of the Cloud DNS API v1
(fakes/fake_gcp_dns.py, port block 27000-27999). Assertions read the record set stored in the
fake and the change requests it received, not the module's return value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from fakes.fake_gcp_dns import FakeCloudDNS
from test_traffic_switch_lab import MODULE, run_module

pytest.importorskip("google.auth")

PORT = 27010
UNUSED_PORT = 27099
PROJECT, ZONE, NAME = "shop-prod", "example-com", "db.example.com."
PRIMARY = {"name": NAME, "type": "A", "ttl": 60, "rrdatas": ["10.0.0.5"]}


@pytest.fixture
def fake():
    server = FakeCloudDNS(PORT).start()
    server.add_zone(PROJECT, ZONE, "example.com.")
    server.put(PROJECT, ZONE, PRIMARY)
    server.put(PROJECT, ZONE, {"name": "other.example.com.", "type": "A", "ttl": 300, "rrdatas": ["192.0.2.99"]})
    try:
        yield server
    finally:
        server.stop()


def args(fake, **extra):
    out = {"provider": "gcp_cloud_dns", "gcp_endpoint": fake.url, "gcp_access_token": fake.token, "gcp_project": PROJECT,
           "dns_managed_zone": ZONE, "dns_record_name": "db.example.com",
           "dns_targets": {"primary": ["10.0.0.5"], "standby": ["10.1.0.6", "10.1.0.5"]}}
    out.update(extra)
    return out


def record(fake):
    return fake.get(PROJECT, ZONE, NAME, "A")


def test_failover_weights_and_undo(fake):
    a = args(fake, active="standby")
    check = run_module(MODULE, a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["previous"] == {"primary": 100, "standby": 0}
    assert check["after"]["routing"] == {"primary": 0, "standby": 100}
    assert record(fake) == PRIMARY and fake.writes() == []  # check mode wrote nothing

    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]] == [
        ("dns_change", "db.example.com. A")]
    assert record(fake) == {"name": NAME, "type": "A", "ttl": 60, "rrdatas": ["10.1.0.6", "10.1.0.5"]}  # TTL kept, order as given
    body = fake.bodies[-1]
    assert body["deletions"][0]["rrdatas"] == ["10.0.0.5"] and "kind" not in body["additions"][0]
    assert ("GET", "/dns/v1/projects/shop-prod/managedZones/example-com/changes/1") in fake.requests  # change polled to done
    assert result["undo"] == {"provider": "gcp_cloud_dns", "gcp_project": PROJECT, "gcp_endpoint": fake.url, "dns_managed_zone": ZONE,
                              "dns_record_name": "db.example.com", "dns_record_type": "A", "dns_targets": a["dns_targets"],
                              "active": "primary"}

    writes = len(fake.writes())
    again = run_module(MODULE, a)
    assert again["changed"] is False and not again["failed"]
    assert run_module(MODULE, a, check=True)["changed"] is False
    assert len(fake.writes()) == writes  # the idempotent re-runs sent no change

    canary = run_module(MODULE, args(fake, weights={"primary": 90, "standby": 10}))
    assert not canary["failed"], canary
    stored = record(fake)
    assert "rrdatas" not in stored and stored["ttl"] == 60
    assert stored["routingPolicy"] == {"wrr": {"items": [{"weight": 90, "rrdatas": ["10.0.0.5"]},
                                                         {"weight": 10, "rrdatas": ["10.1.0.6", "10.1.0.5"]}]}}
    assert run_module(MODULE, args(fake, weights={"primary": 90, "standby": 10}))["changed"] is False
    assert fake.token not in json.dumps(canary)

    back = run_module(MODULE, dict(canary["undo"], gcp_access_token=fake.token))
    assert not back["failed"], back
    assert record(fake) == {"name": NAME, "type": "A", "ttl": 60, "rrdatas": ["10.1.0.6", "10.1.0.5"]}


def test_verify_failure_reverts(fake):
    failed = run_module(MODULE, args(fake, active="standby", verify={"host": "127.0.0.1", "port": UNUSED_PORT, "retries": 0}))
    assert failed["failed"] and failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"], failed
    assert failed["reverted"] is True
    assert record(fake) == PRIMARY
    assert len(fake.writes()) == 2  # the switch and the revert
    assert fake.bodies[1]["deletions"][0]["rrdatas"] == ["10.1.0.6", "10.1.0.5"]


def test_bad_input_changes_nothing(fake):
    fake.put(PROJECT, ZONE, {"name": "web.example.com.", "type": "A", "ttl": 60, "rrdatas": ["203.0.113.7"]})
    for a, code, needle in [
        (args(fake, active="dr"), "NOT_FOUND", "dr"),
        (args(fake, dns_managed_zone="example-org", active="standby"), "NOT_FOUND", "example-org"),
        (args(fake, dns_record_name="nope.example.com", active="standby"), "NOT_FOUND", "nope.example.com."),
        (args(fake, dns_record_name="web.example.com", active="standby"), "PRECONDITION_FAILED", "203.0.113.7"),
        (args(fake, gcp_access_token="wrong-secret-token", active="standby"), "AUTH_FAILED", "refused"),
        (args(fake, gcp_endpoint="http://127.0.0.1:%d" % UNUSED_PORT, active="standby"), "CONNECTION_FAILED", str(UNUSED_PORT)),
        (args(fake, weights={"primary": 70, "standby": 20}), "INVALID_ARGUMENT", "sum to 90"),
        (args(fake, dns_targets={"primary": ["10.0.0.5"], "copy": ["10.0.0.5"]}, active="copy"), "INVALID_ARGUMENT", "same rrdatas"),
    ]:
        result = run_module(MODULE, a)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
        assert "Nothing was changed" in result["msg"] and result["changed"] is False
        text = json.dumps(result)
        assert "wrong-secret-token" not in text and fake.token not in text
    assert fake.writes() == []
    assert record(fake) == PRIMARY

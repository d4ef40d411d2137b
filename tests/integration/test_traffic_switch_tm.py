# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider azure_traffic_manager against a local fake of the ARM Traffic Manager
paths (fakes/fake_azure_tm.py, port block 27000-27999). Assertions read the endpoints stored in
the fake and the PATCH requests it received, not the module's return value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from fakes.fake_azure_tm import FakeTrafficManager
from test_traffic_switch_lab import MODULE, run_module

PORT = 27020
UNUSED_PORT = 27098
RG = "/subscriptions/sub-1/resourceGroups/rg-shop/providers/Microsoft.Network/trafficmanagerprofiles/"


@pytest.fixture
def fake():
    server = FakeTrafficManager(PORT).start()
    server.profiles[RG + "tm-web"] = {"trafficRoutingMethod": "Weighted", "endpoints": {
        "westeurope": {"type": "externalEndpoints", "target": "web-we.example.net", "endpointStatus": "Enabled", "weight": 1000, "priority": 1},
        "northeurope": {"type": "azureEndpoints", "targetResourceId": "/subscriptions/sub-1/.../sites/web-ne", "endpointStatus": "Disabled",
                        "weight": 1000, "priority": 2},
    }}
    server.profiles[RG + "tm-db"] = {"trafficRoutingMethod": "Priority", "endpoints": {
        "primary": {"type": "externalEndpoints", "target": "db1.example.net", "endpointStatus": "Enabled", "weight": 1, "priority": 1},
        "standby": {"type": "externalEndpoints", "target": "db2.example.net", "endpointStatus": "Enabled", "weight": 1, "priority": 2},
    }}
    server.profiles[RG + "tm-perf"] = {"trafficRoutingMethod": "Performance", "endpoints": {
        "a": {"type": "externalEndpoints", "target": "a.example.net", "endpointStatus": "Enabled", "weight": 1, "priority": 1},
    }}
    try:
        yield server
    finally:
        server.stop()


def args(fake, **extra):
    out = {"provider": "azure_traffic_manager", "azure_resource_manager_endpoint": fake.url, "azure_access_token": fake.token,
           "azure_subscription_id": "sub-1", "tm_resource_group": "rg-shop", "tm_profile": "tm-web"}
    out.update(extra)
    return out


def state(fake, profile="tm-web"):
    return dict((n, (e["endpointStatus"], e["weight"])) for n, e in fake.profiles[RG + profile]["endpoints"].items())


def test_weighted_failover_canary_and_undo(fake):
    a = args(fake, active="northeurope")
    check = run_module(MODULE, a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["previous"] == {"westeurope": 100, "northeurope": 0}
    assert state(fake) == {"westeurope": ("Enabled", 1000), "northeurope": ("Disabled", 1000)}
    assert fake.writes() == []

    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]] == [
        ("update_endpoint", "northeurope"), ("update_endpoint", "westeurope")]  # the incoming endpoint first
    assert state(fake) == {"westeurope": ("Disabled", 1000), "northeurope": ("Enabled", 1000)}
    assert [p for m, p in fake.writes()] == [RG + "tm-web/azureEndpoints/northeurope", RG + "tm-web/externalEndpoints/westeurope"]
    assert fake.bodies == [{"properties": {"endpointStatus": "Enabled"}}, {"properties": {"endpointStatus": "Disabled"}}]
    assert run_module(MODULE, a)["changed"] is False
    assert run_module(MODULE, a, check=True)["changed"] is False
    assert len(fake.writes()) == 2  # the idempotent re-runs sent no PATCH

    split = run_module(MODULE, args(fake, weights={"westeurope": 20, "northeurope": 80}))
    assert not split["failed"], split
    assert state(fake) == {"westeurope": ("Enabled", 200), "northeurope": ("Enabled", 800)}  # percent x 10
    assert split["undo"]["active"] == "northeurope"
    assert fake.token not in json.dumps(split)
    assert run_module(MODULE, args(fake, weights={"westeurope": 20, "northeurope": 80}))["changed"] is False

    back = run_module(MODULE, dict(split["undo"], azure_access_token=fake.token))
    assert not back["failed"], back
    assert state(fake) == {"westeurope": ("Disabled", 200), "northeurope": ("Enabled", 800)}


def test_priority_profile(fake):
    a = args(fake, tm_profile="tm-db", active="standby")
    check = run_module(MODULE, a, check=True)
    assert check["changed"] and check["previous"] == {"primary": 100, "standby": 0}
    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [("update_endpoint", "primary")]  # standby is already enabled
    assert state(fake, "tm-db") == {"primary": ("Disabled", 1), "standby": ("Enabled", 1)}
    assert run_module(MODULE, a)["changed"] is False

    refused = run_module(MODULE, args(fake, tm_profile="tm-db", weights={"primary": 50, "standby": 50}))
    assert refused["failed"] and refused["error"] == "INVALID_ARGUMENT" and "Weighted" in refused["msg"], refused
    assert state(fake, "tm-db") == {"primary": ("Disabled", 1), "standby": ("Enabled", 1)}

    # weights that give one endpoint 100 % are the same as active
    back = run_module(MODULE, args(fake, tm_profile="tm-db", weights={"primary": 100, "standby": 0}))
    assert not back["failed"], back
    assert state(fake, "tm-db") == {"primary": ("Enabled", 1), "standby": ("Disabled", 1)}


def test_verify_failure_reverts_and_bad_input(fake):
    before = state(fake)
    failed = run_module(MODULE, args(fake, active="northeurope", verify={"host": "127.0.0.1", "port": UNUSED_PORT, "retries": 0}))
    assert failed["failed"] and failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"], failed
    assert failed["reverted"] is True
    assert state(fake) == before
    assert len(fake.writes()) == 4  # two endpoints switched, two put back
    for a, code, needle in [
        (args(fake, active="eastus"), "NOT_FOUND", "eastus"),
        (args(fake, tm_profile="tm-api", active="westeurope"), "NOT_FOUND", "tm-api"),
        (args(fake, azure_access_token="wrong-secret-token", active="northeurope"), "AUTH_FAILED", "401"),
        (args(fake, azure_resource_manager_endpoint="http://127.0.0.1:%d" % UNUSED_PORT, active="northeurope"),
         "CONNECTION_FAILED", str(UNUSED_PORT)),
        (args(fake, tm_profile="tm-perf", active="a"), "PRECONDITION_FAILED", "Performance"),
        (args(fake, weights={"westeurope": 50, "northeurope": 40}), "INVALID_ARGUMENT", "sum to 90"),
    ]:
        result = run_module(MODULE, a)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
        assert "Nothing was changed" in result["msg"] and result["changed"] is False
        text = json.dumps(result)
        assert "wrong-secret-token" not in text and fake.token not in text
    assert len(fake.writes()) == 4
    assert state(fake) == before

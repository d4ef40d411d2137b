# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider azure_front_door against a local fake of the ARM origin paths
(fakes/fake_azure_fd.py). Assertions read the fake's stored origins, not the return value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from fakes.fake_azure_fd import FakeFrontDoor
from test_traffic_switch_lab import MODULE, run_module

PORT = 20540
UNUSED_PORT = 20594
GROUP = "/subscriptions/sub-1/resourceGroups/rg-shop/providers/Microsoft.Cdn/profiles/fd-shop/originGroups/web"


@pytest.fixture
def fake():
    server = FakeFrontDoor(PORT).start()
    server.origins[GROUP] = {
        "westeurope": {"hostName": "web-we.azurewebsites.net", "enabledState": "Enabled", "weight": 1000, "priority": 1},
        "northeurope": {"hostName": "web-ne.azurewebsites.net", "enabledState": "Disabled", "weight": 1000, "priority": 1},
    }
    try:
        yield server
    finally:
        server.stop()


def args(fake, **extra):
    out = {"provider": "azure_front_door", "azure_resource_manager_endpoint": fake.url, "azure_access_token": fake.token,
           "azure_subscription_id": "sub-1", "afd_resource_group": "rg-shop", "afd_profile": "fd-shop", "afd_origin_group": "web"}
    out.update(extra)
    return out


def state(fake):
    return dict((n, (p["enabledState"], p["weight"])) for n, p in fake.origins[GROUP].items())


def test_region_failover_weights_and_undo(fake):
    a = args(fake, active="northeurope")
    check = run_module(MODULE, a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["previous"] == {"westeurope": 100, "northeurope": 0}
    assert state(fake) == {"westeurope": ("Enabled", 1000), "northeurope": ("Disabled", 1000)}

    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]] == [
        ("update_origin", "northeurope"), ("update_origin", "westeurope")]  # the incoming origin first
    assert state(fake) == {"westeurope": ("Disabled", 1000), "northeurope": ("Enabled", 1000)}
    assert any(p.startswith("/operations/") for m, p in fake.requests)  # the 202 was followed
    assert run_module(MODULE, a)["changed"] is False
    assert run_module(MODULE, a, check=True)["changed"] is False

    split = run_module(MODULE, args(fake, weights={"westeurope": 20, "northeurope": 80}))
    assert not split["failed"], split
    assert state(fake) == {"westeurope": ("Enabled", 200), "northeurope": ("Enabled", 800)}
    assert fake.token not in str(split)
    back = run_module(MODULE, dict(split["undo"], azure_access_token=fake.token))
    assert not back["failed"], back
    assert state(fake)["westeurope"][0] == "Disabled" and state(fake)["northeurope"][0] == "Enabled"


def test_verify_failure_reverts_and_bad_input(fake):
    before = state(fake)
    failed = run_module(MODULE, args(fake, active="northeurope", verify={"host": "127.0.0.1", "port": UNUSED_PORT, "retries": 0}))
    assert failed["failed"] and failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"]
    assert state(fake) == before
    fake.origins[GROUP]["northeurope"]["priority"] = 2
    for a, code, needle in [
        (args(fake, active="eastus"), "NOT_FOUND", "eastus"),
        (args(fake, afd_origin_group="api", active="westeurope"), "NOT_FOUND", "api"),
        (args(fake, azure_access_token="wrong", active="northeurope"), "AUTH_FAILED", "401"),
        (args(fake, azure_resource_manager_endpoint="http://127.0.0.1:%d" % UNUSED_PORT, active="northeurope"),
         "CONNECTION_FAILED", str(UNUSED_PORT)),
        (args(fake, weights={"westeurope": 50, "northeurope": 50}), "PRECONDITION_FAILED", "priorit"),
    ]:
        result = run_module(MODULE, a)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
    assert [m for m, p in fake.requests if m == "PATCH"] == ["PATCH", "PATCH", "PATCH", "PATCH"]  # switch + revert only
    assert state(fake) == before

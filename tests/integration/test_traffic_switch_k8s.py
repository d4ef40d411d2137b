# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider kubernetes against a local fake API server (fakes/fake_k8s.py).

No Kubernetes API server can run here; the fake keeps the objects and enforces what the
provider relies on (bearer token, 404 Status, resourceVersion on PUT). Every assertion on
state reads the fake's stored objects, never only the module's return value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from fakes.fake_k8s import FakeK8s
from test_traffic_switch_lab import MODULE, run_module

pytest.importorskip("kubernetes")

PORT = 20520
UNUSED_PORT = 20596
SVC = "/api/v1/namespaces/shop/services/web"
ING = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web"
VS = "/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/reviews"
ROUTE = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web"


@pytest.fixture
def fake():
    server = FakeK8s(PORT).start()
    server.put(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                     "spec": {"selector": {"app": "web", "version": "blue"}, "ports": [{"port": 80}]}})
    server.put(ING, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"},
                     "spec": {"defaultBackend": {"service": {"name": "web-blue", "port": {"number": 80}}},
                              "rules": [{"host": "shop.test", "http": {"paths": [
                                  {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-blue", "port": {"number": 80}}}},
                                  {"path": "/admin", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 81}}}},
                              ]}}]}})
    server.put(VS, {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                    "metadata": {"name": "reviews", "namespace": "shop"},
                    "spec": {"hosts": ["reviews"], "http": [
                        {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100},
                                   {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0}]},
                        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}})
    server.put(ROUTE, {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"rules": [{"backendRefs": [{"name": "web-blue", "port": 80, "weight": 1},
                                                           {"name": "web-green", "port": 80, "weight": 0}]}]}})
    server.requests[:] = []
    try:
        yield server
    finally:
        server.stop()


def args(fake, **extra):
    out = {"provider": "kubernetes", "k8s_host": fake.url, "k8s_api_key": fake.token, "k8s_namespace": "shop"}
    out.update(extra)
    return out


def steps(result):
    return [(s["action"], s["target"]) for s in result["steps"]]


def test_service_selector_blue_green(fake):
    a = args(fake, k8s_kind="service", k8s_name="web", active="green")
    check = run_module(MODULE, a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["routing"] == {"blue": 0, "green": 100}
    assert fake.store[SVC]["spec"]["selector"]["version"] == "blue"
    assert ("PUT", SVC) not in fake.requests
    result = run_module(MODULE, a)
    assert not result["failed"], result
    assert steps(result) == steps(check) == [("replace_service", SVC)]
    assert fake.store[SVC]["spec"]["selector"] == {"app": "web", "version": "green"}
    assert fake.store[SVC]["spec"]["ports"] == [{"port": 80}]
    assert result["previous"] == {"blue": 100, "green": 0} and result["undo"]["active"] == "blue"
    assert "k8s_api_key" not in result["undo"] and fake.token not in str(result)
    assert run_module(MODULE, a)["changed"] is False
    assert run_module(MODULE, a, check=True)["changed"] is False
    run_module(MODULE, dict(result["undo"], k8s_api_key=fake.token))
    assert fake.store[SVC]["spec"]["selector"]["version"] == "blue"


def test_ingress_backend(fake):
    a = args(fake, k8s_kind="ingress", k8s_name="web", k8s_targets={"blue": "web-blue", "green": "web-green"}, active="green")
    result = run_module(MODULE, a)
    assert not result["failed"], result
    spec = fake.store[ING]["spec"]
    assert spec["defaultBackend"]["service"] == {"name": "web-green", "port": {"number": 80}}
    paths = spec["rules"][0]["http"]["paths"]
    assert paths[0]["backend"]["service"]["name"] == "web-green"
    assert paths[1]["backend"]["service"] == {"name": "admin", "port": {"number": 81}}  # not a target: untouched
    assert run_module(MODULE, a)["changed"] is False


def test_istio_virtualservice_weights(fake):
    a = args(fake, k8s_kind="virtualservice", k8s_name="reviews", k8s_targets={"stable": "v1", "canary": "v2"},
             weights={"stable": 90, "canary": 10})
    check = run_module(MODULE, a, check=True)
    assert check["previous"] == {"stable": 100, "canary": 0}
    result = run_module(MODULE, a)
    assert not result["failed"], result
    http = fake.store[VS]["spec"]["http"]
    assert [r["weight"] for r in http[0]["route"]] == [90, 10]
    assert http[1] == {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    assert run_module(MODULE, a)["changed"] is False
    assert result["undo"]["active"] == "stable"


def test_gateway_httproute_weights(fake):
    a = args(fake, k8s_kind="httproute", k8s_name="web", active="web-green")
    result = run_module(MODULE, a)
    assert not result["failed"], result
    refs = fake.store[ROUTE]["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"], r["port"]) for r in refs] == [("web-blue", 0, 80), ("web-green", 100, 80)]
    assert run_module(MODULE, a)["changed"] is False


def test_verify_failure_reverts_and_bad_input(fake):
    before = fake.store[SVC]["spec"]
    failed = run_module(MODULE, args(fake, k8s_kind="service", k8s_name="web", active="green",
                                     verify={"host": "127.0.0.1", "port": UNUSED_PORT, "retries": 1, "delay": "0.1s"}))
    assert failed["failed"] and failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"]
    assert fake.store[SVC]["spec"] == before
    assert [m for m, p in fake.requests if m == "PUT"] == ["PUT", "PUT"]  # the switch, then the revert

    cases = [
        (args(fake, k8s_kind="service", k8s_name="nope", active="green"), "NOT_FOUND", "nope"),
        (args(fake, k8s_kind="service", k8s_name="web", weights={"blue": 50, "green": 50}), "INVALID_ARGUMENT", "active"),
        (args(fake, k8s_kind="virtualservice", k8s_name="reviews", active="v3"), "NOT_FOUND", "v3"),
        (args(fake, k8s_kind="ingress", k8s_name="web", active="web-green"), "INVALID_ARGUMENT", "k8s_targets"),
        (args(fake, k8s_kind="service", k8s_name="web", active="green", k8s_api_key="wrong"), "AUTH_FAILED", "401"),
        (args(fake, k8s_kind="service", k8s_name="web", active="green", k8s_host="http://127.0.0.1:%d" % UNUSED_PORT),
         "CONNECTION_FAILED", str(UNUSED_PORT)),
    ]
    fake.requests[:] = []
    for a, code, needle in cases:
        result = run_module(MODULE, a)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
    assert [m for m, p in fake.requests if m == "PUT"] == []
    assert fake.store[SVC]["spec"] == before

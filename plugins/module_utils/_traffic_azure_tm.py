# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``azure_traffic_manager`` (private to this collection).

Targets are the endpoints of one Azure Traffic Manager profile
(``Microsoft.Network/trafficmanagerprofiles``, api-version 2022-04-01), whatever their type
(Azure, external or nested endpoints). Profiles with the ``Priority`` or ``Weighted`` routing
method are handled:

* ``Priority``: the enabled endpoint with the lowest priority number takes 100 %;
* ``Weighted``: each enabled endpoint takes its weight over the sum of the enabled ones.

``active: X`` enables X and disables every other endpoint. ``weights`` (``Weighted`` profiles
only) enables the endpoints above 0 % with ``weight`` = percent x 10 (Traffic Manager weights
are 1-1000, so 1 % is 10 and 100 % is 1000) and disables the others. Each endpoint that
differs is updated with ``Endpoints_Update`` (PATCH of its id), incoming endpoints first.
Plain REST through ``requests`` with a bearer token, as the ``azure_front_door`` provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.resilience.dr.plugins.module_utils import _azure
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

API_VERSION = "2022-04-01"
METHODS = ("Priority", "Weighted")
#: Traffic Manager weight per percent (weights are 1-1000)
WEIGHT_PER_PERCENT = 10


def tm_weight(percent):
    return max(1, min(1000, int(percent) * WEIGHT_PER_PERCENT))


class TrafficManagerTraffic(TrafficProvider):
    name = "azure_traffic_manager"
    context_options = ("azure_subscription_id", "azure_resource_manager_endpoint", "tm_resource_group", "tm_profile")

    def __init__(self, module):
        super(TrafficManagerTraffic, self).__init__(module)
        for name in ("azure_subscription_id", "tm_resource_group", "tm_profile"):
            if not self.params.get(name):
                raise DRError(INVALID_ARGUMENT, "%s is required with provider=azure_traffic_manager." % name)
        self.profile = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/trafficmanagerprofiles/%s" % (
            self.params["azure_subscription_id"], self.params["tm_resource_group"], self.params["tm_profile"])
        self.http = _azure.session(self.params, self.secrets)
        self.method = None
        self.operation_timeout = 600

    def target_what(self):
        return "endpoint of Traffic Manager profile %s:" % self.params["tm_profile"]

    def call(self, method, url, body=None):
        what = "Traffic Manager %s %s" % (method, url.split("?")[0].rsplit("/providers/", 1)[-1])
        return _azure.call(self.http, self.params, method, url, what, api_version=API_VERSION, role_hint=" (Traffic Manager Contributor)",
                           json=body)

    def read_state(self):
        profile = self.call("GET", self.profile)[1]
        props = profile.get("properties") or {}
        method = props.get("trafficRoutingMethod")
        if method not in METHODS:
            raise DRError(PRECONDITION_FAILED, "Traffic Manager profile %s routes by %s; azure_traffic_manager switches Priority and "
                          "Weighted profiles only." % (self.params["tm_profile"], method))
        if props.get("profileStatus", "Enabled") != "Enabled":
            raise DRError(PRECONDITION_FAILED, "Traffic Manager profile %s is %s, so it answers no DNS query; enable it first."
                          % (self.params["tm_profile"], props.get("profileStatus")))
        self.method = method
        endpoints = {}
        for endpoint in props.get("endpoints") or []:
            eprops = endpoint.get("properties") or {}
            endpoints[endpoint["name"]] = {
                "id": endpoint.get("id") or "%s/%s/%s" % (self.profile, (endpoint.get("type") or "").rsplit("/", 1)[-1], endpoint["name"]),
                "type": (endpoint.get("type") or "").rsplit("/", 1)[-1],
                "endpointStatus": eprops.get("endpointStatus", "Enabled"),
                "weight": int(eprops.get("weight") or 1),
                "priority": int(eprops.get("priority") or 1),
                "endpointMonitorStatus": eprops.get("endpointMonitorStatus"),
                "target": eprops.get("target"),
            }
        if not endpoints:
            raise DRError(NOT_FOUND, "Traffic Manager profile %s has no endpoints." % self.params["tm_profile"])
        enabled = [n for n, d in endpoints.items() if d["endpointStatus"] == "Enabled"]
        if method == "Priority":
            top = sorted(enabled, key=lambda n: (endpoints[n]["priority"], n))[:1]
            raw = dict((n, 100 if n in top else 0) for n in endpoints)
        else:
            raw = dict((n, d["weight"] if n in enabled else 0) for n, d in endpoints.items())
        return shares(raw), {"trafficRoutingMethod": method, "endpoints": endpoints}

    def plan_changes(self, current, desired):
        endpoints = current["detail"]["endpoints"]
        incoming = sorted(n for n in desired if desired[n] > 0)
        ok_states = all(endpoints[n]["endpointStatus"] == ("Enabled" if desired[n] > 0 else "Disabled") for n in desired)
        if same_routing(current["routing"], desired) and ok_states:
            return []
        if len(incoming) > 1 and self.method != "Weighted":
            raise DRError(INVALID_ARGUMENT, "weights need a Weighted profile, but Traffic Manager profile %s routes by %s (all traffic to one "
                          "endpoint); give active instead." % (self.params["tm_profile"], self.method))
        steps = []
        for name in incoming + sorted(n for n in desired if desired[n] == 0):
            want = {"endpointStatus": "Enabled" if desired[name] > 0 else "Disabled"}
            if desired[name] > 0 and len(incoming) > 1 and not same_routing(current["routing"], desired):
                want["weight"] = tm_weight(desired[name])
            have = endpoints[name]
            if any(have.get(k) != v for k, v in want.items()):
                steps.append(Step("update_endpoint", name, run=self._updater(name, endpoints[name]["id"], want), **want))
        return steps

    def _updater(self, name, path, props):
        return lambda: self.update(name, path, props)

    def update(self, name, path, props):
        resp, data = self.call("PATCH", path, {"properties": props})
        _azure.wait(self.http, self.params, resp, "the update of endpoint %s" % name, self.operation_timeout)
        props = data.get("properties") or {}
        return {"endpoint": name, "status": resp.status_code, "endpointStatus": props.get("endpointStatus"), "weight": props.get("weight")}

    def restore(self, current):
        now = self.read_state()[1]["endpoints"]
        for name, was in sorted(current["detail"]["endpoints"].items(), key=lambda kv: (kv[1]["endpointStatus"] != "Enabled", kv[0])):
            want = dict((k, was[k]) for k in ("endpointStatus", "weight") if now.get(name, {}).get(k) != was[k])
            if want:
                self.update(name, was["id"], want)

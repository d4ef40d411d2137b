# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``azure_front_door`` (private to this collection).

Targets are the origins of one origin group of an Azure Front Door Standard/Premium profile
(``Microsoft.Cdn/profiles/originGroups/origins``). An origin takes traffic when it is
``Enabled`` and has the lowest priority among the enabled ones; its share is its weight over
theirs. The switch PATCHes ``enabledState`` and ``weight`` of each origin that differs
(incoming first), following the asynchronous operation when Azure answers 202. Plain REST
through ``requests`` with a bearer token.
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

API_VERSION = "2024-02-01"


class FrontDoorTraffic(TrafficProvider):
    name = "azure_front_door"
    context_options = ("azure_subscription_id", "azure_resource_manager_endpoint", "afd_resource_group", "afd_profile",
                       "afd_origin_group")

    def __init__(self, module):
        super(FrontDoorTraffic, self).__init__(module)
        for name in ("azure_subscription_id", "afd_resource_group", "afd_profile", "afd_origin_group"):
            if not self.params.get(name):
                raise DRError(INVALID_ARGUMENT, "%s is required with provider=azure_front_door." % name)
        self.group = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Cdn/profiles/%s/originGroups/%s" % (
            self.params["azure_subscription_id"], self.params["afd_resource_group"], self.params["afd_profile"],
            self.params["afd_origin_group"])
        self.http = _azure.session(self.params, self.secrets)
        self.operation_timeout = 600

    def target_what(self):
        return "origin of origin group %s:" % self.params["afd_origin_group"]

    def call(self, method, url, body=None):
        what = "Front Door %s %s" % (method, url.split("?")[0].rsplit("/providers/", 1)[-1])
        return _azure.call(self.http, self.params, method, url, what, api_version=API_VERSION, json=body)

    def origins(self):
        out = []
        url = "%s/origins" % self.group
        while url:
            data = self.call("GET", url)[1]
            out.extend(data.get("value") or [])
            url = data.get("nextLink")
        return out

    def read_state(self):
        origins = self.origins()
        if not origins:
            raise DRError(NOT_FOUND, "Origin group %s has no origins." % self.params["afd_origin_group"])
        detail = {}
        for origin in origins:
            props = origin.get("properties") or {}
            detail[origin["name"]] = {"enabledState": props.get("enabledState", "Enabled"), "weight": int(props.get("weight") or 1000),
                                      "priority": int(props.get("priority") or 1), "hostName": props.get("hostName")}
        enabled = [n for n, d in detail.items() if d["enabledState"] == "Enabled"]
        top = min([detail[n]["priority"] for n in enabled] or [0])
        raw = dict((n, d["weight"] if n in enabled and d["priority"] == top else 0) for n, d in detail.items())
        return shares(raw), {"origins": detail}

    def plan_changes(self, current, desired):
        origins = current["detail"]["origins"]
        incoming = sorted(n for n in desired if desired[n] > 0)
        ok_states = all(origins[n]["enabledState"] == ("Enabled" if desired[n] > 0 else "Disabled") for n in desired)
        if same_routing(current["routing"], desired) and ok_states:
            return []
        if len(set(origins[n]["priority"] for n in incoming)) > 1:
            raise DRError(PRECONDITION_FAILED, "Origins %s have different priorities, so Front Door would not split traffic between them "
                          "by weight; give them one priority first." % ", ".join(incoming))
        steps = []
        for name in incoming + sorted(n for n in desired if desired[n] == 0):
            want = {"enabledState": "Enabled" if desired[name] > 0 else "Disabled"}
            if desired[name] > 0 and len(incoming) > 1:
                want["weight"] = desired[name] * 10  # Front Door weights are 1-1000
            have = origins[name]
            if len(incoming) > 1 and desired[name] > 0 and same_routing(current["routing"], desired):
                want.pop("weight", None)
            if any(have.get(k) != v for k, v in want.items()):
                steps.append(Step("update_origin", name, run=self._updater(name, want), **want))
        return steps

    def _updater(self, name, props):
        return lambda: self.update(name, props)

    def update(self, name, props):
        resp, data = self.call("PATCH", "%s/origins/%s" % (self.group, name), {"properties": props})
        _azure.wait(self.http, self.params, resp, "the update of origin %s" % name, self.operation_timeout)
        return {"origin": name, "status": resp.status_code, "provisioningState": (data.get("properties") or {}).get("provisioningState")}

    def restore(self, current):
        now = self.read_state()[1]["origins"]
        for name, was in sorted(current["detail"]["origins"].items(), key=lambda kv: kv[1]["enabledState"] != "Enabled"):
            want = dict((k, was[k]) for k in ("enabledState", "weight") if now.get(name, {}).get(k) != was[k])
            if want:
                self.update(name, want)

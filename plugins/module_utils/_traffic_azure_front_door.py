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

import time

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    TIMEOUT,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

with _deps.declare("requests", pip="requests", reason="for the azure_front_door provider"):
    import requests

API_VERSION = "2024-02-01"


def bearer_token(params):
    if params.get("azure_access_token"):
        return params["azure_access_token"]
    with _deps.declare("azure-identity", pip="azure-identity", reason="for Azure credentials other than azure_access_token"):
        from azure.identity import ClientSecretCredential, DefaultAzureCredential  # pylint: disable=import-outside-toplevel
    _deps.require("azure-identity")
    scope = params.get("azure_resource_manager_endpoint", "https://management.azure.com").rstrip("/") + "/.default"
    try:
        if params.get("azure_client_secret"):
            cred = ClientSecretCredential(params.get("azure_tenant_id"), params.get("azure_client_id"), params["azure_client_secret"])
        else:
            cred = DefaultAzureCredential()
        return cred.get_token(scope).token
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError(AUTH_FAILED, "Could not get an Azure token for %s: %s; give azure_access_token or a service principal." % (scope, exc))


def arm_call(http, base, api_version, method, url, body=None, role_hint=""):
    """One Azure Resource Manager request through ``http`` (a requests session carrying the
    bearer token); returns (response, JSON body) or raises DRError with a stable code.
    ``role_hint`` names the role an operator should check on a 401/403."""
    if not url.startswith("http"):
        url = base + url
    params = None if "api-version=" in url else {"api-version": api_version}
    try:
        resp = http.request(method, url, params=params, json=body, timeout=30)
    except requests.exceptions.RequestException as exc:
        raise DRError(CONNECTION_FAILED, "Cannot reach Azure Resource Manager at %s: %s; check azure_resource_manager_endpoint." % (base, exc))
    try:
        data = resp.json() if resp.content else {}
    except ValueError:
        data = {"error": {"message": resp.text[:300]}}
    if resp.status_code >= 400:
        error = data.get("error") or {}
        message = "%s: %s" % (error.get("code", resp.status_code), error.get("message", resp.text[:300]))
        if resp.status_code == 404:
            raise DRError(NOT_FOUND, "Azure has no %s (404 %s)." % (url.split("?")[0][len(base):], message))
        if resp.status_code in (401, 403):
            raise DRError(AUTH_FAILED, "Azure refused %s (%d %s); check the token and its role assignments%s." % (
                method, resp.status_code, message, role_hint))
        raise DRError(APPLY_FAILED, "Azure answered %d to %s: %s." % (resp.status_code, method, message))
    return resp, data


class FrontDoorTraffic(TrafficProvider):
    name = "azure_front_door"
    context_options = ("azure_subscription_id", "azure_resource_manager_endpoint", "afd_resource_group", "afd_profile",
                       "afd_origin_group")

    def __init__(self, module):
        super(FrontDoorTraffic, self).__init__(module)
        for name in ("azure_subscription_id", "afd_resource_group", "afd_profile", "afd_origin_group"):
            if not self.params.get(name):
                raise DRError(INVALID_ARGUMENT, "%s is required with provider=azure_front_door." % name)
        _deps.require("requests")
        self.base = (self.params.get("azure_resource_manager_endpoint") or "https://management.azure.com").rstrip("/")
        self.group = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Cdn/profiles/%s/originGroups/%s" % (
            self.params["azure_subscription_id"], self.params["afd_resource_group"], self.params["afd_profile"],
            self.params["afd_origin_group"])
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer %s" % bearer_token(self.params)
        self.operation_timeout = 600

    def target_what(self):
        return "origin of origin group %s:" % self.params["afd_origin_group"]

    def call(self, method, url, body=None):
        return arm_call(self.http, self.base, API_VERSION, method, url, body)

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
        poll = resp.headers.get("Azure-AsyncOperation") or resp.headers.get("Location")
        if resp.status_code == 202 and poll:
            deadline = time.monotonic() + self.operation_timeout
            while True:
                status = (self.call("GET", poll)[1].get("status") or "").lower()
                if status in ("succeeded", ""):
                    break
                if status in ("failed", "canceled", "cancelled"):
                    raise DRError(APPLY_FAILED, "Azure reported the update of origin %s as %s." % (name, status))
                if time.monotonic() > deadline:
                    raise DRError(TIMEOUT, "The update of origin %s was not done after %ds." % (name, self.operation_timeout))
                time.sleep(float(resp.headers.get("Retry-After") or 1))
        return {"origin": name, "status": resp.status_code, "provisioningState": (data.get("properties") or {}).get("provisioningState")}

    def restore(self, current):
        now = self.read_state()[1]["origins"]
        for name, was in sorted(current["detail"]["origins"].items(), key=lambda kv: kv[1]["enabledState"] != "Enabled"):
            want = dict((k, was[k]) for k in ("enabledState", "weight") if now.get(name, {}).get(k) != was[k])
            if want:
                self.update(name, want)

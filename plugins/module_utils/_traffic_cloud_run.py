# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``gcp_cloud_run`` (private to this collection).

Targets are the revisions of a Cloud Run service (Admin API v2), plus ``LATEST`` for the
latest ready revision. The switch is one ``services.patch`` with ``updateMask=traffic``; the
long-running operation it returns is polled until done. Tags on revisions are kept.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.resilience.dr.plugins.module_utils import _gcp
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

LATEST = "LATEST"
T_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
T_LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"


class CloudRunTraffic(TrafficProvider):
    name = "gcp_cloud_run"
    context_options = ("gcp_project", "gcp_endpoint", "cloud_run_region", "cloud_run_service")

    def __init__(self, module):
        super(CloudRunTraffic, self).__init__(module)
        for name in ("gcp_project", "cloud_run_region", "cloud_run_service"):
            if not self.params.get(name):
                raise DRError(INVALID_ARGUMENT, "%s is required with provider=gcp_cloud_run." % name)
        self.base = (self.params.get("gcp_endpoint") or "https://run.googleapis.com").rstrip("/")
        self.path = "projects/%s/locations/%s/services/%s" % (self.params["gcp_project"], self.params["cloud_run_region"],
                                                              self.params["cloud_run_service"])
        self.http = _gcp.session(self.params)
        self.service = None
        self.operation_timeout = 600

    def target_what(self):
        return "revision of Cloud Run service %s:" % self.params["cloud_run_service"]

    def call(self, method, url, **kwargs):
        what = "Cloud Run %s %s" % (method, url.split("/v2/", 1)[-1].split("?")[0])
        return _gcp.call(self.http, method, url, what, service="Cloud Run", **kwargs)[1]

    @staticmethod
    def key(entry):
        if entry.get("type") == T_LATEST or (entry.get("latestRevision") and not entry.get("revision")):
            return LATEST
        return entry.get("revision")

    def read_state(self):
        service = self.call("GET", "%s/v2/%s" % (self.base, self.path))
        self.service = service
        revisions = self.call("GET", "%s/v2/%s/revisions" % (self.base, self.path)).get("revisions") or []
        raw = dict((r["name"].rsplit("/", 1)[-1], 0) for r in revisions)
        raw[LATEST] = 0
        for entry in service.get("traffic") or []:
            raw[self.key(entry)] = raw.get(self.key(entry), 0) + int(entry.get("percent") or 0)
        return shares(raw), {"traffic": service.get("traffic") or [], "latestReadyRevision": service.get("latestReadyRevision"),
                             "etag": service.get("etag")}

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        old = current["detail"]["traffic"]
        tags = dict((self.key(e), e.get("tag")) for e in old if e.get("tag"))
        traffic = []
        for name in sorted(desired):
            if desired[name] <= 0 and name not in tags:
                continue
            entry = {"type": T_LATEST} if name == LATEST else {"type": T_REVISION, "revision": name}
            entry["percent"] = desired[name]
            if name in tags:
                entry["tag"] = tags[name]
            traffic.append(entry)
        return [Step("patch_service_traffic", self.path, run=lambda: self.patch(traffic), traffic=copy.deepcopy(traffic))]

    def patch(self, traffic):
        op = self.call("PATCH", "%s/v2/%s" % (self.base, self.path), params={"updateMask": "traffic"}, json={"traffic": traffic})
        if not op.get("done"):
            url = "%s/v2/%s" % (self.base, op["name"])
            op = _http.poll(lambda: self._if_done(url), self.operation_timeout, 0.2,
                            "The Cloud Run operation %s was not done after %ds." % (op.get("name"), self.operation_timeout), max_interval=5)
        if op.get("error"):
            raise DRError(APPLY_FAILED, "Cloud Run refused the traffic change: %s." % op["error"].get("message", op["error"]),
                          details={"operation": op.get("name")})
        return {"operation": op.get("name")}

    def _if_done(self, url):
        op = self.call("GET", url)
        return op if op.get("done") else None

    def restore(self, current):
        self.patch(current["detail"]["traffic"])

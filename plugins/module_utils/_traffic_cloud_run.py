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
import time

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    TIMEOUT,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

with _deps.declare("google-auth", pip="google-auth", reason="for the gcp_cloud_run provider"):
    import google.auth
    import google.auth.exceptions
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import credentials as oauth2_credentials
    from google.oauth2 import service_account
    import requests

LATEST = "LATEST"
T_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
T_LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"


def session(params):
    _deps.require("google-auth")
    scopes = params.get("gcp_scopes") or ["https://www.googleapis.com/auth/cloud-platform"]
    try:
        if params.get("gcp_access_token"):
            creds = oauth2_credentials.Credentials(token=params["gcp_access_token"])
        elif params.get("gcp_credentials_file"):
            creds = service_account.Credentials.from_service_account_file(params["gcp_credentials_file"], scopes=scopes)
        else:
            creds = google.auth.default(scopes=scopes)[0]
    except (google.auth.exceptions.GoogleAuthError, IOError, OSError, ValueError) as exc:
        raise DRError(AUTH_FAILED, "No usable Google credentials: %s; give gcp_access_token or gcp_credentials_file." % exc)
    return AuthorizedSession(creds)


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
        self.http = session(self.params)
        self.service = None
        self.operation_timeout = 600

    def target_what(self):
        return "revision of Cloud Run service %s:" % self.params["cloud_run_service"]

    def call(self, method, url, **kwargs):
        try:
            resp = self.http.request(method, url, timeout=30, **kwargs)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise DRError(AUTH_FAILED, "Cloud Run refused the Google credentials (401) and they cannot be refreshed: %s; give a valid "
                          "gcp_access_token or gcp_credentials_file." % exc)
        except requests.exceptions.RequestException as exc:
            raise DRError(CONNECTION_FAILED, "Cannot reach the Cloud Run API at %s: %s; check gcp_endpoint and the network." % (self.base, exc))
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = {"error": {"message": resp.text[:300]}}
        if resp.status_code >= 400:
            message = (data.get("error") or {}).get("message", resp.text[:300])
            if resp.status_code == 404:
                raise DRError(NOT_FOUND, "Cloud Run has no %s (404: %s)." % (url.split("/v2/", 1)[-1].split("?")[0], message))
            if resp.status_code in (401, 403):
                raise DRError(AUTH_FAILED, "Cloud Run refused %s (%d: %s); check the credentials and their roles." % (method, resp.status_code, message))
            raise DRError(APPLY_FAILED, "Cloud Run answered %d to %s: %s." % (resp.status_code, method, message))
        return data

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
        deadline = time.monotonic() + self.operation_timeout
        delay = 0.2
        while not op.get("done"):
            if time.monotonic() > deadline:
                raise DRError(TIMEOUT, "The Cloud Run operation %s was not done after %ds." % (op.get("name"), self.operation_timeout))
            time.sleep(delay)
            delay = min(delay * 2, 5)
            op = self.call("GET", "%s/v2/%s" % (self.base, op["name"]))
        if op.get("error"):
            raise DRError(APPLY_FAILED, "Cloud Run refused the traffic change: %s." % op["error"].get("message", op["error"]),
                          details={"operation": op.get("name")})
        return {"operation": op.get("name")}

    def restore(self, current):
        self.patch(current["detail"]["traffic"])

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engines ``gcp_cloudsql`` and ``azure_pg_flexible`` (private).

Both only read, over the providers' REST APIs with a bearer token, and only ``max_age``
applies:

* gcp_cloudsql: ``GET .../instances/{instance}`` (backup configuration),
  ``GET .../instances/{instance}/backupRuns`` (the newest SUCCESSFUL run) and, when
  point-in-time recovery is on, ``GET .../instances/{instance}/getLatestRecoveryTime``.
* azure_pg_flexible: ``GET .../flexibleServers/{server}`` (retention, earliest restore
  date) and ``GET .../flexibleServers/{server}/backups`` (the newest completed backup).

Tokens: ``gcp_access_token`` or a service-account ``gcp_credentials_file`` (google-auth);
``azure_access_token`` or a client secret / the default chain (azure-identity).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from urllib.parse import quote, urlencode

from ansible_collections.resilience.dr.plugins.module_utils import _azure
from ansible_collections.resilience.dr.plugins.module_utils import _gcp
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
)
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import (
    VerifyProvider,
    FAILED,
    age_seconds,
)

GCP_SQLADMIN = "https://sqladmin.googleapis.com"
AZURE_API_VERSION = "2022-12-01"


def _parse(stamp):
    if not stamp:
        return None
    try:
        return _time.parse_timestamp(stamp)
    except DRError:
        return None


class CloudSqlVerify(VerifyProvider):
    name = "gcp_cloudsql"
    supported = ("max_age",)

    def validate(self, checks):
        if not self.params.get("gcp_project"):
            raise DRError(INVALID_ARGUMENT, "The gcp_cloudsql engine needs gcp_project.")

    def discover(self):
        http = _http.bearer_session(_gcp.token(self.params, self.secrets))

        def get(url, what):
            return _gcp.call(http, "GET", url, "Reading %s" % what, service="Cloud SQL", other=CONNECTION_FAILED)[1]
        base = (self.params.get("gcp_endpoint") or GCP_SQLADMIN).rstrip("/")
        inst = "%s/v1/projects/%s/instances/%s" % (base, quote(self.params["gcp_project"]), quote(self.params["cloudsql_instance"]))
        what = "Cloud SQL instance %s" % self.params["cloudsql_instance"]
        instance = get(inst, what)
        config = instance.get("settings", {}).get("backupConfiguration", {})
        runs = []
        page = None
        while True:
            url = inst + "/backupRuns?" + urlencode(dict([("maxResults", 500)] + ([("pageToken", page)] if page else [])))
            body = get(url, "backup runs of %s" % what)
            runs.extend(body.get("items", []))
            page = body.get("nextPageToken")
            if not page:
                break
        ok = [r for r in runs if r.get("status") == "SUCCESSFUL" and (r.get("endTime") or r.get("startTime"))]
        ok.sort(key=lambda r: _parse(r.get("endTime") or r.get("startTime")))
        newest = ok[-1] if ok else None
        self.backup_at = _parse(newest.get("endTime") or newest.get("startTime")) if newest else None
        self.recovery_at = None
        if config.get("pointInTimeRecoveryEnabled"):
            body = get(inst + "/getLatestRecoveryTime", "latest recovery time of %s" % what)
            self.recovery_at = _parse(body.get("latestRecoveryTime"))
        self.enabled = bool(config.get("enabled"))
        failed = [r for r in runs if r.get("status") == "FAILED"]
        self.figures["backup"] = {
            "instance": self.params["cloudsql_instance"],
            "label": newest.get("id") if newest else None,
            "type": newest.get("type") if newest else None,
            "started_at": newest.get("startTime") if newest else None,
            "completed_at": newest.get("endTime") if newest else None,
            "age_seconds": age_seconds(self.backup_at),
            "count": len(ok),
            "failed_runs": len(failed),
            "backups_enabled": self.enabled,
            "point_in_time_recovery": bool(config.get("pointInTimeRecoveryEnabled")),
            "latest_recovery_time": _time.isoformat(self.recovery_at) if self.recovery_at else None,
        }

    def check_max_age(self):
        items = [("newest_backup_run", self.backup_at, {"id": self.figures["backup"]["label"]})]
        if self.figures["backup"]["point_in_time_recovery"]:
            items.append(("latest_recovery_time", self.recovery_at, {}))
        status, detail, figures = self.freshness(items)
        if not self.enabled:
            return FAILED, "automated backups are disabled on %s; %s" % (self.params["cloudsql_instance"], detail), figures
        return status, detail, figures


class AzureFlexibleVerify(VerifyProvider):
    name = "azure_pg_flexible"
    supported = ("max_age",)

    def validate(self, checks):
        for key in ("azure_subscription_id", "resource_group", "flexible_server"):
            if not self.params.get(key):
                raise DRError(INVALID_ARGUMENT, "The azure_pg_flexible engine needs %s." % key)

    def discover(self):
        http = _azure.session(self.params, self.secrets)

        def get(url, what):
            return _azure.call(http, self.params, "GET", url, "Reading %s" % what, other=CONNECTION_FAILED)[1]
        base = self.params["azure_resource_manager_endpoint"].rstrip("/")
        server = "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/%s" % (
            base, quote(self.params["azure_subscription_id"]), quote(self.params["resource_group"]), quote(self.params["flexible_server"]))
        what = "flexible server %s" % self.params["flexible_server"]
        info = get(server + "?api-version=" + AZURE_API_VERSION, what)
        backups = []
        url = server + "/backups?api-version=" + AZURE_API_VERSION
        while url:
            body = get(url, "backups of %s" % what)
            backups.extend(body.get("value", []))
            url = body.get("nextLink")
        done = [b for b in backups if b.get("properties", {}).get("completedTime")]
        done.sort(key=lambda b: _parse(b["properties"]["completedTime"]))
        newest = done[-1] if done else None
        self.backup_at = _parse(newest["properties"]["completedTime"]) if newest else None
        props = info.get("properties", {}).get("backup", {})
        self.retention = props.get("backupRetentionDays") or 0
        self.figures["backup"] = {
            "server": self.params["flexible_server"],
            "label": newest.get("name") if newest else None,
            "type": newest.get("properties", {}).get("backupType") if newest else None,
            "completed_at": newest["properties"]["completedTime"] if newest else None,
            "age_seconds": age_seconds(self.backup_at),
            "count": len(done),
            "backup_retention_days": self.retention,
            "geo_redundant_backup": props.get("geoRedundantBackup"),
            "earliest_restore_date": props.get("earliestRestoreDate"),
            "state": info.get("properties", {}).get("state"),
        }

    def check_max_age(self):
        status, detail, figures = self.freshness([("newest_backup", self.backup_at, {"name": self.figures["backup"]["label"]})])
        figures["backup_retention_days"] = self.retention
        if not self.retention:
            return FAILED, "%s reports no backup retention; %s" % (self.params["flexible_server"], detail), figures
        return status, detail, figures

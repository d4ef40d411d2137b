# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore, engines gcp_cloudsql and azure_pg_flexible (private).

Both create a NEW instance/server from the source's backups at a point in time and mark it
(Cloud SQL user labels, Azure tags) with the source and the target, so that a second run
recognises its own result (``changed: false``) and never touches anything else:

* gcp_cloudsql: ``POST .../instances/{source}/clone`` with ``cloneContext.pointInTime``
  (none for ``latest``), wait for the operation, then label the clone.
* azure_pg_flexible: ``PUT .../flexibleServers/{target}`` with ``createMode:
  PointInTimeRestore``, ``sourceServerResourceId`` and ``pointInTimeUTC``, then poll the
  ``Azure-AsyncOperation`` URL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.resilience.dr.plugins.module_utils import _azure
from ansible_collections.resilience.dr.plugins.module_utils import _gcp
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    NO_BACKUP_BEFORE_TARGET,
    PRECONDITION_FAILED,
    TARGET_NOT_REACHED,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import normalise_target, target_public

LABEL_SOURCE = "resilience-dr-pitr-source"
LABEL_TARGET = "resilience-dr-pitr-target"
AZURE_API = "2022-12-01"


def label_value(text):
    """A value allowed in a GCP label or kept short in an Azure tag: lowercase, [a-z0-9_-]."""
    out = "".join(c if c.isalnum() or c in "_-" else "-" for c in str(text).lower())
    return out[:63]


class CloudPitr(Provider):
    """Common flow: read source + target, refuse out-of-window targets, create, wait, verify."""

    name = "cloud"

    def __init__(self, module):
        super(CloudPitr, self).__init__(module)
        self.target = normalise_target(self.params)
        if self.target["type"] not in ("time", "latest"):
            raise DRError(INVALID_ARGUMENT, "engine %s restores to target_time or latest only (got %s)." % (self.name, self.target["type"]))
        if self.target["action"] != "promote":
            raise DRError(INVALID_ARGUMENT, "engine %s always creates a read-write instance; target_action must be promote." % self.name)
        self.source_id = self.params["source_db_instance"]
        self.target_id = self.params["target_db_instance"]
        self.timeout = _time.parse_duration(self.params.get("timeout") or "1h", "timeout")
        self.poll = 0.2 if self._local() else 10
        self.http = None
        self.result["target"] = target_public(self.target)

    # -- engine hooks -----------------------------------------------------------------
    def _local(self):
        return False

    def session(self):
        raise NotImplementedError

    def api_call(self, method, url, what, **kwargs):
        """(response, body) of one request through ``self.http`` (``_gcp.call`` or ``_azure.call``)."""
        raise NotImplementedError

    def get_source(self):
        raise NotImplementedError

    def get_target(self):
        raise NotImplementedError

    def window(self, source):
        """(earliest, latest) restorable datetimes (either may be None) and a basis text."""
        raise NotImplementedError

    def create(self):
        raise NotImplementedError

    def marks(self, instance):
        """(source, target) marks of an existing instance."""
        raise NotImplementedError

    def describe(self, instance):
        raise NotImplementedError

    # -- http -----------------------------------------------------------------------
    def call(self, method, url, **kwargs):
        """The response of one request, or None when the API answers 404."""
        if self.http is None:
            self.http = self.session()
        try:
            return self.api_call(method, url, "%s %s" % (method, url.split("?")[0]), timeout=60, **kwargs)[0]
        except DRError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    def target_mark(self):
        return label_value(self.target["value"] if self.target["type"] == "time" else "latest")

    # -- flow -----------------------------------------------------------------------
    def read(self):
        source = self.get_source()
        if source is None:
            raise DRError(NOT_FOUND, "Source %s does not exist." % self.source_id)
        existing = self.get_target()
        state = {"source": {"identifier": self.source_id}, "target": {"exists": existing is not None}}
        if existing is not None:
            state["target"] = self.describe(existing)
            if self.marks(existing) == (label_value(self.source_id), self.target_mark()):
                self.result["db_instance"] = state["target"]
                return state
            raise DRError(PRECONDITION_FAILED, "%s already exists and is not this restore of %s to %s; choose another target_db_instance "
                          "(nothing is overwritten)." % (self.target_id, self.source_id, self.target["value"] or "latest"),
                          details={"existing": state["target"]})
        earliest, latest, basis = self.window(source)
        state["source"].update({"earliest_restorable_time": _time.isoformat(earliest), "latest_restorable_time": _time.isoformat(latest)})
        if self.target["type"] == "time":
            if earliest is not None and self.target["time"] < earliest:
                raise DRError(NO_BACKUP_BEFORE_TARGET, "The target %s is older than the earliest restorable time %s of %s (%s)." % (
                    self.target["value"], _time.isoformat(earliest), self.source_id, basis), details={"source": state["source"]})
            if latest is not None and self.target["time"] > latest:
                raise DRError(TARGET_NOT_REACHED, "The target %s is after the latest restorable time %s of %s; choose an earlier "
                              "target." % (self.target["value"], _time.isoformat(latest), self.source_id), details={"source": state["source"]})
        return state

    def plan(self, current):
        if current["target"].get("exists"):
            return []
        return [Step("restore_point_in_time", self.target_id, run=self.create, source=self.source_id,
                     point_in_time=self.target["value"] or "latest")]

    def predict(self, current, steps):
        return {"source": current["source"], "target": {"exists": True, "identifier": self.target_id, "restored_from": self.source_id,
                                                        "restored_to": self.target_mark()}}

    def wait_for(self, what, check):
        return _http.poll(check, self.timeout, self.poll, "%s did not finish within %ss." % (what, self.timeout))

    def verify(self, current, steps):
        instance = self.get_target()
        if instance is None:
            raise DRError(VERIFY_FAILED, "%s does not exist after the restore." % self.target_id)
        state = self.describe(instance)
        if self.marks(instance) != (label_value(self.source_id), self.target_mark()):
            raise DRError(VERIFY_FAILED, "%s does not carry the restore marks." % self.target_id, details={"target": state})
        self.result["db_instance"] = state
        return {"source": current["source"], "target": state}


class CloudSqlPitr(CloudPitr):
    """Cloud SQL for PostgreSQL: clone with a point in time."""

    name = "gcp_cloudsql"

    def __init__(self, module):
        super(CloudSqlPitr, self).__init__(module)
        if not self.params.get("gcp_project"):
            raise DRError(INVALID_ARGUMENT, "gcp_project is required for engine gcp_cloudsql.")
        base = (self.params.get("gcp_endpoint") or "https://sqladmin.googleapis.com").rstrip("/")
        self.base = "%s/v1/projects/%s" % (base, self.params["gcp_project"])

    def _local(self):
        return (self.params.get("gcp_endpoint") or "").startswith(("http://127.0.0.1", "http://localhost"))

    def session(self):
        return _gcp.session(self.params)

    def api_call(self, method, url, what, **kwargs):
        return _gcp.call(self.http, method, url, what, service="Cloud SQL", **kwargs)

    def get_source(self):
        resp = self.call("GET", "%s/instances/%s" % (self.base, self.source_id))
        return resp.json() if resp is not None else None

    def get_target(self):
        resp = self.call("GET", "%s/instances/%s" % (self.base, self.target_id))
        return resp.json() if resp is not None else None

    def window(self, source):
        backup = (source.get("settings") or {}).get("backupConfiguration") or {}
        if not backup.get("enabled") or not backup.get("pointInTimeRecoveryEnabled"):
            raise DRError(NO_BACKUP_BEFORE_TARGET, "Cloud SQL instance %s has backups or point-in-time recovery disabled, so it has no "
                          "point in time to restore to." % self.source_id)
        days = int(backup.get("transactionLogRetentionDays") or 7)
        earliest = _time.utcnow() - datetime.timedelta(days=days)
        if source.get("createTime"):
            earliest = max(earliest, _time.parse_timestamp(source["createTime"], "createTime"))
        latest = None
        resp = self.call("GET", "%s/instances/%s/getLatestRecoveryTime" % (self.base, self.source_id))
        if resp is not None and resp.json().get("latestRecoveryTime"):
            latest = _time.parse_timestamp(resp.json()["latestRecoveryTime"], "latestRecoveryTime")
        return earliest, latest, "transaction log retention %d days, creation time" % days

    def _operation(self, resp, what):
        op = resp.json()
        name = op.get("name")

        def done():
            current = self.call("GET", "%s/operations/%s" % (self.base, name)).json()
            if current.get("status") == "DONE":
                if current.get("error"):
                    raise DRError(APPLY_FAILED, "%s failed: %s" % (what, current["error"]))
                return current
            return None
        return self.wait_for(what, done)

    def create(self):
        context = {"kind": "sql#cloneContext", "destinationInstanceName": self.target_id}
        if self.target["type"] == "time":
            context["pointInTime"] = self.target["value"]
        resp = self.call("POST", "%s/instances/%s/clone" % (self.base, self.source_id), json={"cloneContext": context})
        if resp is None:
            raise DRError(NOT_FOUND, "Cloud SQL instance %s vanished before the clone." % self.source_id)
        self._operation(resp, "Clone of %s" % self.source_id)
        labels = dict((self.get_target().get("settings") or {}).get("userLabels") or {})
        labels.update({LABEL_SOURCE: label_value(self.source_id), LABEL_TARGET: self.target_mark()})
        resp = self.call("PATCH", "%s/instances/%s" % (self.base, self.target_id), json={"settings": {"userLabels": labels}})
        self._operation(resp, "Labelling %s" % self.target_id)
        return {"clone_context": context}

    def marks(self, instance):
        labels = (instance.get("settings") or {}).get("userLabels") or {}
        return labels.get(LABEL_SOURCE), labels.get(LABEL_TARGET)

    def describe(self, instance):
        source, target = self.marks(instance)
        return {"exists": True, "identifier": instance.get("name"), "status": instance.get("state"), "restored_from": source,
                "restored_to": target, "ip_addresses": [a.get("ipAddress") for a in instance.get("ipAddresses") or []]}


class AzureFlexiblePitr(CloudPitr):
    """Azure Database for PostgreSQL flexible server: point-in-time restore into a new server."""

    name = "azure_pg_flexible"

    def __init__(self, module):
        super(AzureFlexiblePitr, self).__init__(module)
        for option in ("azure_subscription_id", "resource_group"):
            if not self.params.get(option):
                raise DRError(INVALID_ARGUMENT, "%s is required for engine azure_pg_flexible." % option)
        base = (self.params.get("azure_resource_manager_endpoint") or "https://management.azure.com").rstrip("/")
        self.base = "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DBforPostgreSQL/flexibleServers" % (
            base, self.params["azure_subscription_id"], self.params["resource_group"])

    def _local(self):
        return (self.params.get("azure_resource_manager_endpoint") or "").startswith(("http://127.0.0.1", "http://localhost"))

    def session(self):
        return _azure.session(self.params, self.secrets)

    def api_call(self, method, url, what, **kwargs):
        return _azure.call(self.http, self.params, method, url, what, **kwargs)

    def _url(self, name):
        return "%s/%s?api-version=%s" % (self.base, name, AZURE_API)

    def get_source(self):
        resp = self.call("GET", self._url(self.source_id))
        return resp.json() if resp is not None else None

    def get_target(self):
        resp = self.call("GET", self._url(self.target_id))
        return resp.json() if resp is not None else None

    def window(self, source):
        backup = (source.get("properties") or {}).get("backup") or {}
        earliest = _time.parse_timestamp(backup["earliestRestoreDate"], "earliestRestoreDate") if backup.get("earliestRestoreDate") else None
        self._source = source
        return earliest, _time.utcnow(), "the server's earliestRestoreDate"

    def create(self):
        source = getattr(self, "_source", None) or self.get_source()
        moment = self.target["value"] if self.target["type"] == "time" else _time.now_iso()
        body = {"location": source.get("location"),
                "properties": {"createMode": "PointInTimeRestore", "sourceServerResourceId": source.get("id"), "pointInTimeUTC": moment},
                "tags": {LABEL_SOURCE: label_value(self.source_id), LABEL_TARGET: self.target_mark()}}
        resp = self.call("PUT", self._url(self.target_id), json=body)
        if resp is None:
            raise DRError(NOT_FOUND, "Azure has no resource group %s to restore %s into." % (self.params["resource_group"], self.target_id))
        _azure.wait(self.http, self.params, resp, "the point-in-time restore of %s into %s" % (self.source_id, self.target_id), self.timeout,
                    interval=self.poll)
        return {"point_in_time_utc": moment}

    def marks(self, instance):
        tags = instance.get("tags") or {}
        return tags.get(LABEL_SOURCE), tags.get(LABEL_TARGET)

    def describe(self, instance):
        source, target = self.marks(instance)
        props = instance.get("properties") or {}
        return {"exists": True, "identifier": instance.get("name"), "status": props.get("state"), "restored_from": source,
                "restored_to": target, "fqdn": props.get("fullyQualifiedDomainName"), "id": instance.get("id")}

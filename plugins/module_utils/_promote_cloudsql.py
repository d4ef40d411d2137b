# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider ``gcp_cloudsql``: Cloud SQL Admin API v1 through google-auth's
``AuthorizedSession`` (private).

* ``cloudsql_mode: promote_replica``: ``POST .../instances/{replica}/promoteReplica`` on a
  ``READ_REPLICA_INSTANCE`` (any other type: already promoted, ``changed=false``). Lag guard
  from Cloud Monitoring ``cloudsql.googleapis.com/database/replication/replica_lag``.
* ``cloudsql_mode: ha_failover``: ``POST .../instances/{instance}/failover`` with the
  instance's ``settingsVersion`` in a ``failoverContext`` on a ``REGIONAL`` instance, until it
  serves from ``cloudsql_target_zone`` (already there: ``changed=false``).

Both then poll ``GET .../operations/{name}`` until ``DONE``. An instance with a ``PENDING`` or
``RUNNING`` operation is refused ``LOCKED``: Cloud SQL runs one operation at a time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible_collections.resilience.dr.plugins.module_utils import _gcp
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    APPLY_FAILED,
    DRError,
    INVALID_ARGUMENT,
    LAG_TOO_HIGH,
    LOCKED,
    PRECONDITION_FAILED,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step

SQLADMIN = "https://sqladmin.googleapis.com"
MONITORING = "https://monitoring.googleapis.com"
LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"


class CloudSqlPromote(Provider):
    """Promote a Cloud SQL read replica, or fail a regional instance over to its standby zone."""

    name = "gcp_cloudsql"
    poll_interval = 2.0

    def __init__(self, module):
        super(CloudSqlPromote, self).__init__(module)
        self.session = None
        self.base = (self.params.get("gcp_endpoint") or SQLADMIN).rstrip("/")
        self.monitoring = (self.params.get("gcp_endpoint") or MONITORING).rstrip("/")
        self.project = self.params.get("gcp_project")
        self.instance = self.params.get("cloudsql_instance")
        self.mode = self.params.get("cloudsql_mode") or "promote_replica"
        self.operation = None
        self.timeout = self.max_lag = self.lag_window = None

    # -- http -----------------------------------------------------------------------------
    def request(self, method, url, what, **kwargs):
        return _gcp.call(self.session, method, url, what, service="Cloud SQL", conflict=LOCKED, **kwargs)[1]

    def _instance_url(self, suffix=""):
        return "%s/v1/projects/%s/instances/%s%s" % (self.base, self.project, self.instance, suffix)

    # -- read -----------------------------------------------------------------------------
    def read(self):
        p = self.params
        if not self.project or not self.instance:
            raise DRError(INVALID_ARGUMENT, "provider gcp_cloudsql needs gcp_project and cloudsql_instance.")
        if self.mode == "ha_failover" and not p.get("cloudsql_target_zone"):
            raise DRError(INVALID_ARGUMENT, "cloudsql_mode=ha_failover needs cloudsql_target_zone (the zone that should "
                          "serve afterwards), so that a second run does not fail back.")
        self.timeout = _time.parse_duration(p.get("promote_timeout"), "promote_timeout")
        self.max_lag = _time.parse_duration(p.get("max_lag"), "max_lag")
        self.lag_window = _time.parse_duration(p.get("lag_window"), "lag_window")
        self.session = _gcp.session(p)
        inst = self.request("GET", self._instance_url(), "Reading Cloud SQL instance %s" % self.instance)
        state = {
            "instance": self.instance,
            "instance_type": inst.get("instanceType"),
            "master_instance_name": inst.get("masterInstanceName"),
            "state": inst.get("state"),
            "database_version": inst.get("databaseVersion"),
            "gce_zone": inst.get("gceZone"),
            "secondary_gce_zone": inst.get("secondaryGceZone"),
            "availability_type": (inst.get("settings") or {}).get("availabilityType"),
            "settings_version": (inst.get("settings") or {}).get("settingsVersion"),
        }
        if self.mode == "promote_replica":
            state["is_replica"] = state["instance_type"] == "READ_REPLICA_INSTANCE"
            pending = state["is_replica"]
        else:
            if state["availability_type"] != "REGIONAL":
                raise DRError(PRECONDITION_FAILED, "Cloud SQL instance %s is not highly available (availabilityType %s); "
                              "ha_failover needs REGIONAL." % (self.instance, state["availability_type"]))
            state["serving_zone_is_target"] = state["gce_zone"] == p["cloudsql_target_zone"]
            pending = not state["serving_zone_is_target"]
            if pending and state["secondary_gce_zone"] != p["cloudsql_target_zone"]:
                zones = (p["cloudsql_target_zone"], state["gce_zone"], state["secondary_gce_zone"], self.instance)
                raise DRError(INVALID_ARGUMENT, "cloudsql_target_zone %s is neither the primary zone (%s) nor the standby "
                              "zone (%s) of %s." % zones)
        self.result.update(provider="gcp_cloudsql", mode=self.mode, promoted=False, already_primary=not pending,
                           allow_data_loss=bool(p["allow_data_loss"]), reason=p.get("reason"), data_loss_bytes=None,
                           data_loss_note="not measurable through the Cloud SQL Admin API; see lag for the replica "
                                          "lag before the promotion")
        if pending:
            if state["state"] != "RUNNABLE":
                raise DRError(PRECONDITION_FAILED, "Cloud SQL instance %s is %s, not RUNNABLE." % (self.instance, state["state"]))
            self._check_no_running_operation()
            if self.mode == "promote_replica":
                self._lag_guard()
        return state

    def _check_no_running_operation(self):
        out = self.request("GET", "%s/v1/projects/%s/operations" % (self.base, self.project),
                           "Listing operations of %s" % self.instance, params={"instance": self.instance, "maxResults": 20})
        running = [op for op in out.get("items") or [] if op.get("status") in ("PENDING", "RUNNING")]
        if running:
            op = running[0]
            raise DRError(LOCKED, "Cloud SQL instance %s has an operation in progress (%s %s, %s); run again when it is done."
                          % (self.instance, op.get("operationType"), op.get("name"), op.get("status")),
                          details={"operation": op.get("name"), "operation_type": op.get("operationType")})

    def _lag_guard(self):
        now = _time.utcnow()
        start = now - datetime.timedelta(seconds=max(60.0, self.lag_window))
        flt = 'metric.type = "%s" AND resource.labels.database_id = "%s:%s"' % (LAG_METRIC, self.project, self.instance)
        out = self.request("GET", "%s/v3/projects/%s/timeSeries" % (self.monitoring, self.project),
                           "Reading the replica_lag metric of %s" % self.instance,
                           params={"filter": flt, "interval.startTime": _time.isoformat(start),
                                   "interval.endTime": _time.isoformat(now)})
        values = []
        for series in out.get("timeSeries") or []:
            for point in series.get("points") or []:
                value = point.get("value") or {}
                raw = value.get("doubleValue", value.get("int64Value"))
                if raw is not None:
                    values.append((point.get("interval", {}).get("endTime", ""), float(raw)))
        values.sort()
        lag = {"metric": LAG_METRIC, "window_seconds": self.lag_window, "datapoints": len(values),
               "max_lag_seconds": self.max_lag, "seconds": None,
               "latest_seconds": values[-1][1] if values else None}
        problem = None
        if not values:
            problem = "its replica_lag metric has no data in the last %s, so its lag is unknown" % self.params["lag_window"]
        else:
            worst = round(max(v for _when, v in values), 3)
            lag["seconds"] = worst
            if worst > self.max_lag:
                problem = "it was up to %.1fs behind in the last %s (max_lag %s)" % (
                    worst, self.params["lag_window"], self.params["max_lag"])
        lag["within_limits"] = problem is None
        lag["overridden"] = problem is not None and bool(self.params["allow_data_loss"])
        self.result["lag"] = lag
        if problem and not self.params["allow_data_loss"]:
            raise DRError(LAG_TOO_HIGH, "Cloud SQL replica %s: %s; wait for it to catch up, or set allow_data_loss with a "
                          "reason to promote anyway." % (self.instance, problem), details={"lag": lag})

    # -- plan -----------------------------------------------------------------------------
    def plan(self, current):
        if self.result["already_primary"]:
            return []
        if self.mode == "promote_replica":
            first = Step("promote_replica", self.instance, run=self._promote,
                         request="POST v1/projects/%s/instances/%s/promoteReplica" % (self.project, self.instance))
        else:
            first = Step("failover", self.instance, run=self._failover, target_zone=self.params["cloudsql_target_zone"],
                         request="POST v1/projects/%s/instances/%s/failover" % (self.project, self.instance))
        return [first, Step("wait_operation", self.instance, run=self._wait, timeout_seconds=self.timeout)]

    def predict(self, current, steps):
        after = dict(current)
        if self.mode == "promote_replica":
            after.update(instance_type="CLOUD_SQL_INSTANCE", master_instance_name=None, is_replica=False)
        else:
            after.update(gce_zone=current["secondary_gce_zone"], secondary_gce_zone=current["gce_zone"],
                         serving_zone_is_target=True)
        return after

    # -- steps ----------------------------------------------------------------------------
    def _promote(self):
        op = self.request("POST", self._instance_url("/promoteReplica"), "promoteReplica of %s" % self.instance)
        self.operation = op.get("name")
        return {"operation": self.operation, "status": op.get("status")}

    def _failover(self):
        body = {"failoverContext": {"kind": "sql#failoverContext", "settingsVersion": str(self._settings_version())}}
        op = self.request("POST", self._instance_url("/failover"), "failover of %s" % self.instance, json=body)
        self.operation = op.get("name")
        return {"operation": self.operation, "status": op.get("status")}

    def _settings_version(self):
        inst = self.request("GET", self._instance_url(), "Reading Cloud SQL instance %s" % self.instance)
        return (inst.get("settings") or {}).get("settingsVersion")

    def _wait(self):
        start = time.monotonic()
        url = "%s/v1/projects/%s/operations/%s" % (self.base, self.project, self.operation)
        last = {}

        def done():
            last.update(self.request("GET", url, "Polling operation %s" % self.operation))
            return last if last.get("status") == "DONE" else None
        _http.poll(done, self.timeout, self.poll_interval, "Cloud SQL operation %s was not done after promote_timeout %s; it may still "
                   "finish." % (self.operation, self.params["promote_timeout"]))
        errors = (last.get("error") or {}).get("errors") or []
        if errors:
            raise DRError(APPLY_FAILED, "Cloud SQL operation %s failed: %s." % (
                self.operation, "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors)))
        return {"operation": self.operation, "waited_seconds": round(time.monotonic() - start, 3)}

    # -- verify ---------------------------------------------------------------------------
    def verify(self, current, steps):
        inst = self.request("GET", self._instance_url(), "Reading Cloud SQL instance %s" % self.instance)
        after = dict(current, instance_type=inst.get("instanceType"), master_instance_name=inst.get("masterInstanceName"),
                     state=inst.get("state"), gce_zone=inst.get("gceZone"), secondary_gce_zone=inst.get("secondaryGceZone"))
        if self.mode == "promote_replica":
            after["is_replica"] = after["instance_type"] == "READ_REPLICA_INSTANCE"
            if after["is_replica"] or after["master_instance_name"]:
                raise DRError(VERIFY_FAILED, "Cloud SQL instance %s is still a replica of %s after promoteReplica."
                              % (self.instance, after["master_instance_name"]))
        else:
            after["serving_zone_is_target"] = after["gce_zone"] == self.params["cloudsql_target_zone"]
            if not after["serving_zone_is_target"]:
                raise DRError(VERIFY_FAILED, "Cloud SQL instance %s serves from %s after the failover, not %s."
                              % (self.instance, after["gce_zone"], self.params["cloudsql_target_zone"]))
        if after["state"] != "RUNNABLE":
            raise DRError(VERIFY_FAILED, "Cloud SQL instance %s is %s after the operation, not RUNNABLE." % (self.instance, after["state"]))
        self.result["promoted"] = True
        return after

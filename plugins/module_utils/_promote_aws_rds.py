# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider ``aws_rds``: RDS read replica promotion and Aurora cluster
failover through boto3 (private).

* RDS (no ``db_cluster_identifier``): ``db_instance_identifier`` is the read replica.
  Preflight: it exists, is ``available`` (a ``modifying`` one is being promoted by someone
  else: ``LOCKED``) and is still a replica (``ReadReplicaSourceDBInstanceIdentifier``; none
  means already promoted: ``changed=false``); the lag guard reads CloudWatch ``ReplicaLag``
  (seconds, ``-1`` = replication not running). Step ``promote_read_replica`` then the
  ``db_instance_available`` waiter.
* Aurora (``db_cluster_identifier``): ``db_instance_identifier`` is the reader to make the
  writer. Preflight: the cluster is ``available``, the target is a member (already the
  writer: ``changed=false``); the lag guard reads ``AuroraReplicaLag`` (milliseconds) of the
  target. Step ``failover_db_cluster`` then a poll of ``describe_db_clusters`` until the
  target is the writer and the cluster is available.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible_collections.resilience.dr.plugins.module_utils import _aws
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    LAG_TOO_HIGH,
    LOCKED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    TIMEOUT,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step

_BUSY = ("modifying", "rebooting", "renaming", "backing-up", "failing-over", "upgrading", "maintenance")
_STATE_CODES = ("InvalidDBInstanceState", "InvalidDBInstanceStateFault", "InvalidDBClusterStateFault")


def make_client(params, service):
    return _aws.client(params, service, "replica_promote")


def call(what, func, **kwargs):
    """``func(**kwargs)`` with botocore errors turned into DRError (a refusal in the current state is PRECONDITION_FAILED)."""
    return _aws.call(what, func, precondition=_STATE_CODES, **kwargs)


class AwsRdsPromote(Provider):
    """Promote an RDS read replica, or fail an Aurora cluster over to a chosen reader."""

    name = "aws_rds"
    poll_interval = 5.0

    def __init__(self, module):
        super(AwsRdsPromote, self).__init__(module)
        self.rds = None
        self.cloudwatch = None
        self.max_lag = None
        self.timeout = None
        self.lag_window = None

    # seam for tests (botocore Stubber)
    def make_clients(self):
        return make_client(self.params, "rds"), make_client(self.params, "cloudwatch")

    @property
    def aurora(self):
        return bool(self.params.get("db_cluster_identifier"))

    # -- read ---------------------------------------------------------------------------
    def read(self):
        p = self.params
        if not p.get("db_instance_identifier"):
            raise DRError(INVALID_ARGUMENT, "provider aws_rds needs db_instance_identifier (the read replica, or with "
                          "db_cluster_identifier the Aurora instance to make the writer).")
        self.max_lag = _time.parse_duration(p.get("max_lag"), "max_lag")
        self.timeout = _time.parse_duration(p.get("promote_timeout"), "promote_timeout")
        self.lag_window = _time.parse_duration(p.get("lag_window"), "lag_window")
        self.rds, self.cloudwatch = self.make_clients()
        state = self._read_cluster() if self.aurora else self._read_instance()
        self.result.update(provider="aws_rds", mode="aurora_failover" if self.aurora else "promote_read_replica",
                           promoted=False, already_primary=not state["is_replica"],
                           allow_data_loss=bool(p["allow_data_loss"]), reason=p.get("reason"),
                           data_loss_bytes=None,
                           data_loss_note="not measurable through the RDS API; see lag for the replica lag before "
                                          "the promotion")
        if state["is_replica"]:
            self._lag_guard(state)
        return state

    def _describe_instance(self, ident):
        out = call("describe_db_instances %s" % ident, self.rds.describe_db_instances, DBInstanceIdentifier=ident)
        items = out.get("DBInstances") or []
        if not items:
            raise DRError(NOT_FOUND, "RDS instance %s was not found in %s." % (ident, self.params.get("aws_region")))
        return items[0]

    def _read_instance(self):
        ident = self.params["db_instance_identifier"]
        inst = self._describe_instance(ident)
        status = inst.get("DBInstanceStatus")
        source = inst.get("ReadReplicaSourceDBInstanceIdentifier")
        state = {
            "db_instance_identifier": ident,
            "status": status,
            "engine": inst.get("Engine"),
            "source": source,
            "is_replica": bool(source),
            "backup_retention_period": inst.get("BackupRetentionPeriod"),
            "replica_mode": inst.get("ReplicaMode"),
        }
        if inst.get("DBClusterIdentifier"):
            raise DRError(INVALID_ARGUMENT, "%s is a member of Aurora cluster %s: give db_cluster_identifier to fail the "
                          "cluster over to it." % (ident, inst["DBClusterIdentifier"]))
        if state["is_replica"] and status != "available":
            code = LOCKED if status in _BUSY else PRECONDITION_FAILED
            raise DRError(code, "RDS instance %s is %s, not available; another operation (maybe a promotion) is under way. "
                          "Wait for it to finish, then run again." % (ident, status), details={"status": status})
        return state

    def _read_cluster(self):
        cid = self.params["db_cluster_identifier"]
        target = self.params["db_instance_identifier"]
        out = call("describe_db_clusters %s" % cid, self.rds.describe_db_clusters, DBClusterIdentifier=cid)
        items = out.get("DBClusters") or []
        if not items:
            raise DRError(NOT_FOUND, "Aurora cluster %s was not found." % cid)
        cluster = items[0]
        members = dict((m["DBInstanceIdentifier"], bool(m.get("IsClusterWriter"))) for m in cluster.get("DBClusterMembers", []))
        if target not in members:
            raise DRError(INVALID_ARGUMENT, "%s is not a member of Aurora cluster %s (members: %s)."
                          % (target, cid, ", ".join(sorted(members)) or "none"))
        writer = [m for m, is_writer in members.items() if is_writer]
        state = {
            "db_cluster_identifier": cid,
            "status": cluster.get("Status"),
            "engine": cluster.get("Engine"),
            "writer": writer[0] if writer else None,
            "target": target,
            "members": members,
            "is_replica": not members[target],
        }
        if state["is_replica"] and state["status"] != "available":
            code = LOCKED if state["status"] in _BUSY else PRECONDITION_FAILED
            raise DRError(code, "Aurora cluster %s is %s, not available; another operation (maybe a failover) is under way. "
                          "Wait for it to finish, then run again." % (cid, state["status"]), details={"status": state["status"]})
        return state

    def _lag_guard(self, state):
        ident = self.params["db_instance_identifier"]
        metric = "AuroraReplicaLag" if self.aurora else "ReplicaLag"
        now = _time.utcnow()
        start = now - datetime.timedelta(seconds=max(60.0, self.lag_window))
        end = now + datetime.timedelta(seconds=60)  # the current, still open period too
        out = call("get_metric_statistics %s" % metric, self.cloudwatch.get_metric_statistics,
                   Namespace="AWS/RDS", MetricName=metric,
                   Dimensions=[{"Name": "DBInstanceIdentifier", "Value": ident}],
                   StartTime=start, EndTime=end, Period=60, Statistics=["Maximum"])
        points = sorted(out.get("Datapoints") or [], key=lambda d: d["Timestamp"])
        lag = {"metric": metric, "window_seconds": self.lag_window, "datapoints": len(points),
               "max_lag_seconds": self.max_lag, "seconds": None, "latest_seconds": None}
        problem = None
        if not points:
            problem = "its %s metric has no data in the last %s, so its lag is unknown" % (metric, self.params["lag_window"])
        else:
            scale = 0.001 if self.aurora else 1.0
            values = [float(d["Maximum"]) for d in points]
            lag["latest_seconds"] = values[-1] * scale if values[-1] >= 0 else -1
            if values[-1] < 0:
                problem = "its %s is -1: replication is not running" % metric
            else:
                worst = round(max(v for v in values if v >= 0) * scale, 3)
                lag["seconds"] = worst
                if worst > self.max_lag:
                    problem = "it was up to %.1fs behind in the last %s (max_lag %s)" % (
                        worst, self.params["lag_window"], self.params["max_lag"])
        lag["within_limits"] = problem is None
        lag["overridden"] = problem is not None and bool(self.params["allow_data_loss"])
        self.result["lag"] = lag
        if problem and not self.params["allow_data_loss"]:
            raise DRError(LAG_TOO_HIGH, "%s: %s; wait for it to catch up, or set allow_data_loss with a reason to promote "
                          "anyway." % (ident, problem), details={"lag": lag})

    # -- plan ---------------------------------------------------------------------------
    def plan(self, current):
        if not current["is_replica"]:
            return []
        if self.aurora:
            return [Step("failover_db_cluster", current["db_cluster_identifier"], run=self._failover,
                         target_db_instance_identifier=current["target"]),
                    Step("wait_for_writer", current["db_cluster_identifier"], run=self._wait_for_writer,
                         target_db_instance_identifier=current["target"], timeout_seconds=self.timeout)]
        detail = {}
        if self.params.get("backup_retention_period") is not None:
            detail["backup_retention_period"] = self.params["backup_retention_period"]
        return [Step("promote_read_replica", current["db_instance_identifier"], run=self._promote, **detail),
                Step("wait_available", current["db_instance_identifier"], run=self._wait_available,
                     waiter="db_instance_available", timeout_seconds=self.timeout)]

    def predict(self, current, steps):
        after = dict(current)
        if self.aurora:
            after.update(writer=current["target"], is_replica=False,
                         members=dict((m, m == current["target"]) for m in current["members"]))
        else:
            after.update(source=None, is_replica=False)
        return after

    # -- steps --------------------------------------------------------------------------
    def _promote(self):
        ident = self.params["db_instance_identifier"]
        kwargs = {"DBInstanceIdentifier": ident}
        if self.params.get("backup_retention_period") is not None:
            kwargs["BackupRetentionPeriod"] = self.params["backup_retention_period"]
        out = call("promote_read_replica %s" % ident, self.rds.promote_read_replica, **kwargs)
        return {"status_after_request": out.get("DBInstance", {}).get("DBInstanceStatus")}

    def _wait_available(self):
        ident = self.params["db_instance_identifier"]
        start = time.monotonic()
        delay = max(1, int(self.poll_interval))
        _aws.wait(self.rds, "db_instance_available", "RDS instance %s did not become available within promote_timeout %s after the "
                  "promotion was requested ({error}); it may still finish: check it in the console." % (ident, self.params["promote_timeout"]),
                  delay, max(1, int(self.timeout // delay) + 1), DBInstanceIdentifier=ident)
        return {"waited_seconds": round(time.monotonic() - start, 3)}

    def _failover(self):
        cid = self.params["db_cluster_identifier"]
        target = self.params["db_instance_identifier"]
        out = call("failover_db_cluster %s" % cid, self.rds.failover_db_cluster,
                   DBClusterIdentifier=cid, TargetDBInstanceIdentifier=target)
        return {"status_after_request": out.get("DBCluster", {}).get("Status")}

    def _wait_for_writer(self):
        cid = self.params["db_cluster_identifier"]
        target = self.params["db_instance_identifier"]
        start = time.monotonic()
        while True:
            cluster = call("describe_db_clusters %s" % cid, self.rds.describe_db_clusters, DBClusterIdentifier=cid)["DBClusters"][0]
            writer = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")]
            if writer == [target] and cluster.get("Status") == "available":
                return {"writer": target, "waited_seconds": round(time.monotonic() - start, 3)}
            if time.monotonic() - start > self.timeout:
                now = ", ".join(writer) or "none"
                raise DRError(TIMEOUT, "Aurora cluster %s did not report %s as its writer within promote_timeout %s "
                              "(writer now: %s, status %s)." % (cid, target, self.params["promote_timeout"], now, cluster.get("Status")))
            time.sleep(self.poll_interval)

    # -- verify -------------------------------------------------------------------------
    def verify(self, current, steps):
        after = self._read_cluster() if self.aurora else self._read_instance_after()
        if self.aurora:
            if after["writer"] != current["target"]:
                raise DRError(VERIFY_FAILED, "After the failover the writer of %s is %s, not %s."
                              % (current["db_cluster_identifier"], after["writer"], current["target"]))
        else:
            if after["status"] != "available":
                raise DRError(VERIFY_FAILED, "RDS instance %s is %s after the promotion, not available."
                              % (after["db_instance_identifier"], after["status"]))
            if after["source"]:
                # real RDS clears the source once promoted; say so rather than claim it
                self.result["warnings_detail"] = ("ReadReplicaSourceDBInstanceIdentifier still names %s after the "
                                                  "promotion finished" % after["source"])
        self.result["promoted"] = True
        return after

    def _read_instance_after(self):
        inst = self._describe_instance(self.params["db_instance_identifier"])
        return {
            "db_instance_identifier": self.params["db_instance_identifier"],
            "status": inst.get("DBInstanceStatus"),
            "engine": inst.get("Engine"),
            "source": inst.get("ReadReplicaSourceDBInstanceIdentifier"),
            "is_replica": bool(inst.get("ReadReplicaSourceDBInstanceIdentifier")),
            "backup_retention_period": inst.get("BackupRetentionPeriod"),
            "replica_mode": inst.get("ReplicaMode"),
        }

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore, engine aws_rds: RestoreDBInstanceToPointInTime into a new instance (private).

The new instance is tagged with the source and the target it was restored to; a second
run finds it by those tags (``changed: false``). Any other instance with the target name
is refused: nothing is ever overwritten or deleted.
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
    NOT_FOUND,
    NO_BACKUP_BEFORE_TARGET,
    PRECONDITION_FAILED,
    TARGET_NOT_REACHED,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import normalise_target, target_public

TAG_SOURCE = "resilience.dr:pitr-source"
TAG_TARGET = "resilience.dr:pitr-target"


def rds_client(params):
    return _aws.client(params, "rds", "pg_pitr_restore", read_timeout=60)


call = _aws.call


class RdsPitrRestore(Provider):
    """Point-in-time restore of an RDS instance into a new instance."""

    name = "aws_rds"

    def __init__(self, module):
        super(RdsPitrRestore, self).__init__(module)
        self.target = normalise_target(self.params)
        if self.target["type"] not in ("time", "latest"):
            raise DRError(INVALID_ARGUMENT, "engine aws_rds restores to target_time or latest only (got %s)." % self.target["type"])
        if self.target["action"] != "promote":
            raise DRError(INVALID_ARGUMENT, "engine aws_rds always creates a read-write instance; target_action must be promote.")
        self.source_id = self.params["source_db_instance"]
        self.target_id = self.params["target_db_instance"]
        self.timeout = _time.parse_duration(self.params.get("timeout") or "1h", "timeout")
        self.client = rds_client(self.params)
        self.result["target"] = target_public(self.target)

    def _describe(self, identifier):
        try:
            found = call("DescribeDBInstances %s" % identifier, self.client.describe_db_instances, DBInstanceIdentifier=identifier)
        except DRError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return (found.get("DBInstances") or [None])[0]

    def _tags(self, instance):
        if instance.get("TagList") is not None:
            tags = instance["TagList"]
        else:
            tags = call("ListTagsForResource", self.client.list_tags_for_resource, ResourceName=instance["DBInstanceArn"]).get("TagList", [])
        return dict((t["Key"], t["Value"]) for t in tags)

    def _earliest(self, source):
        """Earliest restorable time: the automated backups' window when the API gives it,
        else the later of the creation time and now minus the retention period."""
        try:
            backups = call("DescribeDBInstanceAutomatedBackups %s" % self.source_id, self.client.describe_db_instance_automated_backups,
                           DBInstanceIdentifier=self.source_id)
            windows = [(b.get("RestoreWindow") or {}).get("EarliestTime") for b in backups.get("DBInstanceAutomatedBackups", [])]
            windows = [_aws.utc(w) for w in windows if w]
            if windows:
                return min(windows), "automated backups"
        except DRError:
            pass
        created = _aws.utc(source.get("InstanceCreateTime"))
        retention = datetime.timedelta(days=source.get("BackupRetentionPeriod") or 0)
        floor = _time.utcnow() - retention
        return (max(created, floor) if created else floor), "instance creation and retention"

    def _instance_state(self, instance):
        if instance is None:
            return {"exists": False}
        tags = self._tags(instance)
        return {"exists": True, "identifier": instance["DBInstanceIdentifier"], "status": instance.get("DBInstanceStatus"),
                "endpoint": (instance.get("Endpoint") or {}).get("Address"), "port": (instance.get("Endpoint") or {}).get("Port"),
                "instance_class": instance.get("DBInstanceClass"), "restored_from": tags.get(TAG_SOURCE),
                "restored_to": tags.get(TAG_TARGET)}

    def target_tag(self):
        return self.target["value"] if self.target["type"] == "time" else "latest"

    def read(self):
        source = self._describe(self.source_id)
        if source is None:
            raise DRError(NOT_FOUND, "Source RDS instance %s does not exist." % self.source_id)
        existing = self._instance_state(self._describe(self.target_id))
        state = {"source": {"identifier": self.source_id, "status": source.get("DBInstanceStatus"),
                            "backup_retention_days": source.get("BackupRetentionPeriod"),
                            "latest_restorable_time": _time.isoformat(_aws.utc(source.get("LatestRestorableTime")))},
                 "target": existing}
        if existing["exists"]:
            if existing["restored_from"] == self.source_id and existing["restored_to"] == self.target_tag():
                self.result["db_instance"] = existing
                return state
            raise DRError(PRECONDITION_FAILED, "RDS instance %s already exists and is not this restore of %s to %s; choose another "
                          "target_db_instance (nothing is overwritten)." % (self.target_id, self.source_id, self.target_tag()),
                          details={"existing": existing})
        if not source.get("BackupRetentionPeriod"):
            raise DRError(NO_BACKUP_BEFORE_TARGET, "RDS instance %s has automated backups disabled (retention 0), so it has no point "
                          "in time to restore to." % self.source_id)
        if self.target["type"] == "time":
            moment = self.target["time"]
            earliest, basis = self._earliest(source)
            state["source"]["earliest_restorable_time"] = _time.isoformat(earliest)
            if moment < earliest:
                raise DRError(NO_BACKUP_BEFORE_TARGET, "The target %s is older than the earliest restorable time %s of %s (%s)." % (
                    self.target["value"], _time.isoformat(earliest), self.source_id, basis), details={"source": state["source"]})
            latest = _aws.utc(source.get("LatestRestorableTime"))
            if latest is None or moment > latest:
                raise DRError(TARGET_NOT_REACHED, "The target %s is after the latest restorable time %s of %s; wait for the logs to "
                              "be uploaded or choose an earlier target." % (self.target["value"], _time.isoformat(latest), self.source_id),
                              details={"source": state["source"]})
        return state

    def request(self):
        req = {"SourceDBInstanceIdentifier": self.source_id, "TargetDBInstanceIdentifier": self.target_id,
               "Tags": [{"Key": TAG_SOURCE, "Value": self.source_id}, {"Key": TAG_TARGET, "Value": self.target_tag()}],
               "CopyTagsToSnapshot": True}
        if self.target["type"] == "time":
            req["RestoreTime"] = self.target["time"]
        else:
            req["UseLatestRestorableTime"] = True
        if self.params.get("db_instance_class"):
            req["DBInstanceClass"] = self.params["db_instance_class"]
        return req

    def plan(self, current):
        if current["target"]["exists"]:
            return []
        req = self.request()
        shown = dict(req)
        if "RestoreTime" in shown:
            shown["RestoreTime"] = _time.isoformat(shown["RestoreTime"])
        steps = [Step("restore_db_instance_to_point_in_time", self.target_id, run=self._restore, request=shown)]
        if self.params.get("wait", True):
            steps.append(Step("wait_available", self.target_id, run=self._wait, timeout=self.timeout))
        return steps

    def predict(self, current, steps):
        return {"source": current["source"], "target": {"exists": True, "identifier": self.target_id, "status": "available",
                                                        "restored_from": self.source_id, "restored_to": self.target_tag()}}

    def _restore(self):
        out = call("RestoreDBInstanceToPointInTime", self.client.restore_db_instance_to_point_in_time, **self.request())
        instance = out.get("DBInstance", {})
        return {"status": instance.get("DBInstanceStatus"), "arn": instance.get("DBInstanceArn")}

    def _wait(self):
        delay = 15 if not self.params.get("aws_endpoint_url") else 1
        started = time.monotonic()
        _aws.wait(self.client, "db_instance_available", "RDS instance %s did not become available within %ss: {error}." % (self.target_id, self.timeout),
                  delay, max(1, int(self.timeout // delay)), DBInstanceIdentifier=self.target_id)
        return {"seconds": round(time.monotonic() - started, 3)}

    def verify(self, current, steps):
        state = self._instance_state(self._describe(self.target_id))
        if not state["exists"]:
            raise DRError(VERIFY_FAILED, "RDS instance %s does not exist after the restore call." % self.target_id)
        if state["restored_from"] != self.source_id or state["restored_to"] != self.target_tag():
            raise DRError(VERIFY_FAILED, "RDS instance %s does not carry the restore tags." % self.target_id, details={"target": state})
        if self.params.get("wait", True) and state["status"] != "available":
            raise DRError(VERIFY_FAILED, "RDS instance %s is %s, not available." % (self.target_id, state["status"]))
        self.result["db_instance"] = state
        return {"source": current["source"], "target": state}

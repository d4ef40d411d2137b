# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engines on AWS: ``s3`` (dump objects) and ``aws_rds`` (private).

Both only read: ``ListObjectsV2`` for s3; ``DescribeDBInstances``,
``DescribeDBInstanceAutomatedBackups`` and ``DescribeDBSnapshots`` for RDS. The only
check that applies is ``max_age``:

* s3: the newest object under the prefix must be younger than ``max_age`` and not empty.
* aws_rds: the latest restorable time (what a point-in-time restore can reach) and the
  newest available snapshot (automated or manual) must be younger than ``max_age``;
  automated backups must be enabled (retention > 0).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.resilience.dr.plugins.module_utils import _aws
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    CONNECTION_FAILED,
    NOT_FOUND,
)
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import (
    VerifyProvider,
    FAILED,
    age_seconds,
)


def aws_client(params, service):
    """A boto3 client from the flat aws_* options."""
    return _aws.client(params, service, "backup_verify")


def read(what, func, **kwargs):
    """A read-only AWS call: errors as DRError, an AWS refusal other than auth/not-found is CONNECTION_FAILED."""
    return _aws.call(what, func, other=CONNECTION_FAILED, **kwargs)


def _stamp(moment):
    return _time.isoformat(_aws.utc(moment)) if moment else None


class S3Verify(VerifyProvider):
    name = "s3"
    supported = ("max_age",)

    def discover(self):
        bucket = self.params["s3_bucket"]
        prefix = self.params.get("s3_prefix") or ""
        client = aws_client(self.params, "s3")
        newest = None
        count = 0
        total = 0
        for page in _aws.pages("listing s3://%s/%s" % (bucket, prefix), client, "list_objects_v2", other=CONNECTION_FAILED,
                               Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue
                count += 1
                total += item["Size"]
                if newest is None or (item["LastModified"], item["Key"]) > (newest["LastModified"], newest["Key"]):
                    newest = item
        if newest is None:
            raise DRError(NOT_FOUND, "No object under s3://%s/%s." % (bucket, prefix))
        at = _aws.utc(newest["LastModified"])
        self.newest_at = at
        self.figures["backup"] = {
            "bucket": bucket,
            "key": newest["Key"],
            "label": newest["Key"],
            "size_bytes": newest["Size"],
            "started_at": _time.isoformat(at),
            "age_seconds": age_seconds(at),
            "etag": (newest.get("ETag") or "").strip('"'),
            "count": count,
            "total_size_bytes": total,
        }

    def check_max_age(self):
        backup = self.figures["backup"]
        status, detail, figures = self.freshness([("newest_object", self.newest_at, {"key": backup["key"], "size_bytes": backup["size_bytes"]})])
        if backup["size_bytes"] == 0:
            return FAILED, "newest object s3://%s/%s is empty (0 bytes)" % (backup["bucket"], backup["key"]), figures
        return status, detail, figures


class RdsVerify(VerifyProvider):
    name = "aws_rds"
    supported = ("max_age",)

    def discover(self):
        ident = self.params["rds_instance_id"]
        client = aws_client(self.params, "rds")
        instances = read("describing DB instance %s" % ident, client.describe_db_instances, DBInstanceIdentifier=ident)["DBInstances"]
        if not instances:
            raise DRError(NOT_FOUND, "DB instance %s not found." % ident)
        instance = instances[0]
        snapshots = []
        for page in _aws.pages("listing snapshots of %s" % ident, client, "describe_db_snapshots", other=CONNECTION_FAILED,
                               DBInstanceIdentifier=ident):
            snapshots.extend(s for s in page.get("DBSnapshots", []) if s.get("Status") == "available" and s.get("SnapshotCreateTime"))
        automated = []
        try:
            automated = read("listing automated backups of %s" % ident, client.describe_db_instance_automated_backups,
                             DBInstanceIdentifier=ident).get("DBInstanceAutomatedBackups", [])
        except DRError as exc:
            if exc.details.get("aws_error") not in ("DBInstanceAutomatedBackupNotFound", "DBInstanceAutomatedBackupNotFoundFault",
                                                    "InvalidAction", "NotImplemented"):
                raise
        snapshots.sort(key=lambda s: _aws.utc(s["SnapshotCreateTime"]))
        newest = snapshots[-1] if snapshots else None
        self.restorable = _aws.utc(instance.get("LatestRestorableTime"))
        self.snapshot_at = _aws.utc(newest["SnapshotCreateTime"]) if newest else None
        self.retention = instance.get("BackupRetentionPeriod", 0)
        self.figures["backup"] = {
            "db_instance_identifier": ident,
            "engine": instance.get("Engine"),
            "status": instance.get("DBInstanceStatus"),
            "backup_retention_days": self.retention,
            "latest_restorable_time": _time.isoformat(self.restorable) if self.restorable else None,
            "latest_restorable_age_seconds": age_seconds(self.restorable),
            "label": newest["DBSnapshotIdentifier"] if newest else None,
            "snapshot_type": newest.get("SnapshotType") if newest else None,
            "started_at": _time.isoformat(self.snapshot_at) if self.snapshot_at else None,
            "age_seconds": age_seconds(self.snapshot_at),
            "size_bytes": newest["AllocatedStorage"] * 1024 ** 3 if newest and newest.get("AllocatedStorage") else None,
            "count": len(snapshots),
            "automated_backups": [
                {"arn": a.get("DBInstanceAutomatedBackupsArn"), "status": a.get("Status"),
                 "earliest": _stamp(a.get("RestoreWindow", {}).get("EarliestTime")),
                 "latest": _stamp(a.get("RestoreWindow", {}).get("LatestTime"))}
                for a in automated
            ],
        }

    def check_max_age(self):
        items = [("latest_restorable_time", self.restorable, {}),
                 ("newest_snapshot", self.snapshot_at, {"snapshot": self.figures["backup"]["label"]})]
        status, detail, figures = self.freshness(items)
        figures["backup_retention_days"] = self.retention
        if not self.retention:
            return FAILED, "automated backups are disabled on %s (retention 0 days); %s" % (
                self.params["rds_instance_id"], detail), figures
        return status, detail, figures

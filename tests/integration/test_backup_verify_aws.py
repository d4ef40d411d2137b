# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engines s3 and aws_rds against moto's server (started here, port 23600).
Figures are compared with what moto stores, read back independently with boto3."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

import pytest

from lablib import moto_server
from test_backup_verify import run_module, MODULE

boto3 = pytest.importorskip("boto3")

PORT = 23600
ENDPOINT = "http://127.0.0.1:%d" % PORT
AWS = {"aws_endpoint_url": ENDPOINT, "aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret-bv",
       "aws_region": "us-east-1"}


@pytest.fixture(scope="module")
def moto():
    with moto_server(PORT) as endpoint:
        yield endpoint


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def test_s3_newest_dump(moto):
    s3 = client("s3")
    s3.create_bucket(Bucket="dumps")
    s3.put_object(Bucket="dumps", Key="appdb/2026-01-01.dump", Body=b"a" * 100)
    s3.put_object(Bucket="dumps", Key="elsewhere/new.dump", Body=b"e" * 5)
    time.sleep(1.1)
    s3.put_object(Bucket="dumps", Key="appdb/2026-01-02.dump", Body=b"b" * 321)
    args = dict(AWS, engine="s3", s3_bucket="dumps", s3_prefix="appdb/", max_age="1h")
    dry = run_module(MODULE, args, check=True)
    res = run_module(MODULE, args)
    assert not res.get("failed"), res.get("msg")
    head = s3.head_object(Bucket="dumps", Key="appdb/2026-01-02.dump")
    assert res["backup"]["key"] == "appdb/2026-01-02.dump"
    assert res["backup"]["size_bytes"] == head["ContentLength"] == 321
    assert res["backup"]["count"] == 2 and res["backup"]["total_size_bytes"] == 421
    assert dict((k, v["status"]) for k, v in res["checks"].items()) == {
        "max_age": "passed", "checksums": "skipped", "wal_continuity": "skipped", "test_restore": "skipped"}
    assert res["checks"]["checksums"]["detail"] == "the s3 engine does not support it"
    assert res["changed"] is False and dry["checks"]["max_age"]["status"] == "passed"
    assert "testing-secret-bv" not in str(res)

    time.sleep(1.1)
    res = run_module(MODULE, dict(args, max_age="1s"))
    assert res.get("failed") and res["error"] == "CHECK_FAILED" and "older than max_age 1s" in res["msg"]

    s3.put_object(Bucket="dumps", Key="appdb/2026-01-03.dump", Body=b"")
    res = run_module(MODULE, args)
    assert res.get("failed") and "appdb/2026-01-03.dump is empty" in res["msg"]

    res = run_module(MODULE, dict(args, s3_prefix="nothing/"))
    assert res.get("failed") and "No object under s3://dumps/nothing/" in res["msg"]
    res = run_module(MODULE, dict(args, checks=["checksums"]))
    assert res.get("failed") and res["error"] == "INVALID_ARGUMENT"


def test_aws_rds_restorable_time_and_snapshots(moto):
    rds = client("rds")
    rds.create_db_instance(DBInstanceIdentifier="appdb", Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="password-123",
                           BackupRetentionPeriod=7)
    rds.create_db_snapshot(DBInstanceIdentifier="appdb", DBSnapshotIdentifier="appdb-manual-1")
    args = dict(AWS, engine="aws_rds", rds_instance_id="appdb", max_age="1h")
    res = run_module(MODULE, args)
    assert not res.get("failed"), res.get("msg")
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier="appdb")["DBSnapshots"]
    newest = max(snaps, key=lambda s: s["SnapshotCreateTime"])
    instance = rds.describe_db_instances(DBInstanceIdentifier="appdb")["DBInstances"][0]
    assert res["backup"]["label"] == newest["DBSnapshotIdentifier"]
    assert res["backup"]["count"] == len(snaps)
    assert res["backup"]["backup_retention_days"] == instance["BackupRetentionPeriod"] == 7
    # moto moves LatestRestorableTime to "now" on every describe: ours was read a moment earlier
    ours = datetime.datetime.strptime(res["backup"]["latest_restorable_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    assert datetime.timedelta(0) <= instance["LatestRestorableTime"] - ours < datetime.timedelta(seconds=30)
    assert res["checks"]["max_age"]["status"] == "passed"

    time.sleep(1.1)
    res = run_module(MODULE, dict(args, max_age="1s"))
    # (moto reports "now" as the latest restorable time, so only the snapshot is too old here)
    assert res.get("failed") and "newest snapshot is" in res["msg"] and "older than max_age 1s" in res["msg"]
    assert res["checks"]["max_age"]["figures"]["newest_snapshot"]["age_seconds"] > 1

    rds.create_db_instance(DBInstanceIdentifier="nobackup", Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="password-123",
                           BackupRetentionPeriod=0)
    rds.create_db_snapshot(DBInstanceIdentifier="nobackup", DBSnapshotIdentifier="nobackup-1")
    res = run_module(MODULE, dict(args, rds_instance_id="nobackup"))
    assert res.get("failed") and "automated backups are disabled on nobackup" in res["msg"]

    res = run_module(MODULE, dict(args, rds_instance_id="missing"))
    assert res.get("failed") and res["error"] == "CHECK_FAILED" and "DBInstanceNotFound" in res["msg"]

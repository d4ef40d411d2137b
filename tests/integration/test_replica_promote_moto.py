# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider aws_rds, against moto's server (RDS + CloudWatch).

moto answers promote_read_replica and failover_db_cluster and stores CloudWatch data put
under AWS/RDS; each test reads moto's state back with boto3. What moto cannot show (an
instance that really lost its source after promotion, a ``modifying`` instance,
ReplicaLag -1) is covered with botocore's Stubber in
tests/unit/plugins/modules/test_replica_promote_aws.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lablib import moto_server  # noqa: E402  pylint: disable=wrong-import-position
from test_replica_promote_lab import run_module  # noqa: E402  pylint: disable=wrong-import-position

boto3 = pytest.importorskip("boto3")

PORT = 21510
ENDPOINT = "http://127.0.0.1:%d" % PORT
SECRET = "moto-secret-key-%d" % os.getpid()
AWS = dict(aws_endpoint_url=ENDPOINT, aws_region="us-east-1", aws_access_key_id="testing", aws_secret_access_key=SECRET)


@pytest.fixture(scope="module")
def moto():
    with moto_server(PORT) as endpoint:
        yield endpoint


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key=SECRET)


def put_lag(ident, value, metric="ReplicaLag", unit="Seconds"):
    client("cloudwatch").put_metric_data(Namespace="AWS/RDS", MetricData=[{
        "MetricName": metric, "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": ident}],
        "Value": value, "Unit": unit,
        "Timestamp": datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=20)}])


def make_replica(source, replica):
    rds = client("rds")
    rds.create_db_instance(DBInstanceIdentifier=source, Engine="postgres", DBInstanceClass="db.t3.micro",
                           MasterUsername="app", MasterUserPassword="password-123", AllocatedStorage=20,
                           BackupRetentionPeriod=1)
    rds.create_db_instance_read_replica(DBInstanceIdentifier=replica, SourceDBInstanceIdentifier=source)


def instance(ident):
    return client("rds").describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]


def writer_of(cluster):
    members = client("rds").describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]["DBClusterMembers"]
    return [m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]]


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_promote_read_replica_check_then_real(moto):
    make_replica("orders", "orders-dr")
    put_lag("orders-dr", 3.0)
    args = dict(AWS, provider="aws_rds", db_instance_identifier="orders-dr", backup_retention_period=7, max_lag="60s")

    dry = run_module(args, check=True)
    assert not dry.get("failed"), dry
    assert keys(dry["steps"]) == [("promote_read_replica", "orders-dr"), ("wait_available", "orders-dr")]
    assert dry["lag"]["seconds"] == 3.0 and dry["lag"]["within_limits"] is True
    assert instance("orders-dr")["BackupRetentionPeriod"] == 1, "check mode changed the instance"

    real = run_module(args)
    assert not real.get("failed"), real
    assert real["changed"] is True and real["promoted"] is True
    assert keys(real["steps"]) == keys(dry["steps"])
    assert real["data_loss_bytes"] is None
    # moto applied promote_read_replica's settings to the instance
    assert instance("orders-dr")["BackupRetentionPeriod"] == 7
    assert instance("orders-dr")["DBInstanceStatus"] == "available"
    assert SECRET not in real["_raw"]


def test_lag_too_high_and_unknown_lag_are_refused(moto):
    make_replica("billing", "billing-dr")
    put_lag("billing-dr", 120.0)
    args = dict(AWS, provider="aws_rds", db_instance_identifier="billing-dr", backup_retention_period=5)
    out = run_module(args)
    assert out.get("failed") and out["error"] == "LAG_TOO_HIGH", out
    assert "120.0s" in out["msg"] and out["changed"] is False
    assert instance("billing-dr")["BackupRetentionPeriod"] == 1

    make_replica("search", "search-dr")  # no metric at all: lag unknown
    out = run_module(dict(args, db_instance_identifier="search-dr"))
    assert out.get("failed") and out["error"] == "LAG_TOO_HIGH" and "unknown" in out["msg"], out
    assert instance("search-dr")["BackupRetentionPeriod"] == 1

    out = run_module(dict(args, db_instance_identifier="search-dr", allow_data_loss=True, reason="drill"))
    assert not out.get("failed"), out
    assert out["lag"]["overridden"] is True and out["reason"] == "drill"
    assert instance("search-dr")["BackupRetentionPeriod"] == 5


def test_aurora_failover_to_a_target_then_idempotent(moto):
    rds = client("rds")
    rds.create_db_cluster(DBClusterIdentifier="ledger", Engine="aurora-postgresql", MasterUsername="app",
                          MasterUserPassword="password-123")
    for ident in ("ledger-1", "ledger-2", "ledger-3"):
        rds.create_db_instance(DBInstanceIdentifier=ident, DBClusterIdentifier="ledger", Engine="aurora-postgresql",
                               DBInstanceClass="db.r5.large")
    assert writer_of("ledger") == ["ledger-1"]
    put_lag("ledger-3", 20.0, metric="AuroraReplicaLag", unit="Milliseconds")
    args = dict(AWS, provider="aws_rds", db_cluster_identifier="ledger", db_instance_identifier="ledger-3")

    dry = run_module(args, check=True)
    assert keys(dry["steps"]) == [("failover_db_cluster", "ledger"), ("wait_for_writer", "ledger")]
    assert writer_of("ledger") == ["ledger-1"]

    real = run_module(args)
    assert not real.get("failed"), real
    assert keys(real["steps"]) == keys(dry["steps"])
    assert real["lag"]["seconds"] == 0.02
    assert writer_of("ledger") == ["ledger-3"], "moto's cluster has another writer"
    assert real["after"]["writer"] == "ledger-3"

    again = run_module(args)
    assert not again.get("failed") and again["changed"] is False and again["steps"] == [], again
    assert writer_of("ledger") == ["ledger-3"]
    assert run_module(args, check=True)["steps"] == []


def test_bad_input(moto):
    out = run_module(dict(AWS, provider="aws_rds", db_instance_identifier="no-such-db"))
    assert out.get("failed") and out["error"] == "NOT_FOUND", out
    out = run_module(dict(AWS, provider="aws_rds", db_instance_identifier="orders-dr", fence="none"))
    assert out.get("failed") and out["error"] == "INVALID_ARGUMENT" and "fence" in out["msg"], out
    out = run_module(dict(AWS, provider="aws_rds", db_cluster_identifier="ledger", db_instance_identifier="orders"))
    assert out.get("failed") and out["error"] == "INVALID_ARGUMENT" and "not a member" in out["msg"], out
    assert writer_of("ledger") == ["ledger-3"]

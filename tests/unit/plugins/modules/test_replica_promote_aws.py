# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider aws_rds, with botocore's Stubber for what moto cannot show:
an instance whose source is really gone after promotion (idempotence as on real RDS), a
``modifying`` instance (a promotion under way: LOCKED), ReplicaLag -1, and the exact
request parameters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest


from ansible_collections.resilience.dr.plugins.module_utils import _promote_aws_rds
from ansible_collections.resilience.dr.plugins.modules import replica_promote
from modrun import run_main  # pylint: disable=import-error

boto3 = pytest.importorskip("boto3")
from botocore.stub import ANY, Stubber  # noqa: E402  pylint: disable=wrong-import-position


pytestmark = pytest.mark.usefixtures("captured")


@pytest.fixture
def stubs(monkeypatch):
    kw = dict(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    rds = boto3.client("rds", **kw)
    cw = boto3.client("cloudwatch", **kw)
    rds_stub, cw_stub = Stubber(rds), Stubber(cw)
    rds_stub.activate()
    cw_stub.activate()
    monkeypatch.setattr(_promote_aws_rds.AwsRdsPromote, "make_clients", lambda self: (rds, cw))
    monkeypatch.setattr(_promote_aws_rds.AwsRdsPromote, "poll_interval", 0.01)
    yield rds_stub, cw_stub
    rds_stub.assert_no_pending_responses()
    cw_stub.assert_no_pending_responses()


ARGS = dict(provider="aws_rds", aws_region="us-east-1", db_instance_identifier="orders-dr")


def run(args, check=False):
    return run_main(replica_promote.main, args, check)


def described(status="available", source="orders"):
    inst = {"DBInstanceIdentifier": "orders-dr", "DBInstanceStatus": status, "Engine": "postgres",
            "BackupRetentionPeriod": 1}
    if source:
        inst["ReadReplicaSourceDBInstanceIdentifier"] = source
    return {"DBInstances": [inst]}


def lag(values):
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"Label": "ReplicaLag", "Datapoints": [
        {"Timestamp": now - datetime.timedelta(minutes=len(values) - i), "Maximum": v, "Unit": "Seconds"}
        for i, v in enumerate(values)]}


LAG_REQUEST = {"Namespace": "AWS/RDS", "MetricName": "ReplicaLag",
               "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "orders-dr"}],
               "StartTime": ANY, "EndTime": ANY, "Period": 60, "Statistics": ["Maximum"]}


def test_promotes_waits_and_verifies_with_the_exact_requests(stubs):
    rds, cw = stubs
    rds.add_response("describe_db_instances", described(), {"DBInstanceIdentifier": "orders-dr"})
    cw.add_response("get_metric_statistics", lag([2.0, 4.0, 1.0]), LAG_REQUEST)
    rds.add_response("promote_read_replica", {"DBInstance": {"DBInstanceIdentifier": "orders-dr", "DBInstanceStatus": "modifying"}},
                     {"DBInstanceIdentifier": "orders-dr", "BackupRetentionPeriod": 7})
    # the waiter sees 'modifying' once, then 'available'
    rds.add_response("describe_db_instances", described("modifying", source=None), {"DBInstanceIdentifier": "orders-dr"})
    rds.add_response("describe_db_instances", described("available", source=None), {"DBInstanceIdentifier": "orders-dr"})
    rds.add_response("describe_db_instances", described("available", source=None), {"DBInstanceIdentifier": "orders-dr"})
    out = run(dict(ARGS, backup_retention_period=7))
    assert out.kind == "exit", out.payload
    assert out.payload["promoted"] is True
    assert out.payload["lag"]["seconds"] == 4.0 and out.payload["lag"]["latest_seconds"] == 1.0
    assert out.payload["steps"][0]["result"]["status_after_request"] == "modifying"
    assert out.payload["after"]["is_replica"] is False
    assert "warnings_detail" not in out.payload


def test_already_promoted_is_unchanged(stubs):
    rds, _cw = stubs
    rds.add_response("describe_db_instances", described(source=None), {"DBInstanceIdentifier": "orders-dr"})
    out = run(ARGS)
    assert out.kind == "exit"
    assert out.payload["changed"] is False and out.payload["already_primary"] is True
    assert out.payload["steps"] == []


def test_modifying_replica_is_locked(stubs):
    rds, _cw = stubs
    rds.add_response("describe_db_instances", described("modifying"), {"DBInstanceIdentifier": "orders-dr"})
    out = run(ARGS)
    assert out.payload["error"] == "LOCKED" and out.payload["changed"] is False


def test_replication_not_running_is_refused(stubs):
    rds, cw = stubs
    rds.add_response("describe_db_instances", described(), {"DBInstanceIdentifier": "orders-dr"})
    cw.add_response("get_metric_statistics", lag([1.0, -1.0]), LAG_REQUEST)
    out = run(ARGS)
    assert out.payload["error"] == "LAG_TOO_HIGH"
    assert "not running" in out.payload["msg"]


def test_waiter_timeout_is_reported(stubs, monkeypatch):
    rds, cw = stubs
    rds.add_response("describe_db_instances", described(), {"DBInstanceIdentifier": "orders-dr"})
    cw.add_response("get_metric_statistics", lag([1.0]), LAG_REQUEST)
    rds.add_response("promote_read_replica", {"DBInstance": {"DBInstanceIdentifier": "orders-dr"}}, {"DBInstanceIdentifier": "orders-dr"})
    for _poll in range(2):
        rds.add_response("describe_db_instances", described("modifying", source=None), {"DBInstanceIdentifier": "orders-dr"})
    monkeypatch.setattr(_promote_aws_rds.AwsRdsPromote, "poll_interval", 1.0)
    out = run(dict(ARGS, promote_timeout="1s"))
    assert out.kind == "fail"
    assert out.payload["error"] == "TIMEOUT"
    assert out.payload["failed_step"]["action"] == "wait_available"
    assert [s["action"] for s in out.payload["completed_steps"]] == ["promote_read_replica"]
    assert out.payload["changed"] is True  # the promotion was requested and cannot be taken back


def test_access_denied_is_auth_failed(stubs):
    rds, _cw = stubs
    rds.add_client_error("describe_db_instances", service_error_code="AccessDenied", service_message="no",
                         http_status_code=403)
    out = run(ARGS)
    assert out.payload["error"] == "AUTH_FAILED"


def test_postgres_options_are_refused_for_aws(stubs):
    out = run(dict(ARGS, primary_login_host="db1", verify_write=True))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    assert "primary_login_host" in out.payload["msg"] and "verify_write" in out.payload["msg"]

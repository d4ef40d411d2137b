# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore engine aws_rds against moto's server (state read back from moto)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import subprocess
import time

import pytest

import lablib

boto3 = pytest.importorskip("boto3")

MODULE = "resilience.dr.pg_pitr_restore"
PORT = 22601
ENDPOINT = "http://127.0.0.1:%d" % PORT
CONN = dict(aws_endpoint_url=ENDPOINT, aws_access_key_id="testing", aws_secret_access_key="testing-secret", aws_region="us-east-1")


def run_module(args, check=False):
    """lablib.run_module, or the minimal callback when ansible.builtin.json is missing."""
    try:
        return lablib.run_module(MODULE, args, check=check)
    except AssertionError as exc:
        if "Could not load" not in str(exc):
            raise
    argv = [os.path.join(lablib.VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", MODULE,
            "-a", json.dumps(args)] + (["--check"] if check else [])
    proc = subprocess.run(argv, cwd=lablib.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False, env=lablib.ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"))
    out = proc.stdout
    assert " => {" in out, out + proc.stderr
    result = json.loads(out[out.index(" => {") + 4:])
    if "| FAILED!" in out.split(" => {")[0]:
        result["failed"] = True
    return result


@pytest.fixture(scope="module")
def moto():
    with lablib.moto_server(PORT):
        client = boto3.client("rds", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing-secret")
        client.create_db_instance(DBInstanceIdentifier="orders", DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="app",
                                  MasterUserPassword="app-password-1", AllocatedStorage=20, BackupRetentionPeriod=7)
        client.create_db_instance(DBInstanceIdentifier="nobackups", DBInstanceClass="db.t3.micro", Engine="postgres",
                                  MasterUsername="app", MasterUserPassword="app-password-1", AllocatedStorage=20, BackupRetentionPeriod=0)
        time.sleep(2)  # so that "a second before the latest restorable time" is after the creation
        yield client


def args_for(target_id, **extra):
    args = dict(CONN, engine="aws_rds", source_db_instance="orders", target_db_instance=target_id)
    args.update(extra)
    return args


def test_restore_to_time_creates_tagged_instance(moto):
    latest = moto.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0]["LatestRestorableTime"]
    target = (latest - datetime.timedelta(seconds=1)).astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    args = args_for("orders-pitr", target_time=target.isoformat())
    check = run_module(args, check=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert [s["action"] for s in check["steps"]] == ["restore_db_instance_to_point_in_time", "wait_available"]
    restore_time = check["steps"][0]["detail"]["request"]["RestoreTime"]
    assert restore_time.endswith("Z")
    assert moto.describe_db_instances()["DBInstances"].__len__() == 2  # nothing created in check mode

    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert "testing-secret" not in json.dumps(result)
    made = moto.describe_db_instances(DBInstanceIdentifier="orders-pitr")["DBInstances"][0]
    assert made["DBInstanceStatus"] == "available"
    tags = dict((t["Key"], t["Value"]) for t in moto.list_tags_for_resource(ResourceName=made["DBInstanceArn"])["TagList"])
    assert tags["resilience.dr:pitr-source"] == "orders"
    assert tags["resilience.dr:pitr-target"] == restore_time  # the UTC twin of the +02:00 target
    assert result["db_instance"]["identifier"] == "orders-pitr"

    again = run_module(args)
    assert again["changed"] is False and again["steps"] == [], again
    assert run_module(args, check=True)["changed"] is False


def test_latest_and_refusals(moto):
    result = run_module(args_for("orders-latest", latest=True))
    assert result["changed"] is True and not result.get("failed"), result
    assert moto.describe_db_instances(DBInstanceIdentifier="orders-latest")["DBInstances"][0]["DBInstanceStatus"] == "available"

    # an instance that is not this restore is never reused or overwritten
    clash = run_module(args_for("orders-latest", target_time="2026-01-01T00:00:00Z"))
    assert clash.get("failed") and clash["error"] == "PRECONDITION_FAILED", clash

    count = len(moto.describe_db_instances()["DBInstances"])
    old = run_module(args_for("orders-old", target_time="2001-01-01T00:00:00+02:00"))
    assert old.get("failed") and old["error"] == "NO_BACKUP_BEFORE_TARGET", old
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).isoformat()
    late = run_module(args_for("orders-future", target_time=future))
    assert late.get("failed") and late["error"] == "TARGET_NOT_REACHED", late
    none = run_module(args_for("nb-pitr", source_db_instance="nobackups", latest=True))
    assert none.get("failed") and none["error"] == "NO_BACKUP_BEFORE_TARGET", none
    assert len(moto.describe_db_instances()["DBInstances"]) == count

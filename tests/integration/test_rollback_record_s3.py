# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend s3, against moto's server: objects in the bucket are asserted."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

from lablib import moto_server
from test_rollback_record_file import run_rr

boto3 = pytest.importorskip("boto3")
import botocore.exceptions  # noqa: E402  pylint: disable=wrong-import-position

PORT = 24500
ENDPOINT = "http://127.0.0.1:%d" % PORT
AWS = {"aws_endpoint_url": ENDPOINT, "aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret-xyz",
       "aws_region": "us-east-1"}


@pytest.fixture(scope="module")
def moto():
    with moto_server(PORT):
        yield boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="testing",
                           aws_secret_access_key="testing", region_name="us-east-1")


def objects(s3, bucket, prefix=""):
    out = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        out[item["Key"]] = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return out


def args(bucket, **extra):
    out = dict(AWS, backend="s3", s3_bucket=bucket)
    out.update(extra)
    return out


def test_s3_write_transition_idempotence_and_masking(moto):
    s3 = moto
    s3.create_bucket(Bucket="audit")

    dry = run_rr(args("audit", id="rb-s3-0001", kind="failover", status="started", environment="prod"), check=True)
    assert dry.get("failed") is not True, dry
    assert dry["changed"] is True and dry["record"]["status"] == "started"
    assert objects(s3, "audit") == {}, "check mode wrote an object"

    first = run_rr(args(
        "audit", id="rb-s3-0001", kind="failover", status="started", environment="prod",
        details={"replica": {"pg_login_password": "Pw-in-details-77", "host": "db2"}}))
    assert first["changed"] is True, first
    stored = objects(s3, "audit")
    assert list(stored) == ["dr-records/rb-s3-0001/000001-started.json"]
    body = stored["dr-records/rb-s3-0001/000001-started.json"]
    assert body["details"]["replica"] == {"pg_login_password": "********", "host": "db2"}
    raw = s3.get_object(Bucket="audit", Key="dr-records/rb-s3-0001/000001-started.json")["Body"].read().decode()
    assert "Pw-in-details-77" not in raw and "testing-secret-xyz" not in raw
    assert body["prev_hash"] == "0" * 64

    again = run_rr(args("audit", id="rb-s3-0001", kind="failover", status="started"))
    assert again["changed"] is False and again["event"] == "unchanged"
    assert len(objects(s3, "audit")) == 1

    done = run_rr(args("audit", id="rb-s3-0001", status="completed", objectives={"rto": "10m"}))
    assert done["changed"] is True, done
    stored = objects(s3, "audit")
    second = stored["dr-records/rb-s3-0001/000002-completed.json"]
    assert second["prev_hash"] == body["hash"]
    assert second["rto_met"] is True and second["duration_seconds"] >= 0

    back = run_rr(args("audit", id="rb-s3-0001", status="started"))
    assert back.get("failed") is True and back["error"] == "INVALID_TRANSITION"
    assert len(objects(s3, "audit")) == 2

    query = run_rr(args("audit", action="query", kind="failover", verify_chain=True))
    assert query.get("failed") is not True, query
    assert query["chain"]["valid"] is True and query["chain"]["checked"] == 2
    assert [(r["id"], r["status"]) for r in query["records"]] == [("rb-s3-0001", "completed")]

    # change one object behind the module's back: verify_chain names it
    tampered = dict(second, reason="nothing happened")
    s3.put_object(Bucket="audit", Key="dr-records/rb-s3-0001/000002-completed.json", Body=json.dumps(tampered).encode())
    broken = run_rr(args("audit", action="query", verify_chain=True))
    assert broken.get("failed") is True and broken["error"] == "CHAIN_BROKEN"
    assert broken["chain"]["first_broken"]["where"] == "dr-records/rb-s3-0001/000002-completed.json"
    assert broken["chain"]["first_broken"]["id"] == "rb-s3-0001"


def test_s3_object_lock_retention(moto):
    s3 = moto
    s3.create_bucket(Bucket="audit-locked", ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket="audit-plain")
    out = run_rr(args(
        "audit-locked", kind="drill", status="completed", s3_prefix="drills",
        s3_object_lock_mode="GOVERNANCE", s3_object_lock_days=30))
    assert out["changed"] is True, out
    key = "drills/%s/000001-completed.json" % out["id"]
    # (moto 5.2's GetObjectRetention answers 500: read the lock from HeadObject)
    head = s3.head_object(Bucket="audit-locked", Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    days = (head["ObjectLockRetainUntilDate"].timestamp() - time.time()) / 86400
    assert 29 < days <= 30
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        s3.delete_object(Bucket="audit-locked", Key=key, VersionId=head["VersionId"])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # a bucket without Object Lock is refused before anything is written
    refused = run_rr(args(
        "audit-plain", kind="drill", status="completed", s3_object_lock_mode="GOVERNANCE", s3_object_lock_days=30))
    assert refused.get("failed") is True and refused["error"] == "PRECONDITION_FAILED"
    assert objects(s3, "audit-plain") == {}
    missing = run_rr(args("no-such-bucket", kind="drill", status="completed"))
    assert missing.get("failed") is True and missing["error"] == "NOT_FOUND"

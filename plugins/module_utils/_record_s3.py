# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend ``s3``: one object per event (private).

Key: ``<prefix><id>/<seq:06d>-<status>.json``. Objects are written with
``If-None-Match: *`` so an event is never overwritten (two writers racing on the same
event: one gets ``CONFLICT``), optionally with Object Lock retention. ``prev_hash`` of an
event is the ``hash`` of the previous event of the same record.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

from ansible_collections.resilience.dr.plugins.module_utils import _aws
from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    NOT_FOUND,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._record_common import (
    CONFLICT,
    GENESIS,
    RecordProvider,
    canonical,
    check_linked_events,
    event_hash,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time

with _deps.declare("boto3", pip="boto3"):
    import botocore.exceptions

_KEY = re.compile(r"^(?P<id>[^/]+)/(?P<seq>\d{6})-(?P<status>[a-z]+)\.json$")


class S3RecordProvider(RecordProvider):
    name = "s3"

    def __init__(self, module):
        super(S3RecordProvider, self).__init__(module)
        self.bucket = self.params["s3_bucket"]
        prefix = self.params["s3_prefix"] or ""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix.lstrip("/")
        self.client = None
        self._bodies = {}

    def location(self):
        return "s3://%s/%s" % (self.bucket, self.prefix)

    # -- connection ------------------------------------------------------------------
    def _error(self, exc, doing):
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket", "404", "NotFound"):
                return DRError(NOT_FOUND, "Bucket %s does not exist; create it (with Object Lock enabled if you use "
                               "retention) or fix s3_bucket." % self.bucket)
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken") or status == 403:
                return DRError(AUTH_FAILED, "S3 refused %s on bucket %s (%s); check the credentials and the bucket "
                               "policy." % (doing, self.bucket, code or status))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412):
                return DRError(CONFLICT, "Another writer wrote the same record event in %s at the same moment; run "
                               "the task again to see its state." % self.location())
            return DRError(APPLY_FAILED, "S3 %s on bucket %s failed: %s." % (doing, self.bucket, exc))
        if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)):
            return DRError(CONNECTION_FAILED, "Cannot reach S3 (%s): %s." % (self.params.get("aws_endpoint_url") or "AWS", exc))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return DRError(AUTH_FAILED, "No AWS credentials found; set aws_access_key_id and aws_secret_access_key, "
                           "aws_profile, or an instance role.")
        return DRError(APPLY_FAILED, "S3 %s on bucket %s failed: %s." % (doing, self.bucket, exc))

    def open(self):
        _deps.require("boto3")
        p = self.params
        try:
            self.client = _aws.client(p, "s3", "rollback_record")
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "HeadBucket")
        except botocore.exceptions.ClientError as exc:
            raise self._error(exc, "HeadBucket")
        if p["action"] == "write" and p.get("s3_object_lock_mode"):
            if p.get("s3_object_lock_days") is None or p["s3_object_lock_days"] < 1:
                raise DRError(PRECONDITION_FAILED, "s3_object_lock_days must be 1 or more.")
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except botocore.exceptions.ClientError:
                enabled = False
            if not enabled:
                raise DRError(PRECONDITION_FAILED, "Bucket %s does not have Object Lock enabled; create it with Object "
                              "Lock or drop s3_object_lock_mode." % self.bucket)

    # -- reading -----------------------------------------------------------------------
    def _keys(self, record_id=None):
        """{id: [(seq, key), ...] sorted} under the prefix (or of one record)."""
        prefix = self.prefix + (record_id + "/" if record_id else "")
        out = {}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    match = _KEY.match(key[len(self.prefix):])
                    if not match:
                        continue
                    out.setdefault(match.group("id"), []).append((int(match.group("seq")), key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "ListObjectsV2")
        for keys in out.values():
            keys.sort()
        return out

    def _get(self, key):
        if key not in self._bodies:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise self._error(exc, "GetObject")
            try:
                self._bodies[key] = json.loads(body.decode("utf-8"))
            except ValueError:
                self._bodies[key] = None
        return self._bodies[key]

    def refresh(self):
        self._bodies = {}

    def events(self, record_id=None):
        out = []
        for rid, keys in sorted(self._keys(record_id).items()):
            if record_id is not None and rid != record_id:
                continue
            for _seq, key in keys:
                event = self._get(key)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def latest_records(self):
        out = []
        for _rid, keys in sorted(self._keys().items()):
            event = self._get(keys[-1][1])
            if isinstance(event, dict):
                out.append(event)
        return out

    def id_taken(self, record_id):
        return bool(self._keys(record_id))

    def check_chain(self):
        items = []
        for rid, keys in sorted(self._keys().items()):
            for _seq, key in keys:
                items.append((key, self._get(key), rid))
        return check_linked_events(items)

    # -- writing -----------------------------------------------------------------------
    def append(self, event):
        existing = self._keys(event["id"]).get(event["id"], [])
        if (existing[-1][0] if existing else 0) != event["seq"] - 1:
            raise DRError(CONFLICT, "Record %s changed in %s since it was read; run the task again to see its "
                          "state." % (event["id"], self.location()))
        previous = self._get(existing[-1][1]) if existing else None
        event["prev_hash"] = previous.get("hash") if isinstance(previous, dict) else GENESIS
        event["hash"] = event_hash(event)
        key = "%s%s/%06d-%s.json" % (self.prefix, event["id"], event["seq"], event["status"])
        args = dict(
            Bucket=self.bucket,
            Key=key,
            Body=canonical(event).encode("utf-8"),
            ContentType="application/json",
            IfNoneMatch="*",
            Metadata={"record-id": event["id"], "record-hash": event["hash"]},
        )
        if self.params.get("s3_object_lock_mode"):
            args["ObjectLockMode"] = self.params["s3_object_lock_mode"]
            args["ObjectLockRetainUntilDate"] = _time.utcnow() + datetime.timedelta(days=self.params["s3_object_lock_days"])
        try:
            self.client.put_object(**args)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "PutObject")
        self.refresh()
        out = {"key": key, "hash": event["hash"]}
        if "ObjectLockRetainUntilDate" in args:
            out["retain_until"] = _time.isoformat(args["ObjectLockRetainUntilDate"])
        return out

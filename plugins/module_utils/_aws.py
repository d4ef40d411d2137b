# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boto3 clients from the flat ``aws_*`` options, and botocore errors as DRError (private).

One copy for every AWS provider of the collection (traffic_switch, replica_promote,
pg_pitr_restore, backup_verify, rollback_record's s3 backend may follow)::

    rds = _aws.client(params, "rds", "replica_promote")
    out = _aws.call("describe_db_instances orders", rds.describe_db_instances, DBInstanceIdentifier="orders")

Error codes: a missing resource (``NoSuch*``, ``*NotFound``, ``*NotFoundFault``, ``404`` or
one of ``not_found``) is ``NOT_FOUND``; refused credentials are ``AUTH_FAILED``; a code in
``precondition`` is ``PRECONDITION_FAILED``; an unreachable endpoint is
``CONNECTION_FAILED``; anything else is ``other`` (``APPLY_FAILED`` unless the caller only
reads). ``details.aws_error`` carries the AWS error code, never a secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    TIMEOUT,
)

with _deps.declare("boto3", pip="boto3", reason="for the AWS providers"):
    import boto3
    import botocore.config
    import botocore.exceptions

AUTH_CODES = ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId",
              "SignatureDoesNotMatch", "ExpiredToken", "InvalidSignatureException", "AuthFailure")


def client(params, service, module, read_timeout=30):
    """A boto3 client for ``service`` from the ``aws_*`` options; ``module`` names the caller in the user agent."""
    _deps.require("boto3")
    session = boto3.session.Session(
        aws_access_key_id=params.get("aws_access_key_id") or None,
        aws_secret_access_key=params.get("aws_secret_access_key") or None,
        aws_session_token=params.get("aws_session_token") or None,
        profile_name=params.get("aws_profile") or None,
        region_name=params.get("aws_region") or ("us-east-1" if service == "route53" else None),
    )
    config = botocore.config.Config(connect_timeout=10, read_timeout=read_timeout, retries={"max_attempts": 3, "mode": "standard"},
                                    user_agent_extra="resilience.dr-%s" % module)
    return session.client(service, endpoint_url=params.get("aws_endpoint_url") or None,
                          verify=params.get("aws_validate_certs", True), config=config)


def utc(moment):
    """A datetime from boto3 as an aware UTC datetime (a naive one is taken as UTC); None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_time.UTC)
    return moment.astimezone(_time.UTC)


def error_code(exc):
    """The AWS error code of a botocore ClientError ('' for any other exception)."""
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "") or ""


def translate(what, exc, not_found=(), precondition=(), other=APPLY_FAILED):
    """The DRError for botocore exception ``exc`` raised while doing ``what``."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        details = {"aws_error": code}
        if code in not_found or code.startswith("NoSuch") or code.endswith(("NotFound", "NotFoundFault")) or code == "404":
            return DRError(NOT_FOUND, "%s: %s (%s)." % (what, message, code), details=details)
        if code in AUTH_CODES:
            return DRError(AUTH_FAILED, "%s was refused: %s (%s); check the AWS credentials and their permissions." % (what, message, code),
                           details=details)
        if code in precondition:
            return DRError(PRECONDITION_FAILED, "%s was refused in the current state: %s (%s)." % (what, message, code), details=details)
        return DRError(other, "%s failed: %s (%s)." % (what, message, code), details=details)
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError)):
        return DRError(CONNECTION_FAILED, "%s: cannot reach the AWS endpoint: %s; check aws_endpoint_url, aws_region and the network."
                       % (what, exc))
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return DRError(AUTH_FAILED, "%s: %s; give aws_access_key_id/aws_secret_access_key or aws_profile." % (what, exc))
    return DRError(other, "%s failed: %s." % (what, exc))


def call(what, func, not_found=(), precondition=(), other=APPLY_FAILED, **kwargs):
    """``func(**kwargs)`` with botocore errors turned into DRError (see ``translate``)."""
    try:
        return func(**kwargs)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise translate(what, exc, not_found=not_found, precondition=precondition, other=other)


def pages(what, aws, operation, other=APPLY_FAILED, **kwargs):
    """All pages of paginated ``operation`` of client ``aws``, as a list, errors as in ``call``."""
    return call(what, lambda: list(aws.get_paginator(operation).paginate(**kwargs)), other=other)


def wait(aws, waiter, message, delay, max_attempts, **kwargs):
    """Run boto3 waiter ``waiter``; a WaiterError is ``TIMEOUT`` with ``message`` ("{error}" in it replaced by the error)."""
    try:
        aws.get_waiter(waiter).wait(WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts}, **kwargs)
    except botocore.exceptions.WaiterError as exc:
        raise DRError(TIMEOUT, message.replace("{error}", str(exc)))

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boto3 clients and error mapping for the AWS traffic_switch providers (private)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    NOT_FOUND,
)

with _deps.declare("boto3", pip="boto3", reason="for the aws_route53 and aws_elbv2 providers"):
    import boto3
    import botocore.config
    import botocore.exceptions

_AUTH_CODES = ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
               "SignatureDoesNotMatch", "ExpiredToken", "InvalidSignatureException", "AuthFailure")


def client(params, service):
    _deps.require("boto3")
    session = boto3.session.Session(
        aws_access_key_id=params.get("aws_access_key_id"),
        aws_secret_access_key=params.get("aws_secret_access_key"),
        aws_session_token=params.get("aws_session_token"),
        profile_name=params.get("aws_profile"),
        region_name=params.get("aws_region") or ("us-east-1" if service == "route53" else None),
    )
    config = botocore.config.Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                                    user_agent_extra="resilience.dr-traffic_switch")
    return session.client(service, endpoint_url=params.get("aws_endpoint_url") or None,
                          verify=params.get("aws_validate_certs", True), config=config)


def call(what, func, not_found=(), **kwargs):
    """Call ``func(**kwargs)`` and turn botocore errors into DRError."""
    try:
        return func(**kwargs)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in not_found or code.startswith("NoSuch") or code.endswith("NotFound"):
            raise DRError(NOT_FOUND, "%s: %s (%s)." % (what, message, code), details={"aws_error": code})
        if code in _AUTH_CODES:
            raise DRError(AUTH_FAILED, "%s was refused: %s (%s); check the AWS credentials and their permissions." % (what, message, code),
                          details={"aws_error": code})
        raise DRError(APPLY_FAILED, "%s failed: %s (%s)." % (what, message, code), details={"aws_error": code})
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError) as exc:
        raise DRError(CONNECTION_FAILED, "%s: cannot reach the AWS endpoint: %s; check aws_endpoint_url, aws_region and the network." % (what, exc))
    except botocore.exceptions.NoCredentialsError as exc:
        raise DRError(AUTH_FAILED, "%s: %s; give aws_access_key_id/aws_secret_access_key or aws_profile." % (what, exc))
    except botocore.exceptions.BotoCoreError as exc:
        raise DRError(APPLY_FAILED, "%s failed: %s." % (what, exc))

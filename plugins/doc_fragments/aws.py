# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the AWS providers (boto3).
    DOCUMENTATION = r"""
options:
  aws_region:
    description:
      - AWS region. Falls back to E(AWS_REGION), then E(AWS_DEFAULT_REGION), then the profile.
    type: str
  aws_access_key_id:
    description:
      - Access key id. Falls back to E(AWS_ACCESS_KEY_ID); when unset, boto3's usual chain
        (profile, instance role, web identity) is used.
    type: str
  aws_secret_access_key:
    description:
      - Secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY). Never returned or logged.
    type: str
  aws_session_token:
    description:
      - Session token of temporary credentials. Falls back to E(AWS_SESSION_TOKEN).
    type: str
  aws_profile:
    description:
      - Named profile of the shared credentials file. Falls back to E(AWS_PROFILE).
    type: str
  aws_endpoint_url:
    description:
      - Endpoint URL to use instead of the service's default (a VPC endpoint, or a local
        test server such as moto). Falls back to E(AWS_ENDPOINT_URL).
    type: str
  aws_validate_certs:
    description:
      - Verify the endpoint's TLS certificate.
    type: bool
    default: true
requirements:
  - boto3 >= 1.28 and botocore >= 1.31 on the host the module runs on.
"""

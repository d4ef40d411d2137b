# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the Google Cloud providers (google-auth).
    DOCUMENTATION = r"""
options:
  gcp_project:
    description:
      - Project id. Falls back to E(GOOGLE_CLOUD_PROJECT), then E(CLOUDSDK_CORE_PROJECT).
    type: str
  gcp_credentials_file:
    description:
      - Service account key file. Falls back to E(GOOGLE_APPLICATION_CREDENTIALS); when neither
        this nor O(gcp_access_token) is set, Application Default Credentials are used.
    type: path
  gcp_access_token:
    description:
      - An OAuth2 access token to use as is (for example from C(gcloud auth print-access-token)).
        Falls back to E(GOOGLE_OAUTH_ACCESS_TOKEN). Never returned or logged.
    type: str
  gcp_endpoint:
    description:
      - Base URL of the API instead of the service's public endpoint (Private Service Connect,
        or a local test server).
    type: str
  gcp_scopes:
    description:
      - OAuth2 scopes requested for service-account and default credentials.
    type: list
    elements: str
    default: ['https://www.googleapis.com/auth/cloud-platform']
requirements:
  - google-auth >= 2.20 and requests on the host the module runs on.
"""

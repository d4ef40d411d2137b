# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the Azure providers (azure-mgmt-resource, azure-identity).
    DOCUMENTATION = r"""
options:
  azure_subscription_id:
    description:
      - Subscription id. Falls back to E(AZURE_SUBSCRIPTION_ID).
    type: str
  azure_tenant_id:
    description:
      - Tenant (directory) id of the service principal. Falls back to E(AZURE_TENANT_ID).
    type: str
  azure_client_id:
    description:
      - Application (client) id of the service principal or managed identity.
        Falls back to E(AZURE_CLIENT_ID).
    type: str
  azure_client_secret:
    description:
      - Secret of the service principal. Falls back to E(AZURE_CLIENT_SECRET).
        Never returned or logged.
    type: str
  azure_access_token:
    description:
      - A bearer token for Azure Resource Manager to use as is (for example from
        C(az account get-access-token)). Falls back to E(AZURE_ACCESS_TOKEN).
      - When neither this nor a client secret is given, azure-identity's
        C(DefaultAzureCredential) is used.
    type: str
  azure_resource_manager_endpoint:
    description:
      - Azure Resource Manager endpoint (sovereign clouds, or a local test server on loopback).
    type: str
    default: https://management.azure.com
requirements:
  - azure-mgmt-resource >= 23 and azure-identity >= 1.15 on the host the module runs on.
"""

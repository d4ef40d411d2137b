# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the Kubernetes providers (kubernetes client).
    DOCUMENTATION = r"""
options:
  k8s_kubeconfig:
    description:
      - Path to a kubeconfig file. Falls back to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG);
        when none is set, C(~/.kube/config) or the in-cluster service account is used.
    type: path
  k8s_context:
    description:
      - Context of the kubeconfig to use. Falls back to E(K8S_AUTH_CONTEXT).
    type: str
  k8s_host:
    description:
      - URL of the API server, overriding the kubeconfig. Falls back to E(K8S_AUTH_HOST).
    type: str
  k8s_api_key:
    description:
      - Bearer token for the API server. Falls back to E(K8S_AUTH_API_KEY). Never returned or logged.
    type: str
  k8s_validate_certs:
    description:
      - Verify the API server's TLS certificate.
    type: bool
    default: true
  k8s_ca_cert:
    description:
      - CA certificate of the API server. Falls back to E(K8S_AUTH_SSL_CA_CERT).
    type: path
requirements:
  - kubernetes >= 28.1 (the official Python client) on the host the module runs on.
"""

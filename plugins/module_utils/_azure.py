# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Resource Manager: token, requests and long-running operations from the flat
``azure_*`` options (private).

One copy for every Azure provider (traffic_switch azure_front_door and
azure_traffic_manager, replica_promote / pg_pitr_restore / backup_verify
azure_pg_flexible)::

    http = _azure.session(params)
    resp, body = _azure.call(http, params, "PATCH", path, "Updating origin a", api_version="2024-02-01", json=body)
    _azure.wait(http, params, resp, "Updating origin a", timeout=600)

Credentials: ``azure_access_token`` as is, else a service principal
(``azure_tenant_id``/``azure_client_id``/``azure_client_secret``), else azure-identity's
default chain; no token is ``AUTH_FAILED``. Errors are those of ``_http.call``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
)

ARM = "https://management.azure.com"


def endpoint(params):
    """The Resource Manager base URL, without a trailing slash."""
    return (params.get("azure_resource_manager_endpoint") or ARM).rstrip("/")


def identity_credential(params):
    """An azure-identity TokenCredential: the service principal when a client secret is given, else the default chain."""
    with _deps.declare("azure-identity", pip="azure-identity", reason="for Azure credentials other than azure_access_token"):
        from azure.identity import ClientSecretCredential, DefaultAzureCredential  # pylint: disable=import-outside-toplevel
    _deps.require("azure-identity")
    if params.get("azure_client_secret"):
        return ClientSecretCredential(params.get("azure_tenant_id"), params.get("azure_client_id"), params["azure_client_secret"])
    return DefaultAzureCredential()


def token(params, secrets=None):
    """A bearer token for Resource Manager: azure_access_token as is, else one fetched (appended to ``secrets``, to be masked)."""
    if params.get("azure_access_token"):
        return params["azure_access_token"]
    credential = identity_credential(params)
    scope = endpoint(params) + "/.default"
    try:
        fetched = credential.get_token(scope).token
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError(AUTH_FAILED, "Could not get an Azure token for %s: %s; give azure_access_token or a service principal." % (scope, exc))
    if secrets is not None:
        secrets.append(fetched)
    return fetched


def session(params, secrets=None):
    """A requests session that sends the bearer token (a fetched one is appended to ``secrets``)."""
    return _http.bearer_session(token(params, secrets))


def call(http, params, method, url, what, api_version=None, role_hint="", **kwargs):
    """One Resource Manager request; ``url`` may be a path below the endpoint. The
    ``api-version`` is added unless the URL has one. Returns (response, JSON body)."""
    base = endpoint(params)
    if not url.startswith("http"):
        url = base + url
    if api_version and "api-version=" not in url:
        kwargs["params"] = dict(kwargs.get("params") or {}, **{"api-version": api_version})
    return _http.call(http, method, url, what, service="Azure Resource Manager", endpoint_option="azure_resource_manager_endpoint",
                      role_hint=role_hint, **kwargs)


def wait(http, params, resp, what, timeout, interval=1.0):
    """Follow the long-running operation of a 201/202 answer (``Azure-AsyncOperation`` or
    ``Location``) until it succeeds; ``APPLY_FAILED`` when Azure reports it failed or
    canceled, ``TIMEOUT`` after ``timeout`` seconds. Returns the final status ('' if none)."""
    url = resp.headers.get("Azure-AsyncOperation") or resp.headers.get("Location")
    if resp.status_code not in (201, 202) or not url:
        return ""
    delay = float(resp.headers.get("Retry-After") or interval)

    def done():
        status = (call(http, params, "GET", url, "Polling the operation of %s" % what)[1].get("status") or "").lower()
        if status in ("failed", "canceled", "cancelled"):
            raise DRError(APPLY_FAILED, "Azure reported %s as %s." % (what, status))
        return (status or "succeeded") if status in ("succeeded", "") else None

    return _http.poll(done, timeout, delay, "%s was not done after %ds." % (what, timeout))

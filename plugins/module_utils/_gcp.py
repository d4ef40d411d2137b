# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Google Cloud credentials and REST calls from the flat ``gcp_*`` options (private).

One copy for every Google Cloud provider (traffic_switch gcp_cloud_run and gcp_cloud_dns,
replica_promote and pg_pitr_restore and backup_verify gcp_cloudsql)::

    http = _gcp.session(params)
    resp, body = _gcp.call(http, "GET", url, "Reading Cloud SQL instance db1", service="Cloud SQL")

Credentials: ``gcp_access_token`` as is, else the service-account ``gcp_credentials_file``,
else Application Default Credentials; none usable is ``AUTH_FAILED``. Errors of ``call``
are those of ``_http.call``; credentials that cannot be refreshed are ``AUTH_FAILED``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    AUTH_FAILED,
)

with _deps.declare("google-auth", pip="google-auth", reason="for the Google Cloud providers"):
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import credentials as oauth2_credentials
    from google.oauth2 import service_account

DEFAULT_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def credentials(params):
    """google-auth credentials from the gcp_* options."""
    _deps.require("google-auth")
    scopes = params.get("gcp_scopes") or DEFAULT_SCOPES
    try:
        if params.get("gcp_access_token"):
            return oauth2_credentials.Credentials(token=params["gcp_access_token"])
        if params.get("gcp_credentials_file"):
            return service_account.Credentials.from_service_account_file(params["gcp_credentials_file"], scopes=scopes)
        return google.auth.default(scopes=scopes)[0]
    except (google.auth.exceptions.GoogleAuthError, IOError, OSError, ValueError) as exc:
        raise DRError(AUTH_FAILED, "No usable Google credentials: %s; give gcp_access_token or gcp_credentials_file." % exc)


def session(params):
    """A requests session that carries (and refreshes) the Google credentials."""
    return AuthorizedSession(credentials(params))


def token(params, secrets=None):
    """A bearer token: gcp_access_token as is, else one fetched for the credentials (appended to ``secrets``, to be masked)."""
    if params.get("gcp_access_token"):
        return params["gcp_access_token"]
    creds = credentials(params)
    try:
        creds.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise DRError(AUTH_FAILED, "Could not get a Google access token: %s; give gcp_access_token or a valid gcp_credentials_file." % exc)
    if secrets is not None:
        secrets.append(creds.token)
    return creds.token


def call(http, method, url, what, service="the Google API", **kwargs):
    """``_http.call`` for a Google API; (response, JSON body)."""
    auth_errors = (google.auth.exceptions.GoogleAuthError,) if _deps.available("google-auth") else ()
    return _http.call(http, method, url, what, service=service, endpoint_option="gcp_endpoint", auth_errors=auth_errors, **kwargs)

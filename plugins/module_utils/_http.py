# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON REST calls through a ``requests`` session, and operation polling (private).

The transport under ``_gcp`` (Google APIs through an AuthorizedSession) and ``_azure``
(Azure Resource Manager with a bearer token). HTTP errors become DRError with stable codes:
401/403 ``AUTH_FAILED``, 404 ``NOT_FOUND``, 409 ``conflict`` when the caller gives one
(``LOCKED`` for "another operation is in progress"), any other status ``other``
(``APPLY_FAILED`` unless the caller only reads); an unreachable endpoint is
``CONNECTION_FAILED``. ``details.http_status`` carries the status.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    NOT_FOUND,
    TIMEOUT,
)

with _deps.declare("requests", pip="requests", reason="for the Google Cloud and Azure providers"):
    import requests


def bearer_session(token):
    """A requests session that sends ``Authorization: Bearer <token>``."""
    _deps.require("requests")
    http = requests.Session()
    http.headers["Authorization"] = "Bearer %s" % token
    return http


def _error_text(resp, data):
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message") or resp.reason or resp.text[:300]
        return "%s: %s" % (error["code"], message) if isinstance(error.get("code"), str) else message
    return resp.text[:300] or resp.reason or ""


def call(http, method, url, what, service="the API", endpoint_option="the endpoint", role_hint="", conflict=None, other=APPLY_FAILED,
         auth_errors=(), timeout=30, **kwargs):
    """One request through ``http`` (a requests session); (response, decoded JSON body or {}).

    ``what`` says what was being done ("Reading Cloud SQL instance db1"); ``service`` names the
    API in messages; ``endpoint_option`` the option that sets its address; ``auth_errors``
    are exception classes of the session's credentials that mean they could not be refreshed.
    """
    _deps.require("requests")
    try:
        resp = http.request(method, url, timeout=timeout, **kwargs)
    except auth_errors as exc:
        raise DRError(AUTH_FAILED, "%s was refused: %s refused the credentials and they cannot be refreshed (%s); give a valid token "
                      "or credentials file." % (what, service, exc.__class__.__name__))
    except requests.exceptions.RequestException as exc:
        raise DRError(CONNECTION_FAILED, "%s: cannot reach %s at %s: %s; check %s and the network." % (
            what, service, url.split("?")[0], exc, endpoint_option))
    try:
        data = resp.json() if resp.content else {}
    except ValueError:
        data = {"error": {"message": resp.text[:300]}}
    status = resp.status_code
    if status >= 400:
        message = _error_text(resp, data)
        details = {"http_status": status}
        if status in (401, 403):
            raise DRError(AUTH_FAILED, "%s was refused by %s (HTTP %d %s); check the credentials and their role assignments%s." % (
                what, service, status, message, role_hint), details=details)
        if status == 404:
            raise DRError(NOT_FOUND, "%s: not found (HTTP 404 %s: %s)." % (what, url.split("?")[0], message), details=details)
        if status == 409 and conflict:
            raise DRError(conflict, "%s: %s says another operation is in progress (HTTP 409 %s); run again when it is done." % (
                what, service, message), details=details)
        raise DRError(other, "%s failed: %s answered HTTP %d %s." % (what, service, status, message), details=details)
    return resp, data


def poll(check, timeout, interval, message, max_interval=None, details=None):
    """Call ``check()`` until it returns something true, and return that; ``TIMEOUT`` with
    ``message`` after ``timeout`` seconds. The interval doubles up to ``max_interval`` when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DRError(TIMEOUT, message, details=details)
        time.sleep(interval)
        if max_interval:
            interval = min(interval * 2, max_interval)

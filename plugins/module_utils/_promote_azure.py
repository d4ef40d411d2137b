# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider ``azure_pg_flexible``: promote a read replica of Azure Database
for PostgreSQL flexible server through azure-mgmt-resource's generic resources (private).

``PATCH .../Microsoft.DBforPostgreSQL/flexibleServers/{replica}`` (api-version 2024-08-01)
with ``{"properties": {"replica": {"promoteMode": standalone|switchover, "promoteOption":
planned|forced}}}``, then azure-core's long-running-operation poller (``Azure-AsyncOperation``).

* A server whose ``replica.role`` (or ``replicationRole``) is not ``AsyncReplica`` /
  ``GeoAsyncReplica`` is already promoted: ``changed=false``.
* Lag guard: ``planned`` lets Azure wait until the replica is in sync; ``forced`` promotes at
  once and may lose data, so it needs ``allow_data_loss`` with a ``reason``. A replica whose
  ``replicationState`` is not ``Active`` is refused (``LAG_TOO_HIGH``) unless forced.
* A server that is not ``Ready`` (``Updating``...) is busy with another operation: ``LOCKED``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.resilience.dr.plugins.module_utils import _azure
from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    DRError,
    INVALID_ARGUMENT,
    LAG_TOO_HIGH,
    LOCKED,
    NOT_FOUND,
    TIMEOUT,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step

with _deps.declare("azure-mgmt-resource", pip="azure-mgmt-resource", reason="for the azure_pg_flexible provider"):
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, ServiceRequestError
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.mgmt.resource.resources import ResourceManagementClient

API_VERSION = "2024-08-01"
REPLICA_ROLES = ("AsyncReplica", "GeoAsyncReplica")
_LOOPBACK = ("http://127.0.0.1", "http://localhost", "http://[::1]")


class _StaticToken(object):
    """A TokenCredential for a bearer token given as is (azure_access_token)."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):  # pylint: disable=unused-argument
        return AccessToken(self._token, int(time.time()) + 3600)


def _allow_http_policy():
    class AllowLoopbackHttp(SansIOHTTPPolicy):
        """azure-core refuses bearer tokens over http; allowed for loopback test endpoints only."""

        def on_request(self, request):
            request.context.options["enforce_https"] = False
            request.context["enforce_https"] = False

    return AllowLoopbackHttp()


def make_client(params):
    _deps.require("azure-mgmt-resource")
    endpoint = _azure.endpoint(params)
    if params.get("azure_access_token"):
        credential = _StaticToken(params["azure_access_token"])
    else:
        credential = _azure.identity_credential(params)
    kwargs = {}
    if endpoint.startswith("http://"):
        if not endpoint.startswith(_LOOPBACK):
            raise DRError(INVALID_ARGUMENT, "azure_resource_manager_endpoint %s is plain http; only loopback test "
                          "endpoints may be http." % endpoint)
        kwargs["per_call_policies"] = [_allow_http_policy()]
    return ResourceManagementClient(credential, params.get("azure_subscription_id"), base_url=endpoint,
                                    credential_scopes=[endpoint + "/.default"], **kwargs)


def _translate(what, exc):
    if isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) in (401, 403):
        return DRError(AUTH_FAILED, "%s was refused (%s); check the Azure credentials and their role on the server."
                       % (what, getattr(exc, "reason", None) or exc.__class__.__name__))
    if isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404:
        return DRError(NOT_FOUND, "%s: not found; check azure_subscription_id, azure_resource_group and azure_server_name." % what)
    if getattr(exc, "status_code", None) == 409:
        return DRError(LOCKED, "%s: Azure says another operation is in progress (HTTP 409); run again when it is done." % what)
    if isinstance(exc, ServiceRequestError):
        return DRError(CONNECTION_FAILED, "%s: cannot reach Azure Resource Manager (%s); check "
                       "azure_resource_manager_endpoint and the network." % (what, exc.__class__.__name__))
    message = getattr(getattr(exc, "error", None), "message", None) or str(exc).splitlines()[0]
    return DRError(APPLY_FAILED, "%s failed: %s." % (what, message))


class AzurePgFlexiblePromote(Provider):
    """Promote a read replica of an Azure Database for PostgreSQL flexible server."""

    name = "azure_pg_flexible"
    poll_interval = 2.0

    def __init__(self, module):
        super(AzurePgFlexiblePromote, self).__init__(module)
        p = self.params
        self.client = None
        self.poller = None
        self.timeout = None
        self.server_id = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/%s" % (
            p.get("azure_subscription_id"), p.get("azure_resource_group"), p.get("azure_server_name"))

    def make_client(self):
        return make_client(self.params)

    def _get(self):
        try:
            res = self.client.resources.get_by_id(self.server_id, api_version=API_VERSION)
        except (HttpResponseError, ServiceRequestError) as exc:
            raise _translate("Reading flexible server %s" % self.params["azure_server_name"], exc)
        props = res.properties or {}
        replica = props.get("replica") or {}
        role = replica.get("role") or props.get("replicationRole")
        return {
            "server": res.name,
            "id": self.server_id,
            "state": props.get("state"),
            "role": role,
            "replication_state": replica.get("replicationState"),
            "source_server": props.get("sourceServerResourceId"),
            "is_replica": role in REPLICA_ROLES,
        }

    # -- read -----------------------------------------------------------------------------
    def read(self):
        p = self.params
        missing = [n for n in ("azure_subscription_id", "azure_resource_group", "azure_server_name") if not p.get(n)]
        if missing:
            raise DRError(INVALID_ARGUMENT, "provider azure_pg_flexible needs %s." % ", ".join(missing))
        option = p.get("azure_promote_option") or "planned"
        if option == "forced" and not p["allow_data_loss"]:
            raise DRError(INVALID_ARGUMENT, "azure_promote_option=forced promotes without waiting for the replica to catch "
                          "up; it needs allow_data_loss with a reason.")
        self.timeout = _time.parse_duration(p.get("promote_timeout"), "promote_timeout")
        self.client = self.make_client()
        state = self._get()
        self.result.update(provider="azure_pg_flexible", promoted=False, already_primary=not state["is_replica"],
                           promote_mode=p.get("azure_promote_mode") or "standalone", promote_option=option,
                           allow_data_loss=bool(p["allow_data_loss"]), reason=p.get("reason"), data_loss_bytes=None,
                           data_loss_note="not measurable through the Azure API; promote_option planned lets Azure wait "
                                          "until the replica is in sync")
        if state["is_replica"]:
            if state["state"] != "Ready":
                raise DRError(LOCKED, "Flexible server %s is %s, not Ready; another operation is under way. Run again when "
                              "it is done." % (state["server"], state["state"]), details={"state": state["state"]})
            healthy = state["replication_state"] in (None, "Active")
            lag = {"replication_state": state["replication_state"], "within_limits": healthy,
                   "overridden": (not healthy) and option == "forced"}
            self.result["lag"] = lag
            if not healthy and option != "forced":
                raise DRError(LAG_TOO_HIGH, "The replica %s has replicationState %s, not Active: a planned promotion cannot "
                              "catch up. Repair replication, or use azure_promote_option=forced with allow_data_loss and a "
                              "reason." % (state["server"], state["replication_state"]), details={"lag": lag})
        return state

    # -- plan -----------------------------------------------------------------------------
    def _body(self):
        return {"properties": {"replica": {"promoteMode": self.result["promote_mode"],
                                           "promoteOption": self.result["promote_option"]}}}

    def plan(self, current):
        if not current["is_replica"]:
            return []
        return [Step("promote_replica", current["server"], run=self._promote, request="PATCH %s?api-version=%s"
                     % (self.server_id, API_VERSION), body=self._body()),
                Step("wait_operation", current["server"], run=self._wait, timeout_seconds=self.timeout)]

    def predict(self, current, steps):
        return dict(current, role="Primary", is_replica=False, replication_state=None, source_server=None)

    # -- steps ----------------------------------------------------------------------------
    def _promote(self):
        try:
            self.poller = self.client.resources.begin_update_by_id(
                self.server_id, self._body(), api_version=API_VERSION, polling_interval=self.poll_interval)
        except (HttpResponseError, ServiceRequestError) as exc:
            raise _translate("Promoting flexible server %s" % self.params["azure_server_name"], exc)
        return {"status": self.poller.status()}

    def _wait(self):
        start = time.monotonic()
        try:
            self.poller.wait(timeout=self.timeout)
        except (HttpResponseError, ServiceRequestError) as exc:
            raise _translate("The promotion of flexible server %s" % self.params["azure_server_name"], exc)
        if not self.poller.done():
            raise DRError(TIMEOUT, "The promotion of %s was still %s after promote_timeout %s; it may still finish."
                          % (self.params["azure_server_name"], self.poller.status(), self.params["promote_timeout"]))
        try:
            self.poller.result()
        except (HttpResponseError, ServiceRequestError) as exc:
            raise _translate("The promotion of flexible server %s" % self.params["azure_server_name"], exc)
        return {"status": self.poller.status(), "waited_seconds": round(time.monotonic() - start, 3)}

    # -- verify ---------------------------------------------------------------------------
    def verify(self, current, steps):
        after = self._get()
        if after["is_replica"]:
            raise DRError(VERIFY_FAILED, "Flexible server %s is still a replica (%s) after the promotion."
                          % (after["server"], after["role"]))
        if after["state"] != "Ready":
            raise DRError(VERIFY_FAILED, "Flexible server %s is %s after the promotion, not Ready." % (after["server"], after["state"]))
        self.result["promoted"] = True
        return after

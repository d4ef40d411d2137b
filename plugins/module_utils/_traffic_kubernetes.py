# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``kubernetes`` (private to this collection).

One object is read with GET and written back whole with PUT (its ``resourceVersion``
makes a concurrent change fail with 409 instead of being overwritten):

* ``service``: the value of one selector label (``k8s_selector_key``) picks the target (blue/green);
* ``ingress``: the backend service of the default backend and of every path;
* ``virtualservice`` (Istio): the weights of the destinations of one ``spec.http`` route;
* ``httproute`` (Gateway API): the weights of the ``backendRefs`` of one rule.

The kubernetes package is used for its configuration loading (kubeconfig, contexts, exec
plugins, in-cluster); the requests go through urllib3 so that the classic and the newer
generated clients behave the same.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

with _deps.declare("kubernetes", pip="kubernetes", reason="for the kubernetes provider"):
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    import urllib3

PATHS = {
    "service": "/api/v1/namespaces/%(ns)s/services/%(name)s",
    "ingress": "/apis/networking.k8s.io/v1/namespaces/%(ns)s/ingresses/%(name)s",
    "virtualservice": "/apis/networking.istio.io/%(version)s/namespaces/%(ns)s/virtualservices/%(name)s",
    "httproute": "/apis/gateway.networking.k8s.io/%(version)s/namespaces/%(ns)s/httproutes/%(name)s",
}
DEFAULT_VERSIONS = {"virtualservice": "v1beta1", "httproute": "v1"}


class KubeAPI(object):
    def __init__(self, params):
        _deps.require("kubernetes")
        cfg = k8s_client.Configuration()
        token = params.get("k8s_api_key")
        if params.get("k8s_host"):
            cfg.host = params["k8s_host"]
        if not params.get("k8s_host") or not token:
            try:
                if params.get("k8s_kubeconfig") or not params.get("k8s_host"):
                    k8s_config.load_kube_config(config_file=params.get("k8s_kubeconfig"), context=params.get("k8s_context"),
                                                client_configuration=cfg)
                if params.get("k8s_host"):
                    cfg.host = params["k8s_host"]
            except Exception as exc:  # pylint: disable=broad-except
                try:
                    k8s_config.load_incluster_config(client_configuration=cfg)
                except Exception:  # pylint: disable=broad-except
                    raise DRError(AUTH_FAILED, "No Kubernetes credentials: %s; give k8s_kubeconfig, or k8s_host and k8s_api_key." % exc)
        self.host = cfg.host.rstrip("/")
        self.auth = "Bearer %s" % token if token else self._configured_token(cfg)
        verify = params.get("k8s_validate_certs", True) and getattr(cfg, "verify_ssl", True)
        pool = dict(cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE", timeout=urllib3.Timeout(connect=10, read=30),
                    retries=False)
        ca = params.get("k8s_ca_cert") or getattr(cfg, "ssl_ca_cert", None)
        if ca and verify:
            pool["ca_certs"] = ca
        if getattr(cfg, "cert_file", None):
            pool["cert_file"] = cfg.cert_file
            pool["key_file"] = cfg.key_file
        self.http = urllib3.PoolManager(**pool)

    @staticmethod
    def _configured_token(cfg):
        for name in ("BearerToken", "authorization"):
            try:
                value = cfg.get_api_key_with_prefix(name)
            except (KeyError, TypeError):
                value = None
            if value:
                return value if " " in value else "Bearer %s" % value
        return None

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        try:
            resp = self.http.request(method, self.host + path, body=json.dumps(body) if body is not None else None, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise DRError(CONNECTION_FAILED, "Cannot reach the Kubernetes API at %s: %s; check k8s_host or the kubeconfig." % (self.host, exc))
        text = resp.data.decode("utf-8", "replace")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"message": text[:300]}
        if resp.status >= 400:
            message = data.get("message") if isinstance(data, dict) else text[:300]
            if resp.status == 404:
                raise DRError(NOT_FOUND, "Kubernetes has no %s (404: %s)." % (path, message), details={"path": path})
            if resp.status in (401, 403):
                raise DRError(AUTH_FAILED, "Kubernetes refused %s %s (%d: %s); check the credentials and RBAC." % (method, path, resp.status, message))
            if resp.status == 409:
                raise DRError(APPLY_FAILED, "%s was changed by someone else meanwhile (409: %s); run again to re-read it." % (path, message))
            raise DRError(APPLY_FAILED, "Kubernetes answered %d to %s %s: %s." % (resp.status, method, path, message))
        return data


class KubernetesTraffic(TrafficProvider):
    name = "kubernetes"
    context_options = ("k8s_kind", "k8s_namespace", "k8s_name", "k8s_api_version", "k8s_selector_key", "k8s_targets",
                       "k8s_route_index", "k8s_host", "k8s_kubeconfig", "k8s_context")

    def __init__(self, module):
        super(KubernetesTraffic, self).__init__(module)
        self.kind = self.params["k8s_kind"]
        self.path = PATHS[self.kind] % {"ns": self.params.get("k8s_namespace") or "default", "name": self.params["k8s_name"],
                                        "version": self.params.get("k8s_api_version") or DEFAULT_VERSIONS.get(self.kind)}
        self.targets = dict((str(k), str(v)) for k, v in (self.params.get("k8s_targets") or {}).items())
        self.index = self.params.get("k8s_route_index") or 0
        if self.kind in ("service", "ingress"):
            up = [n for n, v in self.requested.items() if v > 0]
            if len(up) != 1:
                raise DRError(INVALID_ARGUMENT, "A Kubernetes %s sends all traffic to one target: use active, not weights." % self.kind)
        if self.kind == "ingress" and not self.targets:
            raise DRError(INVALID_ARGUMENT, "With k8s_kind=ingress, k8s_targets must map each target to its service name, so that "
                          "backends of other services are left alone.")
        self.api = KubeAPI(self.params)
        self.obj = None
        self.obj_before = None

    def target_what(self):
        return "target of %s %s:" % (self.kind, self.params["k8s_name"])

    def value(self, target):
        return self.targets.get(target, target)

    def name_of(self, value):
        for target, val in self.targets.items():
            if val == value:
                return target
        return value

    # -- reading ------------------------------------------------------------------------
    def _routes(self, obj):
        """The list being weighted (virtualservice / httproute) and the key of its entries."""
        spec = obj.get("spec") or {}
        if self.kind == "virtualservice":
            routes = spec.get("http") or []
            what = "spec.http"
        else:
            routes = spec.get("rules") or []
            what = "spec.rules"
        if self.index >= len(routes):
            raise DRError(NOT_FOUND, "%s %s has no %s[%d]; check k8s_route_index." % (self.kind, self.params["k8s_name"], what, self.index))
        entries = routes[self.index].get("route" if self.kind == "virtualservice" else "backendRefs") or []
        if not entries:
            raise DRError(PRECONDITION_FAILED, "%s[%d] of %s %s has no destinations to weigh." % (what, self.index, self.kind, self.params["k8s_name"]))
        return entries

    def _entry_value(self, entry):
        if self.kind == "virtualservice":
            dest = entry.get("destination") or {}
            return dest.get("subset") or dest.get("host")
        return entry.get("name")

    def _ingress_backends(self, obj):
        spec = obj.get("spec") or {}
        out = []
        if (spec.get("defaultBackend") or {}).get("service"):
            out.append(spec["defaultBackend"]["service"])
        for rule in spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                if (path.get("backend") or {}).get("service"):
                    out.append(path["backend"]["service"])
        return out

    def read_state(self):
        obj = self.api.request("GET", self.path)
        self.obj = obj
        raw = dict((name, 0) for name in self.targets)
        if self.kind == "service":
            key = self.params.get("k8s_selector_key") or "version"
            selector = (obj.get("spec") or {}).get("selector") or {}
            if key not in selector:
                raise DRError(PRECONDITION_FAILED, "Service %s has no selector label %s (selector: %s); check k8s_selector_key."
                              % (self.params["k8s_name"], key, selector))
            raw[self.name_of(selector[key])] = 1
            for name in self.requested:
                raw.setdefault(name, 0)
            detail = {"selector": selector}
        elif self.kind == "ingress":
            services = set(self.targets.values())
            backends = [b for b in self._ingress_backends(obj) if b.get("name") in services]
            if not backends:
                raise DRError(PRECONDITION_FAILED, "Ingress %s has no backend of the services %s." % (self.params["k8s_name"], sorted(services)))
            for backend in backends:
                name = self.name_of(backend.get("name"))
                raw[name] = raw.get(name, 0) + 1
            for name in self.requested:
                raw.setdefault(name, 0)
            detail = {"backends": backends}
        else:
            entries = self._routes(obj)
            single = len(entries) == 1
            for entry in entries:
                weight = entry.get("weight")
                if weight is None:
                    # Gateway API's default weight is 1; Istio sends all to a lone destination
                    weight = 1 if self.kind == "httproute" else (100 if single else 0)
                name = self.name_of(self._entry_value(entry))
                raw[name] = raw.get(name, 0) + int(weight)
            detail = {"route": entries}
        detail["resourceVersion"] = (obj.get("metadata") or {}).get("resourceVersion")
        return shares(raw), detail

    def known_targets(self, routing):
        if self.kind in ("service", "ingress"):
            return list(set(routing) | set(self.requested))
        return list(routing)

    # -- planning -----------------------------------------------------------------------
    def desired_object(self, desired):
        obj = copy.deepcopy(self.obj)
        if self.kind == "service":
            active = [n for n in desired if desired[n] > 0][0]
            obj["spec"]["selector"][self.params.get("k8s_selector_key") or "version"] = self.value(active)
        elif self.kind == "ingress":
            active = [n for n in desired if desired[n] > 0][0]
            known = set(self.targets.values())
            for backend in self._ingress_backends(obj):
                if backend.get("name") in known:
                    backend["name"] = self.value(active)
        else:
            for entry in self._routes(obj):
                entry["weight"] = desired[self.name_of(self._entry_value(entry))]
        return obj

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        new = self.desired_object(desired)
        return [Step("replace_" + self.kind, self.path, run=lambda: self.put(new), routing=dict(desired))]

    def put(self, obj):
        saved = self.api.request("PUT", self.path, obj)
        return {"resourceVersion": (saved.get("metadata") or {}).get("resourceVersion")}

    def restore(self, current):
        original = copy.deepcopy(self.obj_before)
        fresh = self.api.request("GET", self.path)
        if fresh.get("spec") == original.get("spec"):
            return
        fresh["spec"] = original.get("spec")
        self.api.request("PUT", self.path, fresh)

    def read(self):
        current = super(KubernetesTraffic, self).read()
        if self.obj_before is None:
            self.obj_before = copy.deepcopy(self.obj)
        return current

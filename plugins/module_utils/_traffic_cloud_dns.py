# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``gcp_cloud_dns`` (private to this collection).

Targets are the names of ``dns_targets``, each standing for a list of rrdatas (the primary's
addresses, the standby's...). One record set of a Cloud DNS managed zone (API v1) routes
between them: with plain ``rrdatas`` the target whose rrdatas they are takes 100 %; with a
weighted round robin routing policy (``routingPolicy.wrr``) each item's weight goes to the
target whose rrdatas the item holds. ``active`` writes plain rrdatas, ``weights`` a ``wrr``
policy whose item weights are the percents.

The switch is one ``changes.create`` that deletes the record set exactly as it was read and
adds the new one, so a record changed by someone else in between makes Cloud DNS refuse the
change (412) instead of being overwritten; the change is polled until its status is ``done``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
from urllib.parse import quote

from ansible_collections.resilience.dr.plugins.module_utils import _gcp
from ansible_collections.resilience.dr.plugins.module_utils import _http
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
# the same credentials as gcp_cloud_run: access token, service account file or ADC
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

#: keys Cloud DNS generates; never sent back in an addition
GENERATED = ("kind", "signatureRrdatas")


def fqdn(name):
    return name if name.endswith(".") else name + "."


def data_key(rrdatas):
    """Order-free identity of a list of rrdatas."""
    return tuple(sorted(str(r).strip() for r in rrdatas or []))


def check_targets(targets):
    """``dns_targets`` as ``{name: [rrdata, ...]}``; refuse empty or ambiguous ones."""
    if not isinstance(targets, dict) or not targets:
        raise DRError(INVALID_ARGUMENT, "dns_targets must map each target name to its list of rrdatas (for example primary: [192.0.2.10]).")
    out = {}
    seen = {}
    for name, value in targets.items():
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise DRError(INVALID_ARGUMENT, "dns_targets.%s must be a non-empty list of rrdatas strings." % name)
        key = data_key(value)
        if key in seen:
            raise DRError(INVALID_ARGUMENT, "dns_targets.%s and dns_targets.%s have the same rrdatas, so the record cannot tell them apart."
                          % (seen[key], name))
        seen[key] = str(name)
        out[str(name)] = [v.strip() for v in value]
    return out


def clean(rrset):
    """A record set as it may be sent in an addition (generated fields dropped)."""
    out = dict((k, copy.deepcopy(v)) for k, v in rrset.items() if k not in GENERATED)
    policy = out.get("routingPolicy")
    if policy:
        policy.pop("kind", None)
        for item in (policy.get("wrr") or {}).get("items") or []:
            for key in GENERATED:
                item.pop(key, None)
    return out


class CloudDnsTraffic(TrafficProvider):
    name = "gcp_cloud_dns"
    context_options = ("gcp_project", "gcp_endpoint", "dns_managed_zone", "dns_record_name", "dns_record_type", "dns_targets")

    def __init__(self, module):
        super(CloudDnsTraffic, self).__init__(module)
        for name in ("gcp_project", "dns_managed_zone", "dns_record_name"):
            if not self.params.get(name):
                raise DRError(INVALID_ARGUMENT, "%s is required with provider=gcp_cloud_dns." % name)
        self.targets = check_targets(self.params.get("dns_targets"))
        self.record = fqdn(self.params["dns_record_name"])
        self.rtype = (self.params.get("dns_record_type") or "A").upper()
        self.base = (self.params.get("gcp_endpoint") or "https://dns.googleapis.com").rstrip("/")
        project = quote(self.params["gcp_project"], safe="")
        self.zone = "%s/dns/v1/projects/%s/managedZones/%s" % (self.base, project, quote(self.params["dns_managed_zone"], safe=""))
        self.http = _gcp.session(self.params)
        self.operation_timeout = 600

    def known_targets(self, routing):
        return sorted(self.targets)

    def target_what(self):
        return "target of dns_targets (record %s %s):" % (self.record, self.rtype)

    def call(self, method, url, **kwargs):
        what = "Cloud DNS %s of record set %s %s in managed zone %s of project %s" % (
            method, self.record, self.rtype, self.params["dns_managed_zone"], self.params["gcp_project"])
        try:
            return _gcp.call(self.http, method, url, what, service="Cloud DNS", role_hint=" (dns.admin)", **kwargs)[1]
        except DRError as exc:
            if exc.details.get("http_status") == 412:
                raise DRError(APPLY_FAILED, "Cloud DNS refused the change because record set %s %s changed since it was read (%s); "
                              "run the task again." % (self.record, self.rtype, exc.msg), details=exc.details)
            raise

    def get_rrset(self):
        return self.call("GET", "%s/rrsets/%s/%s" % (self.zone, quote(self.record, safe=""), quote(self.rtype, safe="")))

    def owner(self, rrdatas):
        key = data_key(rrdatas)
        for name, data in self.targets.items():
            if data_key(data) == key:
                return name
        raise DRError(PRECONDITION_FAILED, "Record set %s %s holds rrdatas %s, which are none of dns_targets; add them as a target so that "
                      "the switch can be undone." % (self.record, self.rtype, ", ".join(data_key(rrdatas)) or "(none)"),
                      details={"rrdatas": list(data_key(rrdatas))})

    def read_state(self):
        rrset = self.get_rrset()
        raw = dict((name, 0) for name in self.targets)
        policy = rrset.get("routingPolicy")
        if policy:
            other = sorted(k for k in policy if k not in ("wrr", "kind"))
            if other:
                raise DRError(PRECONDITION_FAILED, "Record set %s %s has a %s routing policy; gcp_cloud_dns switches plain rrdatas and "
                              "weighted round robin (wrr) only." % (self.record, self.rtype, "/".join(other)))
            for item in (policy.get("wrr") or {}).get("items") or []:
                if not item.get("rrdatas"):
                    raise DRError(PRECONDITION_FAILED, "A wrr item of record set %s %s has health-checked targets instead of rrdatas; "
                                  "gcp_cloud_dns cannot switch it." % (self.record, self.rtype))
                raw[self.owner(item["rrdatas"])] += float(item.get("weight") or 0)
            form = "wrr"
        else:
            raw[self.owner(rrset.get("rrdatas"))] = 100
            form = "rrdatas"
        for name, value in raw.items():
            if float(value).is_integer():
                raw[name] = int(value)
        detail = {"form": form, "weights": raw, "rrset": rrset}
        return shares(raw), detail

    def desired_rrset(self, old, desired):
        new = dict((k, copy.deepcopy(old[k])) for k in ("name", "type", "ttl") if k in old)
        up = sorted(n for n in desired if desired[n] > 0)
        if len(up) == 1:
            new["rrdatas"] = list(self.targets[up[0]])
        else:
            new["routingPolicy"] = {"wrr": {"items": [{"weight": desired[n], "rrdatas": list(self.targets[n])} for n in up]}}
        return new

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        old = current["detail"]["rrset"]
        new = self.desired_rrset(old, desired)
        return [Step("dns_change", "%s %s" % (self.record, self.rtype), run=lambda: self.change(old, new),
                     deletions=[clean(old)], additions=[copy.deepcopy(new)])]

    def change(self, old, new):
        change = self.call("POST", "%s/changes" % self.zone, json={"deletions": [old], "additions": [clean(new)]})
        if change.get("status") != "done":
            url = "%s/changes/%s" % (self.zone, quote(str(change["id"]), safe=""))
            change = _http.poll(lambda: self._if_done(url), self.operation_timeout, 0.2,
                                "The Cloud DNS change %s was not done after %ds." % (change.get("id"), self.operation_timeout), max_interval=5,
                                details={"change": change.get("id")})
        return {"change": change.get("id"), "status": change.get("status")}

    def _if_done(self, url):
        change = self.call("GET", url)
        return change if change.get("status") == "done" else None

    def restore(self, current):
        now = self.get_rrset()
        if clean(now) != clean(current["detail"]["rrset"]):
            self.change(now, current["detail"]["rrset"])

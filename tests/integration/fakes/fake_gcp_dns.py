# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fake of the Cloud DNS API v1 paths traffic_switch uses, for tests.

``zones`` maps ``(project, zone)`` to ``{"dnsName": "example.com.", "rrsets": {(name, type): rrset}}``.

* GET ``/dns/v1/projects/P/managedZones/Z/rrsets/NAME/TYPE`` answers the record set (404 when
  the zone or the record set does not exist, with Google's error body).
* POST ``/dns/v1/projects/P/managedZones/Z/changes`` with ``additions``/``deletions`` checks, as
  Cloud DNS does: every deletion must equal the current record set (412 ``conditionNotMet``
  otherwise), an addition must not exist after the deletions (409), must be inside the zone,
  must carry exactly one of ``rrdatas`` / ``routingPolicy``, A rrdatas must be IPv4 addresses,
  wrr weights must be non-negative numbers. The change is applied at once, atomically, and
  answered ``pending``; it reads ``done`` from its second GET.
* Every request needs ``Authorization: Bearer <token>``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import json
from urllib.parse import unquote, urlparse

from fakes.base import FakeApi, JsonHandler

GENERATED = ("kind", "signatureRrdatas")


def comparable(rrset):
    out = dict((k, v) for k, v in rrset.items() if k not in GENERATED)
    policy = copy.deepcopy(out.get("routingPolicy"))
    if policy:
        policy.pop("kind", None)
        for item in (policy.get("wrr") or {}).get("items") or []:
            for key in GENERATED:
                item.pop(key, None)
            item["weight"] = float(item.get("weight") or 0)
        out["routingPolicy"] = policy
    if "rrdatas" in out:
        out["rrdatas"] = sorted(out["rrdatas"])
    return out


class FakeCloudDNS(FakeApi):
    def __init__(self, port, token="gcp-dns-token"):
        super(FakeCloudDNS, self).__init__(port, token)
        self.zones = {}
        self.changes = {}
        self.bodies = []
        fake = self

        class Handler(JsonHandler):
            def _error(self, code, reason, message):
                self._send(code, {"error": {"code": code, "message": message,
                                            "errors": [{"domain": "global", "reason": reason, "message": message}]}})

            def _validate_addition(self, zone, rrset):
                name = rrset.get("name") or ""
                if not name.endswith(".") or not (name == zone["dnsName"] or name.endswith("." + zone["dnsName"])):
                    return "Invalid value for 'entity.change.additions[0].name': '%s'" % name
                if ("rrdatas" in rrset) == ("routingPolicy" in rrset):
                    return "A record set needs exactly one of rrdatas and routingPolicy"
                lists = [rrset["rrdatas"]] if "rrdatas" in rrset else []
                for item in ((rrset.get("routingPolicy") or {}).get("wrr") or {}).get("items") or []:
                    weight = item.get("weight")
                    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                        return "Invalid value for 'entity.change.additions[0].routingPolicy.wrr.items[].weight': %r" % (weight,)
                    lists.append(item.get("rrdatas") or [])
                if "routingPolicy" in rrset and not lists:
                    return "routingPolicy.wrr.items must not be empty"
                for rrdatas in lists:
                    if not rrdatas:
                        return "rrdatas must not be empty"
                    if rrset.get("type") == "A":
                        for value in rrdatas:
                            try:
                                ipaddress.IPv4Address(value)
                            except ValueError:
                                return "Invalid value for 'entity.change.additions[0].rrdata': '%s'" % value
                return None

            def _handle(self, method):
                url = urlparse(self.path)
                fake.requests.append((method, url.path))
                if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                    return self._error(401, "authError", "Request had invalid authentication credentials.")
                parts = [unquote(p) for p in url.path.split("/")]
                # ['', 'dns', 'v1', 'projects', P, 'managedZones', Z, ...]
                if parts[1:3] != ["dns", "v1"] or len(parts) < 8 or parts[3] != "projects" or parts[5] != "managedZones":
                    return self._error(404, "notFound", "Unknown path %s" % url.path)
                key = (parts[4], parts[6])
                with fake.lock:
                    zone = fake.zones.get(key)
                    if zone is None:
                        return self._error(404, "notFound", "The 'parameters.managedZone' resource named '%s' does not exist." % parts[6])
                    rest = parts[7:]
                    if method == "GET" and len(rest) == 3 and rest[0] == "rrsets":
                        rrset = zone["rrsets"].get((rest[1], rest[2]))
                        if rrset is None:
                            return self._error(404, "notFound", "The 'parameters.name' resource named '%s' does not exist." % rest[1])
                        return self._send(200, dict(rrset, kind="dns#resourceRecordSet"))
                    if method == "GET" and len(rest) == 2 and rest[0] == "changes":
                        change = fake.changes.get((key, rest[1]))
                        if change is None:
                            return self._error(404, "notFound", "The 'parameters.changeId' resource named '%s' does not exist." % rest[1])
                        change["polls"] += 1
                        if change["polls"] >= 2:
                            change["body"]["status"] = "done"
                        return self._send(200, change["body"])
                    if method == "POST" and rest == ["changes"]:
                        length = int(self.headers.get("Content-Length") or 0)
                        body = json.loads(self.rfile.read(length).decode())
                        fake.bodies.append(copy.deepcopy(body))
                        rrsets = dict(zone["rrsets"])
                        for index, old in enumerate(body.get("deletions") or []):
                            have = rrsets.get((old.get("name"), old.get("type")))
                            if have is None or comparable(have) != comparable(old):
                                return self._error(412, "conditionNotMet", "Precondition not met for 'entity.change.deletions[%d]'" % index)
                            del rrsets[(old["name"], old["type"])]
                        for new in body.get("additions") or []:
                            problem = self._validate_addition(zone, new)
                            if problem:
                                return self._error(400, "invalid", problem)
                            if (new["name"], new["type"]) in rrsets:
                                return self._error(409, "alreadyExists", "The resource 'entity.change.additions[0]' named '%s (%s)' already "
                                                   "exists" % (new["name"], new["type"]))
                            rrsets[(new["name"], new["type"])] = copy.deepcopy(new)
                        zone["rrsets"] = rrsets
                        change_id = str(len([c for c in fake.changes if c[0] == key]) + 1)
                        out = {"kind": "dns#change", "id": change_id, "status": "pending", "startTime": "2026-01-01T00:00:00.000Z",
                               "additions": body.get("additions") or [], "deletions": body.get("deletions") or []}
                        fake.changes[(key, change_id)] = {"polls": 0, "body": out}
                        return self._send(200, out)
                return self._error(405, "methodNotAllowed", method)

        self.serve(Handler)

    def add_zone(self, project, zone, dns_name):
        self.zones[(project, zone)] = {"dnsName": dns_name, "rrsets": {}}

    def put(self, project, zone, rrset):
        self.zones[(project, zone)]["rrsets"][(rrset["name"], rrset["type"])] = copy.deepcopy(rrset)

    def get(self, project, zone, name, rtype):
        return self.zones[(project, zone)]["rrsets"].get((name, rtype))

    def writes(self):
        return [r for r in self.requests if r[0] == "POST"]

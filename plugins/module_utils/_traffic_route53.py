# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``aws_route53`` (private to this collection).

Targets are the set identifiers of the records with one name and type: weighted records
(share = weight over the sum), or a failover pair (the PRIMARY gets 100). Every change is
one atomic change batch of UPSERTs that keeps everything else of each record as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    TIMEOUT,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)
from ansible_collections.resilience.dr.plugins.module_utils import _aws


def _fqdn(name):
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


class Route53Traffic(TrafficProvider):
    name = "aws_route53"
    context_options = ("route53_zone_id", "route53_record_name", "route53_record_type",
                       "aws_region", "aws_profile", "aws_endpoint_url")

    def __init__(self, module):
        super(Route53Traffic, self).__init__(module)
        self.zone = self.params["route53_zone_id"]
        self.record = _fqdn(self.params["route53_record_name"])
        self.type = (self.params.get("route53_record_type") or "A").upper()
        self.client = _aws.client(self.params, "route53", "traffic_switch")
        self.mode = None
        self.wait_timeout = 300

    def target_what(self):
        return "set identifier of %s %s:" % (self.record, self.type)

    def records(self):
        out = []
        kwargs = dict(HostedZoneId=self.zone, StartRecordName=self.record, StartRecordType=self.type, MaxItems="100")
        while True:
            page = _aws.call("Listing the records of hosted zone %s" % self.zone, self.client.list_resource_record_sets,
                             not_found=("NoSuchHostedZone",), **kwargs)
            done = False
            for rrset in page.get("ResourceRecordSets", []):
                if _fqdn(rrset["Name"]) != self.record or rrset["Type"] != self.type:
                    done = True
                    break
                if rrset.get("SetIdentifier"):
                    out.append(rrset)
            if done or not page.get("IsTruncated"):
                break
            kwargs = dict(HostedZoneId=self.zone, StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"],
                          MaxItems="100")
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        return out

    def read_state(self):
        rrsets = self.records()
        if not rrsets:
            raise DRError(NOT_FOUND, "Hosted zone %s has no weighted or failover %s records named %s." % (self.zone, self.type, self.record),
                          details={"route53_zone_id": self.zone, "record": self.record, "type": self.type})
        failover = [r for r in rrsets if r.get("Failover")]
        weighted = [r for r in rrsets if "Weight" in r]
        if failover and weighted:
            raise DRError(PRECONDITION_FAILED, "%s %s mixes weighted and failover records; the module handles one kind." % (self.record, self.type))
        if failover:
            self.mode = "failover"
            raw = dict((r["SetIdentifier"], 1 if r["Failover"] == "PRIMARY" else 0) for r in failover)
        elif weighted:
            self.mode = "weighted"
            raw = dict((r["SetIdentifier"], int(r["Weight"])) for r in weighted)
        else:
            raise DRError(PRECONDITION_FAILED, "The %s %s records with set identifiers are neither weighted nor failover records." % (self.record, self.type))
        detail = {"mode": self.mode, "records": dict((r["SetIdentifier"], r) for r in rrsets)}
        return shares(raw), detail

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        records = current["detail"]["records"]
        changes = []
        if self.mode == "failover":
            up = [n for n in desired if desired[n] > 0]
            if len(up) != 1 or len(records) != 2:
                raise DRError(INVALID_ARGUMENT, "A failover pair takes one active set identifier (PRIMARY), not weights; %s has %d record(s)."
                              % (self.record, len(records)))
            for name, rrset in sorted(records.items()):
                role = "PRIMARY" if name == up[0] else "SECONDARY"
                if rrset["Failover"] != role:
                    new = copy.deepcopy(rrset)
                    new["Failover"] = role
                    changes.append({"set_identifier": name, "failover": role, "previous": rrset["Failover"], "record": new})
        else:
            for name, rrset in sorted(records.items()):
                if int(rrset["Weight"]) != desired[name]:
                    new = copy.deepcopy(rrset)
                    new["Weight"] = desired[name]
                    changes.append({"set_identifier": name, "weight": desired[name], "previous": int(rrset["Weight"]), "record": new})
        batch = [c["record"] for c in changes]
        shown = [dict((k, v) for k, v in c.items() if k != "record") for c in changes]
        return [Step("change_resource_record_sets", "%s %s" % (self.record, self.type), run=lambda: self.upsert(batch, "switch"),
                     zone=self.zone, changes=shown)]

    def upsert(self, rrsets, why):
        result = _aws.call(
            "Changing %s %s in hosted zone %s" % (self.record, self.type, self.zone), self.client.change_resource_record_sets,
            HostedZoneId=self.zone,
            ChangeBatch={"Comment": "resilience.dr traffic_switch %s" % why,
                         "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in rrsets]},
        )
        change_id = result["ChangeInfo"]["Id"]
        status = result["ChangeInfo"]["Status"]
        deadline = time.monotonic() + self.wait_timeout
        while status != "INSYNC" and time.monotonic() < deadline:
            time.sleep(2)
            status = _aws.call("Reading change %s" % change_id, self.client.get_change, Id=change_id)["ChangeInfo"]["Status"]
        if status != "INSYNC":
            raise DRError(TIMEOUT, "Route 53 change %s was still %s after %ds." % (change_id, status, self.wait_timeout))
        return {"change_id": change_id, "status": status}

    def restore(self, current):
        records = current["detail"]["records"]
        now = self.read_state()[1]["records"]
        back = [r for name, r in sorted(records.items()) if now.get(name) != r]
        if back:
            self.upsert(back, "revert")

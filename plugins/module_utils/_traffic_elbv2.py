# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``aws_elbv2`` (private to this collection).

Targets are the target groups of the forward action of a listener's default actions
(``elbv2_listener_arn``) or of a rule (``elbv2_rule_arn``), named through
``elbv2_target_groups``. The share of a target group is its weight over the sum.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)
from ansible_collections.resilience.dr.plugins.module_utils import _aws


class ELBv2Traffic(TrafficProvider):
    name = "aws_elbv2"
    context_options = ("elbv2_listener_arn", "elbv2_rule_arn", "elbv2_target_groups", "aws_region", "aws_profile", "aws_endpoint_url")

    def __init__(self, module):
        super(ELBv2Traffic, self).__init__(module)
        self.listener = self.params.get("elbv2_listener_arn")
        self.rule = self.params.get("elbv2_rule_arn")
        self.groups = dict((str(k), str(v)) for k, v in (self.params.get("elbv2_target_groups") or {}).items())
        self.client = _aws.client(self.params, "elbv2", "traffic_switch")
        self.extra = {}

    def target_what(self):
        return "target of elbv2_target_groups:"

    def actions(self):
        if self.listener:
            found = _aws.call("Reading listener %s" % self.listener, self.client.describe_listeners,
                              not_found=("ListenerNotFound",), ListenerArns=[self.listener])["Listeners"]
            return found[0]["DefaultActions"]
        found = _aws.call("Reading rule %s" % self.rule, self.client.describe_rules,
                          not_found=("RuleNotFound",), RuleArns=[self.rule])["Rules"]
        return found[0]["Actions"]

    @staticmethod
    def forward_index(actions):
        for index, action in enumerate(actions):
            if action.get("Type") == "forward":
                return index
        return None

    def read_state(self):
        actions = self.actions()
        index = self.forward_index(actions)
        if index is None:
            raise DRError(PRECONDITION_FAILED, "%s has no forward action to weigh; its actions are %s."
                          % (self.listener or self.rule, [a.get("Type") for a in actions]))
        action = actions[index]
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if not groups:
            groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        by_arn = dict((v, k) for k, v in self.groups.items())
        raw = dict((name, 0) for name in self.groups)
        for group in groups:
            target = by_arn.get(group["TargetGroupArn"])
            if target is None:
                target = group["TargetGroupArn"]
                self.extra[target] = target
            raw[target] = raw.get(target, 0) + int(group.get("Weight", 1))
        return shares(raw), {"arn": self.listener or self.rule, "actions": actions}

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        actions = copy.deepcopy(current["detail"]["actions"])
        index = self.forward_index(actions)
        arns = dict(self.groups)
        arns.update(self.extra)
        action = actions[index]
        forward = dict(action.get("ForwardConfig") or {})
        forward["TargetGroups"] = [{"TargetGroupArn": arns[name], "Weight": desired[name]} for name in sorted(desired)]
        action["ForwardConfig"] = forward
        action.pop("TargetGroupArn", None)
        what = "modify_listener" if self.listener else "modify_rule"
        weights = dict((name, desired[name]) for name in sorted(desired))
        return [Step(what, self.listener or self.rule, run=lambda: self.put(actions), weights=weights)]

    def put(self, actions):
        if self.listener:
            _aws.call("Changing listener %s" % self.listener, self.client.modify_listener,
                      ListenerArn=self.listener, DefaultActions=actions)
        else:
            _aws.call("Changing rule %s" % self.rule, self.client.modify_rule, RuleArn=self.rule, Actions=actions)
        return {"arn": self.listener or self.rule}

    def restore(self, current):
        actions = copy.deepcopy(current["detail"]["actions"])
        for action in actions:
            if action.get("ForwardConfig", {}).get("TargetGroups") and action.get("TargetGroupArn"):
                if len(action["ForwardConfig"]["TargetGroups"]) > 1:
                    action.pop("TargetGroupArn")
        self.put(actions)

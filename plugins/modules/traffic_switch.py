#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: traffic_switch
short_description: Move traffic to one target or to weights, verify, and revert on failure
version_added: 0.1.0
description:
  - Moves traffic between targets (blue/green servers, upstreams, weighted DNS records, target
    groups) to one target (O(active)) or to percentages (O(weights)).
  - Reads the current routing first and changes only what differs; a second run with the same
    arguments reports C(changed=false).
  - Returns the exact routing before (RV(previous)) and the module arguments that restore it
    (RV(undo)), so that a rollback record can undo the switch later.
  - With O(verify), checks a URL or a TCP port after the switch; when the check fails and
    O(revert_on_failure=true), the previous routing is put back and the task fails with
    C(error=VERIFY_FAILED) and a message saying that it reverted.
  - "Providers: V(haproxy) (runtime API: server state ready/drain/maint and weights),
    V(nginx) (a managed upstream include file, written atomically, checked with C(nginx -t),
    then reloaded), V(aws_route53) (weighted records by set identifier, or a failover
    PRIMARY/SECONDARY pair), V(aws_elbv2) (a listener's default forward action or a rule's
    forward action with weighted target groups), V(kubernetes) (a Service selector, an Ingress
    backend, an Istio VirtualService's or a Gateway API HTTPRoute's weights), V(gcp_cloud_run)
    (revision traffic split of a Cloud Run service), V(gcp_cloud_dns) (a Cloud DNS record set's
    rrdatas swapped between targets, or a weighted round robin routing policy), V(azure_front_door)
    (origins of an origin group enabled/disabled or weighted), V(azure_traffic_manager) (endpoints
    of a Priority or Weighted Traffic Manager profile enabled/disabled or weighted)."
author:
  - resilience.dr contributors (@resilience-dr)
extends_documentation_fragment:
  - resilience.dr.haproxy
  - resilience.dr.aws
  - resilience.dr.kubernetes
  - resilience.dr.gcp
  - resilience.dr.azure
attributes:
  check_mode:
    support: full
    description: Reads the current routing and returns the planned steps and the predicted routing without changing anything.
  diff_mode:
    support: full
    description: Returns the routing before and after.
options:
  provider:
    description:
      - The backend that routes the traffic.
    type: str
    required: true
    choices: [haproxy, nginx, aws_route53, aws_elbv2, kubernetes, gcp_cloud_run, gcp_cloud_dns, azure_front_door, azure_traffic_manager]
  active:
    description:
      - The one target that gets all the traffic; every other target of the backend gets none.
      - "A target is: a server of O(haproxy_backend); a key of O(nginx_servers); a record's
        set identifier (V(aws_route53)); a key of O(elbv2_target_groups); a key of O(k8s_targets)
        or the value itself (V(kubernetes)); a revision name or V(LATEST) (V(gcp_cloud_run)); a key
        of O(dns_targets) (V(gcp_cloud_dns)); an origin name (V(azure_front_door)); an endpoint name
        (V(azure_traffic_manager))."
      - Mutually exclusive with O(weights); one of the two is required.
    type: str
  weights:
    description:
      - Percent of the traffic per target, whole numbers summing to 100. Targets not named
        get 0 (taken out).
      - Mutually exclusive with O(active).
    type: dict
  drain:
    description:
      - V(haproxy) only. Put each leaving server in C(drain) first, wait until its current
        sessions (C(scur) of C(show stat)) reach 0 or O(drain_timeout) passes, then put it in
        C(maint). Without it, a leaving server goes to C(maint) at once.
    type: bool
    default: false
  drain_timeout:
    description:
      - Longest wait for a draining server, as a duration (V(30s), V(5m)). When it passes, the
        server is put in maintenance anyway and the step's result says how many sessions were left.
    type: str
    default: 60s
  ready_timeout:
    description:
      - V(haproxy) only. Longest wait, as a duration, for each incoming server to be up
        (C(srv_op_state) 2, after its health check) before any leaving server is drained or
        taken out. When it passes, the switch fails and is reverted.
    type: str
    default: 30s
  verify:
    description:
      - A check run after the switch (and after the routing was read back). Either O(verify.url)
        for HTTP(S), or O(verify.host) and O(verify.port) for a TCP connect.
    type: dict
    suboptions:
      url:
        description: URL to GET.
        type: str
      host:
        description: Host of a TCP check.
        type: str
      port:
        description: Port of a TCP check.
        type: int
      status:
        description: HTTP status codes that pass.
        type: list
        elements: int
        default: [200]
      body_regex:
        description: A regular expression the response body must match (Python C(re.search)).
        type: str
      retries:
        description: Attempts after the first one before giving up.
        type: int
        default: 5
      delay:
        description: Wait between attempts, as a duration.
        type: str
        default: 1s
      timeout:
        description: Timeout of one attempt, as a duration.
        type: str
        default: 5s
      validate_certs:
        description: Verify the TLS certificate of an https URL.
        type: bool
        default: true
  revert_on_failure:
    description:
      - When a step or the verification fails, put the previous routing back before failing.
    type: bool
    default: true
  haproxy_backend:
    description:
      - V(haproxy) the backend whose servers are the targets.
    type: str
  haproxy_state_file:
    description:
      - V(haproxy) after a change, write C(show servers state) to this file (atomically), for a
        configuration that uses C(server-state-file) and C(load-server-state-from-file) so that
        the switch survives a reload.
    type: path
  nginx_upstream_file:
    description:
      - V(nginx) the include file that holds the upstream block; this module owns it and
        rewrites it whole. The previous content is kept as C(<file>.previous).
    type: path
  nginx_upstream_name:
    description:
      - V(nginx) the name of the upstream block.
    type: str
  nginx_servers:
    description:
      - V(nginx) target name -> server address (C(host:port) or C(unix:/path)).
    type: dict
  nginx_server_options:
    description:
      - V(nginx) extra parameters written on every server line (for example V(max_fails=1 fail_timeout=5s)).
    type: str
  nginx_template:
    description:
      - V(nginx) text of the managed file. C(__UPSTREAM__) is replaced by O(nginx_upstream_name)
        and C(__SERVERS__) by the server lines. Defaults to a bare upstream block.
      - Only the routing decides whether the file is rewritten; a changed template alone does
        not make a change.
    type: str
  nginx_binary:
    description:
      - V(nginx) the nginx binary used for C(nginx -t) and C(nginx -s reload).
    type: path
    default: nginx
  nginx_config:
    description:
      - V(nginx) main configuration file passed with C(-c) to C(nginx -t) and C(nginx -s reload).
    type: path
  nginx_pid_file:
    description:
      - V(nginx) PID file of the running master; when given, the reload is a C(SIGHUP) to that PID
        instead of C(nginx -s reload).
    type: path
  nginx_reload_command:
    description:
      - V(nginx) command (argv list) that reloads nginx instead (for example
        V([systemctl, reload, nginx])). Takes precedence over O(nginx_pid_file).
    type: list
    elements: str
  route53_zone_id:
    description:
      - V(aws_route53) hosted zone id.
    type: str
  route53_record_name:
    description:
      - V(aws_route53) record name (with or without the final dot).
    type: str
  route53_record_type:
    description:
      - V(aws_route53) record type.
    type: str
    default: A
  elbv2_listener_arn:
    description:
      - V(aws_elbv2) a listener whose default action is a forward action. Give this or O(elbv2_rule_arn).
    type: str
  elbv2_rule_arn:
    description:
      - V(aws_elbv2) a listener rule whose action is a forward action.
    type: str
  elbv2_target_groups:
    description:
      - V(aws_elbv2) target name -> target group ARN. Every target group of the forward action
        must be named here.
    type: dict
  k8s_kind:
    description:
      - V(kubernetes) the object that routes. V(service) (blue/green through one selector label,
        O(active) only), V(ingress) (the backend service of the default backend and of every path,
        O(active) only), V(virtualservice) (Istio, the destination weights of one C(spec.http) route),
        V(httproute) (Gateway API, the C(backendRefs) weights of one rule).
    type: str
    choices: [service, ingress, virtualservice, httproute]
  k8s_namespace:
    description:
      - V(kubernetes) namespace of the object.
    type: str
    default: default
  k8s_name:
    description:
      - V(kubernetes) name of the object.
    type: str
  k8s_api_version:
    description:
      - V(kubernetes) API version of a V(virtualservice) (default V(v1beta1)) or V(httproute) (default V(v1)).
    type: str
  k8s_selector_key:
    description:
      - V(kubernetes) with O(k8s_kind=service), the selector label whose value picks the target.
    type: str
    default: version
  k8s_targets:
    description:
      - V(kubernetes) target name -> the value that stands for it in the object (selector label value,
        service name, destination subset or host, backendRef name). Without it, targets are those
        values themselves.
      - Required with O(k8s_kind=ingress), so that only backends of these services are switched.
    type: dict
  k8s_route_index:
    description:
      - V(kubernetes) which C(spec.http) route (V(virtualservice)) or C(spec.rules) rule (V(httproute)) to weigh.
    type: int
    default: 0
  cloud_run_region:
    description:
      - V(gcp_cloud_run) region (location) of the service.
    type: str
  cloud_run_service:
    description:
      - V(gcp_cloud_run) name of the Cloud Run service. Targets are its revision names, and
        V(LATEST) for the latest ready revision.
    type: str
  afd_resource_group:
    description:
      - V(azure_front_door) resource group of the Front Door (Standard/Premium) profile.
    type: str
  afd_profile:
    description:
      - V(azure_front_door) name of the profile (C(Microsoft.Cdn/profiles)).
    type: str
  afd_origin_group:
    description:
      - V(azure_front_door) name of the origin group; its origins are the targets. An origin at
        0 % is disabled; with O(weights), the origins that take traffic get C(weight) = percent x 10
        and must share one priority.
    type: str
  dns_managed_zone:
    description:
      - V(gcp_cloud_dns) name (or id) of the Cloud DNS managed zone.
    type: str
  dns_record_name:
    description:
      - V(gcp_cloud_dns) fully qualified name of the record set (with or without the final dot).
    type: str
  dns_record_type:
    description:
      - V(gcp_cloud_dns) type of the record set.
    type: str
    default: A
  dns_targets:
    description:
      - V(gcp_cloud_dns) target name -> the list of rrdatas that stands for it (for example
        C(primary) -> V([192.0.2.10]) and C(standby) -> V([198.51.100.20])). Write the rrdatas as
        Cloud DNS stores them (a C(CNAME) with its final dot); their order does not matter.
      - The record set's current rrdatas (or each item of its C(wrr) policy) must be one of these
        targets, so that the switch can be undone; otherwise the task fails with
        C(PRECONDITION_FAILED) and changes nothing.
      - O(active) writes that target's rrdatas as the record's plain C(rrdatas); O(weights) writes a
        weighted round robin policy (C(routingPolicy.wrr)) whose items carry the targets above 0 %
        with C(weight) = percent. Record sets with a geo or primary/backup policy are refused.
    type: dict
  tm_resource_group:
    description:
      - V(azure_traffic_manager) resource group of the Traffic Manager profile.
    type: str
  tm_profile:
    description:
      - V(azure_traffic_manager) name of the profile (C(Microsoft.Network/trafficmanagerprofiles));
        its endpoints (of any endpoint type) are the targets. Only C(Priority) and C(Weighted)
        profiles are handled.
      - O(active) enables that endpoint and disables every other one. O(weights) (C(Weighted)
        profiles only; a C(Priority) profile refuses it with C(INVALID_ARGUMENT)) enables the
        endpoints above 0 % with C(weight) = percent x 10 (Traffic Manager weights are 1-1000, so
        1 % is 10 and 100 % is 1000) and disables the others.
    type: str
notes:
  - V(haproxy) and V(nginx) are tested against real HAProxy 2.6 and nginx on loopback;
    V(aws_route53) and V(aws_elbv2) are tested against moto's server only, not against AWS;
    V(kubernetes) is tested only against a local fake of the API paths it uses (GET and PUT of
    one object), not against a real cluster; V(gcp_cloud_run) only against a local fake of the
    Cloud Run Admin API v2 (service GET, revisions list, PATCH with a long-running operation);
    V(azure_front_door) only against a local fake of the Azure Resource Manager origin paths
    (list, PATCH answered 202 with an C(Azure-AsyncOperation) to poll); V(gcp_cloud_dns) only
    against a local fake of the Cloud DNS API v1 (record set GET, C(changes.create), change GET);
    V(azure_traffic_manager) only against a local fake of the Traffic Manager profile GET and
    endpoint PATCH (api-version 2022-04-01). None of them was run against the real cloud.
  - V(gcp_cloud_dns) changes the record set with one C(changes.create) that deletes it exactly as
    it was read and adds the new one, so a concurrent change makes Cloud DNS refuse it (412)
    instead of being overwritten. Resolvers keep the old answer for the record's TTL.
  - V(kubernetes) writes the object back whole with PUT and its C(resourceVersion), so a
    concurrent change makes the task fail instead of being overwritten.
  - V(aws_route53) with a failover pair takes O(active) only; the active set identifier becomes
    PRIMARY and the other SECONDARY in one change batch.
  - RV(undo) is exact to one percent (the module takes whole percents).
  - In HAProxy's C(srv_admin_state) a server declared C(disabled) in the configuration keeps
    bit 0x04 after C(set server ... state ready); the module tests the maintenance bits 0x23.
seealso:
  - name: HAProxy runtime API
    description: The management guide of HAProxy 2.6.
    link: https://docs.haproxy.org/2.6/management.html
"""

EXAMPLES = r"""
- name: Blue/green switch on HAProxy, draining blue, verified through the frontend
  resilience.dr.traffic_switch:
    provider: haproxy
    haproxy_socket: /run/haproxy/admin.sock
    haproxy_backend: web
    active: green
    drain: true
    drain_timeout: 30s
    verify:
      url: http://127.0.0.1:8080/health
      body_regex: green
      retries: 5
      delay: 1s
  register: switch

- name: Later, undo it
  resilience.dr.traffic_switch: "{{ switch.undo }}"

- name: Canary 10 % on nginx
  resilience.dr.traffic_switch:
    provider: nginx
    nginx_upstream_file: /etc/nginx/conf.d/app-upstream.conf
    nginx_upstream_name: app
    nginx_servers:
      blue: 10.0.0.11:8080
      green: 10.0.0.12:8080
    nginx_config: /etc/nginx/nginx.conf
    weights: {blue: 90, green: 10}

- name: Weighted DNS, all to the standby region
  resilience.dr.traffic_switch:
    provider: aws_route53
    route53_zone_id: Z0123456789
    route53_record_name: app.example.com
    active: eu-west-1

- name: ALB listener, 20 % to the new target group
  resilience.dr.traffic_switch:
    provider: aws_elbv2
    elbv2_listener_arn: "{{ listener_arn }}"
    elbv2_target_groups:
      blue: "{{ blue_tg_arn }}"
      green: "{{ green_tg_arn }}"
    weights: {blue: 80, green: 20}

- name: Cloud DNS, point the record at the standby's address
  resilience.dr.traffic_switch:
    provider: gcp_cloud_dns
    gcp_project: shop-prod
    dns_managed_zone: example-com
    dns_record_name: db.example.com
    dns_targets:
      primary: [10.0.0.5]
      standby: [10.1.0.5]
    active: standby

- name: Traffic Manager, all traffic to the secondary region's endpoint
  resilience.dr.traffic_switch:
    provider: azure_traffic_manager
    azure_subscription_id: "{{ subscription_id }}"
    tm_resource_group: rg-shop
    tm_profile: tm-shop
    active: web-northeurope
"""

RETURN = r"""
previous:
  description: Routing before the change, as percent per target.
  returned: always, unless the arguments were invalid or the routing could not be read
  type: dict
  sample: {blue: 100, green: 0}
routing:
  description: Routing after the change (read back), or predicted in check mode.
  returned: always, unless the arguments were invalid
  type: dict
  sample: {blue: 0, green: 100}
undo:
  description:
    - Module arguments that restore RV(previous). Non-secret connection options (socket, endpoint, region) are
      included; credentials never are, so give them again (or through module_defaults or the environment).
  returned: always, unless the arguments were invalid
  type: dict
  sample: {provider: haproxy, haproxy_backend: web, haproxy_socket: /run/haproxy/admin.sock, active: blue}
before:
  description: Routing and the provider's exact state before (C(detail)).
  returned: always
  type: dict
after:
  description: Routing and exact state after (read back); in check mode the predicted routing.
  returned: always
  type: dict
plan:
  description: The steps planned, each with C(action), C(target), C(detail).
  returned: always
  type: list
  elements: dict
steps:
  description: The steps done (or, in check mode, that would be done), with C(started_at) and C(seconds).
  returned: always
  type: list
  elements: dict
verify:
  description: Outcome of O(verify) (C(passed), C(attempts), C(message)).
  returned: when verify was given and the routing changed
  type: dict
check_mode:
  description: Whether this was a dry run.
  returned: always
  type: bool
seconds:
  description: Wall time of the module.
  returned: always
  type: float
error:
  description: Stable error code (C(INVALID_ARGUMENT), C(NOT_FOUND), C(CONNECTION_FAILED), C(APPLY_FAILED), C(VERIFY_FAILED)...).
  returned: on failure
  type: str
reverted:
  description:
    - Whether the completed steps were reverted after a failure. When the switch was applied
      and then failed, RV(previous) and RV(undo) are returned beside it.
  returned: on failure after a change
  type: bool
completed_steps:
  description: Steps completed before a failure.
  returned: on failure
  type: list
  elements: dict
"""

from ansible_collections.resilience.dr.plugins.module_utils._connection import (
    aws_spec,
    azure_spec,
    gcp_spec,
    haproxy_spec,
    kubernetes_spec,
    merge_specs,
)
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import VERIFY_SPEC

PROVIDERS = ["haproxy", "nginx", "aws_route53", "aws_elbv2", "kubernetes", "gcp_cloud_run", "gcp_cloud_dns", "azure_front_door",
             "azure_traffic_manager"]


def argument_spec():
    own = dict(
        provider=dict(type="str", required=True, choices=PROVIDERS),
        active=dict(type="str"),
        weights=dict(type="dict"),
        drain=dict(type="bool", default=False),
        drain_timeout=dict(type="str", default="60s"),
        ready_timeout=dict(type="str", default="30s"),
        verify=dict(type="dict", options=VERIFY_SPEC),
        revert_on_failure=dict(type="bool", default=True),
        haproxy_backend=dict(type="str"),
        haproxy_state_file=dict(type="path"),
        nginx_upstream_file=dict(type="path"),
        nginx_upstream_name=dict(type="str"),
        nginx_servers=dict(type="dict"),
        nginx_server_options=dict(type="str"),
        nginx_template=dict(type="str"),
        nginx_binary=dict(type="path", default="nginx"),
        nginx_config=dict(type="path"),
        nginx_pid_file=dict(type="path"),
        nginx_reload_command=dict(type="list", elements="str"),
        route53_zone_id=dict(type="str"),
        route53_record_name=dict(type="str"),
        route53_record_type=dict(type="str", default="A"),
        elbv2_listener_arn=dict(type="str"),
        elbv2_rule_arn=dict(type="str"),
        elbv2_target_groups=dict(type="dict"),
        k8s_kind=dict(type="str", choices=["service", "ingress", "virtualservice", "httproute"]),
        k8s_namespace=dict(type="str", default="default"),
        k8s_name=dict(type="str"),
        k8s_api_version=dict(type="str"),
        k8s_selector_key=dict(type="str", default="version", no_log=False),
        k8s_targets=dict(type="dict"),
        k8s_route_index=dict(type="int", default=0),
        cloud_run_region=dict(type="str"),
        cloud_run_service=dict(type="str"),
        afd_resource_group=dict(type="str"),
        afd_profile=dict(type="str"),
        afd_origin_group=dict(type="str"),
        dns_managed_zone=dict(type="str"),
        dns_record_name=dict(type="str"),
        dns_record_type=dict(type="str", default="A"),
        dns_targets=dict(type="dict"),
        tm_resource_group=dict(type="str"),
        tm_profile=dict(type="str"),
    )
    return merge_specs(haproxy_spec(), aws_spec(), kubernetes_spec(), gcp_spec(), azure_spec(), own)


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("active", "weights"), ("elbv2_listener_arn", "elbv2_rule_arn")],
        required_one_of=[("active", "weights")],
        required_if=[
            ("provider", "haproxy", ("haproxy_socket", "haproxy_backend")),
            ("provider", "nginx", ("nginx_upstream_file", "nginx_upstream_name", "nginx_servers", "nginx_config")),
            ("provider", "aws_route53", ("route53_zone_id", "route53_record_name")),
            ("provider", "aws_elbv2", ("elbv2_target_groups",)),
            ("provider", "aws_elbv2", ("elbv2_listener_arn", "elbv2_rule_arn"), True),
            ("provider", "kubernetes", ("k8s_kind", "k8s_name")),
            ("provider", "gcp_cloud_run", ("gcp_project", "cloud_run_region", "cloud_run_service")),
            ("provider", "azure_front_door", ("azure_subscription_id", "afd_resource_group", "afd_profile", "afd_origin_group")),
            ("provider", "gcp_cloud_dns", ("gcp_project", "dns_managed_zone", "dns_record_name", "dns_targets")),
            ("provider", "azure_traffic_manager", ("azure_subscription_id", "tm_resource_group", "tm_profile")),
        ],
    )
    name = module.params["provider"]
    try:
        if name == "haproxy":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_haproxy import HAProxyTraffic
            provider = HAProxyTraffic(module)
        elif name == "nginx":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_nginx import NginxTraffic
            provider = NginxTraffic(module)
        elif name == "aws_route53":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_route53 import Route53Traffic
            provider = Route53Traffic(module)
        elif name == "aws_elbv2":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_elbv2 import ELBv2Traffic
            provider = ELBv2Traffic(module)
        elif name == "kubernetes":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_kubernetes import KubernetesTraffic
            provider = KubernetesTraffic(module)
        elif name == "gcp_cloud_run":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_cloud_run import CloudRunTraffic
            provider = CloudRunTraffic(module)
        elif name == "gcp_cloud_dns":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_cloud_dns import CloudDnsTraffic
            provider = CloudDnsTraffic(module)
        elif name == "azure_front_door":
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_azure_front_door import FrontDoorTraffic
            provider = FrontDoorTraffic(module)
        else:
            from ansible_collections.resilience.dr.plugins.module_utils._traffic_azure_tm import TrafficManagerTraffic
            provider = TrafficManagerTraffic(module)
    except DRError as error:
        error.msg = error.msg.rstrip() + " Nothing was changed."
        module.fail_error(error, changed=False)
    module.run_provider(provider)


if __name__ == "__main__":
    main()

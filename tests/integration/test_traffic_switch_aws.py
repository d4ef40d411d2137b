# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch providers aws_route53 and aws_elbv2 against moto's server.

Every assertion on state reads the records / listener / rule back from moto with boto3.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import pytest

from lablib import moto_server
from test_traffic_switch_lab import MODULE, run_module

boto3 = pytest.importorskip("boto3")

MOTO_PORT = 20510
UNUSED_PORT = 20597
REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto():
    with moto_server(MOTO_PORT) as url:
        yield url


def aws(url, service):
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def conn(url, **extra):
    args = {"aws_endpoint_url": url, "aws_region": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    args.update(extra)
    return args


# -- Route 53 -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zone(moto):
    r53 = aws(moto, "route53")
    zone_id = r53.create_hosted_zone(Name="example.test.", CallerReference="traffic-switch")["HostedZone"]["Id"].split("/")[-1]
    changes = []
    for ident, weight, ip in (("blue", 100, "192.0.2.10"), ("green", 0, "192.0.2.20")):
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": "app.example.test.", "Type": "A", "SetIdentifier": ident, "Weight": weight, "TTL": 60,
            "ResourceRecords": [{"Value": ip}]}})
    for ident, role, ip in (("east", "PRIMARY", "198.51.100.1"), ("west", "SECONDARY", "198.51.100.2")):
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": "db.example.test.", "Type": "A", "SetIdentifier": ident, "Failover": role, "TTL": 30,
            "ResourceRecords": [{"Value": ip}]}})
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return zone_id


def records(url, zone_id, name):
    out = {}
    for rrset in aws(url, "route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if rrset["Name"] == name and rrset.get("SetIdentifier"):
            out[rrset["SetIdentifier"]] = rrset
    return out


def test_route53_weighted(moto, zone):
    args = conn(moto, provider="aws_route53", route53_zone_id=zone, route53_record_name="app.example.test",
                weights={"blue": 90, "green": 10})
    check = run_module(MODULE, args, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["routing"] == {"blue": 90, "green": 10}
    assert records(moto, zone, "app.example.test.")["green"]["Weight"] == 0

    result = run_module(MODULE, args)
    assert not result["failed"], result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]]
    now = records(moto, zone, "app.example.test.")
    assert (now["blue"]["Weight"], now["green"]["Weight"]) == (90, 10)
    assert now["green"]["ResourceRecords"] == [{"Value": "192.0.2.20"}] and now["green"]["TTL"] == 60
    assert result["previous"] == {"blue": 100, "green": 0}
    assert result["undo"]["active"] == "blue" and "aws_secret_access_key" not in result["undo"]

    assert run_module(MODULE, args)["changed"] is False
    assert run_module(MODULE, args, check=True)["changed"] is False

    undo = dict(result["undo"], aws_access_key_id="testing", aws_secret_access_key="testing")
    assert run_module(MODULE, undo)["changed"] is True
    now = records(moto, zone, "app.example.test.")
    assert (now["blue"]["Weight"], now["green"]["Weight"]) == (100, 0)


def test_route53_failover_pair(moto, zone):
    args = conn(moto, provider="aws_route53", route53_zone_id=zone, route53_record_name="db.example.test.", active="west")
    check = run_module(MODULE, args, check=True)
    assert check["changed"] and check["previous"] == {"east": 100, "west": 0}
    assert records(moto, zone, "db.example.test.")["east"]["Failover"] == "PRIMARY"
    result = run_module(MODULE, args)
    assert not result["failed"], result
    now = records(moto, zone, "db.example.test.")
    assert (now["east"]["Failover"], now["west"]["Failover"]) == ("SECONDARY", "PRIMARY")
    assert run_module(MODULE, args)["changed"] is False
    bad = run_module(MODULE, dict(((k, v) for k, v in args.items() if k != "active"), weights={"east": 50, "west": 50}))
    assert bad["failed"] and bad["error"] == "INVALID_ARGUMENT"
    now = records(moto, zone, "db.example.test.")
    assert (now["east"]["Failover"], now["west"]["Failover"]) == ("SECONDARY", "PRIMARY")


def test_route53_bad_input(moto, zone):
    before = records(moto, zone, "app.example.test.")
    base = conn(moto, provider="aws_route53", route53_zone_id=zone, route53_record_name="app.example.test")
    cases = [
        (dict(base, weights={"blue": 50, "purple": 50}), "NOT_FOUND", "purple"),
        (dict(base, weights={"blue": 50, "green": 49}), "INVALID_ARGUMENT", "sum to 99"),
        (dict(base, route53_record_name="nothing.example.test", active="blue"), "NOT_FOUND", "nothing.example.test"),
        (dict(base, route53_zone_id="ZNOSUCHZONE", active="green"), "NOT_FOUND", "ZNOSUCHZONE"),
        (dict(base, aws_endpoint_url="http://127.0.0.1:%d" % UNUSED_PORT, active="green"), "CONNECTION_FAILED", str(UNUSED_PORT)),
    ]
    for args, code, needle in cases:
        result = run_module(MODULE, args)
        assert result["failed"] and result["error"] == code, result
        assert needle in result["msg"], result["msg"]
        assert "testing" not in result["msg"]
    assert records(moto, zone, "app.example.test.") == before


# -- ELBv2 ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alb(moto):
    ec2 = aws(moto, "ec2")
    elb = aws(moto, "elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.%d.0/24" % i, AvailabilityZone=REGION + z)["Subnet"]["SubnetId"]
               for i, z in ((1, "a"), (2, "b"))]
    lb = elb.create_load_balancer(Name="app", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    groups = dict((name, elb.create_target_group(Name="tg-" + name, Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"])
                  for name in ("blue", "green"))
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["blue"]}])["Listeners"][0]["ListenerArn"]
    rule = elb.create_rule(ListenerArn=listener, Priority=10, Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                           Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                               {"TargetGroupArn": groups["blue"], "Weight": 50}, {"TargetGroupArn": groups["green"], "Weight": 50}]}}]
                           )["Rules"][0]["RuleArn"]
    return {"listener": listener, "rule": rule, "groups": groups}


def forward_weights(actions, groups):
    names = dict((v, k) for k, v in groups.items())
    action = [a for a in actions if a["Type"] == "forward"][0]
    tgs = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
    return dict((names[t["TargetGroupArn"]], t.get("Weight", 1)) for t in tgs)


def test_elbv2_listener_weights(moto, alb):
    elb = aws(moto, "elbv2")
    args = conn(moto, provider="aws_elbv2", elbv2_listener_arn=alb["listener"], elbv2_target_groups=alb["groups"],
                weights={"blue": 80, "green": 20})
    check = run_module(MODULE, args, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["previous"] == {"blue": 100, "green": 0}

    def listener():
        return elb.describe_listeners(ListenerArns=[alb["listener"]])["Listeners"][0]["DefaultActions"]
    assert forward_weights(listener(), alb["groups"]) == {"blue": 1}

    result = run_module(MODULE, args)
    assert not result["failed"], result
    assert forward_weights(listener(), alb["groups"]) == {"blue": 80, "green": 20}
    assert run_module(MODULE, args)["changed"] is False
    assert run_module(MODULE, args, check=True)["changed"] is False

    green = run_module(MODULE, dict(((k, v) for k, v in args.items() if k != "weights"), active="green"))
    assert not green["failed"], green
    assert forward_weights(listener(), alb["groups"]) == {"blue": 0, "green": 100}
    assert green["undo"]["weights"] == {"blue": 80, "green": 20}


def test_elbv2_rule_active_and_bad_input(moto, alb):
    elb = aws(moto, "elbv2")

    def rule():
        return elb.describe_rules(RuleArns=[alb["rule"]])["Rules"][0]["Actions"]
    args = conn(moto, provider="aws_elbv2", elbv2_rule_arn=alb["rule"], elbv2_target_groups=alb["groups"], active="green")
    result = run_module(MODULE, args)
    assert not result["failed"], result
    assert result["previous"] == {"blue": 50, "green": 50}
    assert forward_weights(rule(), alb["groups"]) == {"blue": 0, "green": 100}
    assert run_module(MODULE, args)["changed"] is False

    bad = run_module(MODULE, dict(args, active="purple"))
    assert bad["failed"] and bad["error"] == "NOT_FOUND" and "purple" in bad["msg"]
    missing = run_module(MODULE, dict(args, elbv2_rule_arn=alb["rule"][:-4] + "ffff"))
    assert missing["failed"] and missing["error"] == "NOT_FOUND", missing
    assert forward_weights(rule(), alb["groups"]) == {"blue": 0, "green": 100}

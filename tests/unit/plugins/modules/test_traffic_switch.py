# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch: routing helpers, verify, and the haproxy / nginx providers driven through
the module (a fake HAProxy runtime API on a Unix socket; the real nginx binary for ``nginx -t``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import socket
import threading

import pytest


from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
from ansible_collections.resilience.dr.plugins.module_utils import _traffic_common as common
from ansible_collections.resilience.dr.plugins.module_utils._traffic_nginx import parse_upstream
from ansible_collections.resilience.dr.plugins.modules import traffic_switch
from modrun import run_main  # pylint: disable=import-error


def run(args, check=False, diff=False):
    out = run_main(traffic_switch.main, args, check, diff)
    return out.kind, out.payload


# -- routing helpers --------------------------------------------------------------------------
def test_validate_desired():
    assert common.validate_desired("green", None) == {"green": 100}
    assert common.validate_desired(None, {"blue": 90, "green": "10"}) == {"blue": 90, "green": 10}
    for active, weights, needle in [
        (None, None, "exactly one"),
        ("green", {"green": 100}, "exactly one"),
        (None, {"blue": 90, "green": 20}, "sum to 110"),
        (None, {"blue": -10, "green": 110}, "between 0 and 100"),
        (None, {"blue": True}, "boolean"),
        (None, {"blue": 50.5, "green": 49.5}, "whole number"),
        (None, {}, "non-empty"),
    ]:
        with pytest.raises(DRError) as info:
            common.validate_desired(active, weights)
        assert info.value.code == "INVALID_ARGUMENT"
        assert needle in info.value.msg


def test_expand_shares_and_undo():
    assert common.expand_desired({"green": 100}, ["blue", "green"]) == {"blue": 0, "green": 100}
    with pytest.raises(DRError) as info:
        common.expand_desired({"red": 100}, ["blue", "green"], "server of HAProxy backend web:")
    assert info.value.code == "NOT_FOUND" and "red" in info.value.msg and "web" in info.value.msg
    assert common.shares({"a": 1, "b": 2}) == {"a": 33.33, "b": 66.67}
    assert common.shares({"a": 0, "b": 0}) == {"a": 0, "b": 0}
    assert common.to_percent({"a": 33.33, "b": 66.67}) == {"a": 33, "b": 67}
    assert common.to_percent({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    params = {"provider": "haproxy", "haproxy_backend": "web", "haproxy_socket": "/s"}
    assert common.undo_args(params, {"blue": 100, "green": 0}, ("haproxy_backend", "haproxy_socket"))["active"] == "blue"
    assert common.undo_args(params, {"blue": 90, "green": 10}, ())["weights"] == {"blue": 90, "green": 10}
    assert common.same_routing({"a": 33.33, "b": 66.67}, {"a": 33, "b": 67})
    assert not common.same_routing({"a": 100, "b": 0}, {"a": 99, "b": 1})


def test_verify_http_and_tcp(httpserver):
    httpserver.expect_request("/ok").respond_with_data("green v2\n")
    httpserver.expect_request("/bad").respond_with_data("oops", status=500)
    sleeps = []
    ok = common.run_verify({"url": httpserver.url_for("/ok"), "body_regex": "^green", "retries": 2}, sleep=sleeps.append)
    assert ok["passed"] and ok["attempts"] == 1
    with pytest.raises(DRError) as info:
        common.run_verify({"url": httpserver.url_for("/ok"), "body_regex": "^blue", "retries": 2, "delay": "0.5s"}, sleep=sleeps.append)
    assert info.value.code == "VERIFY_FAILED" and "3 attempt" in info.value.msg and "^blue" in info.value.msg
    assert sleeps == [0.5, 0.5]
    with pytest.raises(DRError) as info:
        common.run_verify({"url": httpserver.url_for("/bad"), "retries": 0})
    assert "500" in info.value.msg
    assert common.run_verify({"url": httpserver.url_for("/bad"), "status": [500], "retries": 0})["passed"]
    port = httpserver.port
    assert common.run_verify({"host": "127.0.0.1", "port": port, "retries": 0})["passed"]
    with pytest.raises(DRError):
        common.check_verify_conf({"status": [200]})
    with pytest.raises(DRError):
        common.check_verify_conf({"url": "http://x/", "body_regex": "("})


# -- a fake HAProxy runtime API ---------------------------------------------------------------
HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port")


class FakeHAProxy(threading.Thread):
    """Answers the runtime API commands the provider uses; keeps the state in ``servers``.
    Mimics HAProxy 2.6: a server declared disabled reads admin state 5, then 4 after ready."""

    def __init__(self, path):
        super(FakeHAProxy, self).__init__()
        self.daemon = True
        self.path = path
        self.servers = {
            "blue": {"admin": 0, "op": 2, "weight": 100, "scur": 0},
            "green": {"admin": 5, "op": 0, "weight": 100, "scur": 0},
        }
        self.log = []
        self.drain_sessions = []  # scur values handed out one by one while blue drains
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.running = True

    def answer(self, line):
        words = line.split()
        self.log.append(line)
        if line.startswith("show servers state"):
            if len(words) > 3 and words[3] != "web":
                return "Can't find backend.\n"
            rows = ["1", HEADER]
            for sid, (name, srv) in enumerate(sorted(self.servers.items()), 1):
                rows.append("3 web %d %s 127.0.0.1 %d %d %d 100 1 6 3 4 6 0 0 0 - 80 - 0 0 - - 0" % (
                    sid, name, srv["op"], srv["admin"], srv["weight"]))
            return "\n".join(rows) + "\n\n"
        if line.startswith("show stat"):
            rows = ["# pxname,svname,qcur,qmax,scur,smax"]
            for name, srv in sorted(self.servers.items()):
                scur = srv["scur"]
                if name == "blue" and self.drain_sessions:
                    scur = self.drain_sessions.pop(0)
                rows.append("web,%s,0,0,%d,5" % (name, scur))
            return "\n".join(rows) + "\n\n"
        backend, dummy, server = words[2].partition("/")
        if backend != "web":
            return "No such backend.\n"
        if server not in self.servers:
            return "No such server.\n"
        srv = self.servers[server]
        if words[0] == "get":
            return "%d (initial 100)\n" % srv["weight"]
        if words[1] == "weight":
            srv["weight"] = int(words[3])
            return "\n"
        state = words[4]
        config_disabled = srv["admin"] & 0x04
        srv["admin"] = config_disabled | {"ready": 0, "drain": 0x08, "maint": 0x01}[state]
        srv["op"] = 0 if state == "maint" else 2
        return "\n"

    def run(self):
        while self.running:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.answer(data.decode().strip()).encode())

    def stop(self):
        self.running = False
        self.sock.close()


@pytest.fixture
def fake_haproxy(tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = FakeHAProxy(path)
    fake.start()
    yield fake
    fake.stop()


def hap(fake, **extra):
    args = {"provider": "haproxy", "haproxy_socket": fake.path, "haproxy_backend": "web"}
    args.update(extra)
    return args


def writes(fake):
    return [line for line in fake.log if line.startswith("set ")]


def test_haproxy_check_mode_then_apply_same_steps(captured, fake_haproxy):
    kind, check = run(hap(fake_haproxy, active="green", drain=True), check=True, diff=True)
    assert kind == "exit" and check["changed"] and check["check_mode"]
    assert writes(fake_haproxy) == []
    assert check["diff"]["before"]["routing"] == {"blue": 100, "green": 0}
    assert check["diff"]["after"]["routing"] == {"blue": 0, "green": 100}
    assert check["diff"]["after"]["detail"]["blue"]["state"] == "maint"
    assert check["diff"]["after"]["detail"]["green"]["state"] == "ready"
    fake_haproxy.drain_sessions = [3, 2, 1, 0]
    kind, result = run(hap(fake_haproxy, active="green", drain=True))
    assert kind == "exit", result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]]
    assert writes(fake_haproxy) == ["set server web/green state ready", "set server web/blue state drain",
                                    "set server web/blue state maint"]
    assert fake_haproxy.servers["green"]["admin"] == 4  # config-disabled bit stays: still ready
    assert fake_haproxy.servers["blue"]["admin"] & 0x23
    drained = [s for s in result["steps"] if s["action"] == "wait_drained"][0]["result"]
    assert drained["drained"] is True and drained["sessions_left"] == 0
    assert result["routing"] == {"blue": 0, "green": 100}
    assert result["previous"] == {"blue": 100, "green": 0}
    assert result["undo"] == {"provider": "haproxy", "haproxy_socket": fake_haproxy.path, "haproxy_backend": "web",
                              "haproxy_timeout": 5.0, "active": "blue"}
    # admin state 4 (disabled in the configuration, then made ready) reads as ready: idempotent
    fake_haproxy.log[:] = []
    kind, again = run(hap(fake_haproxy, active="green", drain=True))
    assert kind == "exit" and again["changed"] is False and writes(fake_haproxy) == []


def test_haproxy_state_file_written_after_change(captured, fake_haproxy, tmp_path):
    path = tmp_path / "server-state"
    kind, result = run(hap(fake_haproxy, active="green", haproxy_state_file=str(path)))
    assert kind == "exit", result
    assert result["steps"][-1]["action"] == "save_server_state"
    lines = path.read_text().splitlines()
    assert lines[0] == "1" and lines[1].startswith("# be_id")
    rows = dict((line.split()[3], line.split()) for line in lines[2:] if line.strip())
    assert rows["green"][6] == "4" and rows["blue"][6] == "1"  # srv_admin_state as HAProxy reported it
    path.unlink()
    kind, again = run(hap(fake_haproxy, active="green", haproxy_state_file=str(path)))
    assert again["changed"] is False and not path.exists()


def test_haproxy_drain_timeout_still_takes_server_out(captured, fake_haproxy):
    fake_haproxy.servers["blue"]["scur"] = 7
    kind, result = run(hap(fake_haproxy, active="green", drain=True, drain_timeout="0.3s"))
    assert kind == "exit", result
    drained = [s for s in result["steps"] if s["action"] == "wait_drained"][0]["result"]
    assert drained == {"drained": False, "sessions_left": 7, "waited": drained["waited"]}
    assert 0.3 <= drained["waited"] < 2
    assert fake_haproxy.servers["blue"]["admin"] & 0x01


def test_haproxy_weights(captured, fake_haproxy):
    fake_haproxy.servers["green"]["admin"] = 4
    fake_haproxy.servers["green"]["op"] = 2
    fake_haproxy.servers["blue"]["weight"] = 180
    fake_haproxy.servers["green"]["weight"] = 20
    kind, same = run(hap(fake_haproxy, weights={"blue": 90, "green": 10}))
    assert kind == "exit" and same["changed"] is False  # 180:20 is already 90 %/10 %
    kind, result = run(hap(fake_haproxy, weights={"blue": 50, "green": 50}))
    assert kind == "exit" and result["changed"]
    assert (fake_haproxy.servers["blue"]["weight"], fake_haproxy.servers["green"]["weight"]) == (50, 50)
    assert result["undo"]["weights"] == {"blue": 90, "green": 10}


def test_haproxy_errors_change_nothing(captured, fake_haproxy, tmp_path):
    for args, code, needle in [
        (hap(fake_haproxy, active="red"), "NOT_FOUND", "red"),
        (hap(fake_haproxy, haproxy_backend="api", active="green"), "NOT_FOUND", "api"),
        (hap(fake_haproxy, weights={"blue": 60, "green": 60}), "INVALID_ARGUMENT", "120"),
        (hap(fake_haproxy, haproxy_socket=str(tmp_path / "none.sock"), active="green"), "CONNECTION_FAILED", "none.sock"),
        (hap(fake_haproxy, active="green", drain_timeout="soon"), "INVALID_ARGUMENT", "drain_timeout"),
        (hap(fake_haproxy, active="green", verify={"status": [200]}), "INVALID_ARGUMENT", "verify"),
    ]:
        kind, result = run(args)
        assert kind == "fail", result
        assert result["error"] == code and needle in result["msg"], result
        assert result["changed"] is False and "Nothing was changed" in result["msg"]
    assert writes(fake_haproxy) == []


def test_haproxy_verify_failure_reverts(captured, fake_haproxy, httpserver):
    httpserver.expect_request("/").respond_with_data("blue v1\n")
    verify = {"url": httpserver.url_for("/"), "body_regex": "green", "retries": 1, "delay": "0.05s"}
    kind, result = run(hap(fake_haproxy, active="green", verify=verify))
    assert kind == "fail"
    assert result["error"] == "VERIFY_FAILED" and result["reverted"] is True and "reverted" in result["msg"]
    assert result["routing"] == {"blue": 100, "green": 0}
    assert fake_haproxy.servers["blue"]["admin"] == 0 and fake_haproxy.servers["green"]["admin"] & 0x01

    # without revert_on_failure the switch stays and the message says so
    kind, result = run(hap(fake_haproxy, active="green", revert_on_failure=False,
                           verify={"url": httpserver.url_for("/"), "body_regex": "green", "retries": 0}))
    assert kind == "fail" and result.get("reverted") is None and result["changed"] is True
    assert result["undo"]["active"] == "blue" and result["previous"] == {"blue": 100, "green": 0}
    assert fake_haproxy.servers["blue"]["admin"] & 0x01 and fake_haproxy.servers["green"]["admin"] == 4


# -- nginx (real nginx -t, no running server) -----------------------------------------------------
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_setup(tmp_path):
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("upstream app {\n    server 127.0.0.1:20581;\n}\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n  access_log off;\n  include %s;\n"
        "  server { listen 127.0.0.1:20589; location / { proxy_pass http://app; } }\n}\n" % (tmp_path, tmp_path, upstream))
    return {"provider": "nginx", "nginx_upstream_file": str(upstream), "nginx_upstream_name": "app",
            "nginx_servers": {"blue": "127.0.0.1:20581", "green": "127.0.0.1:20582"}, "nginx_config": str(conf),
            "nginx_binary": NGINX, "nginx_reload_command": ["true"]}


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
def test_nginx_write_check_and_previous(captured, tmp_path):
    args = nginx_setup(tmp_path)
    original = (tmp_path / "upstream.conf").read_text()
    kind, check = run(dict(args, weights={"blue": 75, "green": 25}), check=True, diff=True)
    assert kind == "exit" and check["changed"]
    assert (tmp_path / "upstream.conf").read_text() == original
    assert "weight=25" in check["diff"]["after"]["detail"]["content"]
    kind, result = run(dict(args, weights={"blue": 75, "green": 25}))
    assert kind == "exit", result
    text = (tmp_path / "upstream.conf").read_text()
    assert parse_upstream(text, "app") == [("127.0.0.1:20581", 75, False, False), ("127.0.0.1:20582", 25, False, False)]
    assert (tmp_path / "upstream.conf.previous").read_text() == original
    assert [s["action"] for s in result["steps"]] == ["write_upstream_file", "reload_nginx"]
    kind, again = run(dict(args, weights={"blue": 75, "green": 25}))
    assert kind == "exit" and again["changed"] is False


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
def test_nginx_broken_template_is_refused(captured, tmp_path):
    args = nginx_setup(tmp_path)
    original = (tmp_path / "upstream.conf").read_text()
    kind, result = run(dict(args, active="green", nginx_template="upstream __UPSTREAM__ {\n__SERVERS__ nonsense;\n}\n"))
    assert kind == "fail" and result["error"] == "APPLY_FAILED"
    assert "nginx -t" in result["msg"] and "nonsense" in result["msg"] and "Nothing was changed" in result["msg"]
    assert (tmp_path / "upstream.conf").read_text() == original
    assert not (tmp_path / "upstream.conf.previous").exists()
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith(".traffic_switch")] == []
    kind, result = run(dict(args, active="green", nginx_template="upstream __UPSTREAM__ {}\n"))
    assert kind == "fail" and "__SERVERS__" in result["msg"]


def test_nginx_parse_upstream():
    text = "# c\nupstream other { server 10.0.0.9:80; }\nupstream app {\n  server a:1 weight=3 max_fails=1;\n" \
           "  server b:2 down; # b\n  server c:3 backup;\n}\n"
    assert parse_upstream(text, "app") == [("a:1", 3, False, False), ("b:2", 1, True, False), ("c:3", 1, False, True)]
    assert parse_upstream(text, "missing") is None


# -- gcp_cloud_dns and azure_traffic_manager (pytest-httpserver standing in for the APIs) ------------
def dns_args(httpserver, **extra):
    args = {"provider": "gcp_cloud_dns", "gcp_endpoint": httpserver.url_for("/").rstrip("/"), "gcp_access_token": "tok",
            "gcp_project": "p", "dns_managed_zone": "z", "dns_record_name": "db.example.com",
            "dns_targets": {"primary": ["10.0.0.5"], "standby": ["10.1.0.5"]}}
    args.update(extra)
    return args


RRSET_URI = "/dns/v1/projects/p/managedZones/z/rrsets/db.example.com./A"


def test_cloud_dns_helpers():
    from ansible_collections.resilience.dr.plugins.module_utils import _traffic_cloud_dns as dns
    assert dns.fqdn("a.example.com") == "a.example.com." and dns.fqdn("a.example.com.") == "a.example.com."
    assert dns.check_targets({"primary": "10.0.0.5", "standby": ["10.1.0.6", " 10.1.0.5"]}) == {
        "primary": ["10.0.0.5"], "standby": ["10.1.0.6", "10.1.0.5"]}
    for targets, needle in [({}, "must map"), ({"a": []}, "non-empty"), ({"a": ["1.1.1.1"], "b": ["1.1.1.1"]}, "same rrdatas")]:
        with pytest.raises(DRError) as info:
            dns.check_targets(targets)
        assert info.value.code == "INVALID_ARGUMENT" and needle in info.value.msg
    rrset = {"kind": "dns#resourceRecordSet", "name": "a.", "type": "A", "ttl": 5, "routingPolicy": {"kind": "x", "wrr": {"items": [
        {"kind": "y", "weight": 1.0, "rrdatas": ["1.1.1.1"], "signatureRrdatas": ["sig"]}]}}}
    assert dns.clean(rrset) == {"name": "a.", "type": "A", "ttl": 5, "routingPolicy": {"wrr": {"items": [{"weight": 1.0, "rrdatas": ["1.1.1.1"]}]}}}
    assert rrset["routingPolicy"]["kind"] == "x"  # the original is left alone


def test_cloud_dns_reads_wrr_weights(captured, httpserver):
    httpserver.expect_request(RRSET_URI, method="GET").respond_with_json({
        "kind": "dns#resourceRecordSet", "name": "db.example.com.", "type": "A", "ttl": 30, "routingPolicy": {"wrr": {"items": [
            {"weight": 3.0, "rrdatas": ["10.0.0.5"]}, {"weight": 1.0, "rrdatas": ["10.1.0.5"]}]}}})
    kind, same = run(dns_args(httpserver, weights={"primary": 75, "standby": 25}))
    assert kind == "exit" and same["changed"] is False and same["previous"] == {"primary": 75, "standby": 25}
    assert same["undo"]["weights"] == {"primary": 75, "standby": 25}
    kind, check = run(dns_args(httpserver, active="standby"), check=True)
    assert kind == "exit" and check["changed"]
    assert check["plan"][0]["detail"]["additions"] == [{"name": "db.example.com.", "type": "A", "ttl": 30, "rrdatas": ["10.1.0.5"]}]
    assert [r for r, dummy in httpserver.log if r.method != "GET"] == []


def test_cloud_dns_refuses_geo_policy_and_concurrent_change(captured, httpserver):
    httpserver.expect_oneshot_request(RRSET_URI, method="GET").respond_with_json({
        "name": "db.example.com.", "type": "A", "ttl": 30, "routingPolicy": {"geo": {"items": []}}})
    kind, result = run(dns_args(httpserver, active="standby"))
    assert kind == "fail" and result["error"] == "PRECONDITION_FAILED" and "geo" in result["msg"]
    httpserver.expect_request(RRSET_URI, method="GET").respond_with_json({"name": "db.example.com.", "type": "A", "ttl": 30,
                                                                         "rrdatas": ["10.0.0.5"]})
    httpserver.expect_request("/dns/v1/projects/p/managedZones/z/changes", method="POST").respond_with_json(
        {"error": {"code": 412, "message": "Precondition not met for 'entity.change.deletions[0]'"}}, status=412)
    kind, result = run(dns_args(httpserver, active="standby"))
    assert kind == "fail" and result["error"] == "APPLY_FAILED", result
    assert "changed since it was read" in result["msg"] and "Nothing was changed" in result["msg"] and result["changed"] is False


def test_cloud_dns_and_traffic_manager_required_options(captured):
    kind, result = run({"provider": "gcp_cloud_dns", "gcp_project": "p", "dns_managed_zone": "z", "dns_record_name": "a.example.com",
                        "active": "primary"})
    assert kind == "fail" and "dns_targets" in result["msg"]
    kind, result = run({"provider": "azure_traffic_manager", "azure_subscription_id": "s", "tm_resource_group": "g", "active": "a"})
    assert kind == "fail" and "tm_profile" in result["msg"]


def test_traffic_manager_weight_mapping():
    from ansible_collections.resilience.dr.plugins.module_utils._traffic_azure_tm import tm_weight
    assert [tm_weight(p) for p in (1, 10, 55, 100)] == [10, 100, 550, 1000]


def test_traffic_manager_follows_async_update(captured, httpserver):
    """An Endpoints_Update answered 202 with Azure-AsyncOperation is polled until Succeeded."""
    from werkzeug.wrappers import Response
    profile = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/trafficmanagerprofiles/tm"
    endpoints = {"a": {"endpointStatus": "Enabled", "weight": 1, "priority": 1},
                 "b": {"endpointStatus": "Disabled", "weight": 1, "priority": 2}}
    polls = []

    def get_profile(request):
        return Response(json.dumps({"name": "tm", "properties": {"trafficRoutingMethod": "Priority", "endpoints": [
            {"id": "%s/externalEndpoints/%s" % (profile, n), "name": n, "type": "Microsoft.Network/trafficManagerProfiles/externalEndpoints",
             "properties": dict(p)} for n, p in sorted(endpoints.items())]}}), content_type="application/json")

    def patch(request):
        name = request.path.rsplit("/", 1)[-1]
        endpoints[name].update(json.loads(request.data)["properties"])
        return Response(json.dumps({"name": name}), status=202, content_type="application/json",
                        headers={"Azure-AsyncOperation": httpserver.url_for("/op") + "?api-version=2022-04-01", "Retry-After": "0"})

    def operation(request):
        polls.append(1)
        return Response(json.dumps({"status": "Succeeded" if len(polls) % 2 == 0 else "InProgress"}), content_type="application/json")

    httpserver.expect_request(profile, method="GET", query_string="api-version=2022-04-01").respond_with_handler(get_profile)
    httpserver.expect_request(re.compile(profile + "/externalEndpoints/.*"), method="PATCH").respond_with_handler(patch)
    httpserver.expect_request("/op", method="GET").respond_with_handler(operation)
    kind, result = run({"provider": "azure_traffic_manager", "azure_resource_manager_endpoint": httpserver.url_for("/").rstrip("/"),
                        "azure_access_token": "tok", "azure_subscription_id": "s", "tm_resource_group": "g", "tm_profile": "tm",
                        "active": "b"})
    assert kind == "exit", result
    assert endpoints["a"]["endpointStatus"] == "Disabled" and endpoints["b"]["endpointStatus"] == "Enabled"
    assert len(polls) == 4 and result["routing"] == {"a": 0, "b": 100}
    assert all(r.headers.get("Authorization") == "Bearer tok" for r, dummy in httpserver.log)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch against the real lab: HAProxy runtime API and the edge nginx.

One lab instance ("traffic", ports 20000-20099) for the whole file. The tests run in order:
HAProxy blue -> green with drain under load, green broken -> revert, bad input, canary over
the TCP admin socket, then nginx. Every assertion on state reads HAProxy's own
``show servers state`` / ``show stat``, the files on disk or the responses of the frontends.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from lablib import ROOT, VENV_BIN, Lab, ansible_env, wait_until

MODULE = "resilience.dr.traffic_switch"
PORT_BASE = 20000
UNUSED_PORT = 20598  # in this file's port block, nothing listens there


def run_module(module, args, check=False, diff=False, timeout=300):
    """Run one module through ``ansible`` ad hoc (minimal callback) and return its result.

    (lablib.run_module asks for an ``ansible.builtin.json`` callback that ansible-core does not ship.)
    """
    cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, check=False,
                          env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="minimal"))
    match = re.search(r"^localhost \| ([A-Z!]+) => \{", proc.stdout, re.MULTILINE)
    if not match:
        raise AssertionError("no result from ansible (rc=%s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    result = json.JSONDecoder().raw_decode(proc.stdout[match.end() - 1:])[0]
    result["failed"] = match.group(1).startswith("FAILED")
    return result


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up("traffic", port_base=PORT_BASE)
    try:
        yield instance
    finally:
        instance.down()


def hap_args(lab, **extra):
    args = {"provider": "haproxy", "haproxy_socket": lab.info["haproxy"]["socket"], "haproxy_backend": "web"}
    args.update(extra)
    return args


def in_maint(row):
    return int(row["srv_admin_state"]) & 0x23 != 0


def routing_from_haproxy(lab):
    """Which servers of 'web' take traffic, read from HAProxy itself."""
    state = lab.servers_state("web")
    return dict((name, not in_maint(row) and int(row["srv_admin_state"]) & 0x18 == 0 and int(row["srv_uweight"]) > 0)
                for name, row in state.items())


def get(port, timeout=3):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Load(threading.Thread):
    """Bounded HTTP load: sequential GETs, paced, until stopped or ``seconds`` have passed
    (bounded by time, not by count: on a loaded machine the switch may take seconds)."""

    def __init__(self, port, seconds=120, pause=0.002):
        super(Load, self).__init__()
        self.port = port
        self.seconds = seconds
        self.pause = pause
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.bodies = {}

    def run(self):
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            time.sleep(self.pause)
            try:
                status, body = get(self.port)
            except Exception as exc:  # pylint: disable=broad-except
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append("HTTP %s" % status)
            else:
                self.ok += 1
                key = body.split()[0] if body.strip() else "?"
                self.bodies[key] = self.bodies.get(key, 0) + 1


def test_haproxy_blue_to_green_with_drain_under_load(lab):
    http = lab.info["haproxy"]["http_port"]
    wait_until(lambda: get(http)[1].startswith("blue"), what="blue behind HAProxy")
    start = lab.servers_state("web")
    assert not in_maint(start["blue"]) and in_maint(start["green"])

    args = hap_args(lab, active="green", drain=True, drain_timeout="20s",
                    verify={"url": "http://127.0.0.1:%d/" % http, "body_regex": "^green", "retries": 10, "delay": "0.5s"})

    # 1. check mode predicts, changes nothing
    check = run_module(MODULE, args, check=True, diff=True)
    assert not check.get("failed"), check
    assert check["changed"] is True
    assert check["routing"] == {"blue": 0, "green": 100}
    assert check["previous"] == {"blue": 100, "green": 0}
    assert check["before"]["routing"] == {"blue": 100, "green": 0}
    predicted = [(s["action"], s["target"]) for s in check["steps"]]
    assert predicted == [("set_state", "web/green"), ("wait_up", "web/green"), ("set_state", "web/blue"),
                         ("wait_drained", "web/blue"), ("set_state", "web/blue")]
    assert routing_from_haproxy(lab) == {"blue": True, "green": False}

    # 2. apply under a bounded load
    load = Load(http)
    load.start()
    time.sleep(0.5)
    result = run_module(MODULE, args)
    time.sleep(0.5)
    load.stop.set()
    load.join(30)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert [(s["action"], s["target"]) for s in result["steps"]] == predicted
    assert load.failures == [], load.failures[:10]
    assert load.ok > 50, load.ok
    assert load.bodies.get("blue") and load.bodies.get("green"), load.bodies
    drained = [s for s in result["steps"] if s["action"] == "wait_drained"][0]
    assert drained["result"]["drained"] is True
    print("\nswitch under load: %d requests ok, %d failed, bodies %s; module %.3fs, steps %s" % (
        load.ok, len(load.failures), load.bodies, result["seconds"],
        [(s["action"], s["target"], s["seconds"]) for s in result["steps"]]))

    # 3. independent read: HAProxy's own state matches what the module returned
    state = lab.servers_state("web")
    assert in_maint(state["blue"]) and not in_maint(state["green"])
    for name, detail in result["after"]["detail"].items():
        assert int(state[name]["srv_admin_state"]) == detail["admin_state"], (name, state[name], detail)
        assert int(state[name]["srv_uweight"]) == detail["weight"]
    assert result["routing"] == {"blue": 0, "green": 100}
    assert result["undo"]["active"] == "blue"
    assert result["verify"]["passed"] is True
    assert all(get(http)[1].startswith("green") for dummy in range(10))

    # 4. idempotent, and check mode agrees on the converged state
    again = run_module(MODULE, args)
    assert again["changed"] is False and again["steps"] == []
    assert run_module(MODULE, args, check=True)["changed"] is False
    assert lab.servers_state("web")["green"]["srv_admin_state"] == state["green"]["srv_admin_state"]

    # 5. the returned undo puts blue back
    undo = run_module(MODULE, result["undo"])
    assert not undo.get("failed"), undo
    assert routing_from_haproxy(lab) == {"blue": True, "green": False}


def test_haproxy_verify_failure_reverts_to_blue(lab):
    http = lab.info["haproxy"]["http_port"]
    green = lab.info["nginx"]["green"]
    assert routing_from_haproxy(lab) == {"blue": True, "green": False}
    with open(green["pid_file"]) as handle:
        pid = int(handle.read().strip())
    os.kill(pid, signal.SIGTERM)  # stop only green's nginx master (ours, by PID)
    try:
        wait_until(lambda: not os.path.exists("/proc/%d" % pid), timeout=10, what="green nginx to stop")
        result = run_module(MODULE, hap_args(lab, active="green", verify={
            "url": "http://127.0.0.1:%d/" % http, "body_regex": "^green", "retries": 3, "delay": "0.3s", "timeout": "2s"}))
        assert result.get("failed") is True
        assert result["error"] == "VERIFY_FAILED"
        assert "reverted" in result["msg"]
        assert result["reverted"] is True
        # read from HAProxy: blue is back in service, green out
        assert routing_from_haproxy(lab) == {"blue": True, "green": False}
        assert get(http)[1].startswith("blue")
    finally:
        subprocess.run([lab.info.get("nginx_bin", "nginx"), "-c", green["config"]], check=True)
        wait_until(lambda: get(green["port"])[0] == 200, what="green nginx back")


def test_haproxy_bad_input_changes_nothing(lab):
    before = lab.servers_state("web")
    cases = [
        (hap_args(lab, weights={"blue": 90, "green": 20}), "INVALID_ARGUMENT", "sum to 110"),
        (hap_args(lab, active="red"), "NOT_FOUND", "red"),
        (hap_args(lab, haproxy_backend="nope", active="green"), "NOT_FOUND", "nope"),
        (hap_args(lab, haproxy_socket="127.0.0.1:%d" % UNUSED_PORT, active="green"), "CONNECTION_FAILED", str(UNUSED_PORT)),
        (hap_args(lab, haproxy_socket="/nonexistent/haproxy.sock", active="green"), "CONNECTION_FAILED", "/nonexistent"),
    ]
    for args, code, needle in cases:
        result = run_module(MODULE, args)
        assert result.get("failed") is True, result
        assert result["error"] == code, result
        assert needle in result["msg"], result["msg"]
        assert result["changed"] is False
    after = lab.servers_state("web")
    for name in before:
        assert before[name]["srv_admin_state"] == after[name]["srv_admin_state"]
        assert before[name]["srv_uweight"] == after[name]["srv_uweight"]


def test_haproxy_canary_weights_over_tcp_socket(lab):
    http = lab.info["haproxy"]["http_port"]
    args = hap_args(lab, haproxy_socket=lab.info["haproxy"]["admin_tcp"], weights={"blue": 90, "green": 10})
    check = run_module(MODULE, args, check=True)
    assert check["changed"] is True and routing_from_haproxy(lab) == {"blue": True, "green": False}
    result = run_module(MODULE, args)
    assert not result.get("failed"), result
    state = lab.servers_state("web")
    assert (int(state["blue"]["srv_uweight"]), int(state["green"]["srv_uweight"])) == (90, 10)
    assert not in_maint(state["green"]) and not in_maint(state["blue"])
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]]
    wait_until(lambda: lab.servers_state("web")["green"]["srv_op_state"] == "2", what="green up by health check")
    seen = {}
    for dummy in range(200):
        body = get(http)[1].split()[0]
        seen[body] = seen.get(body, 0) + 1
    assert 5 <= seen.get("green", 0) <= 40, seen
    assert run_module(MODULE, args)["changed"] is False
    undo = run_module(MODULE, result["undo"])
    assert undo["changed"] is True
    assert routing_from_haproxy(lab) == {"blue": True, "green": False}


def nginx_args(lab, **extra):
    edge = lab.info["nginx"]["edge"]
    args = {
        "provider": "nginx",
        "nginx_upstream_file": edge["upstream_file"],
        "nginx_upstream_name": edge.get("upstream_name", "lab_app"),
        "nginx_servers": {"blue": "127.0.0.1:%d" % lab.info["nginx"]["blue"]["port"],
                          "green": "127.0.0.1:%d" % lab.info["nginx"]["green"]["port"]},
        "nginx_config": edge["config"],
        "nginx_pid_file": edge["pid_file"],
        "nginx_binary": lab.info.get("nginx_bin", "nginx"),
    }
    args.update(extra)
    return args


def read(path):
    with open(path) as handle:
        return handle.read()


def test_nginx_switch_seen_in_responses(lab):
    edge = lab.info["nginx"]["edge"]
    port = edge["port"]
    original = read(edge["upstream_file"])
    assert all(get(port)[1].startswith("blue") for dummy in range(5))
    args = nginx_args(lab, active="green")

    check = run_module(MODULE, args, check=True, diff=True)
    assert check["changed"] is True and check["routing"] == {"blue": 0, "green": 100}
    assert read(edge["upstream_file"]) == original
    assert "127.0.0.1:%d;" % lab.info["nginx"]["green"]["port"] in check["after"]["detail"]["content"]

    result = run_module(MODULE, args)
    assert not result.get("failed"), result
    assert [(s["action"], s["target"]) for s in result["steps"]] == [(s["action"], s["target"]) for s in check["steps"]]
    wait_until(lambda: all(get(port)[1].startswith("green") for dummy in range(5)), timeout=10, what="green via edge")
    assert all(get(port)[1].startswith("green") for dummy in range(20))
    assert read(edge["upstream_file"] + ".previous") == original
    assert result["previous"] == {"blue": 100, "green": 0}
    assert result["undo"]["active"] == "blue"
    assert not [n for n in os.listdir(os.path.dirname(edge["upstream_file"])) if n.startswith(".traffic_switch")]

    assert run_module(MODULE, args)["changed"] is False
    assert run_module(MODULE, args, check=True)["changed"] is False


def test_nginx_broken_template_refused_running_config_untouched(lab):
    edge = lab.info["nginx"]["edge"]
    port = edge["port"]
    before = read(edge["upstream_file"])
    broken = "upstream __UPSTREAM__ {\n__SERVERS__    no_such_directive on;\n}\n"
    result = run_module(MODULE, nginx_args(lab, weights={"blue": 50, "green": 50}, nginx_template=broken))
    assert result.get("failed") is True
    assert result["error"] == "APPLY_FAILED"
    assert "nginx -t" in result["msg"] and "no_such_directive" in result["msg"]
    assert "Nothing was changed" in result["msg"]
    assert read(edge["upstream_file"]) == before
    assert all(get(port)[1].startswith("green") for dummy in range(20))
    assert not [n for n in os.listdir(os.path.dirname(edge["upstream_file"])) if n.startswith(".traffic_switch")]

    # canary split, then verify failure on nginx reverts the file and the responses
    split = run_module(MODULE, nginx_args(lab, weights={"blue": 50, "green": 50}))
    assert not split.get("failed"), split
    wait_until(lambda: len(set(get(port)[1].split()[0] for dummy in range(6))) == 2, timeout=10, what="both colours via edge")
    split_file = read(edge["upstream_file"])
    failed = run_module(MODULE, nginx_args(lab, active="blue", verify={
        "url": "http://127.0.0.1:%d/" % port, "body_regex": "^purple", "retries": 1, "delay": "0.2s"}))
    assert failed["error"] == "VERIFY_FAILED" and "reverted" in failed["msg"]
    assert read(edge["upstream_file"]) == split_file
    wait_until(lambda: len(set(get(port)[1].split()[0] for dummy in range(6))) == 2, timeout=10, what="split again")

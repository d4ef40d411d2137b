# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rollback.yml level traffic on a private lab: a green release recorded as a switch,
then the rollback puts blue back from the record's undo, after capture_state kept the state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import subprocess
import time

import pytest

from lablib import GREEN_RELEASE, Lab, captures, records, run_playbook, wait_until, web

pytestmark = pytest.mark.lab

PORT_BASE = 29400
NAME = "rollback-pb"


def lab_vars(**extra):
    out = {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": os.path.join("/var/tmp/resilience-dr", NAME)}
    out.update(extra)
    return out


RESTORE_PORT = PORT_BASE + 50


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


def test_rollback_without_a_switch_record_refuses(lab):
    out = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic"))
    assert out.returncode != 0
    assert "No completed switch record with an undo" in out.stdout
    assert [r["status"] for r in records(lab) if r["kind"] == "rollback"] == ["started", "failed"]
    bad = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="everything"))
    assert bad.returncode != 0 and "Give rollback_level" in bad.stdout


def test_traffic_rollback_after_a_green_release(lab, tmp_path):
    playbook = tmp_path / "green.yml"
    playbook.write_text(GREEN_RELEASE)
    out = run_playbook(str(playbook), lab_vars())
    assert out.returncode == 0, out.stdout[-3000:]
    assert web(lab) == {"blue": False, "green": True}
    assert lab.http_get()[1].strip() == "green v2"
    before_captures = captures(lab)
    before_records = records(lab)

    # dry run: nothing switched, nothing captured, nothing recorded
    dry = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic"), check=True)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "DRY RUN (check mode), nothing changed" in dry.stdout
    assert "'blue': 0, 'green': 100} -> {'blue': 100, 'green': 0}" in dry.stdout
    assert web(lab) == {"blue": False, "green": True}
    assert captures(lab) == before_captures and records(lab) == before_records

    gate = [{"url": "http://127.0.0.1:%d/" % lab.info["haproxy"]["http_port"], "contains": "blue v1"}]
    real = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_reason="v2 breaks checkout",
                                                           health_gate_http_checks=gate))
    assert real.returncode == 0, real.stdout[-3000:]
    # blue is back: HAProxy's own state and the page served through it
    assert web(lab) == {"blue": True, "green": False}
    assert lab.http_get()[1].strip() == "blue v1"
    # capture_state's folder: manifest, HAProxy stats taken BEFORE the switch back, a restorable dump, log tails
    new = [c for c in captures(lab) if c not in before_captures]
    assert len(new) == 1
    with open(os.path.join(new[0], "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["reason"] == "rollback level traffic: v2 breaks checkout"
    names = {os.path.relpath(f["path"], new[0]) for f in manifest["files"]}
    assert {"database.dump", "haproxy_stat.csv", "logs/var__tmp__resilience-dr__%s__log__primary.log" % NAME} <= names
    for entry in manifest["files"]:
        assert os.path.getsize(entry["path"]) == entry["size"] and len(entry["checksum"]) == 64
    with open(os.path.join(new[0], "haproxy_stat.csv")) as handle:
        stat = [line.split(",") for line in handle if line.startswith("web,")]
    assert {row[1]: row[17] for row in stat if row[1] in ("blue", "green")} == {"blue": "MAINT", "green": "UP"}
    listing = subprocess.run([os.path.join(lab.info["pg_bin"], "pg_restore"), "-l", os.path.join(new[0], "database.dump")],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert "TABLE public events" in listing
    assert oct(os.stat(os.path.join(new[0], "database.dump")).st_mode & 0o777) == "0o600"
    # the record: started then completed, with the switch back's own undo (back to green)
    rollback = [r for r in records(lab) if r["kind"] == "rollback"][-2:]
    assert [r["status"] for r in rollback] == ["started", "completed"]
    assert rollback[1]["undo"]["active"] == "green"
    assert rollback[1]["details"]["traffic_previous"] == {"blue": 0, "green": 100}

    # again: the last switch record still says blue, which is where traffic is: nothing changes
    again = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "(changed: False)" in again.stdout
    assert web(lab) == {"blue": True, "green": False}


# A release that switches two things: HAProxy's web backend, then the nginx edge's upstream.
# Each switch is recorded with the same details.release, which is what makes them one release.
TWO_SWITCH_RELEASE = """---
- name: Release {{ release }} through HAProxy and the nginx edge, each switch recorded with its way back
  hosts: load_balancers
  gather_facts: false
  tasks:
    - name: Send HAProxy's web traffic to green
      resilience.dr.traffic_switch:
        provider: haproxy
        haproxy_socket: "{{ dr_haproxy_socket }}"
        haproxy_backend: "{{ dr_haproxy_http_backend }}"
        active: green
      register: web_switch
    - name: Record the HAProxy switch
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        reason: "release {{ release }}"
        details: {release: "{{ release }}", target: haproxy}
        undo: "{{ web_switch.undo }}"
    - name: Record a switch whose way back cannot work (a backend HAProxy does not have)
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        details: {release: "{{ release }}", target: bogus}
        undo: {provider: haproxy, haproxy_socket: "{{ dr_haproxy_socket }}", haproxy_backend: no_such_backend, active: blue}
      when: with_bogus | default(false) | bool
    - name: Send the edge's traffic to green
      resilience.dr.traffic_switch: "{{ edge_args | combine({'active': 'green'}) }}"
      register: edge_switch
    - name: Record the edge switch
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        reason: "release {{ release }}"
        details: {release: "{{ release }}", target: edge}
        undo: "{{ edge_switch.undo }}"
"""


def edge_args(lab):
    edge = lab.info["nginx"]["edge"]
    return {"provider": "nginx", "nginx_upstream_file": edge["upstream_file"], "nginx_upstream_name": edge.get("upstream_name", "lab_app"),
            "nginx_servers": {colour: "127.0.0.1:%d" % lab.info["nginx"][colour]["port"] for colour in ("blue", "green")},
            "nginx_config": edge["config"], "nginx_pid_file": edge["pid_file"], "nginx_binary": lab.info.get("nginx_bin", "nginx")}


def edge(lab):
    """Which colour the edge's upstream file names, and what the edge serves (5 answers)."""
    with open(lab.info["nginx"]["edge"]["upstream_file"]) as handle:
        text = handle.read()
    named = [c for c in ("blue", "green") if "127.0.0.1:%d;" % lab.info["nginx"][c]["port"] in text]
    served = {lab.http_get(port=lab.info["nginx"]["edge"]["port"])[1].split()[0] for dummy in range(5)}
    return named, served


def switch_ids(lab, release):
    return {r["details"]["target"]: r["id"] for r in records(lab) if r["kind"] == "switch" and (r.get("details") or {}).get("release") == release}


def test_traffic_rollback_undoes_every_switch_of_the_release(lab, tmp_path):
    playbook = tmp_path / "release.yml"
    playbook.write_text(TWO_SWITCH_RELEASE)
    assert web(lab) == {"blue": True, "green": False} and edge(lab) == (["blue"], {"blue"})
    out = run_playbook(str(playbook), lab_vars(release="v3", edge_args=edge_args(lab)))
    assert out.returncode == 0, out.stdout[-3000:]
    assert web(lab) == {"blue": False, "green": True}
    wait_until(lambda: edge(lab) == (["green"], {"green"}), timeout=10, what="the edge serving green")
    ids = switch_ids(lab, "v3")
    before_records = records(lab)

    # dry run: both switches planned, newest (the edge) first; nothing switched or recorded
    dry = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False), check=True)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "2 switch(es) of release v3 undone, newest first" in dry.stdout
    planned = [line for line in dry.stdout.splitlines() if '"msg": "traffic ' in line]
    assert len(planned) == 2 and ids["edge"] in planned[0] and ids["haproxy"] in planned[1], planned
    assert all("(changed: True) (planned only)" in line for line in planned)
    assert web(lab) == {"blue": False, "green": True} and edge(lab) == (["green"], {"green"})
    assert records(lab) == before_records

    real = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_reason="v3 breaks checkout",
                                                           rollback_capture=False))
    assert real.returncode == 0, real.stdout[-3000:]
    # both back to blue: HAProxy's own server state, the page through HAProxy, the edge's file and answers
    assert web(lab) == {"blue": True, "green": False}
    assert lab.http_get()[1].strip() == "blue v1"
    wait_until(lambda: edge(lab) == (["blue"], {"blue"}), timeout=10, what="the edge serving blue")
    rollback = [r for r in records(lab) if r["kind"] == "rollback"][-1]
    assert rollback["status"] == "completed" and rollback["details"]["traffic_release"] == "v3"
    done = rollback["details"]["traffic"]
    assert [d["records"] for d in done] == [[ids["edge"]], [ids["haproxy"]]]
    assert [d["changed"] for d in done] == [True, True]
    assert [d["previous"] for d in done] == [{"blue": 0, "green": 100}] * 2 and [d["routing"] for d in done] == [{"blue": 100, "green": 0}] * 2
    # the way to redo the release, oldest first: HAProxy to green, then the edge
    assert [(u["provider"], u["active"]) for u in rollback["undo"]] == [("haproxy", "green"), ("nginx", "green")]

    # again: both already back, nothing changes
    again = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False))
    assert again.returncode == 0, again.stdout[-3000:]
    lines = [line for line in again.stdout.splitlines() if '"msg": "traffic ' in line]
    assert len(lines) == 2 and all("(changed: False)" in line for line in lines), lines
    assert [d["changed"] for d in [r for r in records(lab) if r["kind"] == "rollback"][-1]["details"]["traffic"]] == [False, False]
    assert web(lab) == {"blue": True, "green": False} and edge(lab) == (["blue"], {"blue"})


def test_traffic_rollback_failing_part_way_says_what_was_undone(lab, tmp_path):
    playbook = tmp_path / "release.yml"
    playbook.write_text(TWO_SWITCH_RELEASE)
    out = run_playbook(str(playbook), lab_vars(release="v4", edge_args=edge_args(lab), with_bogus=True))
    assert out.returncode == 0, out.stdout[-3000:]
    wait_until(lambda: edge(lab) == (["green"], {"green"}), timeout=10, what="the edge serving green")
    ids = switch_ids(lab, "v4")

    # newest first: the edge goes back, the bogus switch fails, HAProxy's is not tried
    failed = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False))
    assert failed.returncode != 0
    wait_until(lambda: edge(lab) == (["blue"], {"blue"}), timeout=10, what="the edge serving blue")
    assert web(lab) == {"blue": False, "green": True}
    assert "Traffic switched back: nginx " in failed.stdout and "NOT switched back: haproxy no_such_backend" in failed.stdout
    rollback = [r for r in records(lab) if r["kind"] == "rollback"][-1]
    assert rollback["status"] == "failed"
    assert [d["records"] for d in rollback["details"]["traffic"]] == [[ids["edge"]]]
    assert rollback["details"]["traffic_not_undone_records"] == [ids["bogus"], ids["haproxy"]]
    assert rollback["details"]["failed_task"].startswith("Traffic - switch back haproxy no_such_backend")

    # given targets still work: HAProxy's web backend back to blue
    given = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False, rollback_traffic_active="blue"))
    assert given.returncode == 0, given.stdout[-3000:]
    assert web(lab) == {"blue": True, "green": False}


def test_data_rollback_restores_the_table_to_the_instant_with_a_dump_kept(lab):
    """Level data delegates to restore.yml (the db_restore role): PITR into a new data dir and port."""
    for _row in range(6):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'rb-before')")
    time.sleep(0.4)
    moment = lab.sql("select clock_timestamp()")[0][0].astimezone(datetime.timezone.utc)
    time.sleep(0.4)
    for _row in range(4):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'rb-after')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=60, what="WAL archived")
    want = [r[0] for r in lab.sql("select id from events where written_at <= %s order by id", (moment,))]
    before_captures = captures(lab)
    dumps = os.path.join(lab.root, "dumps")

    out = run_playbook("playbooks/rollback.yml", lab_vars(
        rollback_level="data", rollback_reason="bad migration", db_restore_target_time=moment.isoformat(),
        db_restore_port=RESTORE_PORT, db_restore_data_dir=os.path.join(lab.root, "restores", "rollback"),
        db_restore_dump_dir=dumps))
    assert out.returncode == 0, out.stdout[-5000:]
    # the restored cluster holds exactly the rows written up to the instant
    assert [r[0] for r in lab.sql("select id from events order by id", node=str(RESTORE_PORT))] == want
    payloads = dict(lab.sql("select payload, count(*) from events group by payload", node=str(RESTORE_PORT)))
    assert payloads["rb-before"] == 6 and "rb-after" not in payloads
    # the pre-restore dump is kept (restore.yml's), and capture_state's own dump before it
    assert len(glob.glob(os.path.join(dumps, "appdb-pre-restore-*.dump"))) == 1
    new = [c for c in captures(lab) if c not in before_captures]
    assert len(new) == 1 and os.path.exists(os.path.join(new[0], "database.dump"))
    rollback = [r for r in records(lab) if r["kind"] == "rollback"][-2:]
    assert [r["status"] for r in rollback] == ["started", "completed"]
    assert rollback[1]["details"]["level"] == "data" and rollback[1]["details"]["data"] == "restore.yml"
    assert [r["status"] for r in records(lab) if r["kind"] == "restore"][-1] == "completed"


SERVICE_TASKS = """---
- name: Roll the app back (a stand-in for a git tag checkout + systemctl restart)
  ansible.builtin.copy:
    content: "{{ rollback_reason }}\\n"
    dest: "{{ marker }}"
    mode: "0600"
"""


def test_service_level_runs_your_tasks_and_refuses_kubernetes_without_kubernetes_core(lab, tmp_path):
    tasks = tmp_path / "service.yml"
    tasks.write_text(SERVICE_TASKS)
    marker = tmp_path / "rolled-back"
    routing = web(lab)
    out = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="service", rollback_reason="v2 leaks memory",
                                                          rollback_service_tasks=str(tasks), marker=str(marker),
                                                          rollback_capture=False))
    assert out.returncode == 0, out.stdout[-3000:]
    assert marker.read_text() == "v2 leaks memory\n"
    assert web(lab) == routing  # level service leaves the traffic alone

    nothing = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="service", rollback_capture=False))
    assert nothing.returncode == 0, nothing.stdout[-3000:]
    assert "no service was rolled back" in nothing.stdout

    k8s = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="service", rollback_capture=False,
                                                          rollback_k8s_deployments=[{"name": "shop-api", "namespace": "shop"}]))
    assert k8s.returncode != 0
    assert "the kubernetes.core collection is not installed" in k8s.stdout
    assert [r["status"] for r in records(lab) if r["kind"] == "rollback"][-1] == "failed"


# A canary release run as one AWX job: no details.release, the job id groups the switches, and
# HAProxy's web backend is switched twice (10 % to green, then all of it).
CANARY_RELEASE = """---
- name: Canary release under AWX job {{ job }}, each switch recorded with its way back
  hosts: load_balancers
  gather_facts: false
  tasks:
    - name: Send ten percent to green
      resilience.dr.traffic_switch:
        provider: haproxy
        haproxy_socket: "{{ dr_haproxy_socket }}"
        haproxy_backend: "{{ dr_haproxy_http_backend }}"
        weights: {blue: 90, green: 10}
      register: canary
    - name: Record the canary
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        job_id: "{{ job }}"
        details: {target: canary}
        undo: "{{ canary.undo }}"
    - name: Send all of it to green
      resilience.dr.traffic_switch:
        provider: haproxy
        haproxy_socket: "{{ dr_haproxy_socket }}"
        haproxy_backend: "{{ dr_haproxy_http_backend }}"
        active: green
      register: full
    - name: Record the full switch
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        job_id: "{{ job }}"
        details: {target: full}
        undo: "{{ full.undo }}"
"""


def test_traffic_rollback_of_a_canary_job_goes_back_before_its_first_switch_in_one_step(lab, tmp_path):
    job = "awx-%d" % os.getpid()
    playbook = tmp_path / "canary.yml"
    playbook.write_text(CANARY_RELEASE)
    assert web(lab) == {"blue": True, "green": False}
    out = run_playbook(str(playbook), lab_vars(job=job))
    assert out.returncode == 0, out.stdout[-3000:]
    assert web(lab) == {"blue": False, "green": True}
    ids = {r["details"]["target"]: r["id"] for r in records(lab) if r["kind"] == "switch" and r.get("job_id") == job}
    assert set(ids) == {"canary", "full"}

    real = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False))
    assert real.returncode == 0, real.stdout[-3000:]
    assert "1 switch(es) of release %s undone, newest first" % job in real.stdout
    # one step, straight to the state before the canary: blue only (not 90/10 first)
    assert web(lab) == {"blue": True, "green": False}
    assert lab.http_get()[1].strip() == "blue v1"
    rollback = [r for r in records(lab) if r["kind"] == "rollback"][-1]
    assert rollback["status"] == "completed" and rollback["details"]["traffic_release"] == job
    done = rollback["details"]["traffic"]
    assert len(done) == 1 and done[0]["records"] == [ids["full"], ids["canary"]], done
    assert done[0]["previous"] == {"blue": 0, "green": 100} and done[0]["routing"] == {"blue": 100, "green": 0}

    again = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="traffic", rollback_capture=False))
    assert again.returncode == 0, again.stdout[-3000:]
    lines = [line for line in again.stdout.splitlines() if '"msg": "traffic ' in line]
    assert len(lines) == 1 and "(changed: False)" in lines[0], lines
    assert web(lab) == {"blue": True, "green": False}

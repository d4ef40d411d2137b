# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rollback.yml level full on a private lab, as seed 002's emergency rollback:
after a green release (traffic to green, a new app version, rows written after a chosen
instant), maintenance mode goes on, the state is captured, traffic, service and data are
rolled back in that order, the health gate passes and maintenance mode goes off."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import subprocess
import time

import pytest

from lablib import GREEN_RELEASE as RELEASE_V2, Lab, captures, records, run_playbook, wait_until, web

pytestmark = pytest.mark.lab

# Port block 11000-11099 (the lab refuses ports above 32767, the start of Linux's ephemeral range).
PORT_BASE = 11000
NAME = "rollback-full"
RESTORE_PORT = PORT_BASE + 50

GREEN_RELEASE = RELEASE_V2 + """    - name: Keep the app version that runs now as the previous one
      ansible.builtin.copy:
        content: releases/v1
        dest: "{{ app_dir }}/previous"
        mode: "0600"
    - name: Deploy app v2
      ansible.builtin.file:
        src: releases/v2
        dest: "{{ app_dir }}/current"
        state: link
        force: true
"""

# What each level sees when it runs: the maintenance flag, the page served through HAProxy,
# the app version. One JSON line per step in order_log.
ORDER_TASKS = """---
- name: Look at the maintenance flag
  ansible.builtin.stat:
    path: "{{ rollback_maintenance_file }}"
  register: order_flag
- name: Look at the web page through HAProxy
  ansible.builtin.uri:
    url: "{{ dr_web_url }}"
    return_content: true
  register: order_web
- name: Look at the app version
  ansible.builtin.stat:
    path: "{{ app_dir }}/current"
  register: order_app
- name: Note what this step saw
  ansible.builtin.lineinfile:
    path: "{{ order_log }}"
    create: true
    mode: "0600"
    line: >-
      {{ {'step': order_step, 'maintenance': order_flag.stat.exists, 'web': order_web.content | trim,
          'app': order_app.stat.lnk_target, 'at': now(utc=true).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} | to_json }}
"""

SERVICE_TASKS = """---
- name: Note the order (service)
  ansible.builtin.include_tasks: "{{ order_tasks }}"
  vars:
    order_step: service
- name: Roll the app back to the previous version (a stand-in for a git tag checkout + systemctl restart)
  ansible.builtin.file:
    src: "{{ lookup('ansible.builtin.file', app_dir ~ '/previous') }}"
    dest: "{{ app_dir }}/current"
    state: link
    force: true
"""

DATA_HOOK = """---
- name: Note the order (data, when restore.yml stops the writers)
  ansible.builtin.include_tasks: "{{ order_tasks }}"
  vars:
    order_step: data
"""


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


def lab_vars(**extra):
    out = {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": os.path.join("/var/tmp/resilience-dr", NAME)}
    out.update(extra)
    return out


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_full_refuses_without_a_maintenance_mode(lab):
    before = records(lab)
    # the lab inventory names a flag file (dr_maintenance_file): take it away
    out = run_playbook("playbooks/rollback.yml", lab_vars(rollback_level="full", dr_maintenance_file=""))
    assert out.returncode != 0
    assert "runs under maintenance mode" in out.stdout and "Nothing was changed" in out.stdout
    assert records(lab) == before and captures(lab) == []
    assert web(lab) == {"blue": True, "green": False}


def test_full_rollback_after_a_green_release(lab, tmp_path):
    app = tmp_path / "app"
    for version in ("v1", "v2"):
        (app / "releases" / version).mkdir(parents=True)
    os.symlink("releases/v1", str(app / "current"))
    for name, text in (("green.yml", GREEN_RELEASE), ("order.yml", ORDER_TASKS), ("service.yml", SERVICE_TASKS),
                       ("data_hook.yml", DATA_HOOK)):
        (tmp_path / name).write_text(text)
    flag = tmp_path / "maintenance.on"
    order_log = tmp_path / "order.jsonl"
    dumps = os.path.join(lab.root, "dumps")

    # the release: traffic on green, app v2, and rows written after the instant we go back to
    for _row in range(5):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'full-before')")
    time.sleep(0.4)
    moment = lab.sql("select clock_timestamp()")[0][0].astimezone(datetime.timezone.utc)
    time.sleep(0.4)
    release = run_playbook(str(tmp_path / "green.yml"), lab_vars(app_dir=str(app)))
    assert release.returncode == 0, release.stdout[-3000:]
    for _row in range(3):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'full-after')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=60, what="WAL archived")
    want = [r[0] for r in lab.sql("select id from events where written_at <= %s order by id", (moment,))]
    assert web(lab) == {"blue": False, "green": True} and lab.http_get()[1].strip() == "green v2"
    assert os.readlink(str(app / "current")) == "releases/v2"
    n_records = len(records(lab))

    gate = [{"url": "http://127.0.0.1:%d/" % lab.info["haproxy"]["http_port"], "contains": "blue v1"}]
    out = run_playbook("playbooks/rollback.yml", lab_vars(
        rollback_level="full", rollback_reason="v2 corrupts orders", rollback_maintenance_file=str(flag),
        rollback_service_tasks=str(tmp_path / "service.yml"), order_tasks=str(tmp_path / "order.yml"),
        order_log=str(order_log), app_dir=str(app), health_gate_http_checks=gate,
        db_restore_target_time=moment.isoformat(), db_restore_port=RESTORE_PORT,
        db_restore_data_dir=os.path.join(lab.root, "restores", "full"), db_restore_dump_dir=dumps,
        db_restore_stop_writers_tasks=str(tmp_path / "data_hook.yml")))
    assert out.returncode == 0, out.stdout[-6000:]
    assert "levels, in order: traffic -> service -> data (under maintenance mode)" in out.stdout

    # traffic: blue back in HAProxy's own state and in what it serves
    assert web(lab) == {"blue": True, "green": False}
    assert lab.http_get()[1].strip() == "blue v1"
    # service: the app runs the previous version
    assert os.readlink(str(app / "current")) == "releases/v1"
    # data: the restored cluster holds exactly the rows written up to the instant, the pre-restore
    # dump is on disk, and writers were kept off the old primary (HAProxy's pg/primary in maintenance)
    assert [r[0] for r in lab.sql("select id from events order by id", node=str(RESTORE_PORT))] == want
    payloads = dict(lab.sql("select payload, count(*) from events group by payload", node=str(RESTORE_PORT)))
    assert payloads["full-before"] == 5 and "full-after" not in payloads
    pre_dumps = glob.glob(os.path.join(dumps, "appdb-pre-restore-*.dump"))
    assert len(pre_dumps) == 1 and os.path.getsize(pre_dumps[0]) > 0
    listing = subprocess.run([os.path.join(lab.info["pg_bin"], "pg_restore"), "-l", pre_dumps[0]],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert "TABLE DATA public events" in listing
    assert int(lab.servers_state("pg")["primary"]["srv_admin_state"]) & 0x01
    # maintenance mode is off afterwards
    assert not flag.exists()

    # the levels ran in this order, each under maintenance mode, each after the one before
    seen = [json.loads(line) for line in order_log.read_text().splitlines()]
    assert [s["step"] for s in seen] == ["service", "data"]
    assert all(s["maintenance"] for s in seen)
    assert seen[0]["web"] == "blue v1" and seen[0]["app"] == "releases/v2"  # traffic done, service not yet
    assert seen[1]["web"] == "blue v1" and seen[1]["app"] == "releases/v1"  # service done before data

    # capture_state ran first, under maintenance mode: manifest, HAProxy stats with green still serving, a dump
    new = captures(lab)
    assert len(new) == 1
    with open(os.path.join(new[0], "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["reason"] == "rollback level full: v2 corrupts orders"
    names = {os.path.relpath(f["path"], new[0]) for f in manifest["files"]}
    assert {"database.dump", "haproxy_stat.csv"} <= names
    for entry in manifest["files"]:
        assert os.path.getsize(entry["path"]) == entry["size"] and len(entry["checksum"]) == 64
    with open(os.path.join(new[0], "haproxy_stat.csv")) as handle:
        stat = [line.split(",") for line in handle if line.startswith("web,")]
    assert {row[1]: row[17] for row in stat if row[1] in ("blue", "green")} == {"blue": "MAINT", "green": "UP"}

    # the record file: the rollback started, the restore inside it, the rollback completed
    new_records = records(lab)[n_records:]
    assert [(r["kind"], r["status"]) for r in new_records] == [
        ("rollback", "started"), ("restore", "started"), ("restore", "completed"), ("rollback", "completed")]
    started, _restore_started, restore_done, done = new_records
    assert started["id"] == done["id"] and started["details"]["levels"] == ["traffic", "service", "data"]
    assert done["details"]["traffic_previous"] == {"blue": 0, "green": 100} and done["undo"]["active"] == "green"
    assert done["details"]["data"] == "restore.yml" and restore_done["details"]["dump_path"] == pre_dumps[0]
    window = done["details"]["maintenance"]
    assert window["file"] == str(flag)
    on_at, off_at = stamp(window["on_at"]), stamp(window["off_at"])
    assert on_at <= stamp(seen[0]["at"]) <= stamp(seen[1]["at"]) <= off_at
    assert on_at <= stamp(restore_done["recorded_at"]) <= off_at
    assert on_at.strftime("%Y%m%d_%H%M%S") <= manifest["timestamp"]

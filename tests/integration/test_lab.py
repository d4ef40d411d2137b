# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab, read back from the real processes: replication, archive, pgBackRest, HAProxy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket
import subprocess

import pytest

from lablib import Lab, run_playbook, wait_until

pytestmark = pytest.mark.lab

PORT_BASE = 16000
NAME = "labtest"


def listening_ports(first, last):
    out = subprocess.run(["ss", "-ltnH"], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        match = re.search(r"127\.0\.0\.1:(\d+)\s", line)
        if match and first <= int(match.group(1)) <= last:
            ports.add(int(match.group(1)))
    return ports


def lab_processes(root):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (IOError, OSError):
            continue
        if root in cmd:
            found.append((int(pid), cmd))
    return found


def recap(stdout):
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


def test_replica_streams_on_its_slot(lab):
    rows = lab.sql("select application_name, state, sync_state from pg_stat_replication")
    assert rows == [("lab_replica", "streaming", "async")]
    slot = lab.sql("select slot_name, active from pg_replication_slots")
    assert slot == [("lab_replica", True)]
    assert lab.in_recovery("replica") is True
    assert lab.in_recovery("primary") is False


def test_rows_reach_the_replica(lab):
    marker = "lab-test-%d" % os.getpid()
    lab.sql("insert into events (payload) values (%s)", (marker,))
    wait_until(lambda: lab.sql("select count(*) from events where payload = %s", (marker,), node="replica")[0][0] == 1,
               timeout=10, what="the row on the replica")
    seeded = lab.sql("select count(*) from events where payload like 'seed-%%'")[0][0]
    assert seeded == lab.info["sample_rows"]


def test_wal_segments_arrive_in_the_archive(lab):
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("insert into events (payload) values ('before switch')")
    lab.sql("select pg_switch_wal()")
    path = os.path.join(lab.info["wal_archive"], segment)
    wait_until(lambda: os.path.exists(path), timeout=20, what="segment %s in the archive" % segment)
    assert os.path.getsize(path) == 16 * 1024 * 1024


def test_base_backup_has_a_manifest(lab):
    backups = [d for d in os.listdir(lab.info["base_backups"]) if d.startswith("base-") and not d.endswith(".partial")]
    assert len(backups) == 1
    folder = os.path.join(lab.info["base_backups"], backups[0])
    assert os.path.isfile(os.path.join(folder, "backup_manifest"))
    proc = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(lab.info["pg_bin"], "pg_verifybackup"), "-q", folder],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_pgbackrest_check_passes_and_has_a_full_backup(lab):
    cfg = lab.info["pgbackrest"]
    base = ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=" + cfg["config"], "--stanza=" + cfg["stanza"]]
    check = subprocess.run(base + ["check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           check=False, cwd="/")
    assert check.returncode == 0, check.stdout
    info = subprocess.run(base + ["info", "--output=json"], stdout=subprocess.PIPE, universal_newlines=True, check=True, cwd="/")
    import json  # pylint: disable=import-outside-toplevel
    stanza = json.loads(info.stdout)[0]
    assert stanza["status"]["code"] == 0
    assert [b["type"] for b in stanza["backup"]] == ["full"]


def test_haproxy_routes_postgres_to_the_primary_and_http_to_blue(lab):
    through = lab.sql("select inet_server_port(), pg_is_in_recovery()", node=str(lab.info["haproxy"]["pg_port"]))
    assert through == [(lab.info["primary"]["port"], False)]
    pg = lab.servers_state("pg")
    assert int(pg["primary"]["srv_op_state"]) == 2
    assert int(pg["replica"]["srv_admin_state"]) & 0x23, "the replica must be in maintenance"
    web = lab.servers_state("web")
    assert int(web["blue"]["srv_op_state"]) == 2
    assert int(web["green"]["srv_admin_state"]) & 0x23
    bodies = set(lab.http_get()[1] for attempt in range(5))
    assert bodies == {"blue v1\n"}
    assert lab.http_get(port=lab.info["nginx"]["green"]["port"]) == (200, "green v2\n")
    assert lab.http_get(port=lab.info["nginx"]["edge"]["port"]) == (200, "blue v1\n")


def test_second_present_changes_nothing(lab):
    proc = run_playbook("playbooks/lab.yml", Lab.vars_for(NAME, PORT_BASE))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc.stdout)["changed"] == 0, proc.stdout[-3000:]


def test_switch_to_synchronous_and_back(lab):
    proc = run_playbook("playbooks/lab.yml", Lab.vars_for(NAME, PORT_BASE, synchronous=True))
    assert proc.returncode == 0, proc.stdout[-3000:]
    wait_until(lambda: lab.sql("select sync_state from pg_stat_replication") == [("sync",)], timeout=20,
               what="synchronous replication")
    proc = run_playbook("playbooks/lab.yml", Lab.vars_for(NAME, PORT_BASE, synchronous=False))
    assert proc.returncode == 0, proc.stdout[-3000:]
    wait_until(lambda: lab.sql("select sync_state from pg_stat_replication") == [("async",)], timeout=20,
               what="asynchronous replication")


def test_port_in_use_is_refused_and_nothing_is_left_running():
    base = PORT_BASE + 100
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", base + 81))
    blocker.listen(1)
    try:
        lab_vars = Lab.vars_for("labtest-busy", base)
        proc = run_playbook("playbooks/lab.yml", lab_vars)
        assert proc.returncode != 0
        assert "port %d (lab_port_base+81, for nginx_blue) is already in use" % (base + 81) in proc.stdout
        assert "lab_port_base" in proc.stdout
        assert not lab_processes(lab_vars["lab_root"])
        assert listening_ports(base, base + 99) == {base + 81}
    finally:
        blocker.close()
        run_playbook("playbooks/lab.yml", dict(Lab.vars_for("labtest-busy", base), lab_state="absent"))


def test_missing_binary_is_named_with_its_package():
    base = PORT_BASE + 200
    lab_vars = Lab.vars_for("labtest-missing", base, lab_haproxy_bin="/nonexistent/haproxy")
    try:
        proc = run_playbook("playbooks/lab.yml", lab_vars)
        assert proc.returncode != 0
        assert "haproxy not found at /nonexistent/haproxy: install the Debian package haproxy" in proc.stdout
        assert not lab_processes(lab_vars["lab_root"])
        assert not listening_ports(base, base + 99)
    finally:
        run_playbook("playbooks/lab.yml", dict(lab_vars, lab_state="absent"))


def test_failure_midway_stops_what_it_started():
    """A step that fails after PostgreSQL started (HAProxy's config is refused) stops it again."""
    base = PORT_BASE + 300
    lab_vars = Lab.vars_for("labtest-midway", base, lab_haproxy_bin="/bin/false")
    try:
        proc = run_playbook("playbooks/lab.yml", lab_vars)
        assert proc.returncode != 0
        assert "What this run had started was stopped" in proc.stdout
        assert not lab_processes(lab_vars["lab_root"])
        assert not listening_ports(base, base + 99)
    finally:
        run_playbook("playbooks/lab.yml", dict(lab_vars, lab_state="absent"))


def test_present_twice_then_absent_leaves_nothing():
    base = PORT_BASE + 400
    lab_vars = Lab.vars_for("labtest-cycle", base)
    first = run_playbook("playbooks/lab.yml", lab_vars)
    assert first.returncode == 0, first.stdout[-3000:]
    second = run_playbook("playbooks/lab.yml", lab_vars)
    assert recap(second.stdout)["changed"] == 0, second.stdout[-3000:]
    assert len(listening_ports(base, base + 99)) == 8
    down = run_playbook("playbooks/lab.yml", dict(lab_vars, lab_state="absent"))
    assert down.returncode == 0, down.stdout[-3000:]
    assert not listening_ports(base, base + 99)
    assert not lab_processes(lab_vars["lab_root"])
    assert not os.path.exists(lab_vars["lab_root"])


def test_fresh_synchronous_lab_comes_up():
    """The primary's sample data is written before the replica exists: synchronous
    replication is switched on only once the replica streams, or that commit would wait forever."""
    instance = Lab.up("labtest-sync", port_base=PORT_BASE + 600, synchronous=True)
    try:
        assert instance.sql("select sync_state from pg_stat_replication") == [("sync",)]
        instance.sql("insert into events (payload) values ('acknowledged')")
        wait_until(lambda: instance.sql("select count(*) from events where payload = 'acknowledged'", node="replica") == [(1,)],
                   timeout=10, what="the acknowledged row on the replica")
        again = run_playbook("playbooks/lab.yml", Lab.vars_for("labtest-sync", PORT_BASE + 600, synchronous=True))
        assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    finally:
        instance.down()

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore against the lab: real PostgreSQL 15, WAL archive, pgBackRest.

Rows are written around a chosen instant; every restore is checked by reading the rows of
the restored cluster (and its files, settings and pg_control), not only the module's result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import lablib
from lablib import Lab, wait_until

pytestmark = pytest.mark.lab

MODULE = "resilience.dr.pg_pitr_restore"
PORT_BASE = 22000
BEFORE_ROWS = 7
AFTER_ROWS = 5


def run_module(args, check=False, diff=False, timeout=600):
    """lablib.run_module, or the minimal callback when ansible.builtin.json is missing."""
    try:
        return lablib.run_module(MODULE, args, check=check, diff=diff, timeout=timeout)
    except AssertionError as exc:
        if "Could not load" not in str(exc):
            raise
    proc = subprocess.run(_ansible_argv(args, check, diff), cwd=lablib.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False,
                          env=lablib.ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"))
    out = proc.stdout
    assert " => {" in out, out + proc.stderr
    result = json.loads(out[out.index(" => {") + 4:])
    if "| FAILED!" in out.split(" => {")[0]:
        result["failed"] = True
    return result


def _ansible_argv(args, check=False, diff=False):
    argv = [os.path.join(lablib.VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", MODULE,
            "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    return argv


def pg_ctl_stop(lab, data_dir):
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "-w", "stop"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def descendants(root_pid):
    """PIDs of every process below ``root_pid`` (from /proc)."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (IOError, OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError):
        return False


def controldata(lab, data_dir):
    out = subprocess.run([os.path.join(lab.info["pg_bin"], "pg_controldata"), "-D", data_dir], stdout=subprocess.PIPE,
                         universal_newlines=True, env=dict(os.environ, LC_ALL="C"), check=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up("pitr", port_base=PORT_BASE)
    restores = os.path.join(instance.root, "restores")
    os.makedirs(restores, exist_ok=True)
    instance.restores = restores
    yield instance
    for name in os.listdir(restores):
        pg_ctl_stop(instance, os.path.join(restores, name))
    instance.down()


@pytest.fixture(scope="module")
def instant(lab):
    """Rows before and after an instant; the WAL holding them is archived."""
    lab.sql("create table if not exists pitr_probe (id serial primary key, written_at timestamptz not null, phase text)")
    for _row in range(BEFORE_ROWS):
        lab.sql("insert into pitr_probe (written_at, phase) values (clock_timestamp(), 'before')")
    time.sleep(0.4)
    moment = lab.sql("select clock_timestamp()")[0][0]
    time.sleep(0.4)
    for _row in range(AFTER_ROWS):
        lab.sql("insert into pitr_probe (written_at, phase) values (clock_timestamp(), 'after')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=30, what="WAL archived")
    wait_until(lambda: _pgbackrest_has(lab, segment), timeout=30, what="WAL in pgBackRest")
    return moment.astimezone(datetime.timezone.utc)


def _pgbackrest_has(lab, segment):
    repo = lab.info["pgbackrest"]["repo"]
    for root, _dirs, files in os.walk(os.path.join(repo, "archive")):
        if any(name.startswith(segment) for name in files):
            return True
    return False


def iso(moment, offset_hours=0):
    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    return moment.astimezone(zone).isoformat()


def native_args(lab, name, port, target_time, **extra):
    args = dict(engine="native", backup_dir=lab.info["base_backups"], wal_archive=lab.info["wal_archive"],
                target_time=target_time, data_dir=os.path.join(lab.restores, name), port=port)
    args.update(extra)
    return args


def probe_rows(lab, port):
    return lab.sql("select phase, written_at from pitr_probe order by id", node=port)


def assert_rows_up_to(lab, port, moment):
    rows = probe_rows(lab, port)
    phases = [r[0] for r in rows]
    assert phases.count("before") == BEFORE_ROWS, rows
    assert phases.count("after") == 0, rows
    assert all(r[1] <= moment for r in rows)
    assert lab.sql("select pg_is_in_recovery()", node=port)[0][0] is False


def test_native_restore_to_instant(lab, instant):
    args = native_args(lab, "native", 22500, iso(instant))
    data_dir = args["data_dir"]
    check = run_module(args, check=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert check["backup"]["format"] == "plain"
    assert check["wal"]["complete"] is True and check["wal"]["missing"] == []
    assert not os.path.exists(data_dir), "check mode created the data dir"
    planned = [(s["action"], s["target"]) for s in check["steps"]]

    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert [(s["action"], s["target"]) for s in result["steps"]] == planned
    assert result["proof"]["reached"] is True and result["proof"]["promoted"] is True
    assert result["proof"]["stop_record"].startswith("recovery stopping before commit")
    # real state: rows, settings put back, not archiving, own port
    assert_rows_up_to(lab, 22500, instant)
    settings = dict(lab.sql("select name, setting from pg_settings where name in "
                            "('port','archive_mode','shared_buffers','recovery_prefetch','listen_addresses')", node=22500))
    assert settings["port"] == "22500" and settings["archive_mode"] == "off"
    assert settings["shared_buffers"] == lab.sql("select setting from pg_settings where name='shared_buffers'")[0][0]
    assert settings["listen_addresses"] == "127.0.0.1"
    assert not os.path.exists(os.path.join(data_dir, "recovery.signal"))
    assert not os.path.exists(os.path.join(data_dir, "resilience_dr_hba.conf"))
    with open(os.path.join(data_dir, "resilience_dr_restore.json")) as handle:
        assert json.load(handle)["state"] == "done"
    assert controldata(lab, data_dir)["Database cluster state"].strip() == "in production"
    # the lab's primary still writes and archives where it did
    assert lab.sql("select count(*) from pitr_probe")[0][0] == BEFORE_ROWS + AFTER_ROWS

    again = run_module(args)
    assert again["changed"] is False and again["steps"] == [], again
    assert run_module(args, check=True)["changed"] is False
    assert_rows_up_to(lab, 22500, instant)


def test_offset_target_is_the_same_instant(lab, instant):
    utc = run_module(native_args(lab, "native", 22500, iso(instant)), check=True)
    shifted = native_args(lab, "native-offset", 22502, iso(instant, 2), leave_running=True)
    assert shifted["target_time"].endswith("+02:00")
    result = run_module(shifted)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["target"]["value"] == utc["target"]["value"]
    assert probe_rows(lab, 22502) == probe_rows(lab, 22500)
    assert_rows_up_to(lab, 22502, instant)
    pg_ctl_stop(lab, shifted["data_dir"])


def test_pgbackrest_restore_to_instant(lab, instant):
    args = dict(engine="pgbackrest", pgbackrest_config=lab.info["pgbackrest"]["config"], stanza=lab.info["pgbackrest"]["stanza"],
                target_time=iso(instant), data_dir=os.path.join(lab.restores, "pgbackrest"), port=22501)
    check = run_module(args, check=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert check["backup"]["format"] == "pgbackrest"
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    argv = result["steps"][1]["result"]["argv"]
    assert "--set=%s" % check["backup"]["label"] in argv and "--type=time" in argv and "--target-action=pause" in argv
    assert result["proof"]["reached"] is True
    assert_rows_up_to(lab, 22501, instant)
    assert lab.sql("show archive_mode", node=22501)[0][0] == "off"
    assert run_module(args)["changed"] is False
    pg_ctl_stop(lab, args["data_dir"])


def test_target_older_than_every_backup(lab):
    assert os.listdir(lab.info["base_backups"])
    target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    args = native_args(lab, "too-old", 22503, iso(target))
    result = run_module(args)
    assert result.get("failed") and result["error"] == "NO_BACKUP_BEFORE_TARGET", result
    assert not os.path.exists(args["data_dir"])
    pb = dict(engine="pgbackrest", pgbackrest_config=lab.info["pgbackrest"]["config"], stanza=lab.info["pgbackrest"]["stanza"],
              target_time=iso(target), data_dir=os.path.join(lab.restores, "too-old-pb"), port=22503)
    result = run_module(pb)
    assert result.get("failed") and result["error"] == "NO_BACKUP_BEFORE_TARGET", result
    assert not os.path.exists(pb["data_dir"])


def test_target_beyond_archived_wal_is_not_promoted(lab, instant):
    target = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    args = native_args(lab, "beyond", 22504, iso(target), timeout="120s")
    result = run_module(args)
    assert result.get("failed") and result["error"] == "TARGET_NOT_REACHED", result
    assert "NOT promoted" in result["msg"]
    data_dir = args["data_dir"]
    assert not os.path.exists(os.path.join(data_dir, "postmaster.pid"))
    state = controldata(lab, data_dir)
    assert state["Database cluster state"].strip() != "in production"
    assert state["Latest checkpoint's TimeLineID"].strip() == "1"
    assert not [n for n in os.listdir(os.path.join(data_dir, "pg_wal")) if n.endswith(".history")]
    with open(os.path.join(data_dir, "resilience_dr_restore.json")) as handle:
        assert json.load(handle)["state"] == "failed"


def test_missing_segment_is_named(lab, instant):
    archive = os.path.join(lab.root, "archive-with-gap")
    shutil.copytree(lab.info["wal_archive"], archive, copy_function=os.link)
    check = run_module(native_args(lab, "gap", 22505, iso(instant)), check=True)
    first, last = check["wal"]["first"], check["wal"]["last"]
    segments = sorted(n for n in os.listdir(archive) if len(n) == 24 and first < n <= last)
    assert segments, (first, last)
    victim = segments[len(segments) // 2]
    os.remove(os.path.join(archive, victim))
    args = native_args(lab, "gap", 22505, iso(instant), wal_archive=archive)
    dry = run_module(args, check=True)
    assert dry.get("failed") and victim in dry["msg"] and dry["missing_wal"][0] == victim, dry
    result = run_module(args)
    assert result.get("failed") and result["error"] == "TARGET_NOT_REACHED" and victim in result["msg"], result
    assert not os.path.exists(args["data_dir"])


def test_existing_data_dir_refused_then_moved_aside(lab, instant):
    args = native_args(lab, "occupied", 22506, iso(instant), leave_running=False)
    data_dir = args["data_dir"]
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, "precious.txt"), "w") as handle:
        handle.write("keep me")
    refused = run_module(args)
    assert refused.get("failed") and refused["error"] == "PRECONDITION_FAILED", refused
    assert os.listdir(data_dir) == ["precious.txt"]
    args["existing"] = "move_aside"
    moved = run_module(args)
    assert moved["changed"] is True and not moved.get("failed"), moved
    assert moved["moved_to"].startswith(data_dir + ".moved-")
    with open(os.path.join(moved["moved_to"], "precious.txt")) as handle:
        assert handle.read() == "keep me"
    assert os.listdir(moved["moved_to"]) == ["precious.txt"]
    assert os.path.exists(os.path.join(data_dir, "PG_VERSION"))
    assert not os.path.exists(os.path.join(data_dir, "postmaster.pid"))  # leave_running: false


def test_killed_restore_is_completed_on_rerun(lab, instant):
    args = native_args(lab, "killed", 22507, iso(instant))
    marker = os.path.join(args["data_dir"], "resilience_dr_restore.json")
    proc = subprocess.Popen(_ansible_argv(args), cwd=lablib.ROOT, env=lablib.ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: os.path.exists(marker) or proc.poll() is not None, timeout=60, interval=0.005, what="marker")
    finally:
        # the module runs in a child of ansible that may have its own process group
        killed = descendants(proc.pid) + [proc.pid]
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
    time.sleep(1)
    assert not [pid for pid in killed if _alive(pid)], "a module process survived the kill"
    with open(marker) as handle:
        assert json.load(handle)["state"] == "in_progress"
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["data_dir_state"] == "ours_incomplete"
    assert_rows_up_to(lab, 22507, instant)
    with open(marker) as handle:
        assert json.load(handle)["state"] == "done"
    pg_ctl_stop(lab, args["data_dir"])


def test_tar_backup_restore_point_and_pause(lab, instant):
    """A compressed tar backup, a named restore point, target_action pause: the copy stays
    read-only, paused exactly at the restore point."""
    folder = os.path.join(lab.root, "tar-backups")
    os.makedirs(folder)
    shutil.chown(folder, lab.info["os_user"])
    primary = lab.info["primary"]
    subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_basebackup"),
                    "-h", primary["socket_dir"], "-p", str(primary["port"]), "-U", lab.info["superuser"],
                    "-D", os.path.join(folder, "tar-1"), "-Ft", "-z", "-X", "stream", "-c", "fast"], check=True, cwd="/")
    lab.sql("insert into pitr_probe (written_at, phase) values (clock_timestamp(), 'point')")
    lab.sql("select pg_create_restore_point('pitr-test-point')")
    lab.sql("insert into pitr_probe (written_at, phase) values (clock_timestamp(), 'after-point')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=30, what="WAL archived")

    args = dict(engine="native", backup_dir=folder, wal_archive=lab.info["wal_archive"], target_name="pitr-test-point",
                target_action="pause", data_dir=os.path.join(lab.restores, "tar-point"), port=22508)
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["backup"]["format"] == "tar" and result["backup"]["compression"] == "gz"
    assert result["proof"]["stop_record"] == 'recovery stopping at restore point "pitr-test-point", time %s' % (
        result["proof"]["stop_record"].split(", time ")[1])
    assert [s["action"] for s in result["steps"]].count("promote") == 0
    phases = [r[0] for r in probe_rows(lab, 22508)]
    assert phases.count("point") == 1 and "after-point" not in phases
    assert lab.sql("select pg_is_in_recovery()", node=22508)[0][0] is True
    wait_until(lambda: lab.sql("select pg_get_wal_replay_pause_state()", node=22508)[0][0] == "paused", timeout=30,
               what="paused at the restore point")
    assert lab.sql("show archive_mode", node=22508)[0][0] == "off"
    assert run_module(args)["changed"] is False
    pg_ctl_stop(lab, args["data_dir"])


def test_lsn_target_with_shutdown(lab, instant):
    lsn = lab.sql("select pg_current_wal_insert_lsn()::text")[0][0]
    lab.sql("insert into pitr_probe (written_at, phase) values (clock_timestamp(), 'after-lsn')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=30, what="WAL archived")
    args = native_args(lab, "lsn-shutdown", 22509, None, target_lsn=lsn, target_action="shutdown")
    del args["target_time"]
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["proof"]["reached"] is True and "WAL location" in result["proof"]["stop_record"]
    data_dir = args["data_dir"]
    assert not os.path.exists(os.path.join(data_dir, "postmaster.pid"))
    assert controldata(lab, data_dir)["Database cluster state"].strip() == "shut down in recovery"
    assert os.path.exists(os.path.join(data_dir, "recovery.signal"))
    assert run_module(args)["changed"] is False


def test_latest_replays_the_whole_archive(lab, instant):
    args = native_args(lab, "latest", 22510, None, latest=True)
    del args["target_time"]
    result = run_module(args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["proof"]["state"] == "promoted" and "promote" not in [s["action"] for s in result["steps"]]
    phases = [r[0] for r in probe_rows(lab, 22510)]
    assert phases.count("before") == BEFORE_ROWS and phases.count("after") == AFTER_ROWS
    assert lab.sql("select pg_is_in_recovery()", node=22510)[0][0] is False
    pg_ctl_stop(lab, args["data_dir"])

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify on a lab instance: real pg_basebackup backups, a real WAL archive, a real
pgBackRest stanza, real scratch restores. Damage is always done to copies, so the lab's
own backups stay intact (asserted)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from lablib import Lab, ROOT, VENV_BIN, ansible_env, wait_until

PORT_BASE = 23000
SCRATCH_PORT = 23500
MODULE = "resilience.dr.backup_verify"
SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def run_module(module, args, check=False, timeout=300):
    """One module through ``ansible`` ad hoc with the minimal callback; its result dict.
    (lablib.run_module asks for an ``ansible.builtin.json`` callback ansible-core lacks.)"""
    cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, check=False,
                          env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="minimal"))
    match = re.search(r"^localhost \| ([A-Z!]+) => \{", proc.stdout, re.MULTILINE)
    if not match:
        raise AssertionError("no result from ansible (rc=%s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    result = json.JSONDecoder().raw_decode(proc.stdout[match.end() - 1:])[0]
    if match.group(1).startswith("FAILED"):
        result["failed"] = True
    return result


def _port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def lab():
    lab = Lab.up("verify", port_base=PORT_BASE)
    try:
        # WAL after the base backup: commits in three archived segments
        for n in range(3):
            lab.sql("insert into events (payload) select 'verify-%s-' || g from generate_series(1, 50) g" % n)
            lab.sql("select pg_switch_wal()")
        last = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
        lab.sql("select pg_switch_wal()")
        wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], last)), timeout=30, what="WAL archived")
        yield lab
    finally:
        lab.down()


@pytest.fixture
def work(lab):
    """A private folder the postgres OS user can use (scratch parent, copies of backups)."""
    path = os.path.join(lab.root, "verify-work-%d" % int(time.time() * 1000))
    os.makedirs(path)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def scratch_parent(work):
    path = os.path.join(work, "scratch")
    if not os.path.isdir(path):
        os.makedirs(path)
        os.chmod(path, 0o755)
    return path


def newest_backup(lab):
    root = lab.info["base_backups"]
    dirs = sorted(d for d in os.listdir(root) if d.startswith("base-") and not d.endswith(".partial"))
    return os.path.join(root, dirs[-1])


def tree_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs
               if not os.path.islink(os.path.join(r, f)))


def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def native_args(lab, work, **extra):
    args = {"engine": "native", "backup_dir": lab.info["base_backups"], "wal_archive": lab.info["wal_archive"],
            "scratch_dir": scratch_parent(work), "scratch_port": SCRATCH_PORT, "max_age": "1h",
            "os_user": lab.info["os_user"]}
    args.update(extra)
    return args


def test_fresh_backup_passes_every_check_and_matches_disk(lab, work):
    rows_archived = lab.sql("select count(*) from events")[0][0]
    args = native_args(lab, work, verify_queries=[
        {"name": "events", "database": "appdb", "sql": "select count(*) from events", "expect": {"min": rows_archived}},
        {"name": "newest", "database": "appdb", "sql": "select max(payload) like 'verify-2-%' from events",
         "expect": {"equals": "t"}},
    ])
    dry = run_module(MODULE, args, check=True)
    res = run_module(MODULE, args)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is False and res["passed"] is True and res["failed_checks"] == []
    assert sorted(res["checks"]) == ["checksums", "max_age", "test_restore", "wal_continuity"]
    assert all(c["status"] == "passed" for c in res["checks"].values())
    # check mode ran the very same checks
    assert not dry.get("failed") and dry["check_mode"] is True
    assert dict((k, v["status"]) for k, v in dry["checks"].items()) == dict((k, v["status"]) for k, v in res["checks"].items())

    # figures match what is on disk
    backup = newest_backup(lab)
    assert res["backup"]["path"] == backup
    assert res["backup"]["size_bytes"] == tree_size(backup)
    with open(os.path.join(backup, "backup_label")) as handle:
        label = handle.read()
    assert "(file %s)" % res["backup"]["start_segment"] in label
    newest = max(n for n in os.listdir(lab.info["wal_archive"]) if SEGMENT.match(n))
    assert res["wal"]["newest_segment"] == newest
    cont = res["checks"]["wal_continuity"]["figures"]
    assert cont["first"] == res["backup"]["start_segment"] and cont["last"] == newest and cont["gaps"] == []
    on_disk = set(n for n in os.listdir(lab.info["wal_archive"]) if SEGMENT.match(n))
    assert cont["expected"] == len([n for n in on_disk if cont["first"] <= n <= cont["last"]])
    assert res["checks"]["checksums"]["figures"]["files_verified"] == res["backup"]["file_count"]

    # the restore really ran the queries on replayed data
    queries = dict((q["name"], q) for q in res["queries"])
    assert queries["events"]["value"] == rows_archived
    assert queries["newest"]["value"] is True
    restore = res["restore"]
    assert restore["rto_seconds"] > 0 and restore["last_commit_source"] == "replayed WAL"
    newest_commit = lab.sql("select max(written_at) from events")[0][0]
    assert restore["last_commit_at"] >= newest_commit.strftime("%Y-%m-%dT%H:%M:%S")
    assert restore["scratch_removed"] is True and not os.path.exists(restore["scratch_dir"])
    assert os.listdir(scratch_parent(work)) == []
    assert not _port_open(SCRATCH_PORT)


def test_flipped_byte_fails_checksums_naming_the_file(lab, work):
    original = newest_backup(lab)
    copy_root = os.path.join(work, "backups")
    copy = os.path.join(copy_root, os.path.basename(original))
    shutil.copytree(original, copy, symlinks=True)
    relative = sorted(f for f in os.listdir(os.path.join(copy, "base", "5")) if f.isdigit())[3]
    victim = os.path.join(copy, "base", "5", relative)
    before = sha(os.path.join(original, "base", "5", relative))
    with open(victim, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    res = run_module(MODULE, native_args(lab, work, backup_dir=copy_root, checks=["checksums", "max_age"]))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    assert "checksums" in res["msg"] and "base/5/%s" % relative in res["msg"]
    assert res["failed_checks"] == ["checksums"]
    assert res["checks"]["checksums"]["figures"]["corrupt_files"] == ["base/5/%s" % relative]
    assert res["checks"]["max_age"]["status"] == "passed"
    assert sha(os.path.join(original, "base", "5", relative)) == before  # the lab's backup is intact


def test_missing_segment_fails_continuity_naming_the_gap(lab, work):
    archive = os.path.join(work, "archive")
    shutil.copytree(lab.info["wal_archive"], archive)
    first = run_module(MODULE, native_args(lab, work, wal_archive=archive, checks=["wal_continuity"]))
    assert not first.get("failed"), first.get("msg")
    start = first["backup"]["start_segment"]
    after = sorted(n for n in os.listdir(archive) if SEGMENT.match(n) and n > start)
    victim = after[1]
    os.remove(os.path.join(archive, victim))
    res = run_module(MODULE, native_args(lab, work, wal_archive=archive, checks=["wal_continuity"]))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    assert "wal_continuity" in res["msg"] and victim in res["msg"]
    assert res["checks"]["wal_continuity"]["figures"]["gaps"] == [{"from": victim, "to": victim, "count": 1}]
    assert os.path.exists(os.path.join(lab.info["wal_archive"], victim))
    # fail_on_error: false reports instead of failing
    res = run_module(MODULE, native_args(lab, work, wal_archive=archive, checks=["wal_continuity"], fail_on_error=False))
    assert not res.get("failed") and res["failed_checks"] == ["wal_continuity"] and res["passed"] is False


def test_max_age_one_second_fails_with_the_age(lab, work):
    time.sleep(1.1)
    res = run_module(MODULE, native_args(lab, work, checks=["max_age"], max_age="1s"))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    age = res["checks"]["max_age"]["figures"]["newest_backup"]["age_seconds"]
    assert age > 1
    assert "older than max_age 1s" in res["msg"] and "(%ss)" % age in res["msg"]


def test_failing_expectation_fails_with_query_and_value_and_cleans_up(lab, work):
    count = lab.sql("select count(*) from events")[0][0]
    res = run_module(MODULE, native_args(lab, work, checks=["test_restore"], restore_target="immediate", verify_queries=[
        {"name": "too many", "database": "appdb", "sql": "select count(*) from events", "expect": {"min": 1000000}},
    ]))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    assert "select count(*) from events" in res["msg"] and "below min 1000000" in res["msg"]
    value = res["queries"][0]["value"]
    assert 0 < value <= count and ("value %d" % value) in res["msg"]
    assert res["restore"]["scratch_removed"] is True
    assert os.listdir(scratch_parent(work)) == [] and not _port_open(SCRATCH_PORT)
    # a restore that cannot start (port taken) also cleans up
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", SCRATCH_PORT + 1))
    blocker.listen(1)
    try:
        res = run_module(MODULE, native_args(lab, work, checks=["test_restore"], scratch_port=SCRATCH_PORT + 1))
    finally:
        blocker.close()
    assert res.get("failed") and "already in use" in res["msg"]
    assert os.listdir(scratch_parent(work)) == []


def test_pgbackrest_stanza(lab, work):
    cfg = lab.info["pgbackrest"]
    args = {"engine": "pgbackrest", "stanza": cfg["stanza"], "pgbackrest_config": cfg["config"],
            "scratch_dir": scratch_parent(work), "scratch_port": SCRATCH_PORT + 2, "max_age": "1h",
            "verify_queries": [{"name": "events", "database": "appdb", "sql": "select count(*) from events",
                                "expect": {"min": lab.info["sample_rows"]}}]}
    res = run_module(MODULE, args)
    assert not res.get("failed"), res.get("msg")
    assert all(c["status"] == "passed" for c in res["checks"].values()) and len(res["checks"]) == 4
    repo_backups = os.path.join(cfg["repo"], "backup", cfg["stanza"])
    labels = sorted(d for d in os.listdir(repo_backups) if re.match(r"^\d{8}-\d{6}F", d))
    assert res["backup"]["label"] == labels[-1]
    assert os.listdir(scratch_parent(work)) == []

    # damage one file of a copy of the repository
    repo = os.path.join(work, "repo")
    shutil.copytree(cfg["repo"], repo, symlinks=True)
    conf = os.path.join(work, "pgbackrest.conf")
    with open(cfg["config"]) as handle:
        text = re.sub(r"(?m)^repo1-path=.*$", "repo1-path=" + repo, handle.read())
    with open(conf, "w") as handle:
        handle.write(text)
    shutil.chown(conf, lab.info["os_user"])
    shutil.chown(repo, lab.info["os_user"])
    for root, dirs, files in os.walk(repo):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), lab.info["os_user"])
    folder = os.path.join(repo, "backup", cfg["stanza"], labels[-1], "pg_data", "base", "5")
    name = sorted(os.listdir(folder))[5]
    with open(os.path.join(folder, name), "r+b") as handle:
        data = bytearray(handle.read())
        data[len(data) // 2] ^= 0xFF
        handle.seek(0)
        handle.write(data)
    res = run_module(MODULE, dict(args, pgbackrest_config=conf, checks=["checksums"]))
    assert res.get("failed") and res["error"] == "CHECK_FAILED"
    assert "pg_data/base/5/%s" % name in res["msg"]


def _as_postgres(lab, argv, check=True):
    proc = subprocess.run(["runuser", "-u", lab.info["os_user"], "--"] + argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed: %s" % (argv[0], proc.stdout))
    return proc.stdout


def test_continuity_across_a_real_timeline_switch(lab, work):
    """Restore the lab backup into a private server that archives into a COPY of the archive,
    promote it (timeline 2) and write: the copy then holds 00000002.history and timeline-2
    segments. Continuity follows the switch; a missing timeline-2 segment is named."""
    pg_bin = lab.info["pg_bin"]
    archive = os.path.join(work, "archive")
    shutil.copytree(lab.info["wal_archive"], archive)
    tl = os.path.join(work, "tl")
    data = os.path.join(tl, "data")
    shutil.copytree(newest_backup(lab), data, symlinks=True)
    for name in ("standby.signal", "backup_manifest"):
        if os.path.exists(os.path.join(data, name)):
            os.remove(os.path.join(data, name))
    with open(os.path.join(data, "postgresql.auto.conf"), "a") as handle:
        handle.write("\nrestore_command = 'cp %s/%%f %%p'\narchive_mode = on\narchive_command = 'cp %%p %s/%%f'\n"
                     "recovery_target_timeline = 'latest'\nrecovery_target_action = 'promote'\nprimary_conninfo = ''\n"
                     "primary_slot_name = ''\nsynchronous_standby_names = ''\n" % (archive, archive))
    open(os.path.join(data, "recovery.signal"), "w").close()
    with open(os.path.join(data, "pg_hba.conf"), "w") as handle:
        handle.write("local all all trust\n")
    os.chmod(data, 0o700)
    subprocess.run(["chown", "-R", lab.info["os_user"], archive, tl], check=True)
    port = str(SCRATCH_PORT + 10)
    opts = "-p %s -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c hba_file=%s/pg_hba.conf" % (port, tl, data)
    _as_postgres(lab, [os.path.join(pg_bin, "pg_ctl"), "-D", data, "-l", os.path.join(tl, "log"), "-o", opts, "-w", "start"])
    try:
        psql = [os.path.join(pg_bin, "psql"), "-X", "-A", "-t", "-h", tl, "-p", port, "-U", lab.info["superuser"], "-d", "appdb"]
        wait_until(lambda: _as_postgres(lab, psql + ["-c", "select pg_is_in_recovery()"], check=False).strip() == "f",
                   timeout=60, what="the private server to promote")
        _as_postgres(lab, psql + ["-c", "insert into events (payload) values ('timeline-2')"])
        first_tl2 = _as_postgres(lab, psql + ["-c", "select pg_walfile_name(pg_current_wal_lsn())"]).strip()
        _as_postgres(lab, psql + ["-c", "select pg_switch_wal()"])
        _as_postgres(lab, psql + ["-c", "insert into events (payload) values ('timeline-2b')"])
        second_tl2 = _as_postgres(lab, psql + ["-c", "select pg_walfile_name(pg_current_wal_lsn())"]).strip()
        _as_postgres(lab, psql + ["-c", "select pg_switch_wal()"])
        wait_until(lambda: os.path.exists(os.path.join(archive, second_tl2)), timeout=30, what="timeline 2 archived")
    finally:
        _as_postgres(lab, [os.path.join(pg_bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], check=False)
    assert first_tl2.startswith("00000002") and os.path.exists(os.path.join(archive, "00000002.history"))

    res = run_module(MODULE, native_args(lab, work, wal_archive=archive, checks=["wal_continuity"]))
    assert not res.get("failed"), res.get("msg")
    figures = res["checks"]["wal_continuity"]["figures"]
    assert [t["timeline"] for t in figures["timelines"]] == [1, 2]
    assert figures["target_timeline"] == 2 and figures["last"] == second_tl2
    # every segment number from the start is expected exactly once, on the right timeline
    assert figures["expected"] == int(second_tl2[16:], 16) - int(figures["first"][16:], 16) + 1

    os.remove(os.path.join(archive, first_tl2))
    res = run_module(MODULE, native_args(lab, work, wal_archive=archive, checks=["wal_continuity"]))
    assert res.get("failed") and first_tl2 in res["msg"]
    assert res["checks"]["wal_continuity"]["figures"]["gaps"] == [{"from": first_tl2, "to": first_tl2, "count": 1}]

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore and backup_verify, engine barman, against real Barman and PostgreSQL 15.

One private lab (ports 31000-31099) and one Barman server ``lab`` on it: configuration and
``barman_home`` inside the lab root, ``backup_method = postgres`` (pg_basebackup) and
``streaming_archiver = on`` on a replication slot (``barman receive-wal`` runs in the
background and is stopped by PID). Barman runs as the ``postgres`` OS user from its own venv
(``RESILIENCE_BARMAN_VENV``, default /var/tmp/resilience-dr-barman/venv), built from PyPI
when missing: the project's .venv lives under /root, which that user cannot read, and
Barman needs psycopg2, which would clash with psycopg2-binary there.
Restored clusters use ports 31500-31509.

Tests run in file order: restores first, then the verification of the fresh backup, then the
damage (a flipped byte, a removed WAL segment), each put back afterwards.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import shutil
import signal
import subprocess
import time

import pytest

from lablib import Lab, run_module, wait_until

pytestmark = pytest.mark.lab

PORT_BASE = 31000
RESTORE_PORT = 31500
SCRATCH_PORT = 31501
VENV = os.environ.get("RESILIENCE_BARMAN_VENV", "/var/tmp/resilience-dr-barman/venv")
BARMAN_VERSION = "3.19.1"  # 3.20 needs Python 3.12; Debian bookworm's python3 (which postgres can run) is 3.11
SERVER = "lab"
BEFORE_ROWS = 6
AFTER_ROWS = 4
RESTORE_POINT = "barman_probe_cut"


def ensure_barman_venv():
    """A venv the postgres user can run Barman from; built from PyPI when missing."""
    barman = os.path.join(VENV, "bin", "barman")
    if os.path.exists(barman):
        return barman
    python = "/usr/bin/python3"
    if subprocess.run(["runuser", "-u", "postgres", "--", python, "-c", "import venv, ensurepip"], check=False,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        pytest.fail("%s with venv and ensurepip is needed for Barman (apt-get install python3-venv)" % python)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([python, "-m", "venv", VENV], check=True)
    proc = subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "barman==%s" % BARMAN_VERSION], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        pytest.fail("installing Barman into %s failed:\n%s" % (VENV, proc.stdout[-3000:]))
    subprocess.run(["chmod", "-R", "a+rX", os.path.dirname(VENV)], check=True)
    return barman


class BarmanServer(object):
    def __init__(self, lab, binary):
        self.lab = lab
        self.binary = binary
        self.root = os.path.join(lab.root, "barman")
        self.home = os.path.join(self.root, "home")
        self.config = os.path.join(self.root, "barman.conf")
        self.receiver = None

    def write_config(self):
        info = self.lab.info
        for folder in (self.home, os.path.join(self.root, "log"), os.path.join(self.root, "conf.d")):
            os.makedirs(folder, exist_ok=True)
        conninfo = "host=127.0.0.1 port=%d user=%s password=%s" % (info["primary"]["port"], info["superuser"], info["password"])
        with open(self.config, "w") as handle:
            handle.write("\n".join([
                "[barman]",
                "barman_user = %s" % info["os_user"],
                "barman_home = %s" % self.home,
                "log_file = %s" % os.path.join(self.root, "log", "barman.log"),
                "configuration_files_directory = %s" % os.path.join(self.root, "conf.d"),
                "",
                "[%s]" % SERVER,
                "conninfo = %s dbname=postgres" % conninfo,
                "streaming_conninfo = %s" % conninfo,
                "backup_method = postgres",
                "streaming_archiver = on",
                "slot_name = barman",
                "path_prefix = %s" % info["pg_bin"],
                "",
            ]))
        os.chmod(self.config, 0o600)
        subprocess.run(["chown", "-R", info["os_user"], self.root], check=True)

    def argv(self, *args):
        return ["runuser", "-u", self.lab.info["os_user"], "--", self.binary, "-c", self.config] + list(args)

    def run(self, *args):
        proc = subprocess.run(self.argv(*args), cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False, timeout=180)
        assert proc.returncode == 0, "barman %s failed:\n%s" % (" ".join(args), proc.stdout)
        return proc.stdout

    def start_receiver(self):
        self.run("receive-wal", "--create-slot", SERVER)
        log = open(os.path.join(self.root, "log", "receive-wal.out"), "w")
        self.receiver = subprocess.Popen(self.argv("receive-wal", SERVER), cwd="/", stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        log.close()

    def stop_receiver(self):
        if self.receiver is not None and self.receiver.poll() is None:
            os.killpg(self.receiver.pid, signal.SIGTERM)
            try:
                self.receiver.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.receiver.pid, signal.SIGKILL)
                self.receiver.wait(timeout=10)

    def switch_wal(self):
        """Close the current segment and wait until it is in Barman's WAL store."""
        self.run("switch-wal", "--force", "--archive", "--archive-timeout", "60", SERVER)

    @property
    def wals(self):
        return os.path.join(self.home, SERVER, "wals")


def pg_ctl_stop(lab, data_dir):
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "-w", "stop"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


@pytest.fixture(scope="module")
def env():
    """The lab, Barman with one backup, and rows written around an instant (WAL in Barman)."""
    binary = ensure_barman_venv()
    lab = Lab.up("barman", port_base=PORT_BASE)
    server = BarmanServer(lab, binary)
    restores = os.path.join(lab.root, "restores")
    try:
        os.makedirs(restores)
        subprocess.run(["chown", lab.info["os_user"], restores], check=True)
        server.write_config()
        server.start_receiver()
        wait_until(lambda: "receive-wal running: OK" in subprocess.run(
            server.argv("check", SERVER), stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout,
            timeout=60, interval=1, what="barman receive-wal")
        server.switch_wal()
        server.run("backup", "--wait", "--wait-timeout", "60", SERVER)
        lab.sql("create table barman_probe (id serial primary key, written_at timestamptz not null, phase text)")
        for _row in range(BEFORE_ROWS):
            # one transaction per row: the last one's id is the xid target
            last_xid = lab.sql("insert into barman_probe (written_at, phase) values (clock_timestamp(), 'before') "
                               "returning pg_current_xact_id()::text")[0][0]
        time.sleep(0.3)
        moment = lab.sql("select clock_timestamp()")[0][0].astimezone(datetime.timezone.utc)
        # the same cut as a restore point and as an LSN (after every 'before' commit)
        lab.sql("select pg_create_restore_point(%s)", (RESTORE_POINT,))
        mid_lsn = lab.sql("select pg_current_wal_lsn()::text")[0][0]
        time.sleep(0.3)
        for _row in range(AFTER_ROWS):
            lab.sql("insert into barman_probe (written_at, phase) values (clock_timestamp(), 'after')")
        server.switch_wal()
        server.switch_wal()
        yield {"lab": lab, "barman": server, "moment": moment, "mid_lsn": mid_lsn, "last_xid": last_xid, "restores": restores}
    finally:
        for name in os.listdir(restores) if os.path.isdir(restores) else []:
            pg_ctl_stop(lab, os.path.join(restores, name))
        server.stop_receiver()
        lab.down()


def pitr_args(env, name, **extra):
    args = dict(engine="barman", barman_bin=env["barman"].binary, barman_config=env["barman"].config, barman_server=SERVER,
                data_dir=os.path.join(env["restores"], name), port=RESTORE_PORT)
    args.update(extra)
    return args


def verify_args(env, **extra):
    args = dict(engine="barman", barman_bin=env["barman"].binary, barman_config=env["barman"].config, barman_server=SERVER,
                scratch_dir=env["restores"], scratch_port=SCRATCH_PORT, max_age="1h", timeout=180)
    args.update(extra)
    return args


def barman_backup(env):
    ids = os.listdir(os.path.join(env["barman"].home, SERVER, "base"))
    assert len(ids) == 1, ids
    return ids[0]


def test_pitr_restore_to_instant(env):
    lab, moment = env["lab"], env["moment"]
    args = pitr_args(env, "instant", target_time=moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat())
    check = run_module("resilience.dr.pg_pitr_restore", args, check=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert check["backup"]["id"] == barman_backup(env) and check["backup"]["format"] == "barman"
    assert check["wal"]["complete"] is True and check["wal"]["missing"] == [] and check["wal"]["archive"] == env["barman"].wals
    assert not os.path.exists(args["data_dir"]), "check mode created the data dir"

    result = run_module("resilience.dr.pg_pitr_restore", args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["proof"]["reached"] is True and result["proof"]["promoted"] is True
    # real state: every row committed at or before the instant, none after, in the restored cluster
    rows = lab.sql("select phase, written_at from barman_probe order by id", node=RESTORE_PORT)
    assert [r[0] for r in rows] == ["before"] * BEFORE_ROWS, rows
    assert all(r[1] <= moment for r in rows)
    assert lab.sql("select pg_is_in_recovery()", node=RESTORE_PORT)[0][0] is False
    assert lab.sql("select setting from pg_settings where name = 'archive_mode'", node=RESTORE_PORT)[0][0] == "off"
    with open(os.path.join(args["data_dir"], "postgresql.auto.conf")) as handle:
        auto = handle.read()
    assert "recovery_target_time" not in auto and "barman_wal" not in auto, auto
    assert not os.path.exists(os.path.join(args["data_dir"], "barman_wal")), "recovery_end_command did not run"
    # the files belong to the OS user PostgreSQL runs as
    assert os.stat(os.path.join(args["data_dir"], "PG_VERSION")).st_uid == int(
        subprocess.run(["id", "-u", lab.info["os_user"]], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout)
    # the lab's primary keeps every row
    assert lab.sql("select count(*) from barman_probe")[0][0] == BEFORE_ROWS + AFTER_ROWS

    again = run_module("resilience.dr.pg_pitr_restore", args)
    assert again["changed"] is False and again["steps"] == [], again
    assert len(lab.sql("select 1 from barman_probe", node=RESTORE_PORT)) == BEFORE_ROWS
    pg_ctl_stop(lab, args["data_dir"])


@pytest.mark.parametrize("kind", ["name", "lsn", "xid", "immediate"])
def test_pitr_restore_to_restore_point_lsn_xid_and_immediate(env, kind):
    """barman recover --target-name / --target-lsn / --target-xid: the restored cluster holds
    exactly the rows committed before the cut; --target-immediate: the state at the end of the
    backup, before the probe table existed. Promoted either way, the proof names the target."""
    lab = env["lab"]
    target = {"name": {"target_name": RESTORE_POINT}, "lsn": {"target_lsn": env["mid_lsn"]},
              "xid": {"target_xid": env["last_xid"], "backup_id": barman_backup(env)}, "immediate": {"immediate": True}}[kind]
    args = pitr_args(env, "cut-" + kind, **target)
    result = run_module("resilience.dr.pg_pitr_restore", args)
    try:
        assert result["changed"] is True and not result.get("failed"), (result.get("msg"), result.get("error"), result.get("details"))
        assert result["proof"]["reached"] is True and result["proof"]["promoted"] is True, result["proof"]
        assert lab.sql("select pg_is_in_recovery()", node=RESTORE_PORT)[0][0] is False
        if kind == "immediate":
            # the backup was taken before the table was created: nothing of it, and the lab keeps all
            assert lab.sql("select to_regclass('barman_probe') is null", node=RESTORE_PORT)[0][0] is True
            assert lab.sql("select count(*) from barman_probe")[0][0] == BEFORE_ROWS + AFTER_ROWS
        else:
            rows = lab.sql("select phase from barman_probe order by id", node=RESTORE_PORT)
            assert [r[0] for r in rows] == ["before"] * BEFORE_ROWS, rows
        with open(os.path.join(args["data_dir"], "postgresql.auto.conf")) as handle:
            auto = handle.read()
        assert "recovery_target" not in auto, auto
    finally:
        pg_ctl_stop(lab, args["data_dir"])


def test_target_before_every_backup(env):
    target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    args = pitr_args(env, "too-old", target_time=target.isoformat())
    result = run_module("resilience.dr.pg_pitr_restore", args)
    assert result.get("failed") and result["error"] == "NO_BACKUP_BEFORE_TARGET", result
    assert not os.path.exists(args["data_dir"])


def test_verify_fresh_backup_passes(env):
    result = run_module("resilience.dr.backup_verify", verify_args(env, verify_queries=[
        {"name": "probe rows", "sql": "select count(*) from barman_probe", "database": "appdb",
         "expect": {"equals": BEFORE_ROWS + AFTER_ROWS}}]))
    assert not result.get("failed") and result["passed"] is True, result
    assert result["changed"] is False
    assert [n for n, c in result["checks"].items() if c["status"] != "passed"] == [], result["checks"]
    backup_id = barman_backup(env)
    assert result["backup"]["label"] == backup_id
    # figures match what is on disk
    segments = sorted(n for _r, _d, files in os.walk(env["barman"].wals) for n in files if len(n) == 24)
    assert result["wal"]["newest_segment"] == segments[-1] and result["wal"]["segment_count"] == len(segments)
    assert result["queries"][0]["passed"] is True
    restore = result["checks"]["test_restore"]["figures"]
    assert restore["scratch_removed"] is True and not os.path.exists(restore["scratch_dir"])


def test_verify_flipped_byte_is_named(env):
    data = os.path.join(env["barman"].home, SERVER, "base", barman_backup(env), "data")
    victim = None
    for root, _dirs, files in os.walk(os.path.join(data, "base")):
        for name in sorted(files):
            if os.path.getsize(os.path.join(root, name)) >= 8192:
                victim = os.path.join(root, name)
                break
        if victim:
            break
    with open(victim, "rb") as handle:
        original = handle.read()
    try:
        with open(victim, "r+b") as handle:
            handle.seek(4000)
            byte = handle.read(1)
            handle.seek(4000)
            handle.write(bytes([byte[0] ^ 0xFF]))
        result = run_module("resilience.dr.backup_verify", verify_args(env, checks=["checksums"]))
        assert result.get("failed") and result["error"] == "CHECK_FAILED", result
        relative = os.path.relpath(victim, data)
        assert result["checks"]["checksums"]["status"] == "failed"
        assert relative in result["checks"]["checksums"]["figures"]["corrupt_files"], result["checks"]["checksums"]
        assert victim in result["msg"], result["msg"]
    finally:
        with open(victim, "wb") as handle:
            handle.write(original)


def test_verify_removed_wal_names_the_gap(env):
    segments = sorted((n, os.path.join(r, n)) for r, _d, files in os.walk(env["barman"].wals) for n in files if len(n) == 24)
    assert len(segments) >= 3, segments
    name, path = segments[len(segments) // 2]
    aside = path + ".aside"
    os.rename(path, aside)
    try:
        result = run_module("resilience.dr.backup_verify", verify_args(env, checks=["wal_continuity"], fail_on_error=False))
        assert not result.get("failed") and result["passed"] is False, result
        check = result["checks"]["wal_continuity"]
        assert check["status"] == "failed" and name in check["detail"], check
        assert check["figures"]["gaps"] == [{"from": name, "to": name, "count": 1}]
    finally:
        os.rename(aside, path)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault injection against the lab: ``make chaos`` (docs/chaos.md).

Every scenario brings up a private lab (port block 30000-30799, one block of 100 per
scenario; 30800-30999 are bench/bench_scale.py's), injects one fault into the lab's own
processes (by PID from postmaster.pid, the ansible-playbook process group it started itself,
or a module's python found below an ansible process it started) on loopback only, checks the outcome
on real state, reruns to prove convergence where the issue asks for it, greps everything
the scenario produced for the lab password, and tears the lab down.

    .venv/bin/python chaos/chaos.py [--short] [--only NAME ...]

Results: a table on stdout and chaos/results/chaos.json.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import psycopg  # noqa: E402  pylint: disable=wrong-import-position
from lablib import Lab, Writer, ansible_env, run_module, run_playbook, wait_until  # noqa: E402  pylint: disable=wrong-import-position

RESULTS = os.path.join(HERE, "results")
PORT_BLOCK = 30000
SCENARIO_LIMIT = 300  # seconds a scenario may take before it is abandoned (its lab is still torn down)


class ScenarioFailed(Exception):
    pass


def check(condition, message, checks):
    checks.append({"check": message, "ok": bool(condition)})
    if not condition:
        raise ScenarioFailed(message)


# -- load and sampling -------------------------------------------------------------------
class SplitBrainChecker(threading.Thread):
    """Every ~50 ms: each HAProxy `pg` server that is UP and not in maintenance is asked
    `select pg_is_in_recovery()` on its own port; more than one writable at once is a split brain."""

    def __init__(self, lab, interval=0.05):
        super(SplitBrainChecker, self).__init__(daemon=True)
        self.lab = lab
        self.interval = interval
        self.samples = 0
        self.violations = []
        self.errors = 0
        self.stop_event = threading.Event()

    def writable(self, port):
        try:
            with psycopg.connect(self.lab.dsn(str(port)).replace("connect_timeout=5", "connect_timeout=1"),
                                 autocommit=True) as conn:
                row = conn.execute("select pg_is_in_recovery(), current_setting('default_transaction_read_only')").fetchone()
                return not row[0] and row[1] == "off"
        except psycopg.Error:
            return False

    def run(self):
        while not self.stop_event.is_set():
            try:
                state = self.lab.servers_state("pg")
            except (OSError, IndexError, KeyError):
                self.errors += 1
                time.sleep(self.interval)
                continue
            # srv_op_state 2 = running (UP), and no maintenance flag in srv_admin_state
            live = [row for row in state.values() if row.get("srv_op_state") == "2" and not in_maint(row)]
            writers = [row["srv_name"] for row in live if self.writable(int(row["srv_port"]))]
            self.samples += 1
            if len(writers) > 1:
                self.violations.append({"at": time.time(), "writable": writers})
            time.sleep(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(10)


# -- helpers ------------------------------------------------------------------------------
def playbook_vars(lab, **extra):
    out = {"lab_name": lab.info["name"], "lab_port_base": lab.info["port_base"], "lab_root": lab.root}
    out.update(extra)
    return out


def start_playbook(lab, playbook="playbooks/failover.yml", **extra):
    """ansible-playbook in a process group of its own (so the whole tree can be killed)."""
    out = tempfile.TemporaryFile(mode="w+")
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", os.path.join(ROOT, "inventories", "lab"),
           "-e", json.dumps(playbook_vars(lab, **extra)), os.path.join(ROOT, playbook)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT,
                            universal_newlines=True, start_new_session=True)
    proc.output_file = out
    return proc


def descendants(pid):
    """PIDs of every process below `pid` (from /proc: ansible-core's workers call setsid(), so
    they are not in the playbook's process group and killpg alone would miss them)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(pid):
    """SIGSTOP the playbook and everything under it, then SIGKILL them all (only our own tree)."""
    seen = set()
    for _round in range(3):
        pids = [pid] + descendants(pid)
        for one in pids:
            if one not in seen:
                try:
                    os.kill(one, signal.SIGSTOP)
                except OSError:
                    pass
                seen.add(one)
    for one in seen:
        try:
            os.kill(one, signal.SIGKILL)
        except OSError:
            pass
    return sorted(seen)


def wait_for_lock(lab, proc, timeout=60):
    """Wait until replica_promote's advisory lock (classid 'RDRP') is held on the replica."""
    deadline = time.monotonic() + timeout
    with lab.connect("replica") as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            if conn.execute("select count(*) from pg_locks where locktype = 'advisory' and classid = %s and granted",
                            (0x52445250,)).fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def finish_playbook(proc, timeout=240):
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    proc.output_file.seek(0)
    text = proc.output_file.read()
    proc.output_file.close()
    return proc.returncode, text


def postmaster_pid(data_dir):
    with open(os.path.join(data_dir, "postmaster.pid")) as handle:
        return int(handle.readline().strip())


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def in_recovery(lab, node):
    try:
        return lab.in_recovery(node)
    except psycopg.Error:
        return None


def writable_nodes(lab):
    """Servers that take writes: not in recovery and not fenced read-only."""
    out = []
    for node in ("primary", "replica"):
        try:
            row = lab.sql("select pg_is_in_recovery(), current_setting('default_transaction_read_only')", node=node)[0]
        except psycopg.Error:
            continue
        if not row[0] and row[1] == "off":
            out.append(node)
    return out


#: HAProxy's SRV_ADMF_FMAINT | IMAINT | RMAINT | HMAINT. CMAINT (0x04, `disabled` in the
#: configuration) stays set on a server taken out of maintenance with `state ready`.
MAINT_FLAGS = 0x01 | 0x02 | 0x20 | 0x40


def in_maint(row):
    return bool(int(row.get("srv_admin_state", "1")) & MAINT_FLAGS)


def haproxy_active(lab):
    """Servers of the pg backend not in maintenance (those HAProxy may send traffic to)."""
    state = lab.servers_state("pg")
    return sorted(name for name, row in state.items() if not in_maint(row))


def tree_files(*roots):
    for root in roots:
        if os.path.isfile(root):
            yield root
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                yield os.path.join(folder, name)


def secret_hits(password, texts, lab):
    """Places where the lab password appears: outputs, records, logs of the scenario."""
    hits = []
    needle = password.encode()
    for n, text in enumerate(texts):
        if text and password in text:
            hits.append("output #%d" % n)
    for sub in ("records", "log", "rollback_state"):
        for path in tree_files(os.path.join(lab.root, sub)):
            try:
                with open(path, "rb") as handle:
                    if needle in handle.read():
                        hits.append(path)
            except OSError:
                pass
    return hits


def checksums(paths):
    out = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out[path] = digest.hexdigest()
    return out


def sample_files(folder, count=6):
    files = sorted(p for p in tree_files(folder) if os.path.getsize(p) > 0)
    if len(files) <= count:
        return files
    step = len(files) // count
    return files[::step][:count]


def lab_down(lab):
    """Tear the lab down; a primary killed with -9 leaves a stale postmaster.pid whose PID is
    dead: it is removed first (only after checking that PID no longer runs)."""
    for node in ("primary", "replica"):
        pidfile = os.path.join(lab.info[node]["data_dir"], "postmaster.pid")
        if os.path.exists(pidfile):
            try:
                if not alive(postmaster_pid(lab.info[node]["data_dir"])):
                    os.unlink(pidfile)
            except (OSError, ValueError):
                pass
    lab.down()


# -- scenarios -----------------------------------------------------------------------------
def scenario_kill_primary(lab, out):
    """kill -9 of the old primary while failover.yml runs under a write load (synchronous lab)."""
    checks, texts = out["checks"], out["texts"]
    writer, checker = Writer(lab, payload="chaos"), SplitBrainChecker(lab)
    writer.start()
    checker.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    proc = start_playbook(lab)
    pid = postmaster_pid(lab.info["primary"]["data_dir"])
    if out.get("kill_at") == "promote_task":
        # once replica_promote holds its lock on the replica (it has connected and is reading
        # both servers), a short delay into the module
        out["figures"]["lock_seen"] = wait_for_lock(lab, proc)
        time.sleep(out.get("kill_after", 0.05))
    else:
        time.sleep(out.get("kill_after", 2.5))
    os.kill(pid, signal.SIGKILL)
    out["figures"]["killed_primary_after_s"] = round(time.monotonic() - t0, 3)
    rc, text = finish_playbook(proc)
    texts.append(text)
    out["figures"]["playbook_rc"] = rc
    rc2 = None
    if rc != 0:
        # the rerun happens under the same write load: the write gap and RTO include it
        rc2, text2 = run_playbook_text(lab)
        texts.append(text2)
        out["figures"]["rerun_rc"] = rc2
    time.sleep(0.5)
    writer.stop()
    checker.stop()
    out["figures"].update(writer.figures(t0))
    acked = [pair[1] for pair in writer.acked]
    if rc != 0:
        error = [line for line in text.splitlines() if "[ERROR]" in line or "Failover failed" in line]
        out["notes"].append("first failover.yml run failed after the kill: " + " ".join(error)[:700])
        check(rc2 == 0, "failover.yml rerun after the kill converges", checks)
    else:
        check(True, "failover.yml completed although the old primary was killed", checks)
        out["notes"].append(summary_lines(text))
    check(not alive(pid), "old primary's postmaster is gone", checks)
    check(writable_nodes(lab) == ["replica"], "exactly one writable server (the promoted replica)", checks)
    check(haproxy_active(lab) == ["replica"], "HAProxy sends pg traffic to the promoted replica only", checks)
    present = set(r[0] for r in lab.sql("select id from events where id = any(%s)", (acked,), node="replica"))
    out["figures"]["rows_lost"] = len(set(acked) - present)
    check(out["figures"]["rows_lost"] == 0, "no acknowledged row lost (synchronous replication)", checks)
    split_brain(checker, out)
    rc3, text3 = run_playbook_text(lab)
    texts.append(text3)
    check(rc3 == 0, "a further failover.yml run converges (nothing left to do)", checks)


def run_playbook_text(lab, **extra):
    proc = run_playbook("playbooks/failover.yml", playbook_vars(lab, **extra), timeout=240)
    return proc.returncode, proc.stdout


def summary_lines(text):
    keep = [line.strip().strip('",') for line in text.splitlines()
            if "promoted 127" in line or "estimated data loss" in line or "steps:" in line or "LOCKED" in line]
    return " | ".join(keep)[:600]


def split_brain(checker, out):
    out["figures"]["checker_samples"] = checker.samples
    out["figures"]["split_brain_samples"] = len(checker.violations)
    check(checker.samples > 0, "the split-brain checker sampled (%d samples)" % checker.samples, out["checks"])
    check(not checker.violations, "never two writable primaries behind HAProxy (%s)" % checker.violations[:3], out["checks"])


def scenario_kill_primary_in_module(lab, out):
    """kill -9 of the old primary about 0.15 s into the promote task (the module has connected)."""
    out["kill_at"] = "promote_task"
    scenario_kill_primary(lab, out)


def scenario_two_failovers(lab, out):
    """Two failover.yml runs started at the same moment."""
    checks, texts = out["checks"], out["texts"]
    writer, checker = Writer(lab, payload="chaos"), SplitBrainChecker(lab)
    writer.start()
    checker.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    procs = [start_playbook(lab), start_playbook(lab)]
    results = [finish_playbook(p) for p in procs]
    time.sleep(0.5)
    writer.stop()
    checker.stop()
    out["figures"].update(writer.figures(t0))
    texts.extend(pair[1] for pair in results)
    promoted = [("Promote the replica" in text and ": True (timeline" in text and rc == 0) for rc, text in results]
    locked = ["LOCKED" in pair[1] for pair in results]
    noop = [rc == 0 and ": False (timeline" in text for rc, text in results]
    out["figures"]["return_codes"] = [pair[0] for pair in results]
    out["notes"].append("run A: %s / run B: %s" % (summary_lines(results[0][1]), summary_lines(results[1][1])))
    check(promoted.count(True) == 1, "exactly one run promoted (%s)" % promoted, checks)
    other = promoted.index(False)
    check(locked[other] or noop[other], "the other run failed LOCKED or found nothing to do", checks)
    if locked[other]:
        check(results[other][0] != 0, "the LOCKED run failed (non-zero exit)", checks)
    check(writable_nodes(lab) == ["replica"], "exactly one writable server", checks)
    check(haproxy_active(lab) == ["replica"], "HAProxy sends pg traffic to the promoted replica only", checks)
    split_brain(checker, out)
    rc, text = run_playbook_text(lab)
    texts.append(text)
    check(rc == 0, "a rerun converges", checks)


def scenario_kill_module(lab, out):
    """SIGKILL of the ansible-playbook process tree in the middle of the promotion, then a rerun."""
    checks, texts = out["checks"], out["texts"]
    writer, checker = Writer(lab, payload="chaos"), SplitBrainChecker(lab)
    writer.start()
    checker.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    proc = start_playbook(lab)
    # kill once replica_promote holds its promotion lock on the replica, plus a short delay
    out["figures"]["lock_seen"] = wait_for_lock(lab, proc)
    time.sleep(out.get("kill_after", 0.1))
    out["figures"]["killed_processes"] = len(kill_tree(proc.pid))
    out["figures"]["killed_after_s"] = round(time.monotonic() - t0, 3)
    text = finish_playbook(proc)[1]
    texts.append(text)
    out["figures"]["state_after_kill"] = {"primary_in_recovery": in_recovery(lab, "primary"),
                                          "replica_in_recovery": in_recovery(lab, "replica"),
                                          "haproxy_active": haproxy_active(lab)}
    rc, text2 = run_playbook_text(lab)
    texts.append(text2)
    out["notes"].append("rerun: " + summary_lines(text2))
    time.sleep(0.5)
    writer.stop()
    checker.stop()
    out["figures"].update(writer.figures(t0))
    acked = [pair[1] for pair in writer.acked]
    check(rc == 0, "failover.yml rerun after the kill converges", checks)
    check(writable_nodes(lab) == ["replica"], "exactly one writable server (the promoted replica)", checks)
    check(haproxy_active(lab) == ["replica"], "HAProxy sends pg traffic to the promoted replica only", checks)
    present = set(r[0] for r in lab.sql("select id from events where id = any(%s)", (acked,), node="replica"))
    out["figures"]["rows_lost"] = len(set(acked) - present)
    check(out["figures"]["rows_lost"] == 0, "no acknowledged row lost (synchronous replication)", checks)
    split_brain(checker, out)


def promote_args(lab, **extra):
    args = {"provider": "postgres", "pg_login_host": "127.0.0.1", "pg_port": lab.info["replica"]["port"],
            "pg_login_user": lab.info["superuser"], "pg_login_password": lab.info["password"],
            "pg_database": lab.info["database"], "primary_login_host": "127.0.0.1",
            "primary_port": lab.info["primary"]["port"], "fence": "read_only", "max_lag_bytes": 1024}
    args.update(extra)
    return args


def scenario_link_cut(lab, out):
    """Replication link cut (primary_conninfo emptied on the replica) while writes go on."""
    checks, texts = out["checks"], out["texts"]
    writer = Writer(lab, port=lab.info["primary"]["port"], payload="chaos")
    writer.start()
    time.sleep(1.0)
    lab.sql("alter system set primary_conninfo = ''", node="replica")
    lab.sql("select pg_reload_conf()", node="replica")
    time.sleep(1.0)
    receiver = lab.sql("select count(*) from pg_stat_wal_receiver", node="replica")[0][0]
    check(receiver == 0, "the replica's WAL receiver stopped", checks)
    time.sleep(2.0)
    refused = run_module("resilience.dr.replica_promote", promote_args(lab))
    texts.append(json.dumps(refused))
    out["figures"]["refused_error"] = refused.get("error")
    check(refused.get("failed") and refused.get("error") == "LAG_TOO_HIGH", "the lag guard refuses with LAG_TOO_HIGH", checks)
    check(in_recovery(lab, "replica") is True, "nothing changed: the replica is still in recovery", checks)
    check(lab.sql("show default_transaction_read_only")[0][0] == "off", "nothing changed: the primary still takes writes", checks)
    time.sleep(1.0)
    replica_ids = set(r[0] for r in lab.sql("select id from events", node="replica"))
    forced = run_module("resilience.dr.replica_promote", promote_args(
        lab, allow_data_loss=True, reason="chaos: replication link cut"))
    texts.append(json.dumps(forced))
    writer.stop()
    check(not forced.get("failed"), "with allow_data_loss and a reason the promotion goes ahead (%s)"
          % forced.get("msg"), checks)
    loss = forced.get("data_loss_bytes")
    out["figures"]["data_loss_bytes"] = loss
    check(loss is not None and loss > 0, "data_loss_bytes > 0 is reported (%s)" % loss, checks)
    primary_ids = set(r[0] for r in lab.sql("select id from events", node="primary"))
    promoted_ids = set(r[0] for r in lab.sql("select id from events where id <= %s", (max(primary_ids),), node="replica"))
    acked = set(pair[1] for pair in writer.acked)
    missing = primary_ids - promoted_ids
    out["figures"]["rows_lost"] = len(missing)
    out["figures"]["acknowledged"] = len(acked)
    out["figures"]["acknowledged_lost"] = len(acked & missing)
    check(missing and missing == primary_ids - replica_ids,
          "the rows missing on the promoted replica (%d) are exactly those it had not received" % len(missing), checks)
    check(promoted_ids - primary_ids == set() and promoted_ids == replica_ids & primary_ids,
          "nothing else differs between old primary and promoted replica", checks)
    check(writable_nodes(lab) == ["replica"], "the old primary is fenced read-only; only the replica is writable", checks)


def scenario_full_disk(lab, out):
    """pg_pitr_restore into a 20 MB tmpfs: a clear error; backup and archive untouched."""
    checks, texts = out["checks"], out["texts"]
    mount = tempfile.mkdtemp(prefix="chaos-tmpfs-", dir=lab.root)
    files = sample_files(lab.info["base_backups"]) + sample_files(lab.info["wal_archive"])
    before = checksums(files)
    listing = sorted(tree_files(lab.info["base_backups"], lab.info["wal_archive"]))
    rows = lab.sql("select count(*) from events")[0][0]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mount], check=True)
    try:
        result = run_module("resilience.dr.pg_pitr_restore", {
            "engine": "native", "backup_dir": lab.info["base_backups"], "wal_archive": lab.info["wal_archive"],
            "data_dir": os.path.join(mount, "restored"), "port": PORT_BLOCK + 450,
            "latest": True}, timeout=240)
        texts.append(json.dumps(result))
        out["figures"]["error"] = result.get("error")
        out["notes"].append(str(result.get("msg"))[:300])
        check(result.get("failed"), "the restore fails", checks)
        msg = str(result.get("msg", "")).lower()
        check(any(w in msg for w in ("space", "full", "disk", "enospc")), "the error says the disk is full", checks)
        left = list(tree_files(mount))
        out["figures"]["files_left_in_target"] = len(left)
        out["figures"]["target_used_bytes"] = sum(os.path.getsize(p) for p in left)
    finally:
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)
    check(checksums(files) == before, "the backup and archive files sampled are unchanged (%d files)" % len(files), checks)
    after_listing = sorted(tree_files(lab.info["base_backups"], lab.info["wal_archive"]))
    check(set(listing) <= set(after_listing), "no backup or archive file disappeared", checks)
    check(lab.sql("select count(*) from events")[0][0] >= rows and writable_nodes(lab) == ["primary"],
          "the lab's primary is untouched", checks)


def scenario_corrupt_backup(lab, out):
    """backup_verify on a copy of the backup with one byte flipped, then on a copy of the
    archive with one WAL segment missing: both named."""
    checks, texts = out["checks"], out["texts"]
    work = tempfile.mkdtemp(prefix="chaos-verify-", dir=lab.root)
    backups = os.path.join(work, "base")
    archive = os.path.join(work, "wal_archive")
    shutil.copytree(lab.info["base_backups"], backups)
    shutil.copytree(lab.info["wal_archive"], archive)
    subprocess.run(["chown", "-R", lab.info["os_user"], work], check=True)
    candidates = [p for p in tree_files(backups) if os.path.getsize(p) > 8192 and "backup_manifest" not in p
                  and "pg_wal" not in p]
    victim = max(candidates, key=os.path.getsize)
    with open(victim, "r+b") as handle:
        handle.seek(os.path.getsize(victim) // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    args = {"engine": "native", "backup_dir": backups, "wal_archive": lab.info["wal_archive"],
            "scratch_dir": work, "scratch_port": PORT_BLOCK + 550, "max_age": "1h", "os_user": lab.info["os_user"]}
    corrupt = run_module("resilience.dr.backup_verify", args, timeout=240)
    texts.append(json.dumps(corrupt))
    text = json.dumps(corrupt)
    out["figures"]["corrupt_error"] = corrupt.get("error")
    check(corrupt.get("failed") or corrupt.get("ok") is False or corrupt.get("passed") is False,
          "backup_verify fails on the corrupted backup", checks)
    named = "/".join(victim.split(os.sep)[-3:])
    check(named in text, "the corrupted file .../%s is named" % named, checks)
    segments = sorted(n for n in os.listdir(archive) if len(n) == 24 and all(c in "0123456789ABCDEF" for c in n))
    gone = segments[len(segments) // 2] if len(segments) > 2 else segments[-1]
    os.unlink(os.path.join(archive, gone))
    args.update(backup_dir=lab.info["base_backups"], wal_archive=archive)
    missing = run_module("resilience.dr.backup_verify", args, timeout=240)
    texts.append(json.dumps(missing))
    text = json.dumps(missing)
    out["figures"]["missing_wal_error"] = missing.get("error")
    out["figures"]["missing_segment"] = gone
    check(missing.get("failed") or missing.get("passed") is False, "backup_verify fails on the archive with a hole", checks)
    check(gone in text, "the missing segment %s is named" % gone, checks)
    shutil.rmtree(work, ignore_errors=True)


def module_processes(module):
    """PIDs of our own processes running ``module`` (the AnsiballZ python below the ansible
    process this script started), with their descendants (``runuser``, ``cp``...)."""
    needle = ("AnsiballZ_%s" % module.rsplit(".", 1)[-1]).encode()
    found = []
    for pid in descendants(os.getpid()):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                if needle in handle.read():
                    found.append(pid)
        except OSError:
            continue
    # the module's own process: a python carrying the name (not the `sh -c` around it)
    return [pid for pid in found if open_cmd(pid).startswith("python")]


def process_tree(pid):
    """(pid, parent, command name, start of the command line) of ``pid`` and everything below it."""
    out = []
    for one in [pid] + descendants(pid):
        try:
            with open("/proc/%d/stat" % one) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%d/cmdline" % one, "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        except (OSError, ValueError, IndexError):
            continue
        out.append([one, ppid, open_cmd(one), cmd])
    return out


def open_cmd(pid):
    """A process's command name (``cp``, ``runuser``...), or ``gone``."""
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return "gone"


def tree_bytes(folder):
    total = 0
    for path in tree_files(folder):
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total


def fresh_base_backup(lab, rows):
    """``rows`` rows of ~1 kB into events, then a new pg_basebackup (with manifest) into the
    lab's backup folder, named as the lab names its own: the newest backup, the one a restore
    of the latest state picks."""
    lab.sql("insert into events (payload) select repeat(md5(g::text), 32) from generate_series(1, %s) g", (rows,))
    lab.sql("checkpoint")
    name = "base-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = os.path.join(lab.info["base_backups"], name)
    primary = lab.info["primary"]
    subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_basebackup"),
                    "-h", primary["socket_dir"], "-p", str(primary["port"]), "-U", lab.info["superuser"],
                    "-D", target + ".partial", "-X", "stream", "-c", "fast", "--manifest-checksums=CRC32C", "-l", name],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/")
    os.rename(target + ".partial", target)
    return target


def archive_everything(lab, timeout=60):
    """Switch WAL and wait until the segment holding every row so far is archived."""
    segment = lab.sql("select pg_walfile_name(pg_switch_wal())")[0][0]
    return wait_until(lambda: (lab.sql("select last_archived_wal from pg_stat_archiver")[0][0] or "") >= segment,
                      timeout=timeout, what="WAL segment %s archived" % segment)


def stop_restored(lab, data_dir):
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"), "stop",
                        "-D", data_dir, "-m", "immediate", "-w"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False, cwd="/")


def scenario_restore_killed(lab, out):
    """pg_pitr_restore (native) killed with SIGKILL halfway through copying the backup, then run again."""
    checks, texts, fig = out["checks"], out["texts"], out["figures"]
    backup = fresh_base_backup(lab, out.get("rows", 200000))
    lab.sql("insert into events (payload) values ('after the backup')")
    archive_everything(lab)
    expected = lab.sql("select count(*), max(id) from events")[0]
    files = sorted(tree_files(backup))
    backup_bytes = sum(os.path.getsize(p) for p in files)
    before = checksums(files)
    fig["backup_mb"] = round(backup_bytes / 1e6, 1)
    data_dir = os.path.join(lab.root, "chaos-restore")
    args = {"engine": "native", "backup_dir": lab.info["base_backups"], "wal_archive": lab.info["wal_archive"],
            "data_dir": data_dir, "port": PORT_BLOCK + 750, "latest": True}
    # the copy of the backup's largest file in the target: the kill comes once half of it is written
    largest = max(files, key=os.path.getsize)
    watched = os.path.join(data_dir, os.path.relpath(largest, backup))
    first = {}
    runner = threading.Thread(target=lambda: first.update(run_module("resilience.dr.pg_pitr_restore", args, timeout=240)))
    try:
        t0 = time.monotonic()
        runner.start()
        module_pid, children = None, []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.is_alive():
            if module_pid is None:
                found = module_processes("resilience.dr.pg_pitr_restore")
                module_pid = found[0] if found else None
            try:
                if os.path.getsize(watched) >= os.path.getsize(largest) // 2:
                    break
            except OSError:
                pass
            time.sleep(0.002)
        check(module_pid is not None and runner.is_alive(), "the restore's module process was found while it copied", checks)
        children = descendants(module_pid)
        fig["module_tree_at_kill"] = process_tree(module_pid)
        fig["copied_fraction_at_kill"] = round(tree_bytes(data_dir) / float(backup_bytes), 2)
        os.kill(module_pid, signal.SIGKILL)
        fig["killed_after_s"] = round(time.monotonic() - t0, 3)
        time.sleep(0.2)
        # what a SIGKILL of the module alone leaves running: its `cp` runs in a child process
        # (runuser/cp), which the kernel does not stop with it; they are killed here so that
        # the rerun does not race an orphaned copy into the same folder
        orphans = [pid for pid in children if alive(pid)]
        fig["children_alive_0.2s_after_module_kill"] = [open_cmd(pid) for pid in orphans]
        fig["copied_fraction_0.2s_later"] = round(tree_bytes(data_dir) / float(backup_bytes), 2)
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        runner.join(60)
        texts.append(json.dumps(first))
        copied = tree_bytes(data_dir)
        check(first.get("failed"), "the killed run failed (ansible reports the module's death)", checks)
        marker = os.path.join(data_dir, "resilience_dr_restore.json")
        with open(marker) as handle:
            state = json.load(handle).get("state")
        fig["marker_after_kill"] = state
        check(state == "in_progress", "the half-copied data dir carries the module's marker, state in_progress", checks)
        check(0 < copied < backup_bytes, "the data dir is half copied (%.0f%% of the backup's bytes)" % (100.0 * copied / backup_bytes), checks)
        check(not os.path.exists(os.path.join(data_dir, "postmaster.pid")), "no server was started on the half copy", checks)
        check(checksums(files) == before, "the backup is untouched after the kill (sha256 of all %d files)" % len(files), checks)

        second = run_module("resilience.dr.pg_pitr_restore", args, timeout=240)
        texts.append(json.dumps(second))
        fig["rerun_data_dir_state"] = second.get("data_dir_state")
        fig["rerun_seconds"] = second.get("seconds")
        check(not second.get("failed") and second.get("changed"), "the rerun restores (%s)" % second.get("msg", "ok"), checks)
        check(second.get("data_dir_state") == "ours_incomplete", "the rerun recognised its own half-finished restore", checks)
        got = lab.sql("select count(*), max(id) from events", node=str(PORT_BLOCK + 750))[0]
        fig["rows_expected"], fig["rows_restored"] = expected[0], got[0]
        check(tuple(got) == tuple(expected), "the restored cluster has every row: %s rows, max id %s (expected %s, %s)"
              % (got[0], got[1], expected[0], expected[1]), checks)
        check(lab.sql("select pg_is_in_recovery()", node=str(PORT_BLOCK + 750))[0][0] is False, "the restored cluster is promoted", checks)
        check(checksums(files) == before, "the backup is untouched after the rerun", checks)
        third = run_module("resilience.dr.pg_pitr_restore", args, timeout=240)
        texts.append(json.dumps(third))
        check(not third.get("failed") and third.get("changed") is False, "a third run converges (changed=false)", checks)
    finally:
        if runner.is_alive():
            for pid in module_processes("resilience.dr.pg_pitr_restore"):
                kill_tree(pid)
            runner.join(30)
        stop_restored(lab, data_dir)


SCENARIOS = [
    # name, function, port offset, synchronous, in --short
    ("kill_primary_during_failover", scenario_kill_primary, 0, True, False),
    ("kill_primary_in_promote_task", scenario_kill_primary_in_module, 600, True, False),
    ("two_failovers_at_once", scenario_two_failovers, 100, False, True),
    ("module_killed_mid_promotion", scenario_kill_module, 200, True, False),
    ("replication_link_cut", scenario_link_cut, 300, False, True),
    ("full_disk_during_restore", scenario_full_disk, 400, False, False),
    ("corrupt_backup_missing_wal", scenario_corrupt_backup, 500, False, False),
    ("restore_killed_mid_copy", scenario_restore_killed, 700, False, False),
]


def run_scenario(name, func, offset, synchronous):
    out = {"scenario": name, "outcome": "error", "figures": {}, "checks": [], "notes": [], "texts": []}
    started = time.monotonic()
    lab = None
    try:
        lab = Lab.up("chaos-" + name.replace("_", "-")[:20], port_base=PORT_BLOCK + offset, synchronous=synchronous)
        timer = threading.Timer(SCENARIO_LIMIT, lambda: None)
        timer.start()
        try:
            func(lab, out)
        finally:
            timer.cancel()
        hits = secret_hits(lab.info["password"], out["texts"], lab)
        check(not hits, "the lab password appears nowhere in outputs, records or logs (%s)" % hits[:3], out["checks"])
        out["outcome"] = "pass"
    except ScenarioFailed as exc:
        out["outcome"] = "FAIL"
        out["notes"].append("failed check: %s" % exc)
        if lab is not None:
            try:
                hits = secret_hits(lab.info["password"], out["texts"], lab)
                out["checks"].append({"check": "no secret in outputs", "ok": not hits})
            except Exception:  # pylint: disable=broad-except
                pass
    except Exception as exc:  # pylint: disable=broad-except
        out["outcome"] = "ERROR"
        out["notes"].append("%s: %s" % (type(exc).__name__, str(exc)[-1500:]))
        out["notes"].append(traceback.format_exc()[-1500:])
    finally:
        if lab is not None:
            try:
                lab_down(lab)
            except Exception as exc:  # pylint: disable=broad-except
                out["notes"].append("teardown: %s" % str(exc)[-500:])
    out["seconds"] = round(time.monotonic() - started, 1)
    out.pop("texts")
    return out


def table(results):
    lines = ["| scenario | outcome | RTO (s) | write gap (s) | rows lost | failed requests | checks | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = r["figures"]
        passed = sum(1 for c in r["checks"] if c["ok"])
        lines.append("| %s | %s | %s | %s | %s | %s | %d/%d | %s |" % (
            r["scenario"], r["outcome"], f.get("rto_seconds", "-"), f.get("write_gap_seconds", "-"),
            f.get("rows_lost", "-"), f.get("failed_requests", "-"), passed, len(r["checks"]), r["seconds"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--short", action="store_true", help="only the short subset (the test command's)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if (not args.short or s[4]) and (not args.only or s[0] in args.only)]
    results = []
    for name, func, offset, synchronous, _short in chosen:
        print("=== %s" % name, flush=True)
        result = run_scenario(name, func, offset, synchronous)
        for c in result["checks"]:
            print("  [%s] %s" % ("ok" if c["ok"] else "FAIL", c["check"]), flush=True)
        for note in result["notes"]:
            print("  note: %s" % note[:800], flush=True)
        results.append(result)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "chaos.json"), "w") as handle:
        json.dump({"short": args.short, "scenarios": results}, handle, indent=2, default=str)
    print(table(results))
    return 0 if all(r["outcome"] == "pass" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

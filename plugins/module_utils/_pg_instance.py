# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL cluster run on a restored data directory (private to this collection).

``ScratchInstance`` writes a managed block of settings into ``postgresql.auto.conf``, starts
the cluster on its own port and socket as the PostgreSQL OS user, waits for recovery to pause
/ end / fail, runs queries with ``psql`` over the Unix socket (no Python driver needed), reads
the server log, and stops it. ``pg_pitr_restore`` imports it where it restores (a plan does not
need it). Typical restore::

    backups = _pg_backups.list_native_backups("/backups", wal_archive="/archive")
    backup = _pg_backups.choose_backup(backups)                      # newest
    _pg_copy.copy_native_backup(backup, "/scratch/data", os_user="postgres")
    inst = ScratchInstance("/scratch/data", port=22550, pg_bin=_pg_backups.pg_bin_for(backup))
    inst.write_settings(_pg_backups.scratch_settings(22550, "/scratch/data", _pg_backups.restore_command_for("/archive")))
    inst.write_recovery_signal()
    inst.start()
    state = inst.wait_recovery(timeout=600)              # {"state": "promoted"|"paused"|...}
    rows = inst.query("select count(*) from events", database="appdb")
    inst.stop()
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import signal
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    PRECONDITION_FAILED,
    TIMEOUT,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._pg_backups import render_settings, run_as

MANAGED_BEGIN = "# BEGIN resilience.dr managed settings (%s)"
MANAGED_END = "# END resilience.dr managed settings"


#: server log phrases after which ``wait_recovery`` asks the server where replay is
WAIT_LOG_MARKERS = ("recovery stopping", "pausing at the end of recovery", "recovery has paused", "archive recovery complete",
                    "selected new timeline", "ready to accept connections", "consistent recovery state", "FATAL", "PANIC",
                    "shutting down", "redo done")
#: seconds between two queries of ``wait_recovery`` when the log says nothing new
WAIT_QUERY_INTERVAL = 1.0


class ScratchInstance(object):
    """A PostgreSQL cluster in ``data_dir`` run by ``os_user`` on ``port``.

    :param data_dir: the cluster's data directory (already restored).
    :param port: TCP port (and socket suffix) to run on.
    :param pg_bin: folder of pg_ctl/psql/postgres.
    :param os_user: OS user that owns the data dir and runs the server (None: ourselves).
    :param socket_dir: Unix socket folder (default: the data dir itself, private 0700).
    :param log_file: server log (default ``<data_dir>/resilience_dr_restore.log``).
    :param login_user: role for ``query`` (default: ``postgres``).
    """

    def __init__(self, data_dir, port, pg_bin, os_user=None, socket_dir=None, log_file=None, login_user="postgres"):
        self.data_dir = data_dir
        self.port = int(port)
        self.pg_bin = pg_bin
        self.os_user = os_user
        self.socket_dir = socket_dir or data_dir
        self.log_file = log_file or os.path.join(data_dir, "resilience_dr_restore.log")
        self.login_user = login_user

    # -- configuration ------------------------------------------------------------------
    @property
    def auto_conf(self):
        return os.path.join(self.data_dir, "postgresql.auto.conf")

    def _own(self, path):
        if self.os_user and os.geteuid() == 0:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def write_file(self, name, text, mode=0o600):
        """Write a file inside the data dir, owned by ``os_user``."""
        path = os.path.join(self.data_dir, name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)
        self._own(path)
        return path

    def read_auto_conf(self):
        try:
            with open(self.auto_conf) as handle:
                return handle.read()
        except (IOError, OSError):
            return ""

    def write_settings(self, settings, tag="restore"):
        """Replace the managed block of ``postgresql.auto.conf`` with ``settings`` (dict;
        None values are left out). The block is appended last, so it wins over anything
        the backup carried; everything outside it is kept."""
        text = self.read_auto_conf()
        kept = []
        skipping = False
        for line in text.splitlines():
            if line.startswith(MANAGED_BEGIN.split("(", maxsplit=1)[0]):
                skipping = True
                continue
            if line.startswith(MANAGED_END):
                skipping = False
                continue
            if not skipping:
                kept.append(line)
        while kept and not kept[-1].strip():
            kept.pop()
        block = [MANAGED_BEGIN % tag] + render_settings(settings) + [MANAGED_END]
        self.write_file("postgresql.auto.conf", "\n".join(kept + [""] + block) + "\n")
        if not os.path.exists(os.path.join(self.data_dir, "postgresql.conf")):
            self.write_file("postgresql.conf", "# created by resilience.dr: the backup had no postgresql.conf\n")

    def write_recovery_signal(self):
        self.write_file("recovery.signal", "")

    # -- life cycle ---------------------------------------------------------------------
    def pid(self):
        """PID of the postmaster when one runs in the data dir, else None."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                pid = int(handle.readline().strip())
        except (IOError, OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def pm_status(self):
        """The status line of postmaster.pid (``starting``, ``ready``, ``standby``,
        ``stopping``) or None."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                lines = handle.read().splitlines()
        except (IOError, OSError):
            return None
        return lines[7].strip() if len(lines) > 7 else None

    def start(self, log_append=True):
        """Start the server without waiting (``pg_ctl start -W``); the log goes to
        ``log_file``. Returns the argv used."""
        if not log_append and os.path.exists(self.log_file):
            os.remove(self.log_file)
        if not os.path.exists(self.log_file):
            with open(self.log_file, "w"):
                pass
            self._own(self.log_file)
        argv = [os.path.join(self.pg_bin, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-W", "start"]
        proc = run_as(argv, self.os_user)
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, "pg_ctl start failed in %s: %s" % (self.data_dir, (proc.stderr or proc.stdout).strip()[-400:]),
                          details={"log_tail": self.log_tail()})
        return argv

    def stop(self, mode="fast", timeout=120):
        """Stop the server (no-op when not running) and wait for postmaster.pid to go.

        The postmaster is sent the shutdown signal of ``mode`` directly when we may signal
        it (what ``pg_ctl stop`` does, without a runuser + pg_ctl process and pg_ctl's
        100 ms polling); otherwise through ``pg_ctl stop``."""
        pid = self.pid()
        if pid is None:
            return False
        signum = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}.get(mode)
        if signum is not None:
            try:
                os.kill(pid, signum)
            except OSError:
                signum = None
        if signum is not None:
            deadline = time.monotonic() + timeout
            pid_file = os.path.join(self.data_dir, "postmaster.pid")
            while time.monotonic() < deadline:
                if not os.path.exists(pid_file) or self.pid() is None:
                    return True
                time.sleep(0.01)
            raise DRError(TIMEOUT, "The server in %s did not stop within %ss after the %s shutdown signal." % (self.data_dir, timeout, mode))
        argv = [os.path.join(self.pg_bin, "pg_ctl"), "-D", self.data_dir, "-m", mode, "-t", str(int(timeout)), "-w", "stop"]
        proc = run_as(argv, self.os_user)
        if proc.returncode != 0 and self.pid() is not None:
            raise DRError(APPLY_FAILED, "pg_ctl stop failed in %s: %s" % (self.data_dir, (proc.stderr or proc.stdout).strip()[-400:]))
        deadline = time.monotonic() + 10
        while os.path.exists(os.path.join(self.data_dir, "postmaster.pid")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return True

    def log_tail(self, chars=3000):
        try:
            with open(self.log_file) as handle:
                return handle.read()[-chars:]
        except (IOError, OSError):
            return ""

    def log_text(self, offset=0):
        try:
            with open(self.log_file) as handle:
                handle.seek(offset)
                return handle.read()
        except (IOError, OSError):
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_file)
        except OSError:
            return 0

    # -- queries ------------------------------------------------------------------------
    def query(self, sql, database="postgres", timeout=60):
        """Run one SQL statement with psql over the Unix socket as ``login_user``; return
        a list of rows, each a list of strings (None for NULL)."""
        argv = [os.path.join(self.pg_bin, "psql"), "-X", "-q", "-A", "-t", "-F", "\x1f", "-P", "null=\x1e",
                "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir, "-p", str(self.port), "-U", self.login_user,
                "-d", database, "-c", sql]
        proc = run_as(argv, self.os_user, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5", PGAPPNAME="resilience.dr"))
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, "Query on the restored cluster failed: %s" % proc.stderr.strip()[-400:], details={"sql": sql})
        rows = []
        for line in proc.stdout.split("\n"):  # not splitlines(): it splits on the 0x1e NULL marker
            if line == "":
                continue
            rows.append([None if v == "\x1e" else v for v in line.split("\x1f")])
        return rows

    def can_query(self):
        try:
            self.query("select 1")
            return True
        except DRError:
            return False

    def recovery_facts(self):
        """Server facts about where replay is: ``in_recovery``, ``pause_state``,
        ``last_replay_lsn``, ``last_replay_time`` (ISO UTC of the last replayed commit or
        abort), ``timeline``, ``current_lsn`` (when promoted)."""
        row = self.query(
            "select pg_is_in_recovery(), "
            "case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() end, "
            "pg_last_wal_replay_lsn(), extract(epoch from pg_last_xact_replay_timestamp()), "
            "case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint()) "
            "else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end, "
            "case when not pg_is_in_recovery() then pg_current_wal_lsn() end"
        )[0]
        return {
            "in_recovery": row[0] == "t",
            "pause_state": row[1],
            "last_replay_lsn": row[2],
            "last_replay_time": _time.isoformat(_time.from_epoch(float(row[3]))) if row[3] else None,
            "timeline": int(row[4]) if row[4] else None,
            "current_lsn": row[5],
        }

    def wait_recovery(self, timeout=1800, poll=0.05):
        """Wait until recovery is paused, over (promoted) or has failed.

        :returns: dict ``state``: ``paused`` (reached a target with action pause),
            ``promoted`` (recovery ended, read-write), ``stopped`` (the server exited:
            ``recovery_target_action = shutdown``, or a FATAL such as a target not reached
            or a missing WAL file; see ``log``), plus ``facts`` (``recovery_facts``) when
            the server answers, ``seconds`` and ``log`` (the new part of the server log).
        """
        started = time.monotonic()
        deadline = started + timeout
        last_error = None
        seen_pid = False
        last_query = 0.0
        log_offset = self.log_size()
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is None:
                if seen_pid or time.monotonic() - started > 3:
                    return {"state": "stopped", "seconds": round(time.monotonic() - started, 3), "log": self.log_tail(6000)}
                time.sleep(poll)
                continue
            seen_pid = True
            status = self.pm_status()
            if status == "standby" and time.monotonic() - last_query < WAIT_QUERY_INTERVAL:
                # while replay runs, each query is a runuser + psql process taking CPU from
                # the startup process: query when the server log says something changed
                # (pause, stop, end of recovery, error), else once a second
                size = self.log_size()
                news = self.log_text(log_offset) if size != log_offset else ""
                log_offset = size
                if not any(marker in news for marker in WAIT_LOG_MARKERS):
                    time.sleep(poll)
                    continue
            if status in ("ready", "standby"):
                last_query = time.monotonic()
                try:
                    facts = self.recovery_facts()
                except DRError as exc:
                    last_error = exc.msg
                    facts = None
                    if "role" in exc.msg and "does not exist" in exc.msg:
                        raise DRError(PRECONDITION_FAILED, "The restored cluster has no role %s to query it with; set pg_login_user to "
                                      "one of its superusers." % self.login_user, details={"error": exc.msg})
                if facts is not None:
                    if not facts["in_recovery"]:
                        return {"state": "promoted", "facts": facts, "seconds": round(time.monotonic() - started, 3)}
                    if facts["pause_state"] == "paused":
                        return {"state": "paused", "facts": facts, "seconds": round(time.monotonic() - started, 3)}
            time.sleep(poll)
        raise DRError(TIMEOUT, "Recovery in %s did not end within %ss; look at %s." % (self.data_dir, timeout, self.log_file),
                      details={"last_error": last_error, "log_tail": self.log_tail()})

    def promote(self, timeout=60):
        """Promote and poll tightly until the server is out of recovery.

        Paused at a recovery target, ``pg_wal_replay_resume()`` ends recovery and promotes
        at once: a paused startup process only looks at a promote request once a second
        (measured here: ``pg_promote`` took 1.0-1.2 s from the pause, resume ~0.1 s).
        Otherwise ``pg_promote(wait => false)`` (``wait => true`` polls every 100 ms)."""
        paused = self.query("select pg_is_in_recovery() and pg_get_wal_replay_pause_state() = 'paused'")[0][0] == "t"
        self.query("select pg_wal_replay_resume()" if paused else "select pg_promote(false)")
        deadline = time.monotonic() + timeout
        last_query = 0.0
        while time.monotonic() < deadline:
            # each query is a runuser + psql process: ask only once postmaster.pid says
            # "ready" (it says "standby" until recovery has ended), or twice a second
            if self.pm_status() == "ready" or time.monotonic() - last_query >= 0.5:
                last_query = time.monotonic()
                if self.query("select pg_is_in_recovery()")[0][0] == "f":
                    return True
            time.sleep(0.01)
        raise DRError(TIMEOUT, "The restored cluster in %s did not leave recovery within %ss after pg_promote()." % (self.data_dir, timeout))

    def wait_ready(self, timeout=120):
        """Wait until the postmaster reports ``ready`` or ``standby`` (after a start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pm_status() in ("ready", "standby"):
                return True
            if self.pid() is None and not os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                time.sleep(0.05)
                if self.pid() is None and time.monotonic() > deadline - timeout + 3:
                    raise DRError(APPLY_FAILED, "The restored cluster in %s did not start; see its log." % self.data_dir,
                                  details={"log_tail": self.log_tail()})
            time.sleep(0.02)
        raise DRError(TIMEOUT, "The restored cluster in %s did not accept connections within %ss." % (self.data_dir, timeout))

    def controldata(self):
        """``pg_controldata`` as a dict (``Database cluster state`` ...)."""
        proc = run_as([os.path.join(self.pg_bin, "pg_controldata"), "-D", self.data_dir], self.os_user,
                      env=dict(os.environ, LC_ALL="C"))
        out = {}
        for line in proc.stdout.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                out[key.strip()] = value.strip()
        return out

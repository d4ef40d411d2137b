# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore: targets, and the restore flow shared by the self-managed engines (private).

``normalise_target`` turns the module's target options into one dict. ``DataDirRestore``
is the Provider base of the engines that restore into a data dir (native, pgbackrest):

    read:  catalogue -> choose the backup (never one that ended after the target)
           -> WAL continuity -> state of data_dir (empty / ours / foreign / running)
    plan:  [move_aside] [stop_leftover] prepare_data_dir restore_backup
           write_recovery_settings start_recovery prove_target [promote | stop]
           hand_over write_marker
    verify: the marker says done and the cluster is in the state target_action asked

The target is proven from server facts: the "recovery stopping ..." record of the server
log, and ``pg_last_xact_replay_timestamp()`` / ``pg_last_wal_replay_lsn()``. With
``target_action: pause`` / ``shutdown`` (and before PostgreSQL 14) recovery runs with
``recovery_target_action = pause`` and the proof is made while paused, before promoting.
With ``target_action: promote`` on PostgreSQL >= 14 recovery runs with
``recovery_target_action = promote``: PostgreSQL then promotes only when it stopped AT the
target (recovery that ends before a configured target is FATAL, never a promotion), which
saves the pause / query / resume round trip; the same proof runs right after, and a cluster
that fails it is stopped. Either way WAL that ends before the target makes PostgreSQL stop
with FATAL: that is ``TARGET_NOT_REACHED`` and nothing is promoted.

During recovery the replay settings (``DEFAULT_REPLAY_SETTINGS``) apply; the hand-over
restarts the cluster with its normal settings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import socket

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    PRECONDITION_FAILED,
    TARGET_NOT_REACHED,
    VERIFY_FAILED,
    APPLY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups
from ansible_collections.resilience.dr.plugins.module_utils import _time

MARKER = "resilience_dr_restore.json"
HBA = "resilience_dr_hba.conf"
KEEP_ON_REDO = (MARKER,)

#: settings that make WAL replay faster; removed again before the cluster is handed over
DEFAULT_REPLAY_SETTINGS = {
    # prefetch is left at PostgreSQL's own defaults (recovery_prefetch = try, which is on
    # where posix_fadvise exists, maintenance_io_concurrency = 10, wal_decode_buffer_size =
    # 512kB): the restored files were just written and sit in the page cache, and measured
    # here (1 GB, bench_restore.py) replay with 64 / 2MB was slower (pgBackRest engine redo
    # 4.1 s against 3.35 s, native 1.31 s against 1.15 s, medians of 3); for a data set
    # larger than memory add them through replay_settings
    "recovery_init_sync_method": "syncfs",
    # shared_buffers is left alone: measured here, 512MB did not speed replay up and made the
    # end-of-recovery checkpoint ~0.4 s slower (see docs/modules/pg_pitr_restore.md)
    "max_wal_size": "8GB",
    "checkpoint_timeout": "1h",
}

TARGET_TYPES = ("time", "lsn", "xid", "name", "immediate", "latest")


def normalise_target(params):
    """One dict for the target options: ``type``, ``value`` (text given to PostgreSQL),
    ``time`` (aware UTC datetime) / ``lsn`` (int), ``inclusive``, ``action``,
    ``timeline``. Raises INVALID_ARGUMENT unless exactly one target is given."""
    given = []
    for key in ("target_time", "target_lsn", "target_xid", "target_name"):
        if params.get(key) not in (None, ""):
            given.append(key[len("target_"):])
    for key in ("immediate", "latest"):
        if params.get(key):
            given.append(key)
    if len(given) != 1:
        raise DRError(
            INVALID_ARGUMENT,
            "Give exactly one target: target_time, target_lsn, target_xid, target_name, immediate or latest (got %s)."
            % (", ".join(given) or "none"),
        )
    kind = given[0]
    out = {"type": kind, "value": None, "time": None, "lsn": None, "inclusive": bool(params.get("target_inclusive", True)),
           "action": params.get("target_action") or "promote", "timeline": params.get("target_timeline")}
    if kind == "time":
        moment = _time.parse_timestamp(params["target_time"], "target_time")
        out["time"] = moment
        out["value"] = _time.isoformat(moment)
    elif kind == "lsn":
        out["lsn"] = _pg_backups.parse_lsn(params["target_lsn"], "target_lsn")
        out["value"] = _pg_backups.format_lsn(out["lsn"])
    elif kind == "xid":
        if not str(params["target_xid"]).isdigit():
            raise DRError(INVALID_ARGUMENT, "target_xid must be a transaction id (digits), got %r." % params["target_xid"])
        out["value"] = str(int(params["target_xid"]))
    elif kind == "name":
        out["value"] = params["target_name"]
    if kind == "latest" and out["action"] != "promote":
        raise DRError(INVALID_ARGUMENT, "latest replays all archived WAL and then promotes; target_action must be promote.")
    if kind in ("immediate", "latest", "name"):
        out["inclusive"] = None
    return out


def target_public(target):
    """The JSON-able part of a normalised target."""
    return dict((k, v) for k, v in target.items() if k not in ("time", "lsn"))


def pg_time_text(moment):
    """A datetime as PostgreSQL timestamptz text in UTC with microseconds."""
    return moment.astimezone(_time.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def recovery_target_settings(target, action="pause"):
    """The ``recovery_target*`` settings of ``target`` (dict)."""
    out = {}
    kind = target["type"]
    if kind == "time":
        out["recovery_target_time"] = pg_time_text(target["time"])
    elif kind == "lsn":
        out["recovery_target_lsn"] = target["value"]
    elif kind == "xid":
        out["recovery_target_xid"] = target["value"]
    elif kind == "name":
        out["recovery_target_name"] = target["value"]
    elif kind == "immediate":
        out["recovery_target"] = "immediate"
    if kind in ("time", "lsn", "xid"):
        out["recovery_target_inclusive"] = "on" if target["inclusive"] else "off"
    if kind != "latest":
        out["recovery_target_action"] = action
    if target.get("timeline"):
        out["recovery_target_timeline"] = str(target["timeline"])
    return out


_STOP_RE = re.compile(r"LOG:\s+recovery stopping (before|after|at) (.*)$", re.MULTILINE)
_STOP_TIME_RE = re.compile(r"time (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}(?::?\d{2})?| UTC)?)")
_MISSING_RE = re.compile(r"([0-9A-F]{24})")


def parse_stop_record(log_text):
    """The last ``recovery stopping ...`` line of a server log as a dict ``text``,
    ``where`` (before/after/at), ``time`` (aware datetime or None), ``xid``, ``name``,
    ``lsn``; None when there is none."""
    matches = list(_STOP_RE.finditer(log_text))
    if not matches:
        return None
    match = matches[-1]
    rest = match.group(2)
    out = {"text": "recovery stopping %s %s" % (match.group(1), rest.strip()), "where": match.group(1),
           "time": None, "xid": None, "name": None, "lsn": None}
    tmatch = _STOP_TIME_RE.search(rest)
    if tmatch:
        out["time"] = _pg_backups.parse_pg_time(tmatch.group(1))
    xmatch = re.search(r"transaction (\d+)", rest)
    if xmatch:
        out["xid"] = xmatch.group(1)
    nmatch = re.search(r'restore point "(.*)"', rest)
    if nmatch:
        out["name"] = nmatch.group(1)
    lmatch = re.search(r'WAL location \(LSN\) "([0-9A-F]+/[0-9A-F]+)"', rest)
    if lmatch:
        out["lsn"] = lmatch.group(1)
    return out


def explain_stopped(log_text, target):
    """DRError for a server that exited during recovery, from its log."""
    missing = None
    for line in log_text.splitlines():
        if ("cannot stat" in line or "could not" in line or "unable to find" in line or "archive-get" in line) and _MISSING_RE.search(line):
            name = _MISSING_RE.search(line).group(1)
            if missing is None:
                missing = name
    details = {"log_tail": log_text[-3000:], "target": target_public(target)}
    if "recovery ended before configured recovery target was reached" in log_text:
        done = re.findall(r"last completed transaction was at log time (.*)$", log_text, re.MULTILINE)
        redo = re.findall(r"redo done at ([0-9A-F]+/[0-9A-F]+)", log_text)
        details.update({"last_completed_transaction": done[-1].strip() if done else None, "redo_done_at": redo[-1] if redo else None,
                        "first_missing_wal": missing})
        return DRError(
            TARGET_NOT_REACHED,
            "The archived WAL ends before the target %s (replay stopped at %s, next WAL file %s not available); the cluster was "
            "NOT promoted: archive the missing WAL or choose an earlier target."
            % (target["value"] or target["type"], redo[-1] if redo else "?", missing or "?"),
            details=details,
        )
    if "before consistent recovery point" in log_text:
        return DRError(TARGET_NOT_REACHED, "The target %s lies before the end of the chosen backup, so it cannot be reached from it; "
                       "the cluster was NOT promoted." % target["value"], details=details)
    return DRError(APPLY_FAILED, "The restored cluster stopped during recovery; see log_tail.", details=details)


def prove_target(target, wait, log_text, backup, promoted_at_target=False):
    """Compare where recovery stopped with the target, from server facts.

    :param wait: the result of ``ScratchInstance.wait_recovery``.
    :param promoted_at_target: recovery ran with ``recovery_target_action = promote``, so a
        promoted cluster is the expected end (PostgreSQL >= 14 stops with FATAL instead of
        promoting when recovery ends before the target); the same facts are then checked
        (``pg_last_xact_replay_timestamp()`` / ``pg_last_wal_replay_lsn()`` stay at the end
        of the recovery after promotion).
    :returns: the proof dict (``reached`` True, ``stop_record``, ``last_replayed_commit``,
        ``last_replay_lsn``...). Raises TARGET_NOT_REACHED / VERIFY_FAILED.
    """
    if wait["state"] == "stopped":
        raise explain_stopped(log_text, target)
    facts = wait.get("facts") or {}
    stop = parse_stop_record(log_text)
    proof = {
        "reached": False,
        "state": wait["state"],
        "stop_record": stop["text"] if stop else None,
        "stop_record_time": _time.isoformat(stop["time"]) if stop and stop["time"] else None,
        "last_replayed_commit": facts.get("last_replay_time"),
        "last_replay_lsn": facts.get("last_replay_lsn"),
        "replay_seconds": wait.get("seconds"),
        "target": target["value"] or target["type"],
    }
    kind = target["type"]
    if kind == "latest":
        if wait["state"] != "promoted":
            raise DRError(VERIFY_FAILED, "Recovery to the end of the archive did not end in a promoted cluster (state %s)." % wait["state"])
        proof["reached"] = True
        return proof
    expected = "promoted" if promoted_at_target else "paused"
    if wait["state"] != expected:
        raise DRError(VERIFY_FAILED, "Recovery ended in state %s instead of %s at the target; the target is not proven."
                      % (wait["state"], "promoting" if promoted_at_target else "pausing"), details={"proof": proof})
    if stop is None:
        raise DRError(VERIFY_FAILED, "Recovery %s but the server log has no 'recovery stopping' record; the target is not proven."
                      % wait["state"], details={"proof": proof})
    problems = []
    if kind == "time":
        moment = target["time"]
        last = _time.parse_timestamp(facts["last_replay_time"]) if facts.get("last_replay_time") else None
        if last is not None and (last > moment or (last == moment and not target["inclusive"])):
            problems.append("the last replayed commit (%s) is after the target" % facts["last_replay_time"])
        if stop["time"] is None:
            problems.append("the stop record has no time")
        elif stop["where"] == "before" and (stop["time"] < moment or (stop["time"] == moment and target["inclusive"])):
            problems.append("recovery stopped before a commit at %s, which is not after the target" % _time.isoformat(stop["time"]))
        elif stop["where"] == "after" and stop["time"] > moment:
            problems.append("recovery replayed a commit at %s, after the target" % _time.isoformat(stop["time"]))
    elif kind == "lsn":
        replay = _pg_backups.parse_lsn(facts["last_replay_lsn"]) if facts.get("last_replay_lsn") else 0
        if replay < target["lsn"] and target["inclusive"]:
            problems.append("replay stopped at %s, before the target LSN" % facts.get("last_replay_lsn"))
        if stop["lsn"] is None:
            problems.append("the stop record names no LSN")
    elif kind == "xid":
        if stop["xid"] != target["value"]:
            problems.append("recovery stopped at transaction %s, not %s" % (stop["xid"], target["value"]))
    elif kind == "name":
        if stop["name"] != target["value"]:
            problems.append("recovery stopped at restore point %r, not %r" % (stop["name"], target["value"]))
    elif kind == "immediate":
        if "consistency" not in stop["text"]:
            problems.append("recovery did not stop at the consistent point")
        # a catalogue whose end LSN is only a bound (Barman: the end of the backup's last WAL
        # segment) leaves the proof to PostgreSQL's own "stopping after reaching consistency"
        if backup.get("end_lsn") and backup.get("end_lsn_exact", True) and facts.get("last_replay_lsn"):
            if _pg_backups.parse_lsn(facts["last_replay_lsn"]) < _pg_backups.parse_lsn(backup["end_lsn"]):
                problems.append("replay stopped before the end of the backup")
    if problems:
        if promoted_at_target:
            raise DRError(VERIFY_FAILED, "The restored cluster is not at the target: %s; it is stopped and must not be used."
                          % "; ".join(problems), details={"proof": proof})
        raise DRError(VERIFY_FAILED, "The restored cluster is not at the target: %s; it was NOT promoted." % "; ".join(problems),
                      details={"proof": proof})
    proof["reached"] = True
    return proof


def port_in_use(port, host="127.0.0.1"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        return sock.connect_ex((host, int(port))) == 0
    finally:
        sock.close()


class DataDirRestore(Provider):
    """Base of the engines that restore into a data dir (see the module docstring).

    Subclasses implement ``catalogue()`` (list of backup dicts, see _pg_backups),
    ``source()`` (dict naming where backups come from, part of the idempotency key),
    ``wal_check(backup, target)`` (continuity dict; raise when WAL is missing),
    ``restore_files(backup)`` (fill the empty data dir) and ``recovery_settings(target)``
    (restore_command and recovery targets the engine writes itself, as a dict).
    """

    name = "datadir"
    engine = None
    #: promote through ``recovery_target_action = promote`` when PostgreSQL is 14 or newer
    #: (see ``promote_at_target``); False: pause, prove, then promote
    PROMOTE_AT_TARGET = True

    def __init__(self, module):
        super(DataDirRestore, self).__init__(module)
        self.target = normalise_target(self.params)
        self.data_dir = os.path.abspath(self.params["data_dir"]) if self.params.get("data_dir") else None
        if not self.data_dir:
            raise DRError(INVALID_ARGUMENT, "data_dir is required for engine %s." % self.engine)
        if not self.params.get("port"):
            raise DRError(INVALID_ARGUMENT, "port is required for engine %s: the restored cluster must not use the primary's port." % self.engine)
        self.os_user = self.params.get("os_user") or ("postgres" if os.geteuid() == 0 else None)
        self.timeout = _time.parse_duration(self.params.get("timeout") or "1h", "timeout")
        self.backup = None
        self.instance = None
        self.moved_to = None
        self.proof = None
        self.timings = {}
        self.replay_settings = dict(DEFAULT_REPLAY_SETTINGS)
        for key, value in (self.params.get("replay_settings") or {}).items():
            self.replay_settings[key] = value
        if self.params.get("replay_settings_enabled") is False:
            self.replay_settings = {}

    # -- engine hooks ---------------------------------------------------------------
    def catalogue(self):
        raise NotImplementedError

    def source(self):
        raise NotImplementedError

    def wal_check(self, backup, target):
        raise NotImplementedError

    def restore_files(self, backup):
        raise NotImplementedError

    def recovery_settings(self, target):
        raise NotImplementedError

    def pg_version(self, backup):
        return backup.get("pg_version")

    # -- helpers ------------------------------------------------------------------
    def key(self):
        """What a marker must match for the data dir to count as this restore."""
        return {"engine": self.engine, "source": self.source(), "target": target_public(self.target)}

    def marker_path(self):
        return os.path.join(self.data_dir, MARKER)

    def parked_marker_path(self):
        """Where the marker waits while a tool that wants an empty data dir runs."""
        return self.data_dir.rstrip("/") + "." + MARKER

    def read_marker(self):
        for path in (self.marker_path(), self.parked_marker_path()):
            try:
                with open(path) as handle:
                    return json.load(handle)
            except (IOError, OSError, ValueError):
                continue
        return None

    def park_marker(self):
        """Move the marker out of the data dir (for ``pgbackrest restore``)."""
        if os.path.exists(self.marker_path()):
            os.rename(self.marker_path(), self.parked_marker_path())

    def unpark_marker(self):
        if os.path.exists(self.parked_marker_path()):
            os.rename(self.parked_marker_path(), self.marker_path())

    def keep_partial(self):
        """True when an incomplete restore of ours is reused instead of cleared (delta)."""
        return False

    def write_marker(self, state, **extra):
        data = {"key": self.key(), "state": state, "backup": self.backup, "updated_at": _time.now_iso()}
        data.update(extra)
        if os.path.exists(self.parked_marker_path()):
            os.remove(self.parked_marker_path())
        tmp = self.marker_path() + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.rename(tmp, self.marker_path())
        return data

    def make_instance(self, socket_dir=None):
        from ansible_collections.resilience.dr.plugins.module_utils import _pg_instance  # not for a plan on a new data dir

        pg_bin = _pg_backups.pg_bin_for(self.pg_version(self.backup), self.params.get("pg_bin"))
        return _pg_instance.ScratchInstance(self.data_dir, self.params["port"], pg_bin, os_user=self.os_user,
                                            socket_dir=socket_dir or self.data_dir, login_user=self.params.get("pg_login_user") or "postgres")

    def final_socket_dir(self):
        return self.params.get("socket_dir") or self.data_dir

    # -- read / plan --------------------------------------------------------------
    def read(self):
        backups = self.catalogue()
        oldest = self.target["type"] in ("xid", "name") and not self.params.get("backup_id")
        self.backup = _pg_backups.choose_backup(backups, target_time=self.target["time"], target_lsn=self.target["lsn"],
                                                backup_id=self.params.get("backup_id"), oldest=oldest)
        self.result["backup"] = self.backup
        self.result["target"] = target_public(self.target)
        self.result["backups_found"] = len(backups)
        state = {"data_dir": self.data_dir, "exists": os.path.isdir(self.data_dir), "contents": "absent", "marker": None,
                 "running_pid": None}
        marker = None
        if state["exists"] or os.path.exists(self.parked_marker_path()):
            entries = os.listdir(self.data_dir) if state["exists"] else []
            marker = self.read_marker()
            state["marker"] = marker
            state["running_pid"] = self.make_instance().pid()
            if marker and marker.get("key") == self.key():
                state["contents"] = "restored" if marker.get("state") == "done" else "ours_incomplete"
            elif not entries:
                state["contents"] = "empty"
            else:
                state["contents"] = "foreign"
        elif os.path.exists(self.data_dir):
            raise DRError(PRECONDITION_FAILED, "data_dir %s exists and is not a folder; give a folder path." % self.data_dir)
        self.result["data_dir_state"] = state["contents"]
        if state["contents"] == "restored":
            self.result["proof"] = marker.get("proof")
            self.result["wal"] = marker.get("wal")
            self.result["backup"] = marker.get("backup") or self.backup
            self.result["restored_at"] = marker.get("updated_at")
            return state
        if state["contents"] == "foreign":
            if state["running_pid"]:
                raise DRError(PRECONDITION_FAILED, "A PostgreSQL server (pid %s) runs in data_dir %s; stop it or choose another data_dir."
                              % (state["running_pid"], self.data_dir))
            if self.params.get("existing", "fail") != "move_aside":
                raise DRError(PRECONDITION_FAILED, "data_dir %s is not empty; choose an empty folder or set existing: move_aside to keep "
                              "its contents under a new name." % self.data_dir, details={"data_dir": self.data_dir})
        wal = self.wal_check(self.backup, self.target)
        self.result["wal"] = wal
        if not (state["contents"] == "ours_incomplete" and state["running_pid"]) and port_in_use(self.params["port"]):
            raise DRError(PRECONDITION_FAILED, "Port %s is already in use on 127.0.0.1; give a free port for the restored cluster."
                          % self.params["port"])
        return state

    def plan(self, current):
        if current["contents"] == "restored":
            return []
        steps = []
        dd = self.data_dir
        if current["contents"] == "foreign":
            self.moved_to = "%s.moved-%s" % (dd.rstrip("/"), _time.utcnow().strftime("%Y%m%dT%H%M%SZ"))
            steps.append(Step("move_aside", dd, run=self._move_aside, moved_to=self.moved_to))
        if current["contents"] == "ours_incomplete" and current.get("running_pid"):
            steps.append(Step("stop_leftover_server", dd, run=self._stop_leftover, pid=current["running_pid"]))
        steps.append(Step("prepare_data_dir", dd, run=self._prepare, redo=current["contents"] == "ours_incomplete"))
        steps.append(Step("restore_backup", dd, run=self._restore, backup=self.backup["id"], engine=self.engine))
        settings = self.restore_phase_settings()
        steps.append(Step("write_recovery_settings", os.path.join(dd, "postgresql.auto.conf"), run=self._write_recovery,
                          settings=_hide(settings)))
        steps.append(Step("start_recovery", "127.0.0.1:%s" % self.params["port"], run=self._start, os_user=self.os_user))
        steps.append(Step("prove_target", self.target["value"] or self.target["type"], run=self._prove))
        action = self.target["action"]
        if action == "promote" and self.target["type"] != "latest":
            steps.append(Step("promote", dd, run=self._promote))
        steps.append(Step("hand_over", dd, run=self._hand_over, settings=_hide(self.final_settings()),
                          leave_running=self.leave_running()))
        steps.append(Step("write_marker", os.path.join(dd, MARKER), run=self._done))
        return steps

    def leave_running(self):
        return self.target["action"] != "shutdown" and bool(self.params.get("leave_running", True))

    def restore_phase_settings(self):
        settings = _pg_backups.scratch_settings(self.params["port"], self.data_dir)
        settings.update(self.replay_settings)
        settings["hba_file"] = os.path.join(self.data_dir, HBA)
        settings["timezone"] = "UTC"
        settings["log_timezone"] = "UTC"
        settings.update(self.recovery_settings(self.target))
        settings.update(recovery_target_settings(self.target, "promote" if self.promote_at_target() else "pause"))
        return settings

    def promote_at_target(self):
        """True when recovery runs with ``recovery_target_action = promote`` instead of
        pausing, proving, then promoting (which costs a pause, two queries and a
        resume). Safe from PostgreSQL 14 on: when recovery ends before a configured
        target, the startup process stops with FATAL "recovery ended before configured
        recovery target was reached" and the cluster is never promoted (before 14 it
        promoted anyway). The proof still runs, on the promoted cluster, and a failed
        proof stops it."""
        if self.target["action"] != "promote" or self.target["type"] == "latest" or not self.PROMOTE_AT_TARGET:
            return False
        version = self.pg_version(self.backup) if self.backup else None
        try:
            return int(str(version).split(".", maxsplit=1)[0]) >= 14
        except (TypeError, ValueError):
            return False

    def final_settings(self):
        settings = _pg_backups.scratch_settings(self.params["port"], self.final_socket_dir(),
                                                listen_addresses=self.params.get("listen_addresses") or "127.0.0.1")
        if self.target["action"] != "promote":
            settings.update(self.recovery_settings(self.target))
            settings.update(recovery_target_settings(self.target, self.target["action"]))
        return settings

    def predict(self, current, steps):
        return {"data_dir": self.data_dir, "contents": "restored", "backup": self.backup["id"], "target": target_public(self.target),
                "state": {"promote": "running, promoted", "pause": "running, paused at the target",
                          "shutdown": "stopped at the target"}[self.target["action"]] if self.leave_running() or
                self.target["action"] == "shutdown" else "stopped", "moved_to": self.moved_to}

    # -- steps ----------------------------------------------------------------------
    def _move_aside(self):
        os.rename(self.data_dir, self.moved_to)
        self.result["moved_to"] = self.moved_to
        return {"moved_to": self.moved_to}

    def _stop_leftover(self):
        inst = self.make_instance()
        inst.stop(mode="immediate")
        return {"stopped": True}

    def _prepare(self):
        if not os.path.isdir(self.data_dir):
            os.makedirs(self.data_dir, 0o700)
        removed = 0
        marker = self.read_marker()
        if marker and marker.get("key") == self.key() and not self.keep_partial():
            # our own incomplete restore: clear it (only a dir carrying our marker is cleared)
            self.unpark_marker()
            for name in os.listdir(self.data_dir):
                if name in KEEP_ON_REDO:
                    continue
                path = os.path.join(self.data_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    _rmtree(path)
                else:
                    os.remove(path)
                removed += 1
        elif not marker and os.listdir(self.data_dir):
            raise DRError(PRECONDITION_FAILED, "data_dir %s is no longer empty; nothing was restored into it." % self.data_dir)
        os.chmod(self.data_dir, 0o700)
        self.write_marker("in_progress", started_at=_time.now_iso())
        _pg_backups.chown_tree(self.data_dir, self.os_user)
        return {"cleared_entries": removed}

    def _restore(self):
        out = self.restore_files(self.backup)
        self.timings["restore_backup"] = out.get("seconds")
        return out

    def _write_recovery(self):
        inst = self.make_instance()
        inst.write_file(HBA, "# temporary, written by resilience.dr while the restore is verified\nlocal all all trust\n")
        inst.write_settings(self.restore_phase_settings(), tag="restore in progress")
        inst.write_recovery_signal()
        for name in ("standby.signal",):
            if os.path.exists(os.path.join(self.data_dir, name)):
                os.remove(os.path.join(self.data_dir, name))
        return None

    def _start(self):
        self.instance = self.make_instance()
        self._log_offset = self.instance.log_size()
        self.instance.start()
        return {"log_file": self.instance.log_file}

    def _prove(self):
        wait = self.instance.wait_recovery(timeout=self.timeout)
        self.timings["replay"] = wait.get("seconds")
        self._wait = wait
        log_text = self.instance.log_text(getattr(self, "_log_offset", 0))
        self.proof = prove_target(self.target, wait, log_text, self.backup, promoted_at_target=self.promote_at_target())
        self.result["proof"] = self.proof
        return self.proof

    def _promote(self):
        wait = getattr(self, "_wait", None) or {}
        if self.promote_at_target() and wait.get("state") == "promoted":
            # PostgreSQL promoted at the target itself (recovery_target_action = promote)
            facts = wait.get("facts") or {}
            self.proof["promoted"] = True
            self.proof["promoted_by"] = "recovery_target_action"
            self.proof["timeline_after_promote"] = facts.get("timeline")
            return {"in_recovery": facts.get("in_recovery", False), "promoted_by": "recovery_target_action"}
        self.instance.promote(timeout=min(self.timeout, 300))
        facts = self.instance.recovery_facts()
        self.proof["promoted"] = True
        self.proof["timeline_after_promote"] = facts.get("timeline")
        return {"in_recovery": facts["in_recovery"]}

    def _hand_over(self):
        inst = self.instance or self.make_instance()
        inst.stop(mode="fast")
        if os.path.exists(os.path.join(self.data_dir, HBA)):
            os.remove(os.path.join(self.data_dir, HBA))
        inst.write_settings(self.final_settings(), tag="restored copy")
        final = self.make_instance(socket_dir=self.final_socket_dir())
        if self.leave_running():
            final.start()
            final.wait_ready(timeout=min(self.timeout, 600))
        self.instance = final
        return {"running": self.leave_running()}

    def _done(self):
        data = self.write_marker("done", proof=self.proof, wal=self.result.get("wal"), moved_to=self.moved_to, timings=self.timings,
                                 port=self.params["port"])
        self.result["timings"] = self.timings
        return {"state": data["state"]}

    # -- verify / failure -------------------------------------------------------------------
    def verify(self, current, steps):
        marker = self.read_marker()
        if not marker or marker.get("state") != "done":
            raise DRError(VERIFY_FAILED, "The restore marker in %s does not say done." % self.data_dir)
        inst = self.make_instance(socket_dir=self.final_socket_dir())
        control = inst.controldata()
        state = {"data_dir": self.data_dir, "contents": "restored", "running_pid": inst.pid(),
                 "cluster_state": control.get("Database cluster state"), "timeline": control.get("Latest checkpoint's TimeLineID"),
                 "port": self.params["port"], "moved_to": self.moved_to}
        if self.target["action"] == "promote" and self.leave_running():
            if not state["running_pid"] or control.get("Database cluster state") != "in production":
                raise DRError(VERIFY_FAILED, "The restored cluster is not running in production state (%s)." % state["cluster_state"])
        if self.target["action"] == "shutdown" and state["running_pid"]:
            raise DRError(VERIFY_FAILED, "The restored cluster still runs although target_action is shutdown.")
        if self.moved_to:
            self.result["moved_to"] = self.moved_to
        self.result["timings"] = self.timings
        return state

    def on_failure(self, current, done_steps, error):
        # never promote or delete anything on failure: stop what we started, mark the dir
        try:
            inst = self.instance or (self.make_instance() if self.backup else None)
            if inst is not None and inst.pid():
                inst.stop(mode="fast")
            if os.path.exists(self.marker_path()):
                self.write_marker("failed", error=error.code, message=error.msg)
        except Exception as exc:  # pylint: disable=broad-except
            error.details["cleanup_error"] = str(exc)
            return False
        return None


def _hide(settings):
    """Settings as shown in plan details (commands are not secrets, but keep them short)."""
    return dict((k, v) for k, v in settings.items() if v is not None)


def _rmtree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.remove(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                os.remove(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def utc_stamp(moment=None):
    return (moment or datetime.datetime.now(_time.UTC)).strftime("%Y%m%dT%H%M%SZ")

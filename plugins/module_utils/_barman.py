# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Barman helpers shared by pg_pitr_restore and backup_verify (private).

* ``Barman`` runs ``barman -c <config> -f json ...`` as the OS user Barman is configured
  for (``barman_user``; the lab's is ``postgres``), through the caller's runner: the
  ``Runner`` of backup_verify (``module.run_command`` under ``runuser``) or
  ``_pg_backups.run_as`` for pg_pitr_restore.
* ``backups()`` turns ``list-backups`` + ``show-backup`` into the backup dicts of
  ``_pg_backups.list_native_backups`` (``id`` is Barman's backup id, ``format`` ``barman``).
* ``as_catalogue()`` turns a scan of Barman's WAL store (``_verify_wal.scan_tree`` on
  ``wals_directory``: one sub-folder per 16 hex characters of the segment name) into the
  catalogue of ``_pg_backups.list_archive``.

Barman must run as ``barman_user``: it refuses another user, and the files it writes
(a recovered data dir) must belong to the user PostgreSQL runs as.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups
from ansible_collections.resilience.dr.plugins.module_utils import _time

#: backup statuses that can be restored (WAITING_FOR_WALS still lacks the end WAL)
USABLE = ("DONE",)


def pg_version_text(number):
    """``150018`` -> ``"15"``; ``90624`` -> ``"9.6"``; None stays None."""
    try:
        number = int(number)
    except (TypeError, ValueError):
        return None
    if number >= 100000:
        return str(number // 10000)
    return "%d.%d" % (number // 10000, (number // 100) % 100)


class Barman(object):
    """One Barman server: ``barman -c config <command> ... server``.

    :param run: callable ``run(argv) -> object with returncode, stdout, stderr``.
    """

    def __init__(self, run, binary="barman", config=None, server=None):
        if not server:
            raise DRError(INVALID_ARGUMENT, "barman_server is required for engine barman (the server section of the Barman configuration).")
        if config and not os.path.isfile(config):
            raise DRError(INVALID_ARGUMENT, "barman_config %s is not a file; point it at the Barman configuration holding server %s."
                          % (config, server))
        self.run = run
        self.binary = binary or "barman"
        self.config = os.path.abspath(config) if config else None
        self.server = server
        self._server_info = None

    def argv(self, *args, **kwargs):
        argv = [self.binary]
        if self.config:
            argv += ["-c", self.config]
        if kwargs.get("json"):
            argv += ["-f", "json"]
        argv += ["-q"] if kwargs.get("quiet") else []
        return argv + list(args)

    def call(self, *args, **kwargs):
        """Run a barman command; raise PRECONDITION_FAILED on a non-zero exit unless
        ``check=False``. Returns the completed process."""
        argv = self.argv(*args, **kwargs)
        proc = self.run(argv)
        if proc.returncode != 0 and kwargs.get("check", True):
            raise DRError(PRECONDITION_FAILED, "barman %s failed (rc %d): %s" % (
                args[0], proc.returncode, ((proc.stderr or "") + (proc.stdout or "")).strip()[-600:]),
                details={"argv": argv})
        return proc

    def json(self, *args):
        proc = self.call(*args, json=True)
        try:
            data = json.loads(proc.stdout or "")
        except ValueError:
            raise DRError(PRECONDITION_FAILED, "barman %s did not return JSON: %s" % (args[0], (proc.stdout or "").strip()[-300:]))
        if isinstance(data, dict) and self.server in data:
            return data[self.server]
        return data

    def server_info(self):
        """``show-server`` (folders and settings of the server)."""
        if self._server_info is None:
            info = self.json("show-server", self.server)
            if not isinstance(info, dict) or not info.get("wals_directory"):
                raise DRError(NOT_FOUND, "Barman does not know server %s; check barman_config and barman_server." % self.server)
            self._server_info = info
        return self._server_info

    def wals_directory(self):
        return self.server_info()["wals_directory"]

    def show_backup(self, backup_id):
        return self.json("show-backup", self.server, backup_id)

    def backups(self):
        """Usable backups, oldest end first, as ``_pg_backups`` backup dicts."""
        listed = self.json("list-backups", self.server)
        if not isinstance(listed, list):
            listed = []
        out = []
        for item in listed:
            if item.get("status") not in USABLE:
                continue
            out.append(describe_backup(self.show_backup(item["backup_id"]), self.server_info()))
        out.sort(key=lambda b: (b["end_time"] or "", _pg_backups.parse_lsn(b["end_lsn"]) if b["end_lsn"] else 0))
        return out


def describe_backup(show, server_info=None):
    """A ``show-backup`` JSON document -> a ``_pg_backups`` backup dict (plus ``begin_wal`` /
    ``end_wal`` / ``size`` / ``path``, the backup's data folder)."""
    base = show.get("base_backup_information") or {}
    backup_id = show.get("backup_id")
    path = None
    if server_info and server_info.get("basebackups_directory"):
        path = os.path.join(server_info["basebackups_directory"], backup_id, "data")
    start = _time.parse_timestamp(base["begin_time"]) if base.get("begin_time") else None
    end = _time.parse_timestamp(base["end_time"]) if base.get("end_time") else None
    if end is not None and end.microsecond % 1000:
        # results carry milliseconds: round the end UP, so a backup is never taken as ended earlier
        end += datetime.timedelta(microseconds=1000 - end.microsecond % 1000)
    return {
        "id": backup_id,
        "label": backup_id,
        "path": path,
        "format": "barman",
        "compression": base.get("compression"),
        "type": show.get("backup_type"),
        "status": show.get("status"),
        "pg_version": pg_version_text(show.get("postgresql_version")),
        "timeline": int(base.get("timeline") or 1),
        "start_lsn": base.get("begin_lsn"),
        "end_lsn": base.get("end_lsn"),
        # Barman's end LSN is the end of the backup's last WAL segment (0/C000000 for a
        # pg_basebackup PostgreSQL ended at 0/B000100): a bound for choosing a backup, not the end
        "end_lsn_exact": False,
        "start_time": _time.isoformat(start) if start else None,
        "end_time": _time.isoformat(end) if end else None,
        "end_time_source": "barman show-backup",
        "manifest": bool(path and os.path.isfile(os.path.join(path, "backup_manifest"))),
        "begin_wal": base.get("begin_wal"),
        "end_wal": base.get("end_wal"),
        "size": base.get("backup_size_bytes"),
    }


def as_catalogue(scan, segment_size=_pg_backups.DEFAULT_SEGMENT_SIZE):
    """A ``_verify_wal.scan_tree`` result in the format of ``_pg_backups.list_archive``."""
    out = {"segments": {}, "histories": ["%08X.history" % t for t in scan["histories"]], "backup_files": []}
    for name, mtime in scan["mtimes"].items():
        parsed = _pg_backups.parse_segment_name(name, segment_size)
        if parsed is not None:
            out["segments"].setdefault(parsed[1], []).append((parsed[0], name, mtime))
    return out

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore, engine barman (private).

The backup is chosen here from ``barman list-backups`` / ``show-backup`` with the same rule
as the other engines (newest that ended before the target, never one after it) and passed
to ``barman recover`` by id. ``barman recover`` copies the backup and the WAL up to the
target into ``<data_dir>/barman_wal`` and writes ``restore_command`` and the targets into
``postgresql.auto.conf``; the common flow then adds its own block (targets with
``recovery_target_action = pause``, replay settings), starts PostgreSQL and proves the
target from server facts before promoting.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    TARGET_NOT_REACHED,
)
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import DataDirRestore, pg_time_text
from ansible_collections.resilience.dr.plugins.module_utils import _barman
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups
from ansible_collections.resilience.dr.plugins.module_utils._verify_wal import scan_tree


class BarmanRestore(DataDirRestore):
    """``barman recover <server> <chosen id> <data_dir> --target-...`` then the common proof."""

    name = "barman"
    engine = "barman"

    def __init__(self, module):
        super(BarmanRestore, self).__init__(module)
        self.barman = _barman.Barman(self._run, binary=self.params.get("barman_bin"), config=self.params.get("barman_config"),
                                     server=self.params.get("barman_server"))

    def _run(self, argv):
        return _pg_backups.run_as(argv, self.os_user)

    def source(self):
        return {"barman_config": self.barman.config, "barman_server": self.barman.server}

    def catalogue(self):
        return self.barman.backups()

    def wal_dir(self):
        return os.path.join(self.data_dir, "barman_wal")

    def wal_check(self, backup, target):
        wals = self.barman.wals_directory()
        catalogue = _barman.as_catalogue(scan_tree(wals))
        start = _pg_backups.parse_lsn(backup["start_lsn"])
        end_lsn = target["lsn"]
        if target["type"] == "immediate" and backup.get("end_wal"):
            parsed = _pg_backups.parse_segment_name(backup["end_wal"])
            end_lsn = parsed[1] * _pg_backups.DEFAULT_SEGMENT_SIZE if parsed else None
        check = _pg_backups.check_wal_continuity(None, backup["timeline"], start, end_lsn=end_lsn, until_time=target["time"],
                                                 catalogue=catalogue, segment_size=_pg_backups.DEFAULT_SEGMENT_SIZE)
        check["archive"] = wals
        if check["missing_count"]:
            raise DRError(
                TARGET_NOT_REACHED,
                "WAL segment %s is missing from Barman's WAL store %s (%d of the %d segments from %s to %s needed by backup %s); "
                "choose an earlier target." % (check["missing"][0], wals, check["missing_count"], check["needed"], check["first"],
                                               check["last"], backup["id"]),
                details={"wal": check, "missing_wal": check["missing"], "backup": backup},
            )
        return check

    def recover_args(self, backup):
        target = self.target
        args = ["recover"]
        kind = target["type"]
        if kind == "time":
            args.append("--target-time=%s" % pg_time_text(target["time"]))
        elif kind == "lsn":
            args.append("--target-lsn=%s" % target["value"])
        elif kind == "xid":
            args.append("--target-xid=%s" % target["value"])
        elif kind == "name":
            args.append("--target-name=%s" % target["value"])
        elif kind == "immediate":
            args.append("--target-immediate")
        if kind != "latest":
            args.append("--target-action=pause")
        if kind in ("time", "lsn", "xid") and not target["inclusive"]:
            args.append("--exclusive")
        if target.get("timeline"):
            args.append("--target-tli=%s" % target["timeline"])
        return args + [self.barman.server, backup["id"], self.data_dir]

    def restore_files(self, backup):
        args = self.recover_args(backup)
        started = time.monotonic()
        self.park_marker()
        try:
            proc = self.barman.call(*args, check=False)
        finally:
            self.unpark_marker()
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, "barman recover failed (rc %d): %s" % (proc.returncode, ((proc.stderr or "") + (proc.stdout or "")).strip()[-600:]),
                          details={"argv": self.barman.argv(*args)})
        dropped = drop_recovery_lines(os.path.join(self.data_dir, "postgresql.auto.conf"))
        _pg_backups.chown_tree(self.data_dir, self.os_user)
        return {"argv": self.barman.argv(*args), "seconds": round(time.monotonic() - started, 3), "moved_to_managed_block": dropped}

    def recovery_settings(self, target):
        if target["type"] == "latest":
            # barman recover without a target writes no restore_command: read the WAL store as it grows
            return {"restore_command": "%s get-wal %s %%f > \"%%p\"" % (
                " ".join(_quote(a) for a in self.barman.argv(quiet=True)), _quote(self.barman.server))}
        # what barman recover wrote (moved into the managed block): the WAL it copied up to the target
        folder = _quote(self.wal_dir())
        return {"restore_command": "cp %s/%%f \"%%p\"" % folder, "recovery_end_command": "rm -fr %s" % folder}


#: settings ``barman recover`` writes into postgresql.auto.conf; the common flow writes its own
BARMAN_RECOVERY_KEYS = ("restore_command", "recovery_end_command", "recovery_target", "recovery_target_time", "recovery_target_lsn",
                        "recovery_target_xid", "recovery_target_name", "recovery_target_inclusive", "recovery_target_action",
                        "recovery_target_timeline")


def drop_recovery_lines(path):
    """Remove the recovery settings ``barman recover`` appended to ``path`` (they would stay
    outside the managed block of a promoted cluster); return the names removed."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return []
    kept, dropped = [], []
    for line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in BARMAN_RECOVERY_KEYS:
            dropped.append(key)
        else:
            kept.append(line)
    if dropped:
        with open(path, "w") as handle:
            handle.write("\n".join(kept) + "\n")
    return dropped


def _quote(text):
    return shlex.quote(str(text))

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engine ``barman``: a Barman server (private to this collection).

* Backups come from ``barman list-backups`` / ``show-backup`` (``-f json``); the newest
  ``DONE`` backup (by end time) is verified.
* ``max_age``: the newest backup's end time and the newest segment of Barman's WAL store.
* ``checksums``: ``barman verify-backup`` (``pg_verifybackup`` against the
  ``backup_manifest`` that ``pg_basebackup`` wrote into the backup); the files it names are
  reported. A backup without a manifest (``backup_method = rsync`` without
  ``autogenerate_manifest``) fails with a hint to run ``barman generate-manifest``.
* ``wal_continuity``: every segment from the backup's start to the newest one in
  ``wals_directory``, across timeline switches (``_verify_wal``).
* ``test_restore``: ``barman recover`` of the backup into the scratch folder, then the scratch
  start, queries and clean-up every engine shares; the scratch replays WAL with
  ``barman get-wal``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    NOT_FOUND,
)
from ansible_collections.resilience.dr.plugins.module_utils import _barman
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils import _verify_wal as wal
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import (
    VerifyProvider,
    PASSED,
    FAILED,
    age_seconds,
)
from ansible_collections.resilience.dr.plugins.module_utils._verify_native import test_restore
from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import Runner, find_pg_bin

_FILE = re.compile(r'file "([^"]+)"')
_ERROR = re.compile(r"(?:pg_verifybackup: )?error: (.*)$", re.MULTILINE)


def parse_verify_output(text):
    """(problems, files) named by ``barman verify-backup`` / ``pg_verifybackup``."""
    problems, files = [], []
    for match in _ERROR.finditer(text or ""):
        message = match.group(1).strip()
        problems.append(message)
        for name in _FILE.findall(message):
            if name not in files:
                files.append(name)
    return problems, files


class BarmanVerify(VerifyProvider):
    name = "barman"

    def validate(self, checks):
        self.runner = Runner(self.module, self.params.get("os_user"))
        self.barman = _barman.Barman(self._run, binary=self.params.get("barman_bin"), config=self.params.get("barman_config"),
                                     server=self.params.get("barman_server"))

    def _run(self, argv):
        return self.runner.run(argv, timeout=self.params["timeout"])

    def discover(self):
        backups = self.barman.backups()
        if not backups:
            raise DRError(NOT_FOUND, "Barman server %s has no completed (DONE) backup; run barman backup %s." % (
                self.barman.server, self.barman.server))
        newest = backups[-1]
        self.backup = newest
        stopped = _time.parse_timestamp(newest["end_time"])
        self.figures["backup"] = {
            "label": newest["id"],
            "type": newest.get("type"),
            "path": newest.get("path"),
            "started_at": newest["start_time"],
            "stopped_at": newest["end_time"],
            "age_seconds": age_seconds(stopped),
            "size_bytes": newest.get("size"),
            "start_lsn": newest["start_lsn"],
            "stop_lsn": newest["end_lsn"],
            "start_segment": newest.get("begin_wal"),
            "stop_segment": newest.get("end_wal"),
            "timeline": newest["timeline"],
            "pg_version": newest.get("pg_version"),
            "manifest": newest.get("manifest"),
            "count": len(backups),
        }
        folder = self.barman.wals_directory()
        self.archive = wal.scan_tree(folder)
        newest_seg = self.archive["newest"]
        self.figures["wal"] = {
            "repository": folder,
            "segment_count": len(self.archive["segments"]),
            "newest_segment": newest_seg,
            "newest_at": _time.isoformat(_time.from_epoch(self.archive["mtimes"][newest_seg])) if newest_seg else None,
            "timelines": sorted(set(int(s[:8], 16) for s in self.archive["segments"])),
            "history_files": sorted(self.archive["histories"]),
        }

    # -- checks --------------------------------------------------------------------
    def check_max_age(self):
        at = self.figures["wal"].get("newest_at")
        return self.freshness([
            ("newest_backup", _time.parse_timestamp(self.backup["end_time"]), {"label": self.backup["id"]}),
            ("newest_wal", _time.parse_timestamp(at) if at else None, {"segment": self.figures["wal"]["newest_segment"]}),
        ])

    def check_checksums(self):
        path = self.backup.get("path")
        if path and os.path.isdir(path) and not os.path.isfile(os.path.join(path, "backup_manifest")):
            return FAILED, "Backup %s has no backup_manifest, so its files cannot be checked; run barman generate-manifest %s %s." % (
                self.backup["id"], self.barman.server, self.backup["id"]), {"path": path}
        proc = self.barman.call("verify-backup", self.barman.server, self.backup["id"], check=False)
        text = (proc.stdout or "") + "\n" + (proc.stderr or "")
        problems, files = parse_verify_output(text)
        figures = {"rc": proc.returncode, "problems": problems[:50], "corrupt_files": files, "path": path,
                   "corrupt_paths": [os.path.join(path, name) for name in files] if path else []}
        if proc.returncode == 0 and not problems:
            return PASSED, "barman verify-backup: backup %s matches its backup_manifest" % self.backup["id"], figures
        if files:
            return FAILED, "barman verify-backup found damaged files in backup %s: %s" % (
                self.backup["id"], ", ".join(figures["corrupt_paths"][:20] or files[:20])), figures
        if problems:
            return FAILED, "barman verify-backup reported: %s" % "; ".join(problems[:5]), figures
        raise DRError(APPLY_FAILED, "barman verify-backup failed (exit %d): %s" % (proc.returncode, text.strip()[-400:]), details=figures)

    def check_wal_continuity(self):
        backup = self.figures["backup"]
        result = wal.check_continuity(backup["timeline"], wal.parse_lsn(backup["start_lsn"]), self.archive["segments"].keys(),
                                      self.archive["histories"])
        self.figures["wal"]["gaps"] = result["gaps"]
        folder = self.figures["wal"]["repository"]
        if result["ok"]:
            return PASSED, "%d segment(s) from %s to %s all in Barman's WAL store" % (result["expected"], result["first"], result["last"]), result
        if result["last"] is None:
            return FAILED, "No WAL in %s from the backup's start segment %s on" % (folder, result["first"]), result
        return FAILED, "WAL gap(s) in Barman's WAL store %s between %s and %s: %s missing" % (
            folder, result["first"], result["last"], wal.describe_gaps(result["gaps"])), result

    def check_test_restore(self):
        pg_bin = find_pg_bin(self.params.get("pg_bin_dir"), self.figures["backup"].get("pg_version"))
        target = self.params.get("restore_target") or "latest"

        def copy(instance):
            args = ["recover"]
            if target == "immediate":
                args += ["--target-immediate", "--target-action=promote"]
            proc = self.barman.call(*(args + [self.barman.server, self.backup["id"], instance.data]), check=False)
            if proc.returncode != 0:
                raise DRError(APPLY_FAILED, "barman recover failed: %s" % ((proc.stderr or "") + (proc.stdout or "")).strip()[-400:])

        def restore_command(instance):
            if target == "immediate":
                # what barman recover --target-immediate wrote: the WAL it copied up to consistency
                return "cp %s/%%f \"%%p\"" % shlex.quote(os.path.join(instance.data, "barman_wal"))
            command = " ".join(shlex.quote(a) for a in self.barman.argv(quiet=True))
            return "%s get-wal %s %%f > \"%%p\"" % (command, shlex.quote(self.barman.server))

        return test_restore(self, copy, restore_command, pg_bin)

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore, engine pgbackrest (private).

The backup set is chosen here from ``pgbackrest info --output=json`` with the same rule as
the native engine (newest set that ended before the target) and passed with ``--set``:
pgBackRest's own choice falls back to the latest set when none contains the target,
which silently restores past it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible.module_utils.six.moves import configparser

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    TARGET_NOT_REACHED,
)
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import DataDirRestore, pg_time_text
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups


class PgBackRestRestore(DataDirRestore):
    """``pgbackrest restore --set=<chosen> --type=... --target=...`` then the common proof."""

    name = "pgbackrest"
    engine = "pgbackrest"

    def __init__(self, module):
        super(PgBackRestRestore, self).__init__(module)
        if not self.params.get("stanza"):
            raise DRError(INVALID_ARGUMENT, "stanza is required for engine pgbackrest.")
        self.config = self.params.get("pgbackrest_config")
        self.stanza = self.params["stanza"]
        self.binary = self.params.get("pgbackrest_bin") or "pgbackrest"
        self.info = None

    def source(self):
        return {"pgbackrest_config": self.config, "stanza": self.stanza}

    def keep_partial(self):
        return bool(self.params.get("delta"))

    def catalogue(self):
        self.info = _pg_backups.pgbackrest_info(self.config, self.stanza, os_user=self.os_user, binary=self.binary)
        self.result["archive"] = self.info["archive"]
        return self.info["backups"]

    def pg_version(self, backup):
        return backup.get("pg_version") or (self.info or {}).get("pg_version")

    def _repo_path(self):
        parser = configparser.RawConfigParser(strict=False)
        try:
            parser.read(self.config or "/etc/pgbackrest/pgbackrest.conf")
        except configparser.Error:
            return None
        for section in ("stanza:%s" % self.stanza, self.stanza, "global"):
            if parser.has_section(section) and parser.has_option(section, "repo1-path"):
                if parser.has_option(section, "repo1-type") and parser.get(section, "repo1-type") != "posix":
                    return None
                return parser.get(section, "repo1-path")
        return None

    def wal_check(self, backup, target):
        start = _pg_backups.parse_lsn(backup["start_lsn"])
        repo = self._repo_path()
        out = {"archive": self.info["archive"] if self.info else None}
        if not repo or not os.path.isdir(repo):
            out["complete"] = None
            out["note"] = "the repository is not a local folder; WAL continuity is checked by replay only"
            return out
        catalogue = _pg_backups.list_pgbackrest_archive(repo, self.stanza)
        end_lsn = target["lsn"]
        if target["type"] == "immediate" and backup.get("end_lsn"):
            end_lsn = _pg_backups.parse_lsn(backup["end_lsn"])
        check = _pg_backups.check_wal_continuity(None, backup["timeline"], start, end_lsn=end_lsn, until_time=target["time"],
                                                 catalogue=catalogue, segment_size=_pg_backups.DEFAULT_SEGMENT_SIZE)
        check.update(out)
        if check["missing_count"]:
            raise DRError(
                TARGET_NOT_REACHED,
                "WAL segment %s is missing from the pgBackRest repository (%d of the %d segments from %s to %s needed by set %s); "
                "choose an earlier target." % (check["missing"][0], check["missing_count"], check["needed"], check["first"],
                                               check["last"], backup["id"]),
                details={"wal": check, "missing_wal": check["missing"], "backup": backup},
            )
        return check

    def restore_argv(self, backup):
        target = self.target
        argv = [self.binary]
        if self.config:
            argv.append("--config=%s" % self.config)
        argv += ["--stanza=%s" % self.stanza, "--pg1-path=%s" % self.data_dir, "--set=%s" % backup["label"],
                 "--archive-mode=off", "--process-max=%d" % max(1, min(8, os.cpu_count() or 1))]
        kind = target["type"]
        if kind == "latest":
            argv.append("--type=default")
        else:
            argv.append("--type=%s" % kind)
            if kind == "time":
                argv.append("--target=%s" % pg_time_text(target["time"]))
            elif kind in ("lsn", "xid", "name"):
                argv.append("--target=%s" % target["value"])
            # what pgBackRest writes is only a safe default: the managed block that
            # write_recovery_settings appends after it sets the action recovery really uses
            # (promote at the target on PostgreSQL >= 14, see DataDirRestore.promote_at_target)
            argv.append("--target-action=pause")
            if kind in ("time", "lsn", "xid") and not target["inclusive"]:
                argv.append("--target-exclusive")
        if target.get("timeline"):
            argv.append("--target-timeline=%s" % target["timeline"])
        if self.params.get("delta"):
            argv.append("--delta")
        argv.append("restore")
        return argv

    def restore_files(self, backup):
        argv = self.restore_argv(backup)
        started = time.monotonic()
        self.park_marker()
        try:
            proc = _pg_backups.run_as(argv, self.os_user)
        finally:
            self.unpark_marker()
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, "pgbackrest restore failed (rc %d): %s" % (proc.returncode, (proc.stderr or proc.stdout).strip()[-600:]),
                          details={"argv": argv})
        _pg_backups.chown_tree(self.data_dir, self.os_user)
        return {"argv": argv, "seconds": round(time.monotonic() - started, 3)}

    def recovery_settings(self, target):
        # pgBackRest wrote restore_command and the recovery targets into postgresql.auto.conf
        return {}

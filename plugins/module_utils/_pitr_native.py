# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore, engine native: pg_basebackup folders plus a WAL archive folder (private)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    TARGET_NOT_REACHED,
)
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import DataDirRestore
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups


class NativeRestore(DataDirRestore):
    """Restore a ``pg_basebackup`` backup and replay WAL copied from ``wal_archive``."""

    name = "native"
    engine = "native"

    def __init__(self, module):
        super(NativeRestore, self).__init__(module)
        for option in ("backup_dir", "wal_archive"):
            if not self.params.get(option):
                raise DRError(INVALID_ARGUMENT, "%s is required for engine native." % option)
        self.backup_dir = os.path.abspath(self.params["backup_dir"])
        self.wal_archive = os.path.abspath(self.params["wal_archive"])

    def source(self):
        return {"backup_dir": self.backup_dir, "wal_archive": self.wal_archive}

    def catalogue(self):
        if not os.path.isdir(self.wal_archive):
            raise DRError(NOT_FOUND, "WAL archive folder %s does not exist." % self.wal_archive)
        return _pg_backups.list_native_backups(self.backup_dir, wal_archive=self.wal_archive)

    def wal_check(self, backup, target):
        start = _pg_backups.parse_lsn(backup["start_lsn"])
        end_lsn = target["lsn"]
        if target["type"] == "immediate" and backup.get("end_lsn"):
            end_lsn = _pg_backups.parse_lsn(backup["end_lsn"])
        check = _pg_backups.check_wal_continuity(self.wal_archive, backup["timeline"], start, end_lsn=end_lsn,
                                                 until_time=target["time"])
        if check["missing_count"]:
            raise DRError(
                TARGET_NOT_REACHED,
                "WAL segment %s is missing from the archive %s (%d of the %d segments from %s to %s needed by backup %s); "
                "restore it to the archive or choose an earlier target." % (
                    check["missing"][0], self.wal_archive, check["missing_count"], check["needed"], check["first"], check["last"],
                    backup["id"]),
                details={"wal": check, "missing_wal": check["missing"], "backup": backup},
            )
        return check

    def restore_files(self, backup):
        from ansible_collections.resilience.dr.plugins.module_utils import _pg_copy  # the copy only, not the plan

        return _pg_copy.copy_native_backup(backup, self.data_dir, self.os_user)

    def recovery_settings(self, target):
        return {"restore_command": _pg_backups.restore_command_for(self.wal_archive)}

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

import configparser
import os
import shutil
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    TARGET_NOT_REACHED,
)
from ansible_collections.resilience.dr.plugins.module_utils._pitr_common import DataDirRestore, pg_time_text
from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups


#: segments restore_command keeps hard-linked for a repeated request (see restore_command);
#: replay reads ahead by at most wal_decode_buffer_size, which spans a few small segments
KEEP_SEGMENTS = 4


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

    def spool_dir(self):
        """A private spool (and lock) folder for this restore's asynchronous archive-get, beside
        the data directory: nothing from another restore or from the archive-push of a cluster
        on this host can be found in it, and its lock never waits on theirs."""
        parent, base = os.path.split(os.path.normpath(self.data_dir))
        return os.path.join(parent, ".%s.pgbackrest-spool" % base)

    def keep_dir(self):
        """Where restore_command keeps (hard-links) the last segment it fetched."""
        return os.path.join(self.spool_dir(), "keep")

    def restore_command(self, keep=True):
        """pgBackRest's own ``archive-get`` with ``--archive-async``: the first call starts one
        background process that fetches and decompresses the next segments (up to
        ``archive-get-queue-max``, 128 MB by default, ``process-max`` at a time) into the spool
        while PostgreSQL replays, instead of one process per segment in turn.

        Each segment it returns is also hard-linked into ``keep_dir`` (the last
        ``KEEP_SEGMENTS`` names are kept): at the end of recovery PostgreSQL asks
        restore_command again for the segment it stopped in (by then replay has often read
        ahead into the next one), which the asynchronous queue has already moved past, so
        pgBackRest would start its background process again and fetch it anew (0.2-0.4 s
        measured). A second
        request for the same name is served from that copy instead; anything else, history
        files included, goes to pgBackRest. Segments in the archive never change under a
        name, and when the link cannot be made (another file system) the copy is simply
        not there. ``keep=False``: the pgBackRest call alone (what a cluster handed over
        still in recovery uses)."""
        argv = [self.binary]
        if self.config:
            argv.append("--config=%s" % self.config)
        spool = self.spool_dir()
        # pg1-path: archive-get checks that it is PostgreSQL's working directory
        argv += ["--pg1-path=%s" % self.data_dir, "--stanza=%s" % self.stanza, "--archive-async",
                 "--process-max=%d" % max(1, min(8, os.cpu_count() or 1)), "--spool-path=%s" % spool,
                 "--lock-path=%s" % os.path.join(spool, "lock"), "archive-get", "%f", '"%p"']
        get = " ".join(_shell_word(a) if a != '"%p"' else a for a in argv)
        if not keep:
            return get
        return ('k=%s; if [ -f "$k/%%f" ]; then cp "$k/%%f" "%%p"; else %s && { ln "%%p" "$k/%%f" 2>/dev/null; '
                'set -- $(ls "$k"); while [ $# -gt %d ]; do rm -f "$k/$1"; shift; done; true; }; fi'
                % (_shell_word(self.keep_dir()), get, KEEP_SEGMENTS))

    def recovery_settings(self, target):
        # pgBackRest wrote the recovery targets into postgresql.auto.conf; the managed block
        # written after it replaces its restore_command with the asynchronous one
        return {"restore_command": self.restore_command()}

    def final_settings(self):
        settings = super(PgBackRestRestore, self).final_settings()
        if "restore_command" in settings:
            # handed over still in recovery (pause, shutdown): the kept segments only serve
            # the end of this module's replay, never a later one
            settings["restore_command"] = self.restore_command(keep=False)
        return settings

    def _write_recovery(self):
        # an empty spool for each replay: nothing left by an interrupted run is reused
        spool = self.spool_dir()
        shutil.rmtree(spool, ignore_errors=True)
        os.makedirs(spool, 0o700)
        os.mkdir(self.keep_dir(), 0o700)
        _pg_backups.chown_tree(spool, self.os_user)
        return super(PgBackRestRestore, self)._write_recovery()

    def _hand_over(self):
        out = super(PgBackRestRestore, self)._hand_over()
        if self.target["action"] == "promote":
            # promoted: restore_command is no longer used, its spool goes
            shutil.rmtree(self.spool_dir(), ignore_errors=True)
        else:
            # recovery goes on later (pause, shutdown) with restore_command(keep=False): the
            # kept links only served this replay; no later one may read a recycled file there
            keep = self.keep_dir()
            for name in os.listdir(keep) if os.path.isdir(keep) else ():
                os.remove(os.path.join(keep, name))
        return out


def _shell_word(text):
    """Quote for the shell that runs restore_command (plain words stay as they are)."""
    if text and all(c.isalnum() or c in "-_=./:%,+@" for c in text):
        return text
    return "'%s'" % text.replace("'", "'\\''")

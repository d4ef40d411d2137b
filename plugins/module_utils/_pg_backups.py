# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL backup catalogues and scratch restores (private to this collection).

Shared by ``pg_pitr_restore`` and ``backup_verify``. Nothing here talks to Ansible; errors
are ``DRError`` with stable codes. Three groups of helpers:

* **LSN and WAL segment arithmetic**: ``parse_lsn``, ``format_lsn``, ``segment_name``,
  ``parse_segment_name``, ``list_archive``, ``check_wal_continuity``.
* **Backup catalogues**: ``list_native_backups`` (a folder of ``pg_basebackup`` outputs,
  plain or tar, with ``backup_label`` / ``backup_manifest`` and the archive's ``.backup``
  history files), ``pgbackrest_info`` (``pgbackrest info --output=json``), and
  ``choose_backup`` (the newest backup that ENDED before a target, never one after it).
  Every backup is described by the same dict (see ``list_native_backups``).
* **Scratch instances**: ``copy_native_backup`` puts a base backup into a data dir owned
  by the PostgreSQL OS user; ``ScratchInstance`` writes a managed block of settings into
  ``postgresql.auto.conf``, starts the cluster on its own port and socket as that user,
  waits for recovery to pause / end / fail, runs queries with ``psql`` over the Unix
  socket (no Python driver needed), reads the server log, and stops it.

Typical scratch restore (what ``backup_verify`` needs)::

    backups = list_native_backups("/backups", wal_archive="/archive")
    backup = choose_backup(backups)                      # newest
    copy_native_backup(backup, "/scratch/data", os_user="postgres")
    inst = ScratchInstance("/scratch/data", port=22550, pg_bin=pg_bin_for(backup))
    inst.write_settings(scratch_settings(22550, "/scratch/data", restore_command_for("/archive")))
    inst.write_recovery_signal()
    inst.start()
    state = inst.wait_recovery(timeout=600)              # {"state": "promoted"|"paused"|...}
    rows = inst.query("select count(*) from events", database="appdb")
    inst.stop()
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import glob
import json
import os
import pwd
import queue
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import threading
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    NO_BACKUP_BEFORE_TARGET,
    PRECONDITION_FAILED,
    TIMEOUT,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.gz|\.lz4|\.zst|\.bz2|\.xz)?$")
_HISTORY_RE = re.compile(r"^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$")
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
MANAGED_BEGIN = "# BEGIN resilience.dr managed settings (%s)"
MANAGED_END = "# END resilience.dr managed settings"


# ---------------------------------------------------------------------------------------
# LSN and WAL segments
# ---------------------------------------------------------------------------------------
def parse_lsn(text, name="lsn"):
    """``"0/3000028"`` -> integer; raise DRError(INVALID_ARGUMENT) for anything else."""
    if isinstance(text, int):
        return text
    match = _LSN_RE.match(str(text or "").strip())
    if not match:
        raise DRError(INVALID_ARGUMENT, "%s %r is not a PostgreSQL LSN such as 0/3000028." % (name, text))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value):
    """Integer -> ``"0/3000028"``."""
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segments_per_xlogid(segment_size=DEFAULT_SEGMENT_SIZE):
    return 0x100000000 // segment_size


def segment_number(lsn, segment_size=DEFAULT_SEGMENT_SIZE):
    """Segment number holding byte ``lsn`` (an int)."""
    return lsn // segment_size


def segment_name(timeline, segno, segment_size=DEFAULT_SEGMENT_SIZE):
    """WAL file name of segment ``segno`` on ``timeline``."""
    per = segments_per_xlogid(segment_size)
    return "%08X%08X%08X" % (timeline, segno // per, segno % per)


def parse_segment_name(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """``"000000010000000000000003"`` -> ``(timeline, segno)``; None for other files."""
    match = _SEGMENT_RE.match(name)
    if not match or match.group(4) == ".partial":
        return None
    per = segments_per_xlogid(segment_size)
    return int(match.group(1), 16), int(match.group(2), 16) * per + int(match.group(3), 16)


def list_archive(wal_archive, segment_size=DEFAULT_SEGMENT_SIZE):
    """Segments of a WAL archive folder.

    :returns: dict ``{"segments": {segno: [(timeline, name, mtime), ...]}, "histories":
        [names of *.history], "backup_files": [names of *.backup]}``.
    """
    out = {"segments": {}, "histories": [], "backup_files": []}
    if not wal_archive or not os.path.isdir(wal_archive):
        return out
    for entry in os.scandir(wal_archive):
        if entry.name.endswith(".history"):
            out["histories"].append(entry.name)
            continue
        if entry.name.endswith(".backup"):
            out["backup_files"].append(entry.name)
            continue
        parsed = parse_segment_name(entry.name, segment_size)
        if parsed is None:
            continue
        out["segments"].setdefault(parsed[1], []).append((parsed[0], entry.name, entry.stat().st_mtime))
    return out


def guess_segment_size(wal_archive):
    """Size of an uncompressed segment of the archive (a power of two), else 16 MB."""
    if wal_archive and os.path.isdir(wal_archive):
        for entry in os.scandir(wal_archive):
            if _SEGMENT_RE.match(entry.name) and "." not in entry.name:
                size = entry.stat().st_size
                if size >= 1024 * 1024 and size & (size - 1) == 0:
                    return size
    return DEFAULT_SEGMENT_SIZE


def list_pgbackrest_archive(repo_path, stanza, segment_size=DEFAULT_SEGMENT_SIZE):
    """Segments stored in a local (posix) pgBackRest repository, in the format of
    ``list_archive`` (files are ``<segment>-<sha1>[.gz|.lz4|.zst|.bz2]``)."""
    out = {"segments": {}, "histories": [], "backup_files": []}
    for path in glob.glob(os.path.join(repo_path, "archive", stanza, "*", "*", "*")):
        name = os.path.basename(path)
        seg = name.split("-", 1)[0]
        parsed = parse_segment_name(seg, segment_size)
        if parsed is None or "-" not in name:
            if name.endswith(".backup") or ".backup" in name:
                out["backup_files"].append(name)
            continue
        out["segments"].setdefault(parsed[1], []).append((parsed[0], seg, os.stat(path).st_mtime))
    for path in glob.glob(os.path.join(repo_path, "archive", stanza, "*", "*.history")):
        out["histories"].append(os.path.basename(path))
    return out


def check_wal_continuity(wal_archive, timeline, start_lsn, end_lsn=None, until_time=None,
                         segment_size=None, catalogue=None):
    """Check that every WAL segment from the one holding ``start_lsn`` up to the needed end
    is in the archive (on ``timeline`` or a later one). ``catalogue`` (from
    ``list_archive`` / ``list_pgbackrest_archive``) replaces reading ``wal_archive``.

    The needed end is the segment holding ``end_lsn`` when given; else, with
    ``until_time`` (aware datetime), the first segment archived at or after that time (a
    segment archived before a moment cannot hold WAL written after it); else the newest
    segment in the archive.

    :returns: dict ``first`` / ``last`` (segment names of the needed range), ``needed``,
        ``present``, ``missing`` (names of missing segments, oldest first, at most 20),
        ``complete`` (bool), ``newest_archived`` and ``end_known`` (False when the end was
        guessed from the newest segment).
    """
    segment_size = segment_size or guess_segment_size(wal_archive)
    if catalogue is None:
        catalogue = list_archive(wal_archive, segment_size)
    segs = catalogue["segments"]
    first = segment_number(start_lsn, segment_size)
    newest = max(segs) if segs else None
    end_known = True
    if end_lsn is not None:
        last = segment_number(end_lsn, segment_size)
    elif until_time is not None and segs:
        epoch = (until_time - datetime.datetime(1970, 1, 1, tzinfo=_time.UTC)).total_seconds()
        later = [n for n in segs if n >= first and min(m for _t, _n, m in segs[n]) >= epoch]
        last = min(later) if later else newest
        end_known = bool(later)
    else:
        last = newest if newest is not None and newest >= first else first
        end_known = False
    missing = []
    present = 0
    for segno in range(first, max(first, last) + 1):
        names = [t for t, _n, _m in segs.get(segno, []) if t >= timeline]
        if names:
            present += 1
        else:
            missing.append(segment_name(timeline, segno, segment_size))
    return {
        "first": segment_name(timeline, first, segment_size),
        "last": segment_name(timeline, max(first, last), segment_size),
        "needed": max(first, last) - first + 1,
        "present": present,
        "missing": missing[:20],
        "missing_count": len(missing),
        "complete": not missing,
        "end_known": end_known,
        "newest_archived": segs[newest][0][1] if newest is not None else None,
        "segment_size": segment_size,
    }


# ---------------------------------------------------------------------------------------
# Native base backups
# ---------------------------------------------------------------------------------------
def parse_backup_label(text):
    """Parse a ``backup_label`` (or ``.backup`` history file) into a dict with
    ``start_lsn`` / ``stop_lsn`` (ints), ``checkpoint_lsn``, ``timeline``, ``start_time`` /
    ``stop_time`` (aware datetimes), ``label``, ``method``, ``from``."""
    out = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = key.strip().upper()
        value = value.strip()
        if key in ("START WAL LOCATION", "STOP WAL LOCATION", "CHECKPOINT LOCATION"):
            lsn = value.split()[0]
            out[{"START WAL LOCATION": "start_lsn", "STOP WAL LOCATION": "stop_lsn",
                 "CHECKPOINT LOCATION": "checkpoint_lsn"}[key]] = parse_lsn(lsn)
        elif key in ("START TIME", "STOP TIME"):
            out["start_time" if key == "START TIME" else "stop_time"] = parse_pg_time(value)
        elif key in ("START TIMELINE", "STOP TIMELINE"):
            out["timeline" if key == "START TIMELINE" else "stop_timeline"] = int(value)
        elif key == "LABEL":
            out["label"] = value
        elif key == "BACKUP METHOD":
            out["method"] = value
        elif key == "BACKUP FROM":
            out["from"] = value
    return out


_PG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)?\s*([A-Za-z]+|[+-]\d{2}(?::?\d{2})?)?$")


def parse_pg_time(text):
    """``"2026-11-22 18:20:01 UTC"`` / ``"... 18:20:01.12+00"`` -> aware UTC datetime
    (None when it cannot be read: only UTC/GMT and numeric offsets are understood)."""
    match = _PG_TIME.match(text.strip())
    if not match:
        return None
    day, clock, frac, zone = match.groups()
    if zone in (None, "UTC", "GMT", "Z"):
        zone = "Z"
    elif not zone[0] in "+-":
        return None
    try:
        return _time.parse_timestamp("%sT%s%s%s" % (day, clock, frac or "", zone))
    except DRError:
        return None


def _read_tar_member(path, member_name):
    """Return the text of one member of a (possibly compressed) tar, or None."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name == member_name:
                    handle = tar.extractfile(member)
                    return handle.read().decode("utf-8", "replace") if handle else None
    except (tarfile.TarError, OSError):
        return None
    return None


def _backup_history(wal_archive):
    """``.backup`` history files of the archive, keyed by start LSN."""
    out = {}
    if not wal_archive or not os.path.isdir(wal_archive):
        return out
    for name in os.listdir(wal_archive):
        if _HISTORY_RE.match(name):
            try:
                with open(os.path.join(wal_archive, name)) as handle:
                    info = parse_backup_label(handle.read())
            except OSError:
                continue
            if "start_lsn" in info:
                info["file"] = name
                out[info["start_lsn"]] = info
    return out


def read_native_backup(path, history=None):
    """Describe one ``pg_basebackup`` output folder (plain or tar).

    :returns: the backup dict described in ``list_native_backups``, or None when the
        folder is not a base backup.
    """
    plain = os.path.isfile(os.path.join(path, "backup_label")) and os.path.isfile(os.path.join(path, "PG_VERSION"))
    tars = sorted(glob.glob(os.path.join(path, "base.tar*")))
    if plain:
        fmt, base_tar = "plain", None
        with open(os.path.join(path, "backup_label")) as handle:
            label_text = handle.read()
        with open(os.path.join(path, "PG_VERSION")) as handle:
            pg_version = handle.read().strip()
    elif tars:
        fmt, base_tar = "tar", tars[0]
        label_text = _read_tar_member(base_tar, "backup_label")
        pg_version = (_read_tar_member(base_tar, "PG_VERSION") or "").strip() or None
        if label_text is None:
            return None
    else:
        return None
    label = parse_backup_label(label_text)
    manifest_path = os.path.join(path, "backup_manifest")
    manifest = None
    if os.path.isfile(manifest_path):
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            manifest = None
    end_lsn = None
    timeline = label.get("timeline")
    if manifest and manifest.get("WAL-Ranges"):
        ranges = manifest["WAL-Ranges"]
        end_lsn = parse_lsn(ranges[-1]["End-LSN"])
        timeline = timeline or ranges[0].get("Timeline")
    hist = (history or {}).get(label.get("start_lsn"))
    end_time, end_source = None, None
    if hist and hist.get("stop_time"):
        end_time, end_source = hist["stop_time"], "wal_archive:%s" % hist["file"]
        end_lsn = end_lsn or hist.get("stop_lsn")
    elif manifest is not None:
        end_time = _time.from_epoch(os.stat(manifest_path).st_mtime)
        end_source = "backup_manifest mtime"
    elif fmt == "tar":
        end_time = _time.from_epoch(max(os.stat(t).st_mtime for t in glob.glob(os.path.join(path, "*.tar*"))))
        end_source = "tar mtime"
    compression = None
    if base_tar and not base_tar.endswith(".tar"):
        compression = base_tar.rsplit(".", 1)[-1]
    return {
        "id": os.path.basename(os.path.normpath(path)),
        "path": path,
        "format": fmt,
        "compression": compression,
        "label": label.get("label"),
        "pg_version": pg_version,
        "timeline": timeline or 1,
        "start_lsn": format_lsn(label.get("start_lsn")),
        "end_lsn": format_lsn(end_lsn),
        "start_time": _time.isoformat(label.get("start_time")),
        "end_time": _time.isoformat(end_time),
        "end_time_source": end_source,
        "manifest": manifest is not None,
        "from": label.get("from"),
    }


def list_native_backups(backup_dir, wal_archive=None):
    """Every base backup in ``backup_dir`` (one ``pg_basebackup`` output per sub-folder, or
    ``backup_dir`` itself when it is one), oldest end first.

    Each backup is a dict: ``id`` (folder name), ``path``, ``format`` (``plain``/``tar``),
    ``compression``, ``label``, ``pg_version``, ``timeline``, ``start_lsn`` / ``end_lsn``
    (text LSNs; the end comes from ``backup_manifest``'s WAL-Ranges or the archive's
    ``.backup`` file), ``start_time`` / ``end_time`` (ISO 8601 UTC; the end from the
    archive's ``.backup`` history file when there is one, else the manifest's mtime; see
    ``end_time_source``), ``manifest`` (bool), ``from`` (primary/standby).
    """
    if not backup_dir or not os.path.isdir(backup_dir):
        raise DRError(NOT_FOUND, "Backup folder %s does not exist; give the folder holding the pg_basebackup outputs." % backup_dir)
    history = _backup_history(wal_archive)
    found = []
    own = read_native_backup(backup_dir, history)
    if own is not None:
        found.append(own)
    else:
        for entry in sorted(os.listdir(backup_dir)):
            full = os.path.join(backup_dir, entry)
            if entry.endswith((".partial", ".tmp", ".incomplete")) or entry.startswith("."):
                continue  # a backup still being written (or abandoned)
            if os.path.isdir(full):
                backup = read_native_backup(full, history)
                if backup is not None:
                    found.append(backup)
    found.sort(key=lambda b: (b["end_time"] or "", parse_lsn(b["end_lsn"]) if b["end_lsn"] else 0))
    return found


# ---------------------------------------------------------------------------------------
# pgBackRest
# ---------------------------------------------------------------------------------------
def run_as(argv, os_user=None, **kwargs):
    """Run ``argv`` as ``os_user`` (through ``runuser`` when we are root and it is another
    user); return the CompletedProcess with text stdout/stderr."""
    argv = [str(a) for a in argv]
    if os_user and os.geteuid() == 0 and os_user != "root":
        argv = ["runuser", "-u", os_user, "--"] + argv
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("universal_newlines", True)
    kwargs.setdefault("check", False)
    kwargs.setdefault("cwd", "/")
    # no AnsibleModule here (these helpers are shared and used outside a module run)
    return subprocess.run(argv, **kwargs)  # pylint: disable=subprocess-run-check,ansible-bad-function


def pgbackrest_info(config, stanza, os_user=None, binary="pgbackrest"):
    """Backups of a pgBackRest stanza from ``pgbackrest info --output=json``.

    :returns: dict ``{"backups": [...], "archive": [{"id", "min", "max"}], "status": ...}``;
        each backup has the keys of ``list_native_backups`` (``id`` is the set label,
        ``format`` is ``pgbackrest``) plus ``type`` (full/diff/incr), ``archive_start`` /
        ``archive_stop`` (segment names) and ``size``.
    """
    argv = [binary]
    if config:
        argv.append("--config=%s" % config)
    argv += ["--stanza=%s" % stanza, "--output=json", "info"]
    proc = run_as(argv, os_user)
    if proc.returncode != 0:
        raise DRError(PRECONDITION_FAILED, "pgbackrest info failed (rc %d): %s" % (proc.returncode, (proc.stderr or proc.stdout).strip()[-500:]),
                      details={"argv": argv})
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise DRError(PRECONDITION_FAILED, "pgbackrest info did not return JSON.", details={"argv": argv})
    stanzas = [s for s in data if s.get("name") == stanza] or data
    if not stanzas:
        raise DRError(NOT_FOUND, "pgBackRest stanza %s is unknown; check pgbackrest_config and stanza." % stanza)
    info = stanzas[0]
    versions = dict((db.get("id"), db.get("version")) for db in info.get("db", []))
    backups = []
    for item in info.get("backup", []):
        stamp = item.get("timestamp", {})
        lsn = item.get("lsn", {})
        archive = item.get("archive", {})
        start_seg = archive.get("start")
        backups.append({
            "id": item.get("label"),
            "path": None,
            "format": "pgbackrest",
            "compression": None,
            "label": item.get("label"),
            "type": item.get("type"),
            "pg_version": versions.get((item.get("database") or {}).get("id")),
            "timeline": int(start_seg[:8], 16) if start_seg else 1,
            "start_lsn": lsn.get("start"),
            "end_lsn": lsn.get("stop"),
            "start_time": _time.isoformat(_time.from_epoch(stamp["start"])) if stamp.get("start") else None,
            "end_time": _time.isoformat(_time.from_epoch(stamp["stop"])) if stamp.get("stop") else None,
            "end_time_source": "pgbackrest info",
            "manifest": True,
            "archive_start": start_seg,
            "archive_stop": archive.get("stop"),
            "size": (item.get("info") or {}).get("size"),
        })
    backups.sort(key=lambda b: (b["end_time"] or "", parse_lsn(b["end_lsn"]) if b["end_lsn"] else 0))
    return {
        "backups": backups,
        "archive": [{"id": a.get("id"), "min": a.get("min"), "max": a.get("max")} for a in info.get("archive", [])],
        "status": (info.get("status") or {}).get("message"),
        "pg_version": versions[max(versions)] if versions else None,
    }


# ---------------------------------------------------------------------------------------
# Choosing a backup
# ---------------------------------------------------------------------------------------
def choose_backup(backups, target_time=None, target_lsn=None, backup_id=None, oldest=False):
    """The backup to restore from.

    * ``backup_id``: that backup (NOT_FOUND when absent); still refused when it ended
      after a time / LSN target.
    * ``target_time`` (aware datetime): the newest backup whose END time is at or before
      it. ``target_lsn`` (int): the newest whose end LSN is at or before it. A backup that
      ended after the target can never reach it (PostgreSQL refuses a stop point before
      the consistent point), so it is never chosen.
    * neither: the newest backup (``oldest=True``: the oldest, for targets such as an xid
      or a restore point whose position is unknown).

    Backups without an end LSN and time (unfinished, or neither manifest nor history file)
    are never chosen. Raises DRError(NO_BACKUP_BEFORE_TARGET) when no backup qualifies.
    """
    # a backup whose end is unknown (no manifest, no .backup history file) may be unfinished
    backups = [b for b in backups if b.get("end_lsn") and b.get("end_time")]
    if not backups:
        raise DRError(NO_BACKUP_BEFORE_TARGET, "No complete base backup was found (one needs a backup_manifest or a .backup history "
                      "file in the WAL archive); take one (pg_basebackup / pgbackrest backup) first.")

    def fits(backup):
        if target_time is not None:
            end = _time.parse_timestamp(backup["end_time"]) if backup.get("end_time") else None
            if end is not None and end.microsecond == 0:
                # whole-second stop times (backup history files, pgBackRest) are rounded down:
                # the backup may have ended up to a second later
                end += datetime.timedelta(seconds=1) - datetime.timedelta(microseconds=1)
            if end is None or end > target_time:
                return False
        if target_lsn is not None:
            if not backup.get("end_lsn") or parse_lsn(backup["end_lsn"]) > target_lsn:
                return False
        return True

    if backup_id:
        chosen = [b for b in backups if b["id"] == backup_id or b.get("label") == backup_id]
        if not chosen:
            raise DRError(NOT_FOUND, "Backup %s is not in the catalogue (found: %s)." % (backup_id, ", ".join(b["id"] for b in backups)))
        if not fits(chosen[0]):
            raise DRError(NO_BACKUP_BEFORE_TARGET, "Backup %s ended after the target, so it cannot restore to it; choose an older one." % backup_id,
                          details={"backup": chosen[0]})
        return chosen[0]
    good = [b for b in backups if fits(b)]
    if not good:
        oldest_end = backups[0].get("end_time") if target_time is not None else backups[0].get("end_lsn")
        raise DRError(
            NO_BACKUP_BEFORE_TARGET,
            "Every backup ended after the target (the oldest ended at %s); a point-in-time restore needs a backup taken "
            "before the target." % oldest_end,
            details={"backups": [{"id": b["id"], "end_time": b["end_time"], "end_lsn": b["end_lsn"]} for b in backups]},
        )
    return good[0] if oldest else good[-1]


# ---------------------------------------------------------------------------------------
# Scratch instances
# ---------------------------------------------------------------------------------------
def pg_bin_for(version=None, pg_bin=None):
    """Folder of the PostgreSQL binaries: ``pg_bin`` when given, else the Debian path of
    ``version`` (``/usr/lib/postgresql/<major>/bin``), else the newest installed."""
    if pg_bin:
        return pg_bin
    if version:
        major = str(version).split(".", maxsplit=1)[0]
        path = "/usr/lib/postgresql/%s/bin" % major
        if os.path.isdir(path):
            return path
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    if found:
        return found[-1]
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    raise DRError(NOT_FOUND, "No PostgreSQL binaries found; set pg_bin to the folder holding pg_ctl.")


def restore_command_for(wal_archive):
    """A ``restore_command`` copying segments from a plain archive folder."""
    quoted = wal_archive.replace("'", "'\\''")
    return "cp '%s'/%%f \"%%p\"" % quoted


def chown_tree(path, os_user):
    """Give ``path`` and everything under it to ``os_user`` (when we are root)."""
    if os.geteuid() != 0 or not os_user:
        return
    entry = pwd.getpwnam(os_user)
    uid, gid = entry.pw_uid, entry.pw_gid
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), uid, gid)
            except OSError:
                pass


#: files copied at once by ``copy_tree``: one per CPU (the copy is CPU-bound when the page cache is warm)
COPY_WORKERS = max(1, min(8, os.cpu_count() or 1))
_COPY_CHUNK = 64 * 1024 * 1024
_NO_COPY_FILE_RANGE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)


def _copy_file(src, dest, owner):
    """Copy one regular file (mode kept, owned by ``owner`` (uid, gid) when given) with
    ``copy_file_range`` (in-kernel, no copy through user space), falling back to
    read/write across file systems that refuse it."""
    with open(src, "rb", buffering=0) as fin:
        info = os.fstat(fin.fileno())
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(info.st_mode))
        try:
            os.fchmod(fd, stat.S_IMODE(info.st_mode))  # the mode itself, whatever the umask (as cp -a)
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            left = info.st_size
            use_range = hasattr(os, "copy_file_range")
            while left > 0:
                done = 0
                if use_range:
                    try:
                        done = os.copy_file_range(fin.fileno(), fd, min(left, _COPY_CHUNK))
                    except OSError as exc:
                        if exc.errno not in _NO_COPY_FILE_RANGE:
                            raise
                        use_range = False
                        continue
                else:
                    data = fin.read(min(left, 4 * 1024 * 1024))
                    done = len(data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                if done <= 0:
                    break  # the source shrank while we copied: what was read is what there is
                left -= done
        finally:
            os.close(fd)


def copy_tree(src, dest, os_user=None, workers=None, sync=True, skip=()):
    """Copy the tree ``src`` into the existing folder ``dest`` (what ``cp -a src/. dest/``
    does for a data directory: folders and files with their modes, symlinks as links),
    ``workers`` files at a time, everything owned by ``os_user`` when we are root.
    ``skip``: top-level names not copied. Raises DRError(APPLY_FAILED) naming the file
    and the reason (such as a full disk).

    With ``sync`` one more thread flushes each file to disk (``fdatasync``) as soon as it
    is copied, so the disk writes while the next files are copied. PostgreSQL syncs the
    whole data directory before it replays a backup (``recovery_init_sync_method``): a
    plain ``cp`` leaves all of it dirty in the page cache and that start-up sync then
    waits for the disk; here it finds (nearly) nothing left to write. The pages stay in
    the page cache for replay. Measured since: replay of a tree flushed this way was about
    twice as slow as of one left to PostgreSQL's start-up sync, so ``copy_native_backup``
    no longer asks for it."""
    owner = None
    if os_user and os.geteuid() == 0:
        entry = pwd.getpwnam(os_user)
        owner = (entry.pw_uid, entry.pw_gid)
    files = []
    try:
        for root, dirs, names in os.walk(src):
            rel = os.path.relpath(root, src)
            target_root = dest if rel == "." else os.path.join(dest, rel)
            for name in list(dirs):
                if rel == "." and name in skip:
                    dirs.remove(name)
                    continue
                path, target = os.path.join(root, name), os.path.join(target_root, name)
                if os.path.islink(path):
                    os.symlink(os.readlink(path), target)
                    if owner is not None:
                        os.lchown(target, owner[0], owner[1])
                    continue
                os.mkdir(target, stat.S_IMODE(os.stat(path).st_mode))
                os.chmod(target, stat.S_IMODE(os.stat(path).st_mode))  # not reduced by the umask
                if owner is not None:
                    os.chown(target, owner[0], owner[1])
            for name in names:
                if rel == "." and name in skip:
                    continue
                path, target = os.path.join(root, name), os.path.join(target_root, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    os.symlink(os.readlink(path), target)
                    if owner is not None:
                        os.lchown(target, owner[0], owner[1])
                elif stat.S_ISREG(info.st_mode):
                    files.append((info.st_size, path, target))
    except OSError as exc:
        raise DRError(APPLY_FAILED, "Copying %s into %s failed: %s" % (src, dest, exc))
    # biggest first, each to the least loaded worker: the workers finish together
    files.sort(reverse=True)
    count = max(1, min(workers or COPY_WORKERS, len(files) or 1))
    buckets = [[0, []] for _i in range(count)]
    for item in files:
        bucket = min(buckets, key=lambda b: b[0])
        bucket[0] += item[0]
        bucket[1].append(item)
    failures = []
    to_sync = queue.Queue() if sync else None

    def work(items):
        for _size, path, target in items:
            if failures:
                return
            try:
                _copy_file(path, target, owner)
            except (IOError, OSError) as exc:
                failures.append("%s: %s" % (os.path.relpath(path, src), exc.strerror or exc))
                return
            if to_sync is not None:
                to_sync.put(target)

    def flush():
        while True:
            target = to_sync.get()
            if target is None:
                return
            try:
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                failures.append("%s: %s" % (os.path.relpath(target, dest), exc.strerror or exc))

    threads = [threading.Thread(target=work, args=(bucket[1],)) for bucket in buckets[1:]]
    syncer = threading.Thread(target=flush) if sync else None
    for thread in threads + ([syncer] if syncer else []):
        thread.start()
    try:
        work(buckets[0][1])
        for thread in threads:
            thread.join()
    finally:
        if syncer is not None:
            to_sync.put(None)
            syncer.join()
    if failures:
        raise DRError(APPLY_FAILED, "Copying %s into %s failed at %s." % (src, dest, failures[0]), details={"errors": failures[:10]})
    return {"files": len(files), "bytes": sum(f[0] for f in files), "workers": count}


#: files of a backup that must not be in a restored data dir
_NOT_COPIED = ("standby.signal", "postmaster.pid", "backup_manifest", "postmaster.opts")


def copy_native_backup(backup, data_dir, os_user=None):
    """Copy a native base backup (``list_native_backups`` dict) into ``data_dir``, which must
    exist and be empty (or hold only a ``resilience_dr_restore.json`` marker). Plain
    backups are copied by ``copy_tree`` (one file per CPU at a time, left for PostgreSQL's
    start-up sync to flush); tar backups are extracted with ``tar`` (any
    compression ``tar`` understands), ``pg_wal.tar*`` into ``pg_wal``. Afterwards the tree
    belongs to ``os_user``, the folder is mode 0700, and ``standby.signal`` /
    ``postmaster.pid`` / ``backup_manifest`` copies are removed.

    :returns: dict ``bytes`` (size of the restored tree) and ``seconds``.
    """
    started = time.monotonic()
    src = backup["path"]
    copied = None
    if backup["format"] == "plain":
        # not the copies that would be removed below, nor the marker the caller keeps. No
        # fdatasync per file (sync=False): measured at 1 GB, replay of data files flushed that
        # way was twice as slow (redo 2.6 s against 1.2-1.4 s, the same WAL), far more than
        # PostgreSQL's own start-up sync of the unflushed tree costs (0.3 s, syncfs)
        copied = copy_tree(src, data_dir, os_user=os_user, skip=_NOT_COPIED, sync=False)
    else:
        tars = sorted(glob.glob(os.path.join(src, "*.tar*")))
        for tar in tars:
            base = os.path.basename(tar).split(".tar")[0]
            if base == "base":
                dest = data_dir
            elif base == "pg_wal":
                dest = os.path.join(data_dir, "pg_wal")
            else:
                raise DRError(PRECONDITION_FAILED, "Backup %s holds a tablespace archive (%s); tablespaces are not supported yet." % (src, tar))
            if not os.path.isdir(dest):
                os.makedirs(dest)
            proc = run_as(["tar", "-xf", tar, "-C", dest])
            if proc.returncode != 0:
                raise DRError(APPLY_FAILED, "Extracting %s into %s failed: %s" % (tar, dest, proc.stderr.strip()[-400:]))
    for leftover in _NOT_COPIED:
        path = os.path.join(data_dir, leftover)
        if os.path.exists(path):
            os.remove(path)
    for folder in ("pg_wal", "pg_wal/archive_status"):
        path = os.path.join(data_dir, folder)
        if not os.path.isdir(path):
            os.makedirs(path)
    os.chmod(data_dir, 0o700)
    if copied is not None:
        # copy_tree gave every file to os_user already; only what was created here is left
        for folder in (data_dir, os.path.join(data_dir, "pg_wal"), os.path.join(data_dir, "pg_wal", "archive_status")):
            chown_tree_top(folder, os_user)
        return {"bytes": copied["bytes"], "files": copied["files"], "workers": copied["workers"],
                "seconds": round(time.monotonic() - started, 3)}
    chown_tree(data_dir, os_user)
    size = 0
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return {"bytes": size, "seconds": round(time.monotonic() - started, 3)}


def chown_tree_top(path, os_user):
    """Give ``path`` itself (not its contents) to ``os_user`` (when we are root)."""
    if os.geteuid() != 0 or not os_user or not os.path.exists(path):
        return
    entry = pwd.getpwnam(os_user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _conf_value(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'%s'" % str(value).replace("'", "''")


def render_settings(settings):
    """``{"port": 5433, "archive_mode": "off"}`` -> postgresql.conf lines (quoted)."""
    lines = []
    for key in sorted(settings):
        if settings[key] is not None:
            lines.append("%s = %s" % (key, _conf_value(settings[key])))
    return lines


def scratch_settings(port, socket_dir, restore_command=None, listen_addresses="127.0.0.1"):
    """Settings that keep a restored copy of a primary from colliding with it: its own
    port and socket, loopback only, no archiving into the primary's archive, no
    replication slots or primary_conninfo inherited from a standby."""
    out = {
        "port": int(port),
        "listen_addresses": listen_addresses,
        "unix_socket_directories": socket_dir,
        "archive_mode": "off",
        "archive_command": "",
        "primary_conninfo": "",
        "primary_slot_name": "",
        "hot_standby": "on",
        "logging_collector": "off",
    }
    if restore_command is not None:
        out["restore_command"] = restore_command
    return out


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

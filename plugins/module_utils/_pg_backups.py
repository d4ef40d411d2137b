# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL backup catalogues (private to this collection).

Shared by ``pg_pitr_restore`` and ``backup_verify``. Nothing here talks to Ansible; errors
are ``DRError`` with stable codes. Two groups of helpers:

* **LSN and WAL segment arithmetic**: ``parse_lsn``, ``format_lsn``, ``segment_name``,
  ``parse_segment_name``, ``list_archive``, ``check_wal_continuity``.
* **Backup catalogues**: ``list_native_backups`` (a folder of ``pg_basebackup`` outputs,
  plain or tar, with ``backup_label`` / ``backup_manifest`` and the archive's ``.backup``
  history files), ``pgbackrest_info`` (``pgbackrest info --output=json``), and
  ``choose_backup`` (the newest backup that ENDED before a target, never one after it).
  Every backup is described by the same dict (see ``list_native_backups``).
* **Settings** of a restored cluster: ``scratch_settings``, ``render_settings``.

Putting a backup into a data directory is ``_pg_copy``'s, running PostgreSQL on it
``_pg_instance``'s: a plan (check mode) only reads catalogues, and a module imports the
restore machinery where it restores.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    NO_BACKUP_BEFORE_TARGET,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.gz|\.lz4|\.zst|\.bz2|\.xz)?$")
_HISTORY_RE = re.compile(r"^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$")
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


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

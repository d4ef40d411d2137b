# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engine ``native``: pg_basebackup backups and a WAL archive folder (private).

* A backup is a folder holding ``backup_label`` (plain format) or ``base.tar[.gz]`` (tar
  format), usually with a ``backup_manifest``. ``backup_dir`` is one backup or a folder of
  backups; the newest (by the label's START TIME) is verified.
* ``checksums``: ``pg_verifybackup`` against the manifest. PostgreSQL 15's
  pg_verifybackup cannot read tar files, so a tar backup is first extracted into the
  scratch folder (and removed afterwards).
* ``wal_continuity``: from the backup's START WAL LOCATION to the newest archived
  segment, across the timeline switches the archive's ``.history`` files describe.
* ``test_restore``: copy into scratch, recover with a ``restore_command`` reading the
  archive, run ``verify_queries``, stop and remove the scratch.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import threading
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils import _verify_wal as wal
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import (
    VerifyProvider,
    PASSED,
    FAILED,
    age_seconds,
    run_verify_queries,
)
from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import (
    Completed,
    Runner,
    ScratchInstance,
    find_pg_bin,
)

_TAR_NAMES = ("base.tar", "base.tar.gz", "base.tgz", "base.tar.bz2", "base.tar.xz")
_UNFINISHED = (".partial", ".tmp", ".inprogress", ".incomplete")
_LABEL_LINE = re.compile(r"^([A-Z ]+):\s*(.*)$")
_START_WAL = re.compile(r"^([0-9A-Fa-f]+/[0-9A-Fa-f]+) \(file ([0-9A-F]{24})\)")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s*(\S*)$")
_QUOTED = re.compile(r'"([^"]+)"')


def parse_label(text):
    out = {}
    for line in (text or "").splitlines():
        match = _LABEL_LINE.match(line.strip())
        if match:
            out[match.group(1).strip()] = match.group(2).strip()
    return out


def parse_label_time(text):
    """``2026-11-22 18:13:18 UTC`` (or a numeric zone) as an aware datetime; None when the
    zone cannot be read without a zone database."""
    match = _TIME.match((text or "").strip())
    if not match:
        return None
    stamp, zone = match.groups()
    if zone in ("", "UTC", "GMT", "Etc/UTC", "Z", "UCT", "Universal", "Zulu"):
        zone = "Z"
    elif re.match(r"^[+-]\d\d(:?\d\d)?$", zone):
        pass
    else:
        return None
    try:
        return _time.parse_timestamp(stamp.replace(" ", "T") + zone)
    except DRError:
        return None


def tree_size(path):
    """(bytes, files) under ``path``, symbolic links not counted nor followed (one stat per file:
    half of what os.walk plus getsize costs, 6 ms against 15 ms on the lab's 1,271-file backup);
    an unreadable folder is skipped, as os.walk does."""
    total = 0
    count = 0
    folders = [path]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif not entry.is_symlink():
                    total += entry.stat(follow_symlinks=False).st_size
                    count += 1
    return total, count


def _tar_member(tar_path, member):
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            try:
                handle = tar.extractfile(member)
            except KeyError:
                return None
            return handle.read().decode("utf-8", "replace") if handle is not None else None
    except (tarfile.TarError, IOError, OSError, EOFError):
        return None


def _safe_extract(tar_path, dest):
    """Extract a tar made by pg_basebackup, refusing members whose names leave ``dest``."""
    dest_real = os.path.realpath(dest)
    with tarfile.open(tar_path, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            target = os.path.realpath(os.path.join(dest, member.name))
            if target != dest_real and not target.startswith(dest_real + os.sep):
                raise DRError(INVALID_ARGUMENT, "%s holds a path outside the backup (%s); refusing to extract it." % (tar_path, member.name))
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(dest, members=members, filter="fully_trusted")  # nosec - names checked above
        else:
            tar.extractall(dest, members=members)  # nosec - names checked above


def default_slices(cpus):
    """pg_verifybackup processes for a machine with ``cpus`` CPUs (None: unknown)."""
    return min(4, cpus + 1) if cpus and cpus > 1 else 1


#: pg_verifybackup processes of the checksums check, each verifying a share of the files
#: (pg_verifybackup itself reads and checksums every file in one thread): one per CPU plus
#: one, at most 4 (one process on one CPU). A process waiting for a read from the disk
#: leaves its CPU idle; the extra one fills it. Measured on 2 CPUs, 3.18 GB backup, cold page
#: cache, 1/2/3 processes (medians of 6-7, three series): 1.93/1.70/1.23 s, 2.36/2.15/2.13 s,
#: 2.22/1.97/1.92 s; warm 0.73/0.47/0.45 s (4: 0.45). Two or more readers did not slow the
#: disk down (bench/README.md, bench_verify).
VERIFY_SLICES = default_slices(os.cpu_count())
#: below this many bytes of data files, one process (a second one costs more than it saves)
SLICE_MIN_BYTES = 64 * 1024 * 1024
#: at most this many ``-i`` options per process (each is compared with every file's path)
SLICE_MAX_IGNORED = 5000
#: the page cache residency (a figure: was the check's time spent on the disk or the CPUs?)
#: is sampled on this many of the backup's biggest files
RESIDENCY_SAMPLE_FILES = 8

_LIBC = []
_LOW_BIT = bytes(bytearray(i & 1 for i in range(256)))


def _manifest_files(manifest_path):
    """(size, path) of every file a backup manifest lists; None when it cannot be read."""
    try:
        with open(manifest_path) as handle:
            return [(int(f.get("Size") or 0), f["Path"]) for f in json.load(handle).get("Files", []) if f.get("Path")]
    except (IOError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def manifest_slices(manifest_path, slices=None):
    """The files of a backup manifest split into ``slices`` lists of about equal bytes
    (biggest file first, each to the lightest list); one list when the backup is small,
    has too many files for the ``-i`` options, or the manifest cannot be read."""
    slices = slices or VERIFY_SLICES
    files = _manifest_files(manifest_path)
    if files is None:
        return None
    total = sum(size for size, _path in files)
    if slices < 2 or total < SLICE_MIN_BYTES or len(files) > SLICE_MAX_IGNORED:
        return [[path for _size, path in files]]
    files.sort(reverse=True)
    buckets = [[0, []] for _i in range(slices)]
    for size, path in files:
        bucket = min(buckets, key=lambda b: b[0])
        bucket[0] += size
        bucket[1].append(path)
    return [b[1] for b in buckets if b[1]]


def _libc():
    """libc with ``mmap``, ``munmap`` and ``mincore`` typed for ctypes; None where there is none."""
    if not _LIBC:
        lib = None
        try:
            import ctypes  # pylint: disable=import-outside-toplevel
            lib = ctypes.CDLL(None, use_errno=True)
            lib.mmap.restype = ctypes.c_void_p
            lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
            lib.munmap.restype = ctypes.c_int
            lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            lib.mincore.restype = ctypes.c_int
            lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        except (ImportError, OSError, AttributeError, TypeError):
            lib = None
        _LIBC.append(lib)
    return _LIBC[0]


def resident_pages(path):
    """(pages in the page cache, pages) of one file by ``mincore(2)`` on a read-only
    mapping of it (nothing is read); None when that cannot be told."""
    lib = _libc()
    if lib is None:
        return None
    import ctypes  # pylint: disable=import-outside-toplevel
    import mmap  # pylint: disable=import-outside-toplevel
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        if not pages:
            return 0, 0
        addr = lib.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if lib.mincore(addr, size, vec) != 0:
                return None
            return bytes(vec).translate(_LOW_BIT).count(1), pages
        finally:
            lib.munmap(addr, size)
    except (OSError, AttributeError, TypeError, ValueError, ctypes.ArgumentError):
        return None
    finally:
        os.close(fd)


def resident_share(target, files, sample=None):
    """The share (0 to 1) of the bytes of the ``sample`` biggest of ``files`` ((size, path)
    pairs relative to ``target``) that is in the page cache; None when it cannot be told."""
    biggest = sorted((f for f in files if f[0] > 0), reverse=True)[:sample or RESIDENCY_SAMPLE_FILES]
    resident = 0
    total = 0
    for _size, path in biggest:
        counted = resident_pages(os.path.join(target, path))
        if counted is None:
            return None
        resident += counted[0]
        total += counted[1]
    return float(resident) / total if total else None


def verify_processes(target, manifest_path, figures):
    """The file lists of the pg_verifybackup processes to run (``manifest_slices``). Notes
    their number and why in ``figures``, and, when the backup is split, the share of its
    biggest files' bytes that was in the page cache (``page_cache_resident``, left out where
    mincore cannot tell): it says whether the check's time went to the disk or the CPUs.
    The share is only reported; it does not change what is checked or how."""
    slices = manifest_slices(manifest_path) or [[]]
    if len(slices) > 1:
        reason = "the files split over %d processes: one per CPU plus one (a process waiting for the disk leaves its CPU to another)" % (
            len(slices))
        share = resident_share(target, _manifest_files(manifest_path) or [])
        if share is not None:
            figures["page_cache_resident"] = round(share, 3)
    elif VERIFY_SLICES < 2:
        reason = "one process: one CPU"
    else:
        reason = "one process: a backup under %d MB, over %d files or %s" % (
            SLICE_MIN_BYTES // (1024 * 1024), SLICE_MAX_IGNORED, "with fewer files than processes" if slices[0] else "no readable manifest")
    figures["verify_processes"] = len(slices)
    figures["verify_processes_reason"] = reason
    return slices


def run_sliced(runner, argv, target, manifest_path, timeout, figures):
    """Run ``argv + [target]`` (a pg_verifybackup command line) as several processes at
    once (see ``verify_processes``), each checking the sizes and checksums of its share of
    the manifest's files and ignoring (``-i``) the others'; the WAL is parsed by the first
    one only (the others get ``-n``). Together they check exactly what one run checks:
    every manifest entry by the one process that does not ignore it, every file on disk
    that is not in the manifest by all of them. Returns one Completed with the outputs
    joined and the first failing exit code (0 when all passed)."""
    slices = verify_processes(target, manifest_path, figures)
    if len(slices) == 1:
        return runner.run(argv + [target], timeout=timeout)
    commands = []
    for number in range(len(slices)):
        ignored = []
        for other, paths in enumerate(slices):
            if other != number:
                for path in paths:
                    ignored += ["-i", path]
        commands.append(argv + (["-n"] if number and "-n" not in argv else []) + ignored + [target])
    results = [None] * len(commands)
    errors = []

    def one(number):
        try:
            results[number] = runner.run(commands[number], timeout=timeout)
        except DRError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, len(commands))]
    for thread in threads:
        thread.start()
    one(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    failed = [r for r in results if r.returncode != 0]
    # one success line when all passed, as one process prints it; otherwise only what the
    # failing ones said (a slice's "backup successfully verified" would be misleading)
    out = "\n".join(r.stdout for r in failed if r.stdout) if failed else results[0].stdout
    err = "\n".join(r.stderr for r in results if r.stderr)
    return Completed(failed[0].returncode if failed else 0, out, err)


class NativeVerify(VerifyProvider):
    name = "native"

    def validate(self, checks):
        if not self.params.get("backup_dir"):
            raise DRError(INVALID_ARGUMENT, "The native engine needs backup_dir (a pg_basebackup folder or a folder of them).")
        if "wal_continuity" in checks and not self.params.get("wal_archive"):
            raise DRError(INVALID_ARGUMENT, "The wal_continuity check needs wal_archive (the folder archive_command copies WAL into).")
        for key in ("backup_dir", "wal_archive"):
            if self.params.get(key) and not os.path.isdir(self.params[key]):
                raise DRError(INVALID_ARGUMENT, "%s %s is not a folder." % (key, self.params[key]))
        self.runner = Runner(self.module, self.params.get("os_user"))

    # -- discovery -----------------------------------------------------------------
    @staticmethod
    def _is_backup(path):
        return any(os.path.exists(os.path.join(path, n)) for n in ("backup_label", "backup_manifest") + _TAR_NAMES)

    def _load(self, path):
        info = {"path": path, "format": "plain"}
        label_text = None
        if os.path.isfile(os.path.join(path, "backup_label")):
            with open(os.path.join(path, "backup_label"), errors="replace") as handle:
                label_text = handle.read()
            version_file = os.path.join(path, "PG_VERSION")
            if os.path.isfile(version_file):
                with open(version_file) as handle:
                    info["pg_version"] = handle.read().strip()
        else:
            for name in _TAR_NAMES:
                if os.path.isfile(os.path.join(path, name)):
                    info["format"] = "tar"
                    info["base_tar"] = name
                    label_text = _tar_member(os.path.join(path, name), "backup_label")
                    version = _tar_member(os.path.join(path, name), "PG_VERSION")
                    if version:
                        info["pg_version"] = version.strip()
                    break
        label = parse_label(label_text)
        manifest_path = os.path.join(path, "backup_manifest")
        info["manifest"] = os.path.isfile(manifest_path)
        manifest = None
        if info["manifest"]:
            try:
                with open(manifest_path) as handle:
                    manifest = json.load(handle)
            except (IOError, OSError, ValueError):
                manifest = None
        start = _START_WAL.match(label.get("START WAL LOCATION", ""))
        if start:
            info["start_lsn"] = start.group(1)
            info["start_segment"] = start.group(2)
        if label.get("START TIMELINE"):
            info["timeline"] = int(label["START TIMELINE"])
        if "start_lsn" not in info and manifest and manifest.get("WAL-Ranges"):
            first = min(manifest["WAL-Ranges"], key=lambda r: wal.parse_lsn(r["Start-LSN"]))
            info["start_lsn"] = first["Start-LSN"]
            info["timeline"] = int(first["Timeline"])
        if manifest and manifest.get("WAL-Ranges"):
            last = max(manifest["WAL-Ranges"], key=lambda r: wal.parse_lsn(r["End-LSN"]))
            info["end_lsn"] = last["End-LSN"]
        info["label"] = label.get("LABEL")
        started = parse_label_time(label.get("START TIME"))
        info["started_at_label"] = label.get("START TIME")
        if started is None:
            stamp_file = manifest_path if info["manifest"] else path
            started = _time.from_epoch(os.path.getmtime(stamp_file))
            info["started_at_source"] = "mtime"
        info["_started"] = started
        info["started_at"] = _time.isoformat(started)
        completed = manifest_path if info["manifest"] else path
        info["completed_at"] = _time.isoformat(_time.from_epoch(os.path.getmtime(completed)))
        return info

    def discover(self):
        root = self.params["backup_dir"]
        paths = []
        if self._is_backup(root):
            paths = [root]
        else:
            for name in sorted(os.listdir(root)):
                full = os.path.join(root, name)
                if name.endswith(_UNFINISHED) or name.startswith("."):
                    continue  # a backup still being written
                if os.path.isdir(full) and self._is_backup(full):
                    paths.append(full)
        if not paths:
            raise DRError(NOT_FOUND, "No backup found in %s (no backup_label, backup_manifest or base.tar)." % root)
        backups = [self._load(p) for p in paths]
        backups.sort(key=lambda b: (b["_started"], b["path"]))
        newest = backups[-1]
        newest["size_bytes"], newest["file_count"] = tree_size(newest["path"])  # the newest only: one walk
        self.backup = newest
        shown = dict((k, v) for k, v in newest.items() if not k.startswith("_"))
        shown["age_seconds"] = age_seconds(newest["_started"])
        shown["count"] = len(backups)
        self.figures["backup"] = shown
        if self.params.get("wal_archive"):
            self._scan_archive()

    def _scan_archive(self):
        folder = self.params["wal_archive"]
        segments = {}
        histories = {}
        sizes = []
        backup_files = {}
        for name in os.listdir(folder):
            full = os.path.join(folder, name)
            if not os.path.isfile(full):
                continue
            kind, value = wal.classify(name)
            if kind == "segment":
                segments[value] = full
                if name == value:
                    sizes.append(os.path.getsize(full))
            elif kind == "history":
                with open(full, errors="replace") as handle:
                    histories[value] = wal.parse_history(handle.read())
            elif kind == "backup":
                backup_files[value] = full
        segment_size = wal.DEFAULT_SEGMENT_SIZE
        if sizes:
            common = max(set(sizes), key=sizes.count)
            if common >= 1024 * 1024 and common & (common - 1) == 0:
                segment_size = common
        self.archive = {"segments": segments, "histories": histories, "segment_size": segment_size}
        newest = max(segments) if segments else None
        self.figures["wal"] = {
            "archive": folder,
            "segment_count": len(segments),
            "newest_segment": newest,
            "newest_at": _time.isoformat(_time.from_epoch(os.path.getmtime(segments[newest]))) if newest else None,
            "timelines": sorted(set(int(s[:8], 16) for s in segments)),
            "history_files": sorted(histories),
            "segment_size": segment_size,
        }
        # the stop time of the backup, from its .backup history file
        start = self.backup.get("start_segment")
        if start and start in backup_files:
            with open(backup_files[start], errors="replace") as handle:
                stop = parse_label(handle.read()).get("STOP TIME")
            stopped = parse_label_time(stop)
            if stopped:
                self.figures["backup"]["stopped_at"] = _time.isoformat(stopped)

    # -- checks --------------------------------------------------------------------
    def check_max_age(self):
        items = [("newest_backup", self.backup["_started"], {"label": self.backup.get("label"), "path": self.backup["path"]})]
        if self.params.get("wal_archive"):
            wal_fig = self.figures["wal"]
            at = _time.parse_timestamp(wal_fig["newest_at"]) if wal_fig["newest_at"] else None
            items.append(("newest_wal", at, {"segment": wal_fig["newest_segment"]}))
        return self.freshness(items)

    def _pg_bin(self):
        return find_pg_bin(self.params.get("pg_bin_dir"), self.backup.get("pg_version"))

    def check_checksums(self):
        backup = self.backup
        if not backup["manifest"]:
            return FAILED, "%s has no backup_manifest (taken with --no-manifest?); its files cannot be verified." % backup["path"], {}
        pg_bin = self._pg_bin()
        verifier = os.path.join(pg_bin, "pg_verifybackup")
        figures = {"path": backup["path"], "format": backup["format"]}
        extract_root = None
        try:
            if backup["format"] == "tar":
                extract_root = tempfile.mkdtemp(prefix="backup_verify-extract-", dir=self.params["scratch_dir"])
                data = os.path.join(extract_root, "data")
                os.mkdir(data)
                for name in os.listdir(backup["path"]):
                    if name.startswith("pg_wal.tar"):
                        continue
                    if ".tar" in name:
                        dest = data if name.startswith("base.") else os.path.join(extract_root, name.split(".")[0])
                        try:
                            _safe_extract(os.path.join(backup["path"], name), dest)
                        except (tarfile.TarError, EOFError, IOError, OSError) as exc:
                            return FAILED, "%s cannot be read: %s" % (name, exc), dict(figures, corrupt_files=[name])
                wal_tar = [n for n in os.listdir(backup["path"]) if n.startswith("pg_wal.tar")]
                if wal_tar:
                    try:
                        _safe_extract(os.path.join(backup["path"], wal_tar[0]), os.path.join(data, "pg_wal"))
                    except (tarfile.TarError, EOFError, IOError, OSError) as exc:
                        return FAILED, "%s cannot be read: %s" % (wal_tar[0], exc), dict(figures, corrupt_files=[wal_tar[0]])
                target = data
                argv = [verifier, "-m", os.path.join(backup["path"], "backup_manifest")]
                figures["extracted_to_scratch"] = True
            else:
                target = backup["path"]
                argv = [verifier]
            wal_dir = os.path.join(target, "pg_wal")
            has_wal = os.path.isdir(wal_dir) and any(wal.classify(n)[0] == "segment" for n in os.listdir(wal_dir))
            if not has_wal and self.params.get("wal_archive"):
                argv += ["-w", self.params["wal_archive"]]
                figures["wal_from"] = "archive"
            elif not has_wal:
                argv += ["-n"]
                figures["wal_from"] = "not parsed"
            else:
                figures["wal_from"] = "backup"
            manifest_path = argv[argv.index("-m") + 1] if "-m" in argv else os.path.join(target, "backup_manifest")
            figures["command"] = argv + [target]
            proc = run_sliced(Runner(self.module, None), argv, target, manifest_path, self.params["timeout"], figures)
        finally:
            if extract_root:
                shutil.rmtree(extract_root, ignore_errors=True)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        errors = [ln.split("error: ", 1)[-1] for ln in lines if "error:" in ln]
        if proc.returncode == 0:
            figures["files_verified"] = backup["file_count"]
            return PASSED, "pg_verifybackup: %s" % (lines[-1] if lines else "backup successfully verified"), figures
        corrupt = []
        for line in errors:
            for name in _QUOTED.findall(line):
                if name not in corrupt and not name.startswith("/"):
                    corrupt.append(name)
        figures.update(errors=errors[:50], corrupt_files=corrupt, rc=proc.returncode)
        where = (" in %s" % backup["base_tar"]) if backup["format"] == "tar" else ""
        if corrupt:
            return FAILED, "pg_verifybackup found damaged files%s: %s (%s)" % (where, ", ".join(corrupt[:20]), errors[0]), figures
        return FAILED, "pg_verifybackup failed: %s" % ("; ".join(errors[:5]) or "exit code %d" % proc.returncode), figures

    def check_wal_continuity(self):
        backup = self.backup
        if "start_lsn" not in backup:
            return FAILED, "The backup's start WAL location is unknown (no backup_label or manifest WAL-Ranges).", {}
        archive = self.archive
        result = wal.check_continuity(
            backup.get("timeline", 1), wal.parse_lsn(backup["start_lsn"]), archive["segments"].keys(),
            archive["histories"], archive["segment_size"])
        self.figures["wal"]["gaps"] = result["gaps"]
        figures = dict(result)
        figures["newest_segment"] = self.figures["wal"]["newest_segment"]
        if result["ok"]:
            return PASSED, "%d segment(s) from %s to %s all archived (timeline%s %s)" % (
                result["expected"], result["first"], result["last"], "s" if len(result["timelines"]) > 1 else "",
                ", ".join(str(t["timeline"]) for t in result["timelines"])), figures
        if result["last"] is None:
            return FAILED, "No WAL archived from the backup's start segment %s on" % result["first"], figures
        return FAILED, "WAL gap(s) in %s between %s and %s: %s missing" % (
            self.params["wal_archive"], result["first"], result["last"], wal.describe_gaps(result["gaps"])), figures

    # -- test restore ----------------------------------------------------------------
    def restore_command(self):
        if self.params.get("restore_command"):
            return self.params["restore_command"]
        archive = self.params.get("wal_archive")
        if not archive:
            return "/bin/false"
        base = shlex.quote(archive)
        return ('if [ -f %s/"%%f" ]; then cp %s/"%%f" "%%p"; elif [ -f %s/"%%f".gz ]; then gzip -dc %s/"%%f".gz > "%%p"; '
                'else exit 1; fi' % (base, base, base, base))

    def copy_backup(self, instance):
        backup = self.backup
        if backup["format"] == "plain":
            from ansible_collections.resilience.dr.plugins.module_utils import _pg_copy  # test_restore only

            os.mkdir(instance.data, 0o700)
            _pg_copy.copy_tree(backup["path"], instance.data, sync=False)
            return
        os.mkdir(instance.data)
        _safe_extract(os.path.join(backup["path"], backup["base_tar"]), instance.data)
        wal_tar = [n for n in os.listdir(backup["path"]) if n.startswith("pg_wal.tar")]
        if wal_tar:
            _safe_extract(os.path.join(backup["path"], wal_tar[0]), os.path.join(instance.data, "pg_wal"))

    def check_test_restore(self):
        return test_restore(self, self.copy_backup, self.restore_command(), self._pg_bin())


def _parse_pg_time(text):
    if not text:
        return None
    text = text.strip()
    match = re.match(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::?\d\d)?)?$", text)
    if not match:
        return None
    zone = match.group(3) or "+00"
    if len(zone) == 3:
        zone += ":00"
    try:
        return _time.parse_timestamp("%sT%s%s" % (match.group(1), match.group(2), zone))
    except DRError:
        return None


def test_restore(provider, copy, restore_command, pg_bin, extra_restore_settings=None):
    """The scratch restore every self-managed engine shares. ``copy(instance)`` puts the
    backup into ``instance.data``; ``restore_command`` is text or a callable of the
    instance returning it. Returns (status, detail, figures)."""
    params = provider.params
    runner = Runner(provider.module, params.get("os_user"))
    target = params.get("restore_target") or "latest"
    settings = {"restore_command": restore_command, "recovery_target_timeline": "latest"}
    if target == "immediate":
        settings["recovery_target"] = "immediate"
    settings.update(extra_restore_settings or {})
    wall0 = time.monotonic()
    instance = ScratchInstance(params["scratch_dir"], runner, pg_bin, params.get("scratch_port"),
                               params.get("scratch_login_user") or params.get("os_user") or "postgres")
    figures = {"scratch_dir": instance.root, "scratch_port": instance.port, "target": target}
    provider.figures["restore"] = figures
    status = FAILED
    detail = None
    try:
        if callable(restore_command):
            settings["restore_command"] = restore_command(instance)
        t0 = time.monotonic()
        copy(instance)
        figures["copy_seconds"] = round(time.monotonic() - t0, 3)
        instance.prepare(settings, params.get("scratch_settings"))
        t0 = time.monotonic()
        instance.start(params["timeout"])
        instance.wait_recovered(max(1, params["timeout"] - (time.monotonic() - wall0)))
        figures["recovery_seconds"] = round(time.monotonic() - t0, 3)
        figures["rto_seconds"] = round(time.monotonic() - wall0, 3)
        rows = instance.query("select pg_last_xact_replay_timestamp(), timeline_id, pg_current_wal_lsn() "
                              "from pg_control_checkpoint()", "postgres")
        last = _parse_pg_time(rows[0][0]) if rows and rows[0][0] else None
        figures["last_commit_source"] = "replayed WAL"
        if last is None:
            last = _parse_pg_time(instance.last_commit_from_log())
        if last is None:
            # no commit replayed after the backup: its end is the newest restorable point
            backup = provider.figures.get("backup") or {}
            stamp = backup.get("stopped_at") or backup.get("completed_at")
            last = _time.parse_timestamp(stamp) if stamp else None
            figures["last_commit_source"] = "backup end (no commit replayed after it)"
        figures["last_commit_at"] = _time.isoformat(last) if last else None
        figures["rpo_seconds"] = age_seconds(last) if last else None
        figures["timeline"] = int(rows[0][1]) if rows else None
        figures["databases"] = [r[0] for r in instance.query("select datname from pg_database where datallowconn order by 1", "postgres")]
        results, failures = run_verify_queries(instance, params.get("verify_queries"), params.get("verify_database") or "postgres")
        provider.figures["queries"] = results
        figures["queries_passed"] = len([r for r in results if r["passed"]])
        figures["queries_failed"] = [r["name"] for r in results if not r["passed"]]
        if failures:
            detail = "verify_queries failed: %s" % "; ".join(failures)
        else:
            status = PASSED
            detail = "restored %s into scratch in %ss (RTO), last restorable commit %s, %d verify quer%s passed" % (
                provider.figures["backup"].get("label") or provider.figures["backup"].get("path"), figures["rto_seconds"],
                figures["last_commit_at"] or "unknown", len(results), "y" if len(results) == 1 else "ies")
    except DRError as exc:
        detail = "test restore failed: %s" % exc.msg
        figures.update(exc.details)
    finally:
        try:
            removed = instance.close()
        except Exception as exc:  # pylint: disable=broad-except
            removed = False
            figures["cleanup_error"] = str(exc)
        figures["scratch_removed"] = removed
        figures["wall_seconds"] = round(time.monotonic() - wall0, 3)
    if not removed:
        status = FAILED
        detail = (detail or "") + "; the scratch folder %s could not be removed" % instance.root
    return status, detail, figures

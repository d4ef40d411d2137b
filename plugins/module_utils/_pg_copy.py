# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put a PostgreSQL base backup into a data directory (private to this collection).

``copy_tree``: a parallel ``copy_file_range`` copy that flushes as it goes; ``copy_native_backup``:
a plain or tar ``pg_basebackup`` output into a data dir owned by the PostgreSQL OS user.
Used by ``pg_pitr_restore`` (native engine) and ``backup_verify``'s test restore, imported
where they copy (a plan does not need it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import glob
import os
import pwd
import queue
import stat
import threading
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._pg_backups import chown_tree, run_as


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

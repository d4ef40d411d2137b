# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``_pg_copy.copy_tree``: the parallel copy pg_pitr_restore uses for plain backups,
checked on real trees in a temp folder (bytes, modes, links, owner, errors, fallback)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import pwd
import stat

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _pg_copy
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError

BIG = 3 * 1024 * 1024 + 17  # a few MB, not a multiple of any block or chunk size


def build_source(root):
    """A data-directory-like tree: nested folders, empty files, a big file, an empty
    folder, links to a file and to a folder, unusual modes."""
    (root / "global").mkdir(parents=True)
    (root / "base" / "1" / "deep" / "deeper").mkdir(parents=True)
    (root / "pg_wal" / "archive_status").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    (root / "PG_VERSION").write_text("15\n")
    (root / "global" / "pg_control").write_bytes(os.urandom(8192))
    (root / "base" / "1" / "empty").write_bytes(b"")
    (root / "base" / "1" / "deep" / "deeper" / "small").write_bytes(b"abc")
    (root / "base" / "1" / "big").write_bytes(os.urandom(BIG))
    for number in range(20):
        (root / "base" / "1" / ("%d" % (16384 + number))).write_bytes(os.urandom(number * 1000))
    (root / "backup_manifest").write_text("{}")
    os.chmod(str(root / "global" / "pg_control"), 0o600)
    os.chmod(str(root / "PG_VERSION"), 0o640)
    os.chmod(str(root / "base" / "1" / "deep"), 0o750)
    os.symlink("base/1/deep/deeper/small", str(root / "link_to_file"))
    os.symlink("/nonexistent/target", str(root / "dangling"))
    os.symlink("base/1", str(root / "link_to_dir"))


def snapshot(root):
    """{relative path: (kind, mode, sha256 or link target)} of everything under root."""
    found = {}
    for current, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(current, name)
            rel = os.path.relpath(path, str(root))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", None, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode), None)
            else:
                with open(path, "rb") as handle:
                    found[rel] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(handle.read()).hexdigest())
    return found


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    build_source(root)
    return root


@pytest.fixture
def dest(tmp_path):
    folder = tmp_path / "dest"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("workers,sync", [(None, True), (1, False), (4, True)])
def test_copy_gives_identical_bytes_modes_and_links(source, dest, workers, sync):
    before = snapshot(source)
    result = _pg_copy.copy_tree(str(source), str(dest), workers=workers, sync=sync)
    assert snapshot(dest) == before
    assert snapshot(source) == before
    regular = [v for v in before.values() if v[0] == "file"]
    assert result["files"] == len(regular)
    assert result["bytes"] == sum(os.path.getsize(os.path.join(str(source), k)) for k, v in before.items() if v[0] == "file")
    assert 1 <= result["workers"] <= (workers or _pg_copy.COPY_WORKERS)
    # the link to a folder stays a link (not followed, not copied as a folder)
    assert os.path.islink(str(dest / "link_to_dir"))


def test_modes_survive_a_strict_umask(source, dest):
    """``cp -a`` keeps 0640 / 0750 whatever the umask (group access data dirs, initdb -g)."""
    old = os.umask(0o077)
    try:
        _pg_copy.copy_tree(str(source), str(dest), sync=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(dest / "PG_VERSION")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(str(dest / "base" / "1" / "deep")).st_mode) == 0o750
    assert snapshot(dest) == snapshot(source)


def test_skip_leaves_top_level_names_out(source, dest):
    _pg_copy.copy_tree(str(source), str(dest), skip=("backup_manifest", "pg_wal"), sync=False)
    assert not os.path.exists(str(dest / "backup_manifest"))
    assert not os.path.exists(str(dest / "pg_wal"))
    assert (dest / "base" / "1" / "big").read_bytes() == (source / "base" / "1" / "big").read_bytes()


def test_empty_source_copies_nothing(tmp_path, dest):
    (tmp_path / "nothing").mkdir()
    result = _pg_copy.copy_tree(str(tmp_path / "nothing"), str(dest))
    assert result["files"] == 0 and result["bytes"] == 0
    assert os.listdir(str(dest)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_is_the_requested_user(source, dest):
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    _pg_copy.copy_tree(str(source), str(dest), os_user="nobody", workers=3)
    for current, dirs, files in os.walk(str(dest)):
        for name in dirs + files:
            info = os.lstat(os.path.join(current, name))
            assert (info.st_uid, info.st_gid) == (entry.pw_uid, entry.pw_gid), os.path.join(current, name)
    # the source keeps its owner
    assert os.lstat(str(source / "base" / "1" / "big")).st_uid == os.geteuid()


def test_full_disk_names_the_file_and_leaves_the_source(monkeypatch, source, dest):
    before = snapshot(source)

    def full(src_fd, dst_fd, count, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "copy_file_range", full, raising=False)
    with pytest.raises(DRError) as info:
        _pg_copy.copy_tree(str(source), str(dest), workers=2)
    assert info.value.code == "APPLY_FAILED"
    assert "No space left on device" in info.value.msg
    errors = info.value.details["errors"]
    assert errors and all("No space left on device" in e for e in errors)
    # each error names a real (non-empty) file of the source by its relative path
    named = [e.split(":", 1)[0] for e in errors]
    assert named[0] in info.value.msg
    for rel in named:
        assert before[rel][0] == "file" and os.path.getsize(str(source / rel)) > 0
    assert snapshot(source) == before


def test_unwritable_target_names_the_file(monkeypatch, source, dest):
    """A target that refuses writes (EACCES, also as root: the open itself is refused)."""
    before = snapshot(source)
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.basename(path) == "big":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(DRError) as info:
        _pg_copy.copy_tree(str(source), str(dest), workers=1, sync=False)
    assert os.path.join("base", "1", "big") + ": Permission denied" in info.value.msg
    assert snapshot(source) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_target_folder(source, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    os.chmod(str(target), 0o500)
    try:
        with pytest.raises(DRError) as info:
            _pg_copy.copy_tree(str(source), str(target))
        assert str(target) in info.value.msg
    finally:
        os.chmod(str(target), 0o700)


def test_existing_file_in_target_is_not_overwritten(source, dest):
    (dest / "PG_VERSION").write_text("keep me")
    with pytest.raises(DRError) as info:
        _pg_copy.copy_tree(str(source), str(dest), workers=1, sync=False)
    assert "PG_VERSION" in info.value.msg
    assert (dest / "PG_VERSION").read_text() == "keep me"


def test_fallback_without_copy_file_range(monkeypatch, source, dest):
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    before = snapshot(source)
    _pg_copy.copy_tree(str(source), str(dest), workers=2)
    assert snapshot(dest) == before


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP])
def test_fallback_when_copy_file_range_is_refused_midway(monkeypatch, source, dest, code):
    """The kernel copies the first chunk, then refuses: read/write carries on from there."""
    real = os.copy_file_range
    calls = {}

    def once_then_refuse(src_fd, dst_fd, count, *args, **kwargs):
        calls[src_fd] = calls.get(src_fd, 0) + 1
        if calls[src_fd] > 1:
            raise OSError(code, os.strerror(code))
        return real(src_fd, dst_fd, min(count, 1024 * 1024 + 3), *args, **kwargs)

    monkeypatch.setattr(os, "copy_file_range", once_then_refuse)
    before = snapshot(source)
    _pg_copy.copy_tree(str(source), str(dest), workers=2, sync=False)
    assert snapshot(dest) == before

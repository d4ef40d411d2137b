# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify's checksums check (``_verify_native.verify_processes``): one
``pg_verifybackup`` process per CPU plus one, cold or cached, and a figure of how much of
the backup was in the page cache, read with ``mincore(2)`` on real files whose pages are
really dropped with ``posix_fadvise(DONTNEED)``. Cold or cached, the same damage is found;
without mincore only the figure is missing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _verify_native
from ansible_collections.resilience.dr.tests.unit.plugins.module_utils.test_verify_slices import (  # pylint: disable=unused-import
    REAL_VERIFY,
    backup,
    calls,
    fake_bin,
    flip_byte,
    low_threshold,
    run,
    sizes_of,
)


def evict(root):
    """Drop every file of ``root`` from the page cache (only these files' pages)."""
    os.sync()
    for current, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(current, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_all(root):
    for current, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(current, name), "rb") as handle:
                handle.read()


def biggest(root):
    sizes = sizes_of(root)
    return os.path.join(root, max(sizes, key=sizes.get))


@pytest.fixture
def cold(backup):
    """The backup with its pages dropped; skips where the file system keeps them (tmpfs)."""
    evict(backup)
    counted = _verify_native.resident_pages(biggest(backup))
    if counted is None:
        pytest.skip("mincore is not available here")
    if counted[0]:
        pytest.skip("this file system keeps the pages after POSIX_FADV_DONTNEED (tmpfs?)")
    return backup


# -- reading residency ------------------------------------------------------------------
def test_resident_pages_follows_reads_and_evictions(cold):
    path = biggest(cold)
    size = os.path.getsize(path)
    pages = (size + 4095) // 4096 if os.sysconf("SC_PAGE_SIZE") == 4096 else None
    assert _verify_native.resident_pages(path)[0] == 0
    with open(path, "rb") as handle:
        handle.read()
    resident, total = _verify_native.resident_pages(path)
    assert resident == total > 0
    if pages:
        assert total == pages
    assert _verify_native.resident_pages(os.path.join(cold, "no-such-file")) is None


def test_resident_share_weights_the_biggest_files(cold):
    sizes = sizes_of(cold)
    files = [(size, path) for path, size in sizes.items()]
    assert _verify_native.resident_share(cold, files) == 0.0
    with open(biggest(cold), "rb") as handle:  # "big", 200 kB, most of the sample's bytes
        handle.read()
    share = _verify_native.resident_share(cold, files, sample=4)
    assert 0.4 < share < 1.0
    read_all(cold)
    assert _verify_native.resident_share(cold, files) == 1.0


def test_no_mincore_means_unknown(backup, monkeypatch):
    monkeypatch.setattr(_verify_native, "_LIBC", [None])
    assert _verify_native.resident_pages(biggest(backup)) is None
    assert _verify_native.resident_share(backup, [(1, "big")]) is None


def test_failing_mincore_means_unknown(backup, monkeypatch):
    class Lib(object):
        """libc whose mincore fails (as it does with EAGAIN or ENOMEM)."""

        def __init__(self, real):
            self.real = real
            self.unmapped = []

        def mmap(self, *args):
            return self.real.mmap(*args)

        def munmap(self, addr, size):
            self.unmapped.append(size)
            return self.real.munmap(addr, size)

        @staticmethod
        def mincore(*_args):
            return -1

    lib = Lib(_verify_native._libc())  # pylint: disable=protected-access
    monkeypatch.setattr(_verify_native, "_LIBC", [lib])
    assert _verify_native.resident_pages(biggest(backup)) is None
    assert lib.unmapped == [os.path.getsize(biggest(backup))]  # the mapping is released all the same


# -- the figures, cold and cached: the same processes either way ----------------------------
@pytest.mark.parametrize("state", ["cold", "cached"])
def test_split_reports_residency_and_checks_every_file_once(cold, fake_bin, low_threshold, state):
    if state == "cached":
        read_all(cold)
    proc, figures = run([fake_bin["verifier"], "-w", "/archive"], cold)
    assert proc.returncode == 0, proc.stderr
    assert figures["verify_processes"] == 3
    assert figures["page_cache_resident"] == (1.0 if state == "cached" else 0.0)
    assert "one per CPU plus one" in figures["verify_processes_reason"]
    made = calls(fake_bin)
    assert len(made) == 3
    assert sorted(p for c in made for p in c["checked"]) == sorted(sizes_of(cold))
    assert [c["wal_dir"] for c in made] == ["/archive"] * 3 and len([c for c in made if not c["no_wal"]]) == 1


def test_unknown_residency_changes_nothing_but_the_figure(backup, fake_bin, low_threshold, monkeypatch):
    monkeypatch.setattr(_verify_native, "_LIBC", [None])
    proc, figures = run([fake_bin["verifier"], "-n"], backup)
    assert proc.returncode == 0
    assert figures["verify_processes"] == 3 and "page_cache_resident" not in figures
    assert len(calls(fake_bin)) == 3


def test_small_backup_never_samples_the_cache(backup, fake_bin, monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("residency sampled for a backup that is not split")

    monkeypatch.setattr(_verify_native, "resident_share", boom)
    proc, figures = run([fake_bin["verifier"], "-n"], backup)
    assert proc.returncode == 0 and figures["verify_processes"] == 1
    assert "under 64 MB" in figures["verify_processes_reason"] and "page_cache_resident" not in figures


def test_one_more_process_than_cpus():
    """CPUs + 1, at most 4; one on one CPU or when the count is unknown."""
    assert [_verify_native.default_slices(cpus) for cpus in (None, 1, 2, 3, 16)] == [1, 1, 3, 4, 4]
    assert _verify_native.VERIFY_SLICES == _verify_native.default_slices(os.cpu_count())


# -- same results whichever way ------------------------------------------------------------
@pytest.mark.skipif(not os.access(REAL_VERIFY, os.X_OK), reason="PostgreSQL 15 pg_verifybackup not installed")
@pytest.mark.parametrize("state", ["cold", "cached"])
def test_real_pg_verifybackup_names_the_flipped_byte_cold_or_cached(cold, low_threshold, state):
    sizes = sizes_of(cold)
    damaged = sorted(sizes, key=sizes.get)[-2:]  # the two biggest files: one per process when split
    for rel in damaged:
        flip_byte(os.path.join(cold, rel), 7, 0x10)
    evict(cold)
    if state == "cached":
        read_all(cold)
    proc, figures = run([REAL_VERIFY, "-n"], cold)
    assert figures["verify_processes"] == 3
    assert figures["page_cache_resident"] == (1.0 if state == "cached" else 0.0)
    assert proc.returncode == 1
    text = proc.stdout + proc.stderr
    for rel in damaged:
        assert text.count('checksum mismatch for file "%s"' % rel) == 1, text
    assert "successfully verified" not in text

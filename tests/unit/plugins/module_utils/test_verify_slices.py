# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify's checksums check split over several ``pg_verifybackup`` processes
(``_verify_native.manifest_slices`` / ``run_sliced``): how the manifest's files are
shared out, the ``-i`` / ``-n`` options each process gets, and how their results are
merged. A fake ``pg_verifybackup`` records every command line and checks its share of a
real tree; the real PostgreSQL 15 binary, when installed, checks a hand-made manifest
(no server needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _verify_native
from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import Runner

REAL_VERIFY = "/usr/lib/postgresql/15/bin/pg_verifybackup"

# A stand-in for pg_verifybackup: appends its options to a log, then checks the size and
# SHA-256 of every manifest file it does not ignore, as the real one does, and reports
# files on disk missing from the manifest. Output lines are worded as PostgreSQL words them.
FAKE = r'''#!%s
import hashlib, json, os, sys
args = sys.argv[1:]
ignored, manifest, wal_dir, no_wal = [], None, None, False
i = 0
while i < len(args) - 1:
    if args[i] == "-i":
        ignored.append(args[i + 1]); i += 2
    elif args[i] == "-m":
        manifest = args[i + 1]; i += 2
    elif args[i] == "-w":
        wal_dir = args[i + 1]; i += 2
    elif args[i] == "-n":
        no_wal = True; i += 1
    else:
        sys.exit("unexpected option %%s" %% args[i])
target = args[-1]
manifest = manifest or os.path.join(target, "backup_manifest")
listed = json.load(open(manifest))["Files"]
mine = [f for f in listed if f["Path"] not in ignored]
with open(%r, "a") as log:
    log.write(json.dumps({"ignored": ignored, "no_wal": no_wal, "wal_dir": wal_dir, "target": target,
                          "checked": [f["Path"] for f in mine]}) + "\n")
errors = []
for entry in mine:
    path = os.path.join(target, entry["Path"])
    if not os.path.exists(path):
        errors.append('"%%s" is present in the manifest but not on disk' %% entry["Path"])
        continue
    data = open(path, "rb").read()
    if len(data) != entry["Size"]:
        errors.append('"%%s" has size %%d on disk but size %%d in the manifest' %% (entry["Path"], len(data), entry["Size"]))
    elif hashlib.sha256(data).hexdigest() != entry["Checksum"]:
        errors.append('checksum mismatch for file "%%s"' %% entry["Path"])
known = set(f["Path"] for f in listed) | {"backup_manifest"}
for cur, dirs, files in os.walk(target):
    for name in files:
        rel = os.path.relpath(os.path.join(cur, name), target)
        if rel not in known and rel not in ignored:
            errors.append('"%%s" is present on disk but not in the manifest' %% rel)
for line in errors:
    sys.stderr.write("pg_verifybackup: error: %%s\n" %% line)
if errors:
    sys.exit(1)
print("backup successfully verified")
'''


class FakeModule(object):
    """What Runner needs of an AnsibleModule: run_command."""

    def run_command(self, argv, cwd=None, expand_user_and_vars=False):
        proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def write_manifest(root):
    """A PostgreSQL 15 backup manifest (version 1, SHA-256 file checksums, manifest
    checksum over every line but the last) of every file under root."""
    entries = []
    for current, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(current, name)
            rel = os.path.relpath(path, root)
            if rel == "backup_manifest":
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            entries.append('{ "Path": %s, "Size": %d, "Last-Modified": "2026-01-01 00:00:00 GMT", "Checksum-Algorithm": "SHA256", '
                           '"Checksum": "%s" }' % (json.dumps(rel), len(data), hashlib.sha256(data).hexdigest()))
    text = ('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n' + ",\n".join(entries) + '\n],\n"WAL-Ranges": [\n'
            '{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n')
    text += '"Manifest-Checksum": "%s"}\n' % hashlib.sha256(text.encode()).hexdigest()
    path = os.path.join(root, "backup_manifest")
    with open(path, "w") as handle:
        handle.write(text)
    return path


def sizes_of(backup):
    with open(os.path.join(backup, "backup_manifest")) as handle:
        return dict((f["Path"], f["Size"]) for f in json.load(handle)["Files"])


@pytest.fixture
def backup(tmp_path):
    """A plain backup-like tree: files of very different sizes, nested, some empty."""
    root = tmp_path / "backup"
    (root / "base" / "1").mkdir(parents=True)
    (root / "global").mkdir()
    (root / "pg_wal").mkdir()
    (root / "PG_VERSION").write_text("15\n")
    (root / "backup_label").write_text("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")
    (root / "global" / "pg_control").write_bytes(os.urandom(8192))
    for number in range(30):
        (root / "base" / "1" / str(16384 + number)).write_bytes(os.urandom(number * 3000))
    (root / "base" / "1" / "big").write_bytes(os.urandom(200000))
    write_manifest(str(root))
    return str(root)


@pytest.fixture
def fake_bin(tmp_path):
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "bin" / "pg_verifybackup"
    script.parent.mkdir()
    script.write_text(FAKE % (sys.executable, str(log)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"verifier": str(script), "log": log}


def calls(fake_bin):
    if not fake_bin["log"].exists():
        return []
    return [json.loads(line) for line in fake_bin["log"].read_text().splitlines()]


@pytest.fixture
def low_threshold(monkeypatch):
    """Slicing from 1 kB on, three processes (the real floor is 64 MB, one per CPU)."""
    monkeypatch.setattr(_verify_native, "SLICE_MIN_BYTES", 1024)
    monkeypatch.setattr(_verify_native, "VERIFY_SLICES", 3)


def flip_byte(path, offset, mask):
    """Damage one byte of a backup file in place (XOR with ``mask``)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ mask]))


def run(argv, target, figures=None):
    figures = {} if figures is None else figures
    manifest = os.path.join(target, "backup_manifest")
    return _verify_native.run_sliced(Runner(FakeModule(), None), argv, target, manifest, 60, figures), figures


# -- how the files are shared out ----------------------------------------------------
def test_small_backup_is_one_slice_of_every_file(backup):
    sizes = sizes_of(backup)
    assert sum(sizes.values()) < _verify_native.SLICE_MIN_BYTES
    slices = _verify_native.manifest_slices(os.path.join(backup, "backup_manifest"), slices=4)
    assert len(slices) == 1 and sorted(slices[0]) == sorted(sizes)


def test_big_backup_slices_are_disjoint_complete_and_balanced(backup, low_threshold):
    sizes = sizes_of(backup)
    slices = _verify_native.manifest_slices(os.path.join(backup, "backup_manifest"))
    assert len(slices) == 3
    everything = [path for share in slices for path in share]
    assert sorted(everything) == sorted(sizes)  # each file in exactly one slice
    loads = [sum(sizes[p] for p in share) for share in slices]
    # greedy biggest-first: no two shares differ by more than the biggest file
    assert max(loads) - min(loads) <= max(sizes.values())
    assert max(loads) < sum(sizes.values()) * 0.75  # "big" alone does not swamp one share here


def test_too_many_files_or_one_slice_or_unreadable_manifest(backup, low_threshold, monkeypatch, tmp_path):
    manifest = os.path.join(backup, "backup_manifest")
    assert len(_verify_native.manifest_slices(manifest, slices=1)) == 1
    monkeypatch.setattr(_verify_native, "SLICE_MAX_IGNORED", 10)
    assert len(_verify_native.manifest_slices(manifest)) == 1
    (tmp_path / "broken").write_text("{not json")
    assert _verify_native.manifest_slices(str(tmp_path / "broken")) is None
    assert _verify_native.manifest_slices(str(tmp_path / "missing")) is None


def test_fewer_files_than_slices_gives_no_empty_slice(tmp_path, low_threshold):
    root = tmp_path / "two"
    root.mkdir()
    (root / "a").write_bytes(b"a" * 5000)
    (root / "b").write_bytes(b"")
    manifest = write_manifest(str(root))
    slices = _verify_native.manifest_slices(manifest, slices=8)
    assert sorted(len(s) for s in slices) == [1, 1]


# -- the processes run -----------------------------------------------------------------
def test_below_the_threshold_one_process_with_the_plain_command(backup, fake_bin):
    proc, figures = run([fake_bin["verifier"]], backup)
    assert proc.returncode == 0, proc.stderr
    assert figures["verify_processes"] == 1
    made = calls(fake_bin)
    assert len(made) == 1
    assert made[0]["ignored"] == [] and made[0]["no_wal"] is False and made[0]["target"] == backup
    assert sorted(made[0]["checked"]) == sorted(sizes_of(backup))
    assert proc.stdout.strip() == "backup successfully verified"


def test_sliced_processes_ignore_the_others_files_and_only_the_first_parses_wal(backup, fake_bin, low_threshold):
    sizes = sizes_of(backup)
    slices = _verify_native.manifest_slices(os.path.join(backup, "backup_manifest"))
    proc, figures = run([fake_bin["verifier"], "-w", "/archive"], backup)
    assert proc.returncode == 0, proc.stderr
    assert figures["verify_processes"] == 3
    made = calls(fake_bin)
    assert len(made) == 3
    # every process: its own share checked, everybody else's ignored, the WAL archive kept
    assert sorted(sorted(c["checked"]) for c in made) == sorted(sorted(s) for s in slices)
    for call in made:
        assert sorted(call["ignored"] + call["checked"]) == sorted(sizes)
        assert call["wal_dir"] == "/archive" and call["target"] == backup
    # exactly one parses the WAL: the one that got the first slice
    parsing = [c for c in made if not c["no_wal"]]
    assert len(parsing) == 1 and sorted(parsing[0]["checked"]) == sorted(slices[0])
    # together they checked each file exactly once
    checked = [p for c in made for p in c["checked"]]
    assert sorted(checked) == sorted(sizes)
    # one success line, as one process prints it
    assert proc.stdout.strip() == "backup successfully verified"


def test_no_wal_given_is_not_repeated(backup, fake_bin, low_threshold):
    proc, _figures = run([fake_bin["verifier"], "-n"], backup)
    assert proc.returncode == 0
    made = calls(fake_bin)
    assert len(made) == 3 and all(c["no_wal"] for c in made)


def test_every_failing_file_of_every_slice_is_named(backup, fake_bin, low_threshold):
    slices = _verify_native.manifest_slices(os.path.join(backup, "backup_manifest"))
    # one corrupt file in each of two different slices, one file gone from a third, one extra
    flipped, resized, gone = slices[0][0], slices[1][0], slices[2][0]  # each the biggest of its slice
    with open(os.path.join(backup, flipped), "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    with open(os.path.join(backup, resized), "ab") as handle:
        handle.write(b"x")
    os.remove(os.path.join(backup, gone))
    with open(os.path.join(backup, "base", "1", "stray"), "w") as handle:
        handle.write("not in the manifest")
    proc, _figures = run([fake_bin["verifier"], "-n"], backup)
    assert proc.returncode == 1
    text = proc.stdout + proc.stderr
    assert 'checksum mismatch for file "%s"' % flipped in text
    assert '"%s" has size' % resized in text
    assert '"%s" is present in the manifest but not on disk' % gone in text
    assert '"base/1/stray" is present on disk but not in the manifest' in text
    assert "backup successfully verified" not in proc.stdout


@pytest.mark.skipif(not os.access(REAL_VERIFY, os.X_OK), reason="PostgreSQL 15 pg_verifybackup not installed")
@pytest.mark.parametrize("sliced", [False, True])
def test_real_pg_verifybackup_slices_together_check_every_file(backup, monkeypatch, sliced):
    """The real binary on a hand-made manifest: the ``-i`` sets really split the work
    (each manifest file is checked by one process) and damage anywhere is found."""
    if sliced:
        monkeypatch.setattr(_verify_native, "SLICE_MIN_BYTES", 1024)
        monkeypatch.setattr(_verify_native, "VERIFY_SLICES", 3)
    proc, figures = run([REAL_VERIFY, "-n"], backup)
    assert proc.returncode == 0, proc.stderr
    assert figures["verify_processes"] == (3 if sliced else 1)
    assert proc.stdout.strip() == "backup successfully verified"
    slices = _verify_native.manifest_slices(os.path.join(backup, "backup_manifest"))
    sizes = sizes_of(backup)
    damaged = [max(share, key=lambda path: sizes[path]) for share in slices]  # the biggest file of every share
    for rel in damaged:
        flip_byte(os.path.join(backup, rel), 100, 0x01)
    os.remove(os.path.join(backup, "PG_VERSION"))
    proc, _figures = run([REAL_VERIFY, "-n"], backup)
    assert proc.returncode == 1
    text = proc.stdout + proc.stderr
    for rel in damaged:
        assert text.count('checksum mismatch for file "%s"' % rel) == 1, text
    assert text.count('"PG_VERSION" is present in the manifest but not on disk') == 1, text

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify: WAL arithmetic, continuity across timelines, expectations, and the module
flow on synthetic backups (no PostgreSQL needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

import pytest

from ansible_collections.resilience.dr.plugins.modules import backup_verify
from ansible_collections.resilience.dr.plugins.module_utils import _verify_wal as wal
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import evaluate_expectation, coerce
from ansible_collections.resilience.dr.plugins.module_utils._verify_native import parse_label_time
from modrun import run_main  # pylint: disable=import-error


def run(args, check=False):
    out = run_main(backup_verify.main, args, check)
    return out.kind, json.loads(json.dumps(out.payload))


# -- WAL names -----------------------------------------------------------------------
def test_segment_names_round_trip():
    assert wal.segment_name(1, 0x1FF) == "0000000100000001000000FF"
    assert wal.parse_segment("0000000100000001000000FF") == (1, 0x1FF)
    # 64 MB segments: 64 per log id
    assert wal.segment_name(2, 65, 64 * 1024 * 1024) == "000000020000000100000001"
    assert wal.lsn_segno(wal.parse_lsn("1/FF000028")) == 0x1FF


def test_classify_ignores_partial_and_backup_files():
    assert wal.classify("000000010000000000000003") == ("segment", "000000010000000000000003")
    assert wal.classify("000000010000000000000003.gz") == ("segment", "000000010000000000000003")
    assert wal.classify("000000010000000000000003.partial")[0] == "partial"
    assert wal.classify("000000010000000000000003.partial.gz")[0] == "partial"
    assert wal.classify("000000010000000000000002.00000028.backup")[0] == "backup"
    assert wal.classify("00000002.history") == ("history", 2)
    assert wal.classify("000000010000000000000003-" + "a" * 40 + ".lz4") == ("segment", "000000010000000000000003")


def names(tli, first, last):
    return [wal.segment_name(tli, n) for n in range(first, last + 1)]


def test_continuity_one_timeline_with_gap():
    segs = names(1, 2, 9)
    segs.remove(wal.segment_name(1, 5))
    segs.remove(wal.segment_name(1, 6))
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs, {})
    assert not result["ok"]
    assert result["first"] == "000000010000000000000002"
    assert result["last"] == "000000010000000000000009"
    assert result["gaps"] == [{"from": "000000010000000000000005", "to": "000000010000000000000006", "count": 2}]
    assert result["expected"] == 8 and result["present"] == 6
    assert "000000010000000000000005..000000010000000000000006 (2 segments)" == wal.describe_gaps(result["gaps"])


def test_continuity_complete_and_missing_start():
    assert wal.check_continuity(1, wal.parse_lsn("0/3000028"), names(1, 1, 6), {})["ok"]
    result = wal.check_continuity(1, wal.parse_lsn("0/3000028"), names(1, 4, 6), {})
    assert result["gaps"][0]["from"] == "000000010000000000000003"


def test_continuity_across_timeline_switch():
    # timeline 2 begins inside segment 5: segment 5 is read from timeline 2; the old
    # timeline's copy was archived as .partial and is not needed
    histories = {2: wal.parse_history("1\t0/5000100\tno recovery target specified\n")}
    segs = names(1, 2, 4) + names(2, 5, 8)
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs, histories)
    assert result["ok"], result
    assert result["target_timeline"] == 2
    assert result["last"] == "000000020000000000000008"
    assert [t["timeline"] for t in result["timelines"]] == [1, 2]
    # the switch segment on the new timeline missing is a gap, named on timeline 2
    segs.remove("000000020000000000000005")
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs + ["000000010000000000000005"], histories)
    assert not result["ok"]
    assert result["gaps"] == [{"from": "000000020000000000000005", "to": "000000020000000000000005", "count": 1}]


def test_continuity_ignores_a_branch_not_on_the_path():
    # timeline 3 branched from timeline 1 before the backup started: not restorable from it
    histories = {
        2: wal.parse_history("1\t0/9000000\tx\n"),
        3: wal.parse_history("1\t0/1000000\tx\n"),
    }
    segs = names(1, 2, 8) + names(2, 9, 10) + names(3, 1, 12)
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs, histories)
    assert result["ok"]
    assert result["target_timeline"] == 2
    assert result["last"] == "00000002000000000000000A"
    assert "00000003000000000000000C" in result["ignored"]


def test_three_timelines_path():
    histories = {
        3: wal.parse_history("1\t0/4000000\ta\n2\t0/6800000\tb\n"),
        2: wal.parse_history("1\t0/4000000\ta\n"),
    }
    segs = names(1, 2, 3) + names(2, 4, 6) + names(3, 6, 7)
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs, histories)
    assert result["ok"], result
    assert result["expected"] == 6
    segs.remove("000000020000000000000005")
    result = wal.check_continuity(1, wal.parse_lsn("0/2000028"), segs, histories)
    assert wal.describe_gaps(result["gaps"]) == "000000020000000000000005"


# -- expectations ----------------------------------------------------------------------
def test_expectations():
    assert evaluate_expectation({"min": 10}, ["count"], [["12"]]) == (True, 12, [])
    ok, value, failures = evaluate_expectation({"min": 100}, ["count"], [["12"]])
    assert not ok and value == 12 and failures == ["value 12 is below min 100"]
    assert evaluate_expectation({"equals": "t"}, ["x"], [["t"]])[0]
    assert evaluate_expectation({"equals": 3}, ["x"], [["3"]])[0]
    assert not evaluate_expectation({"equals": "abc"}, ["x"], [["abd"]])[0]
    assert not evaluate_expectation({"min_rows": 2}, ["x"], [["1"]])[0]
    ok, value, failures = evaluate_expectation({"max": 1}, ["x"], [])
    assert not ok and value is None
    assert coerce("1.5") == 1.5 and coerce("x") == "x"


def test_label_time():
    assert parse_label_time("2026-11-22 18:13:18 UTC").isoformat() == "2026-11-22T18:13:18+00:00"
    assert parse_label_time("2026-11-22 18:13:18 +02").isoformat() == "2026-11-22T16:13:18+00:00"
    assert parse_label_time("2026-11-22 18:13:18 CET") is None


# -- the module on a synthetic backup and archive ---------------------------------------------
LABEL = """START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: %s
LABEL: unit
START TIMELINE: 1
"""


@pytest.fixture
def fake(tmp_path):
    backups = tmp_path / "backups"
    archive = tmp_path / "archive"
    old = backups / "base-1"
    new = backups / "base-2"
    for folder, age in ((old, 7200), (new, 600)):
        folder.mkdir(parents=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - age))
        (folder / "backup_label").write_text(LABEL % stamp)
        (folder / "PG_VERSION").write_text("15\n")
        (folder / "data").write_bytes(b"x" * 1000)
    (backups / "base-3.partial").mkdir()
    (backups / "base-3.partial" / "backup_label").write_text(LABEL % time.strftime("%Y-%m-%d %H:%M:%S UTC"))
    archive.mkdir()
    for name in names(1, 1, 6):
        (archive / name).write_bytes(b"w" * 16)
        os.utime(str(archive / name), (time.time() - 60, time.time() - 60))
    (archive / "000000010000000000000002.00000028.backup").write_text("STOP TIME: x\n")
    (archive / "000000010000000000000007.partial").write_bytes(b"p")
    return {"backups": str(backups), "archive": str(archive), "new": str(new)}


def test_fresh_backup_passes(captured, fake):
    kind, res = run({"engine": "native", "backup_dir": fake["backups"], "wal_archive": fake["archive"],
                     "checks": ["max_age", "wal_continuity"], "max_age": "1h"})
    assert kind == "exit", res
    assert res["changed"] is False and res["plan"] == [] and res["failed_checks"] == []
    assert res["backup"]["path"] == fake["new"]  # the newest, not the unfinished one
    assert res["backup"]["count"] == 2
    assert res["backup"]["size_bytes"] == 1000 + len(LABEL % "2026-01-01 00:00:00 UTC") + 3
    assert 590 < res["backup"]["age_seconds"] < 700
    assert res["checks"]["wal_continuity"]["status"] == "passed"
    assert res["checks"]["test_restore"] == {"status": "skipped", "detail": "not requested", "started_at": None,
                                             "seconds": 0.0, "figures": {}}
    assert res["wal"]["newest_segment"] == "000000010000000000000006"
    assert res["checks"]["max_age"]["figures"]["newest_wal"]["segment"] == "000000010000000000000006"
    for check in res["checks"].values():
        assert set(check) >= {"status", "detail", "seconds", "figures"}


def test_check_mode_runs_the_same_checks(captured, fake):
    args = {"engine": "native", "backup_dir": fake["backups"], "wal_archive": fake["archive"],
            "checks": ["max_age", "wal_continuity"], "max_age": "1h"}
    _kind, real = run(args)
    _kind, dry = run(args, check=True)
    assert dry["check_mode"] is True and dry["changed"] is False
    assert dict((k, v["status"]) for k, v in dry["checks"].items()) == dict((k, v["status"]) for k, v in real["checks"].items())


def test_gap_and_age_fail_with_every_check_named(captured, fake):
    os.remove(os.path.join(fake["archive"], "000000010000000000000004"))
    kind, res = run({"engine": "native", "backup_dir": fake["backups"], "wal_archive": fake["archive"],
                     "checks": ["max_age", "wal_continuity"], "max_age": "5m"})
    assert kind == "fail"
    assert res["error"] == "CHECK_FAILED"
    assert "max_age" in res["msg"] and "wal_continuity" in res["msg"]
    assert "000000010000000000000004" in res["msg"]
    assert "older than max_age 5m" in res["msg"]
    assert res["failed_checks"] == ["max_age", "wal_continuity"]
    assert res["checks"]["wal_continuity"]["figures"]["gaps"][0]["from"] == "000000010000000000000004"
    assert res["changed"] is False


def test_fail_on_error_false_reports(captured, fake):
    os.remove(os.path.join(fake["archive"], "000000010000000000000004"))
    kind, res = run({"engine": "native", "backup_dir": fake["backups"], "wal_archive": fake["archive"],
                     "checks": ["wal_continuity"], "fail_on_error": False})
    assert kind == "exit"
    assert res["passed"] is False and res["failed_checks"] == ["wal_continuity"]


def test_no_backup_fails_each_check(captured, tmp_path):
    kind, res = run({"engine": "native", "backup_dir": str(tmp_path), "checks": ["max_age"]})
    assert kind == "fail" and res["error"] == "CHECK_FAILED"
    assert "No backup found" in res["checks"]["max_age"]["detail"]


def test_refuses_bad_arguments(captured, fake):
    kind, res = run({"engine": "native", "backup_dir": fake["backups"], "checks": ["wal_continuity"]})
    assert kind == "fail" and res["error"] == "INVALID_ARGUMENT" and "wal_archive" in res["msg"]
    kind, res = run({"engine": "native", "backup_dir": fake["backups"], "max_age": "soon"})
    assert kind == "fail" and res["error"] == "INVALID_ARGUMENT"


# -- pgBackRest verify's report and the scratch settings ------------------------------------
VERIFY_BAD = """2026-11-22 18:16:15.258 P00   INFO: verify command begin 2.45: --config=/x/pgbackrest.conf --stanza=lab
2026-11-22 18:16:15.378 P01   INFO: invalid checksum '20261122-181547F/pg_data/base/5/13406.lz4'
2026-11-22 18:16:15.391 P00   INFO: stanza: lab
                                    status: error
                                      backup: 20261122-181547F, status: invalid, total files checked: 1269, total valid files: 1268
                                        checksum invalid: 1
2026-11-22 18:16:15.391 P00   INFO: verify command end: completed successfully (135ms)
"""
VERIFY_OK = """2026-11-22 18:16:10.702 P00   INFO: verify command begin 2.45: --stanza=lab
2026-11-22 18:16:11.319 P00   INFO: verify command end: completed successfully (622ms)
"""


def test_pgbackrest_verify_report_parsing():
    from ansible_collections.resilience.dr.plugins.module_utils._verify_pgbackrest import parse_verify_output
    bad, problems, files = parse_verify_output(VERIFY_BAD)
    assert bad and files == ["20261122-181547F/pg_data/base/5/13406.lz4"]
    assert any("invalid checksum" in p for p in problems)
    assert parse_verify_output(VERIFY_OK) == (False, [], [])


def test_scratch_prepare_neutralises_production_settings(tmp_path):
    from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import ScratchInstance

    class FakeRunner(object):
        as_other = False

        def chown_tree(self, path):
            pass

    inst = ScratchInstance(str(tmp_path), FakeRunner(), "/usr/lib/postgresql/15/bin", 23599, "postgres")
    os.makedirs(inst.data)
    for name, text in (("standby.signal", ""), ("postmaster.pid", "1\n"), ("postgresql.auto.conf", "primary_conninfo = 'host=prod'\n"),
                       ("pg_hba.conf", "host all all 0.0.0.0/0 trust\n")):
        with open(os.path.join(inst.data, name), "w") as handle:
            handle.write(text)
    inst.prepare({"restore_command": "cp /a/%f %p", "recovery_target": "immediate"})
    files = sorted(os.listdir(inst.data))
    assert "standby.signal" not in files and "postmaster.pid" not in files and "recovery.signal" in files
    with open(os.path.join(inst.data, "postgresql.auto.conf")) as handle:
        auto = handle.read()
    # the appended block comes last, so it wins
    assert auto.index("primary_conninfo = ''") > auto.index("host=prod")
    assert "restore_command = 'cp /a/%f %p'" in auto and "recovery_target = 'immediate'" in auto
    with open(os.path.join(inst.data, "pg_hba.conf")) as handle:
        assert handle.read().strip().splitlines()[-1] == "local all all trust"
    opts = inst.server_options()
    assert "-c archive_mode=off" in opts and "-c port=23599" in opts and "-c listen_addresses=127.0.0.1" in opts
    assert inst.close() is True and not os.path.exists(inst.root)

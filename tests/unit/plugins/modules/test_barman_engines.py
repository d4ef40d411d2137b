# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine barman of pg_pitr_restore and backup_verify without Barman: a fake ``barman``
script answers ``-f json`` commands from files; WAL stores are real folders."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.resilience.dr.plugins.module_utils import _barman
from ansible_collections.resilience.dr.plugins.module_utils import _pitr_barman
from ansible_collections.resilience.dr.plugins.module_utils import _verify_barman
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule
from ansible_collections.resilience.dr.plugins.module_utils._verify_wal import scan_tree
from ansible_collections.resilience.dr.plugins.modules import backup_verify, pg_pitr_restore
from modrun import run_main  # pylint: disable=import-error

UTC = datetime.timezone.utc

FAKE = r'''#!%s
import json, os, sys
state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "state")
args = [a for a in sys.argv[1:] if a not in ("-f", "json", "-q")]
if args[0] == "-c":
    args = args[2:]
with open(os.path.join(state, "calls"), "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\n")
cmd = args[0]
name = {"list-backups": "list", "show-server": "server"}.get(cmd)
if cmd == "show-backup":
    name = "backup-" + args[2]
if cmd == "verify-backup":
    path = os.path.join(state, "verify")
    if os.path.exists(path):
        sys.stderr.write(open(path).read())
        sys.exit(1)
    print("backup successfully verified")
    sys.exit(0)
if cmd == "recover":
    sys.exit(3)
print(open(os.path.join(state, name)).read())
'''


def show(backup_id, begin, end, begin_lsn, end_lsn, begin_wal, end_wal):
    return {"lab": {"backup_id": backup_id, "backup_type": "full", "status": "DONE", "postgresql_version": 150018,
                    "base_backup_information": {"begin_time": begin, "end_time": end, "begin_lsn": begin_lsn, "end_lsn": end_lsn,
                                                "begin_wal": begin_wal, "end_wal": end_wal, "timeline": 1, "backup_size_bytes": 1234}}}


@pytest.fixture
def fake(tmp_path):
    home = tmp_path / "home"
    wals = home / "lab" / "wals" / "0000000100000000"
    wals.mkdir(parents=True)
    for segno in range(2, 9):
        seg = wals / ("0000000100000000000000%02X" % segno)
        seg.write_bytes(b"")
        # archived one per hour: segment 2 at 11:00 ... segment 8 at 17:00 UTC
        moment = datetime.datetime(2026, 1, 1, 9, tzinfo=UTC) + datetime.timedelta(hours=segno)
        os.utime(str(seg), (moment.timestamp(), moment.timestamp()))
    state = tmp_path / "state"
    state.mkdir()
    (state / "server").write_text(json.dumps({"lab": {"wals_directory": str(home / "lab" / "wals"),
                                                      "basebackups_directory": str(home / "lab" / "base")}}))
    (state / "list").write_text(json.dumps({"lab": [
        {"backup_id": "20260101T100000", "status": "DONE"},
        {"backup_id": "20260101T120000", "status": "DONE"},
        {"backup_id": "20260101T130000", "status": "FAILED"}]}))
    (state / "backup-20260101T100000").write_text(json.dumps(show(
        "20260101T100000", "2026-01-01 10:00:00.100000+00:00", "2026-01-01 10:00:05.250300+00:00", "0/2000028", "0/3000000",
        "000000010000000000000002", "000000010000000000000002")))
    (state / "backup-20260101T120000").write_text(json.dumps(show(
        "20260101T120000", "2026-01-01 12:00:00+00:00", "2026-01-01 12:00:04+00:00", "0/5000028", "0/6000000",
        "000000010000000000000005", "000000010000000000000005")))
    script = tmp_path / "barman"
    script.write_text(FAKE % sys.executable)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "barman.conf"
    config.write_text("[barman]\n")
    (home / "lab" / "base" / "20260101T120000" / "data").mkdir(parents=True)
    (home / "lab" / "base" / "20260101T120000" / "data" / "backup_manifest").write_text("{}")
    return {"bin": str(script), "config": str(config), "state": state, "wals": wals, "tmp": tmp_path}


def run(module, args, check=False):
    out = run_main(module.main, args, check)
    if out.kind == "fail":
        out.payload["failed"] = True
    return out.payload


def pitr(fake, target_time, **extra):
    args = dict(engine="barman", barman_bin=fake["bin"], barman_config=fake["config"], barman_server="lab", os_user="root",
                target_time=target_time, data_dir=str(fake["tmp"] / "restore"), port=31999)
    args.update(extra)
    return args


# -- helpers ----------------------------------------------------------------------------
def test_describe_backup_rounds_the_end_up_and_reads_the_version():
    backup = _barman.describe_backup(show("b1", "2026-01-01 10:00:00+00:00", "2026-01-01 10:00:05.250300+00:00", "0/2000028",
                                          "0/3000000", "000000010000000000000002", "000000010000000000000002")["lab"])
    assert backup["end_time"] == "2026-01-01T10:00:05.251Z"  # never earlier than Barman's end
    assert backup["pg_version"] == "15" and backup["format"] == "barman" and backup["start_lsn"] == "0/2000028"
    assert _barman.pg_version_text(90624) == "9.6" and _barman.pg_version_text(None) is None


def test_scan_of_the_wal_store_and_catalogue(fake):
    (fake["wals"] / "00000002.history").write_text("1\t0/5000000\tno recovery target specified\n")
    (fake["wals"] / "000000010000000000000008.partial").write_bytes(b"")
    scan = scan_tree(str(fake["wals"].parent))
    assert scan["newest"] == "000000010000000000000008" and len(scan["segments"]) == 7
    assert scan["histories"] == {2: [(1, 0x5000000, "no recovery target specified")]}
    catalogue = _barman.as_catalogue(scan)
    assert sorted(catalogue["segments"]) == list(range(2, 9)) and catalogue["histories"] == ["00000002.history"]


def test_drop_recovery_lines(tmp_path):
    conf = tmp_path / "postgresql.auto.conf"
    conf.write_text("# keep\nwork_mem = '8MB'\nrestore_command = 'cp /x/barman_wal/%f %p'\nrecovery_target_time = 'x'\n"
                    "recovery_target_action = 'pause'\n")
    assert _pitr_barman.drop_recovery_lines(str(conf)) == ["restore_command", "recovery_target_time", "recovery_target_action"]
    assert conf.read_text() == "# keep\nwork_mem = '8MB'\n"


def test_verify_output_names_files():
    text = ("ERROR: verify backup failure on directory '/b/data'\n"
            "ERROR: pg_verifybackup: error: checksum mismatch for file \"base/5/2688\"\n")
    problems, files = _verify_barman.parse_verify_output(text)
    assert files == ["base/5/2688"] and problems == ['checksum mismatch for file "base/5/2688"']


# -- pg_pitr_restore -----------------------------------------------------------------------
def test_check_mode_chooses_the_newest_backup_ended_before_the_target(captured, fake):
    result = run(pg_pitr_restore, pitr(fake, "2026-01-01T11:30:00Z"), check=True)
    assert not result.get("failed"), result
    assert result["backup"]["id"] == "20260101T100000" and result["backups_found"] == 2  # FAILED one ignored
    assert result["wal"]["first"] == "000000010000000000000002" and result["wal"]["complete"] is True
    assert not os.path.exists(fake["tmp"] / "restore")
    calls = (fake["state"] / "calls").read_text()
    assert "recover" not in calls and "-c" in calls


def test_end_instant_itself_is_too_early(captured, fake):
    # the backup ended at 10:00:05.2503: a target at .250 must not use it
    result = run(pg_pitr_restore, pitr(fake, "2026-01-01T10:00:05.250Z"), check=True)
    assert result["failed"] and result["error"] == "NO_BACKUP_BEFORE_TARGET", result


def test_target_before_every_backup_creates_nothing(captured, fake):
    result = run(pg_pitr_restore, pitr(fake, "2026-01-01T09:00:00+02:00"))
    assert result["failed"] and result["error"] == "NO_BACKUP_BEFORE_TARGET", result
    assert not os.path.exists(fake["tmp"] / "restore")


def test_missing_wal_is_named(captured, fake):
    os.remove(str(fake["wals"] / "000000010000000000000003"))
    result = run(pg_pitr_restore, pitr(fake, "2026-01-01T11:30:00Z"), check=True)
    assert result["failed"] and result["error"] == "TARGET_NOT_REACHED", result
    assert "000000010000000000000003" in result["msg"]


def test_failed_recover_is_reported_and_not_promoted(captured, fake):
    result = run(pg_pitr_restore, pitr(fake, "2026-01-01T11:30:00Z"))
    assert result["failed"] and result["error"] == "APPLY_FAILED" and "barman recover failed (rc 3)" in result["msg"], result
    with open(os.path.join(str(fake["tmp"] / "restore"), "resilience_dr_restore.json")) as handle:
        assert json.load(handle)["state"] == "failed"


def test_recover_arguments(fake, captured):
    module_args = pitr(fake, "2026-01-01T11:30:00+01:00", target_inclusive=False, target_timeline="2")
    with patch_module_args(module_args):
        module = DRModule(argument_spec=pg_pitr_restore.argument_spec(), supports_check_mode=True)
    provider = _pitr_barman.BarmanRestore(module)
    argv = provider.recover_args({"id": "20260101T100000"})
    assert argv == ["recover", "--target-time=2026-01-01 10:30:00.000000+00", "--target-action=pause", "--exclusive",
                    "--target-tli=2", "lab", "20260101T100000", str(fake["tmp"] / "restore")]
    settings = provider.recovery_settings(provider.target)
    assert settings["restore_command"].startswith("cp ") and "barman_wal" in settings["recovery_end_command"]


# -- backup_verify -------------------------------------------------------------------------
def verify(fake, **extra):
    args = dict(engine="barman", barman_bin=fake["bin"], barman_config=fake["config"], barman_server="lab", os_user="root",
                max_age="100000d", checks=["max_age", "checksums", "wal_continuity"])
    args.update(extra)
    return args


def test_verify_passes_on_the_newest_backup(captured, fake):
    result = run(backup_verify, verify(fake))
    assert not result.get("failed") and result["passed"] is True, result
    assert result["changed"] is False and result["backup"]["label"] == "20260101T120000"
    assert result["checks"]["wal_continuity"]["figures"]["first"] == "000000010000000000000005"
    assert result["wal"]["newest_segment"] == "000000010000000000000008"


def test_verify_names_the_damaged_file_and_the_gap(captured, fake):
    (fake["state"] / "verify").write_text("ERROR: pg_verifybackup: error: checksum mismatch for file \"base/5/2688\"\n")
    os.remove(str(fake["wals"] / "000000010000000000000006"))
    result = run(backup_verify, verify(fake, fail_on_error=False))
    assert result["passed"] is False and result["failed_checks"] == ["checksums", "wal_continuity"], result
    assert "base/5/2688" in result["checks"]["checksums"]["detail"]
    assert result["checks"]["wal_continuity"]["figures"]["gaps"] == [
        {"from": "000000010000000000000006", "to": "000000010000000000000006", "count": 1}]


def test_verify_without_manifest_says_what_to_run(captured, fake):
    os.remove(str(fake["tmp"] / "home" / "lab" / "base" / "20260101T120000" / "data" / "backup_manifest"))
    result = run(backup_verify, verify(fake, checks=["checksums"], fail_on_error=False))
    assert "generate-manifest" in result["checks"]["checksums"]["detail"]


def test_unknown_config_is_refused(captured, fake):
    result = run(backup_verify, verify(fake, barman_config=str(fake["tmp"] / "nope.conf"), fail_on_error=False))
    assert result["failed"] and "barman_config" in result["msg"], result

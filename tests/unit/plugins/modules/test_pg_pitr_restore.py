# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_pitr_restore without a server: targets, catalogues, backup choice, WAL continuity,
the proof of the target, the data dir rules, and the aws_rds requests (botocore Stubber)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import io
import json
import os
import tarfile

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _pg_backups as pb
from ansible_collections.resilience.dr.plugins.module_utils import _pg_instance
from ansible_collections.resilience.dr.plugins.module_utils import _pitr_common as common
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
from ansible_collections.resilience.dr.plugins.modules import pg_pitr_restore
from modrun import run_main  # pylint: disable=import-error

UTC = datetime.timezone.utc
SEG = 16 * 1024 * 1024


def run(args, check=False):
    return run_main(pg_pitr_restore.main, args, check)


# -- targets -------------------------------------------------------------------------------
def test_offset_target_normalises_to_its_utc_twin():
    a = common.normalise_target({"target_time": "2026-01-15T12:15:00+02:00"})
    b = common.normalise_target({"target_time": "2026-01-15T10:15:00Z"})
    assert a["time"] == b["time"] and a["value"] == b["value"] == "2026-01-15T10:15:00.000Z"
    assert common.recovery_target_settings(a)["recovery_target_time"] == "2026-01-15 10:15:00.000000+00"


@pytest.mark.parametrize("params", [
    {}, {"target_time": "2026-01-15T10:15:00Z", "latest": True}, {"target_time": "2026-01-15 10:15:00"},
    {"target_lsn": "nonsense"}, {"target_xid": "12a"}, {"latest": True, "target_action": "pause"},
])
def test_bad_targets_are_refused(params):
    with pytest.raises(DRError) as info:
        common.normalise_target(params)
    assert info.value.code == "INVALID_ARGUMENT"


def test_recovery_settings_per_target():
    assert common.recovery_target_settings(common.normalise_target({"target_lsn": "0/3000028", "target_inclusive": False})) == {
        "recovery_target_lsn": "0/3000028", "recovery_target_inclusive": "off", "recovery_target_action": "pause"}
    assert common.recovery_target_settings(common.normalise_target({"immediate": True})) == {
        "recovery_target": "immediate", "recovery_target_action": "pause"}
    assert common.recovery_target_settings(common.normalise_target({"latest": True, "target_timeline": "latest"})) == {
        "recovery_target_timeline": "latest"}


# -- LSN / segments ----------------------------------------------------------------------
def test_lsn_and_segment_names():
    assert pb.parse_lsn("0/3000028") == 0x3000028
    assert pb.format_lsn(pb.parse_lsn("1A/FF000000")) == "1A/FF000000"
    assert pb.segment_name(1, pb.segment_number(pb.parse_lsn("1/3000028"))) == "000000010000000100000003"
    assert pb.parse_segment_name("000000020000000100000003") == (2, 256 + 3)
    assert pb.parse_segment_name("000000010000000000000003.partial") is None


def _archive(tmp_path, segnos, timeline=1, mtimes=None, name="archive"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for segno in segnos:
        path = folder / pb.segment_name(timeline, segno)
        path.write_bytes(b"")
        if mtimes:
            os.utime(str(path), (mtimes[segno], mtimes[segno]))
    return str(folder)


def test_continuity_names_the_missing_segment(tmp_path):
    archive = _archive(tmp_path, [2, 3, 5, 6])
    check = pb.check_wal_continuity(archive, 1, 2 * SEG + 40, segment_size=SEG)
    assert check["missing"] == ["000000010000000000000004"] and check["complete"] is False
    assert check["first"] == "000000010000000000000002" and check["last"] == "000000010000000000000006"
    # a gap after the segment holding the target does not matter
    assert pb.check_wal_continuity(archive, 1, 2 * SEG, end_lsn=3 * SEG + 5, segment_size=SEG)["complete"] is True
    # a later timeline's copy of a segment counts
    _archive(tmp_path, [4], timeline=2)
    assert pb.check_wal_continuity(archive, 1, 2 * SEG, segment_size=SEG)["complete"] is True


def _epoch(moment):
    return (moment - datetime.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()


def _at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def test_continuity_for_a_time_target_stops_at_the_first_segment_archived_after_it(tmp_path):
    base = datetime.datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    mtimes = dict((n, _epoch(base + datetime.timedelta(minutes=n))) for n in range(2, 9))
    archive = _archive(tmp_path, [2, 3, 4, 5, 7, 8], mtimes=mtimes)
    early = pb.check_wal_continuity(archive, 1, 2 * SEG, until_time=base + datetime.timedelta(minutes=3, seconds=30), segment_size=SEG)
    assert early["last"] == "000000010000000000000004" and early["complete"] and early["end_known"]
    late = pb.check_wal_continuity(archive, 1, 2 * SEG, until_time=base + datetime.timedelta(minutes=6, seconds=30), segment_size=SEG)
    assert late["missing"] == ["000000010000000000000006"]


# -- native catalogue ----------------------------------------------------------------------
LABEL = """START WAL LOCATION: 0/%X (file 0000000100000000000000%02X)
CHECKPOINT LOCATION: 0/%X
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: %s UTC
LABEL: %s
START TIMELINE: 1
"""


def _make_backup(root, name, start_seg, start_time, fmt="plain", stop_time=None, archive=None):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    start = start_seg * SEG + 0x28
    label = LABEL % (start, start_seg, start + 0x38, start_time, name)
    manifest = {"WAL-Ranges": [{"Timeline": 1, "Start-LSN": pb.format_lsn(start), "End-LSN": pb.format_lsn(start + 0xD8)}]}
    with open(os.path.join(folder, "backup_manifest"), "w") as handle:
        json.dump(manifest, handle)
    if fmt == "plain":
        with open(os.path.join(folder, "backup_label"), "w") as handle:
            handle.write(label)
        with open(os.path.join(folder, "PG_VERSION"), "w") as handle:
            handle.write("15\n")
    else:
        with tarfile.open(os.path.join(folder, "base.tar.gz"), "w:gz") as tar:
            for member, text in (("backup_label", label), ("PG_VERSION", "15\n")):
                data = text.encode()
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    if stop_time and archive:
        with open(os.path.join(archive, "0000000100000000000000%02X.00000028.backup" % start_seg), "w") as handle:
            handle.write(label.replace("CHECKPOINT", "STOP WAL LOCATION: 0/%X (file x)\nCHECKPOINT" % (start + 0xD8))
                         + "STOP TIME: %s UTC\nSTOP TIMELINE: 1\n" % stop_time)
    return folder


def test_native_catalogue_plain_and_tar(tmp_path):
    archive = str(tmp_path / "wal")
    os.makedirs(archive)
    root = str(tmp_path / "base")
    _make_backup(root, "b1", 2, "2026-01-15 09:00:00", archive=archive, stop_time="2026-01-15 09:00:05")
    _make_backup(root, "b2", 6, "2026-01-15 10:00:00", fmt="tar", archive=archive, stop_time="2026-01-15 10:00:07")
    os.makedirs(os.path.join(root, "not-a-backup"))
    found = pb.list_native_backups(root, wal_archive=archive)
    assert [b["id"] for b in found] == ["b1", "b2"]
    assert found[1]["format"] == "tar" and found[1]["compression"] == "gz" and found[1]["label"] == "b2"
    assert found[1]["start_lsn"] == "0/6000028" and found[1]["end_lsn"] == "0/6000100"
    assert found[1]["end_time"] == "2026-01-15T10:00:07.000Z" and found[1]["end_time_source"].startswith("wal_archive:")


def test_choose_newest_backup_that_ended_before_the_target():
    backups = [
        {"id": "b1", "end_time": "2026-01-15T09:00:05.000Z", "end_lsn": "0/2000100"},
        {"id": "b2", "end_time": "2026-01-15T10:00:07.000Z", "end_lsn": "0/6000100"},
    ]
    assert pb.choose_backup(backups, target_time=_at("2026-01-15T10:30:00"))["id"] == "b2"
    # the second-resolution stop time may hide up to a second: 10:00:07.5 is not after b2 for sure
    assert pb.choose_backup(backups, target_time=_at("2026-01-15T10:00:07"))["id"] == "b1"
    assert pb.choose_backup(backups, target_time=_at("2026-01-15T09:59:00"))["id"] == "b1"
    assert pb.choose_backup(backups, target_lsn=pb.parse_lsn("0/5000000"))["id"] == "b1"
    assert pb.choose_backup(backups)["id"] == "b2"
    assert pb.choose_backup(backups, oldest=True)["id"] == "b1"
    with pytest.raises(DRError) as info:
        pb.choose_backup(backups, target_time=_at("2026-01-15T08:00:00"))
    assert info.value.code == "NO_BACKUP_BEFORE_TARGET"
    with pytest.raises(DRError) as info:
        pb.choose_backup(backups, target_time=_at("2026-01-15T09:30:00"), backup_id="b2")
    assert info.value.code == "NO_BACKUP_BEFORE_TARGET"


def test_settings_block_is_replaced_not_appended(tmp_path):
    inst = _pg_instance.ScratchInstance(str(tmp_path), 22590, "/nonexistent", os_user=None)
    (tmp_path / "postgresql.auto.conf").write_text("work_mem = '8MB'\n")
    inst.write_settings({"port": 22590, "archive_mode": "off", "restore_command": "cp '/a b'/%f \"%p\""}, tag="one")
    inst.write_settings({"port": 22591}, tag="two")
    text = (tmp_path / "postgresql.auto.conf").read_text()
    assert text.count("BEGIN resilience.dr") == 1 and "port = 22591" in text and "archive_mode" not in text
    assert text.startswith("work_mem = '8MB'")
    assert (tmp_path / "postgresql.conf").exists()


# -- proof -----------------------------------------------------------------------------------
LOG_PAUSED = """2026-01-15 10:20:00.100 UTC [1] LOG:  consistent recovery state reached at 0/4000100
2026-01-15 10:20:00.200 UTC [1] LOG:  recovery stopping before commit of transaction 731, time 2026-01-15 10:15:00.500000+00
2026-01-15 10:20:00.200 UTC [1] LOG:  pausing at the end of recovery
"""


def test_time_target_is_proven_by_the_stop_record_and_the_last_replayed_commit():
    target = common.normalise_target({"target_time": "2026-01-15T12:15:00+02:00"})
    wait = {"state": "paused", "facts": {"last_replay_time": "2026-01-15T10:14:59.900Z", "last_replay_lsn": "0/9000100"}, "seconds": 1}
    proof = common.prove_target(target, wait, LOG_PAUSED, {})
    assert proof["reached"] is True and proof["stop_record_time"] == "2026-01-15T10:15:00.500Z"
    bad = dict(wait, facts={"last_replay_time": "2026-01-15T10:15:00.200Z", "last_replay_lsn": "0/9000100"})
    with pytest.raises(DRError) as info:
        common.prove_target(target, bad, LOG_PAUSED, {})
    assert info.value.code == "VERIFY_FAILED" and "NOT promoted" in info.value.msg


def test_wal_running_out_is_target_not_reached():
    log = ("cp: cannot stat '/arch/00000001000000000000000C': No such file or directory\n"
           "2026 LOG:  redo done at 0/B004B40 system usage: CPU\n"
           "2026 LOG:  last completed transaction was at log time 2026-01-15 10:10:00+00\n"
           "2026 FATAL:  recovery ended before configured recovery target was reached\n")
    target = common.normalise_target({"target_time": "2026-01-15T11:00:00Z"})
    with pytest.raises(DRError) as info:
        common.prove_target(target, {"state": "stopped"}, log, {})
    assert info.value.code == "TARGET_NOT_REACHED"
    assert "00000001000000000000000C" in info.value.msg and "NOT promoted" in info.value.msg


def test_xid_name_and_lsn_proofs():
    log = "LOG:  recovery stopping after commit of transaction 900, time 2026-01-15 10:15:00+00\n"
    assert common.prove_target(common.normalise_target({"target_xid": "900"}), {"state": "paused", "facts": {}}, log, {})["reached"]
    with pytest.raises(DRError):
        common.prove_target(common.normalise_target({"target_xid": "901"}), {"state": "paused", "facts": {}}, log, {})
    log = 'LOG:  recovery stopping at restore point "before-migration", time 2026-01-15 10:15:00+00\n'
    assert common.prove_target(common.normalise_target({"target_name": "before-migration"}), {"state": "paused", "facts": {}}, log, {})
    log = 'LOG:  recovery stopping after WAL location (LSN) "0/3000028"\n'
    facts = {"last_replay_lsn": "0/3000060"}
    assert common.prove_target(common.normalise_target({"target_lsn": "0/3000028"}), {"state": "paused", "facts": facts}, log, {})
    with pytest.raises(DRError):
        common.prove_target(common.normalise_target({"target_lsn": "0/3000028"}), {"state": "promoted", "facts": facts}, log, {})


def test_immediate_proof_compares_with_an_exact_backup_end_only():
    log = ("LOG:  consistent recovery state reached at 0/B000100\n"
           "LOG:  recovery stopping after reaching consistency\n")
    target = common.normalise_target({"immediate": True})
    wait = {"state": "paused", "facts": {"last_replay_lsn": "0/B000100"}}
    assert common.prove_target(target, wait, log, {"end_lsn": "0/B000100"})["reached"]
    # a pg_basebackup / pg_backup_stop end after where replay stopped: not the end of this backup
    with pytest.raises(DRError) as info:
        common.prove_target(target, wait, log, {"end_lsn": "0/C000000"})
    assert "before the end of the backup" in info.value.msg
    # Barman's end LSN (the end of the backup's last segment) is a bound: PostgreSQL's word decides
    assert common.prove_target(target, wait, log, {"end_lsn": "0/C000000", "end_lsn_exact": False})["reached"]
    with pytest.raises(DRError):
        common.prove_target(target, wait, "LOG:  recovery stopping after commit of transaction 900, time 2026-01-15 10:15:00+00\n",
                            {"end_lsn": "0/C000000", "end_lsn_exact": False})


# -- the module: data dir rules and check mode (no server needed) ------------------------
@pytest.fixture
def native_site(tmp_path):
    archive = str(tmp_path / "wal")
    os.makedirs(archive)
    root = str(tmp_path / "base")
    _make_backup(root, "b1", 2, "2026-01-15 09:00:00", archive=archive, stop_time="2026-01-15 09:00:05")
    _archive(tmp_path, [2, 3, 4], name="wal")
    return {"engine": "native", "backup_dir": root, "wal_archive": archive, "data_dir": str(tmp_path / "restore"), "port": 22599,
            "pg_bin": "/usr/lib/postgresql/15/bin"}


def test_check_mode_reports_backup_and_wal_and_creates_nothing(captured, native_site):
    out = run(dict(native_site, target_lsn="0/4000000"), check=True)
    assert out.kind == "exit", out.payload
    assert out.payload["changed"] is True and out.payload["backup"]["id"] == "b1"
    assert out.payload["wal"]["first"] == "000000010000000000000002" and out.payload["wal"]["complete"] is True
    assert [s["action"] for s in out.payload["steps"]] == [
        "prepare_data_dir", "restore_backup", "write_recovery_settings", "start_recovery", "prove_target", "promote", "hand_over",
        "write_marker"]
    assert not os.path.exists(native_site["data_dir"])


def test_target_before_every_backup_creates_nothing(captured, native_site):
    out = run(dict(native_site, target_time="2026-01-15T08:00:00Z"))
    assert out.kind == "fail" and out.payload["error"] == "NO_BACKUP_BEFORE_TARGET" and out.payload["changed"] is False
    assert not os.path.exists(native_site["data_dir"])


def test_missing_segment_fails_before_anything(captured, native_site):
    os.remove(os.path.join(native_site["wal_archive"], "000000010000000000000003"))
    out = run(dict(native_site, target_lsn="0/4000000"), check=True)
    assert out.kind == "fail" and out.payload["error"] == "TARGET_NOT_REACHED"
    assert "000000010000000000000003" in out.payload["msg"]


def test_foreign_data_dir_refused_or_planned_aside(captured, native_site):
    os.makedirs(native_site["data_dir"])
    with open(os.path.join(native_site["data_dir"], "keep"), "w") as handle:
        handle.write("x")
    out = run(dict(native_site, target_lsn="0/4000000"))
    assert out.kind == "fail" and out.payload["error"] == "PRECONDITION_FAILED"
    assert os.listdir(native_site["data_dir"]) == ["keep"]
    out = run(dict(native_site, target_lsn="0/4000000", existing="move_aside"), check=True)
    assert out.payload["steps"][0]["action"] == "move_aside"
    assert os.listdir(native_site["data_dir"]) == ["keep"]


def test_done_marker_with_same_arguments_is_unchanged(captured, native_site):
    args = dict(native_site, target_lsn="0/4000000")
    os.makedirs(native_site["data_dir"])
    out = run(args, check=True)
    key = {"engine": "native", "source": {"backup_dir": native_site["backup_dir"], "wal_archive": native_site["wal_archive"]},
           "target": out.payload["target"]}
    with open(os.path.join(native_site["data_dir"], common.MARKER), "w") as handle:
        json.dump({"key": key, "state": "done", "proof": {"reached": True}}, handle)
    again = run(args)
    assert again.kind == "exit" and again.payload["changed"] is False and again.payload["proof"] == {"reached": True}
    other = run(dict(native_site, target_lsn="0/4000100"))
    assert other.kind == "fail" and other.payload["error"] == "PRECONDITION_FAILED"


def test_two_targets_are_refused(captured, native_site):
    out = run(dict(native_site, target_lsn="0/4000000", latest=True))
    assert out.kind == "fail" and "mutually exclusive" in out.payload["msg"]


# -- aws_rds: the exact request, through botocore's Stubber ------------------------------
def test_rds_request_carries_the_utc_restore_time(captured, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber, ANY
    from ansible_collections.resilience.dr.plugins.module_utils import _pitr_aws_rds

    client = boto3.client("rds", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    stub = Stubber(client)
    now = datetime.datetime.now(UTC)
    source = {"DBInstanceIdentifier": "orders", "DBInstanceStatus": "available", "BackupRetentionPeriod": 7,
              "LatestRestorableTime": now, "InstanceCreateTime": now - datetime.timedelta(days=30), "TagList": []}
    stub.add_response("describe_db_instances", {"DBInstances": [source]}, {"DBInstanceIdentifier": "orders"})
    stub.add_client_error("describe_db_instances", "DBInstanceNotFound", expected_params={"DBInstanceIdentifier": "orders-pitr"})
    stub.add_response("describe_db_instance_automated_backups", {"DBInstanceAutomatedBackups": [
        {"RestoreWindow": {"EarliestTime": now - datetime.timedelta(days=7), "LatestTime": now}}]},
        {"DBInstanceIdentifier": "orders"})
    target = (now - datetime.timedelta(hours=1)).replace(microsecond=0)
    stub.add_response("restore_db_instance_to_point_in_time", {"DBInstance": {"DBInstanceIdentifier": "orders-pitr",
                                                                              "DBInstanceStatus": "creating"}},
                      {"SourceDBInstanceIdentifier": "orders", "TargetDBInstanceIdentifier": "orders-pitr", "RestoreTime": target,
                       "Tags": ANY, "CopyTagsToSnapshot": True})
    stub.add_response("describe_db_instances", {"DBInstances": [{
        "DBInstanceIdentifier": "orders-pitr", "DBInstanceStatus": "available", "TagList": [
            {"Key": "resilience.dr:pitr-source", "Value": "orders"},
            {"Key": "resilience.dr:pitr-target", "Value": common.normalise_target({"target_time": target.isoformat()})["value"]}]}]},
        {"DBInstanceIdentifier": "orders-pitr"})
    stub.activate()
    monkeypatch.setattr(_pitr_aws_rds, "rds_client", lambda params: client)
    offset = target.astimezone(datetime.timezone(datetime.timedelta(hours=-5))).isoformat()
    out = run({"engine": "aws_rds", "source_db_instance": "orders", "target_db_instance": "orders-pitr", "target_time": offset,
               "wait": False, "aws_secret_access_key": "b"})
    assert out.kind == "exit", out.payload
    assert out.payload["changed"] is True and out.payload["db_instance"]["restored_from"] == "orders"
    stub.assert_no_pending_responses()


def _pgbackrest_provider(monkeypatch, **params):
    from ansible_collections.resilience.dr.plugins.module_utils._pitr_pgbackrest import PgBackRestRestore

    class FakeModule(object):
        def __init__(self, params):
            self.params = params

        def secret_values(self):
            return []

    base = {"engine": "pgbackrest", "stanza": "lab", "pgbackrest_config": "/etc/pgbackrest.conf", "data_dir": "/srv/r", "port": 22598,
            "target_inclusive": True, "target_action": "promote", "delta": False}
    base.update(params)
    return PgBackRestRestore(FakeModule(base))


def test_pgbackrest_restore_argv(monkeypatch):
    backup = {"label": "20260115-100000F"}
    argv = _pgbackrest_provider(monkeypatch, target_time="2026-01-15T12:00:00+02:00", target_inclusive=False).restore_argv(backup)
    assert argv[-1] == "restore"
    assert "--set=20260115-100000F" in argv and "--type=time" in argv and "--target=2026-01-15 10:00:00.000000+00" in argv
    assert "--target-action=pause" in argv and "--target-exclusive" in argv and "--archive-mode=off" in argv
    assert "--pg1-path=/srv/r" in argv and "--delta" not in argv
    argv = _pgbackrest_provider(monkeypatch, latest=True, delta=True).restore_argv(backup)
    assert "--type=default" in argv and "--delta" in argv and not [a for a in argv if a.startswith("--target")]


def test_cloud_label_values():
    from ansible_collections.resilience.dr.plugins.module_utils._pitr_cloud import label_value
    assert label_value("2026-01-15T10:14:00.000Z") == "2026-01-15t10-14-00-000z"
    assert label_value("Orders.Prod") == "orders-prod" and len(label_value("x" * 100)) == 63


def test_unfinished_backups_are_never_chosen(tmp_path):
    archive = str(tmp_path / "wal")
    os.makedirs(archive)
    root = str(tmp_path / "base")
    _make_backup(root, "b1", 2, "2026-01-15 09:00:00", archive=archive, stop_time="2026-01-15 09:00:05")
    _make_backup(root, "b2.partial", 6, "2026-01-15 10:00:00")
    late = _make_backup(root, "b3", 8, "2026-01-15 11:00:00")
    os.remove(os.path.join(late, "backup_manifest"))  # no manifest, no history file: end unknown
    found = pb.list_native_backups(root, wal_archive=archive)
    assert sorted(b["id"] for b in found) == ["b1", "b3"]  # the .partial folder is skipped
    assert pb.choose_backup(found)["id"] == "b1"


def test_pgbackrest_restore_command_is_async_with_a_private_spool(monkeypatch):
    import shlex
    provider = _pgbackrest_provider(monkeypatch, data_dir="/srv/it's here", target_time="2026-01-15T12:00:00Z")
    command = provider.restore_command()
    spool = "/srv/.it's here.pgbackrest-spool"
    assert provider.spool_dir() == spool and provider.keep_dir() == spool + "/keep"
    # the pgBackRest call is the part between "else" and "&&"
    get = command.split("; else ", 1)[1].split(" && ", 1)[0]
    words = shlex.split(get.replace('"%p"', "PATH"))
    assert words[0] == "pgbackrest" and words[-3:] == ["archive-get", "%f", "PATH"]
    assert "--archive-async" in words and "--pg1-path=/srv/it's here" in words and "--stanza=lab" in words
    assert "--spool-path=%s" % spool in words and "--lock-path=%s/lock" % spool in words
    assert shlex.split(command.split(";", 1)[0]) == ["k=%s/keep" % spool]


def _run_restore_command(command, cwd, name):
    import subprocess
    return subprocess.run(["/bin/sh", "-c", command.replace("%f", name).replace("%p", "pg_wal/RECOVERYXLOG")], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)


def test_pgbackrest_restore_command_serves_a_repeated_segment_from_its_keep_folder(monkeypatch, tmp_path):
    """The command as PostgreSQL's shell runs it, with a fake pgbackrest that logs its calls:
    the second request for the segment recovery stopped in is not sent to pgBackRest again."""
    from ansible_collections.resilience.dr.plugins.module_utils._pitr_pgbackrest import KEEP_SEGMENTS as KEEP
    data_dir = tmp_path / "r"
    (data_dir / "pg_wal").mkdir(parents=True)
    archive = tmp_path / "archive"
    archive.mkdir()
    names = ["00000001000000000000000%d" % n for n in range(3, 9)]
    for name in names:
        (archive / name).write_text("segment " + name)
    calls = tmp_path / "calls"
    fake = tmp_path / "pgbackrest"
    # archive-get <name> <path>: copy from the folder, exit 1 when absent (as pgBackRest does)
    fake.write_text('#!/bin/sh\nfor last; do :; done\nname=$(eval echo \\${$(($#-1))})\necho "$name" >> %s\n'
                    '[ -f %s/"$name" ] || exit 1\ncp %s/"$name" "$last"\n' % (calls, archive, archive))
    fake.chmod(0o755)
    provider = _pgbackrest_provider(monkeypatch, data_dir=str(data_dir), target_time="2026-01-15T12:00:00Z", pgbackrest_bin=str(fake))
    os.makedirs(provider.keep_dir())
    command = provider.restore_command()
    wal = data_dir / "pg_wal" / "RECOVERYXLOG"

    def fetch(name):
        if wal.exists():
            wal.unlink()  # PostgreSQL removes the old file before each call
        proc = _run_restore_command(command, str(data_dir), name)
        return proc.returncode, (wal.read_text() if wal.exists() else None)

    assert fetch(names[0]) == (0, "segment " + names[0])
    assert os.listdir(provider.keep_dir()) == [names[0]]
    for name in names[1:]:
        assert fetch(name) == (0, "segment " + name)
    assert sorted(os.listdir(provider.keep_dir())) == names[-KEEP:]  # only the last ones are kept
    # the re-read at the end of recovery, of the segment before the one replay read ahead into
    assert fetch(names[-2]) == (0, "segment " + names[-2])
    rc, text = fetch("000000010000000000000009")  # past the end of the archive: the failure reaches PostgreSQL
    assert rc != 0 and text is None and not wal.exists()
    rc, text = fetch("00000002.history")
    assert rc != 0 and text is None
    assert calls.read_text().split() == names + ["000000010000000000000009", "00000002.history"]
    assert sorted(os.listdir(provider.keep_dir())) == names[-KEEP:]
    # handed over still in recovery (pause / shutdown): the plain pgBackRest call, no kept links
    provider = _pgbackrest_provider(monkeypatch, data_dir=str(data_dir), target_time="2026-01-15T12:00:00Z", target_action="pause",
                                    pgbackrest_bin=str(fake))
    assert provider.final_settings()["restore_command"] == provider.restore_command(keep=False)
    assert "keep" not in provider.final_settings()["restore_command"] and "keep" in provider.recovery_settings(None)["restore_command"]

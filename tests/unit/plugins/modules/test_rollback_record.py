# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record with the file backend: the file on disk is what is asserted."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import multiprocessing
import os
import stat

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.resilience.dr.plugins.module_utils import _record_common
from ansible_collections.resilience.dr.plugins.module_utils._record_file import check_lines
from ansible_collections.resilience.dr.plugins.modules import rollback_record
from modrun import Exit, run_main  # pylint: disable=import-error


pytestmark = pytest.mark.usefixtures("captured")


def run(args, check=False, diff=False):
    return run_main(rollback_record.main, args, check, diff)


def lines(path):
    with open(path, "rb") as handle:
        return [json.loads(line) for line in handle.read().splitlines()]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "audit" / "records.jsonl")


def test_started_then_completed_appends_two_chained_lines(path):
    out = run({"path": path, "kind": "failover", "status": "started", "environment": "prod",
               "services": ["api"], "objectives": {"rto": "15m", "rpo": "1m"}, "executed_by": "alice",
               "started_at": "2026-01-15T10:15:00Z"})
    assert out.kind == "exit", out.payload
    assert out.payload["changed"] is True
    rid = out.payload["id"]
    assert rid.startswith("rb-") and len(rid.split("-")) == 4 and len(rid.split("-")[3]) == 4
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700

    done = run({"path": path, "id": rid, "status": "completed", "finished_at": "2026-01-15T10:19:30Z",
                "rpo_seconds": 12})
    assert done.kind == "exit", done.payload
    assert done.payload["event"] == "transitioned"
    stored = lines(path)
    assert [(e["id"], e["seq"], e["status"]) for e in stored] == [(rid, 1, "started"), (rid, 2, "completed")]
    last = stored[-1]
    assert last["kind"] == "failover" and last["services"] == ["api"] and last["executed_by"] == "alice"
    assert last["duration_seconds"] == 270.0
    assert last["rto_seconds"] == 270.0 and last["rto_met"] is True
    assert last["rpo_seconds"] == 12.0 and last["rpo_met"] is True
    assert last["objectives"]["rto_limit_seconds"] == 900.0
    # the chain: line 1 starts at zeros, line 2 carries the sha256 of line 1
    with open(path, "rb") as handle:
        raw = handle.read().splitlines()
    assert stored[0]["prev_hash"] == "0" * 64
    assert stored[1]["prev_hash"] == hashlib.sha256(raw[0]).hexdigest()
    assert stored[1]["hash"] == _record_common.event_hash(stored[1])
    assert done.payload["record"]["hash"] == stored[1]["hash"]


def test_objective_missed_is_recorded(path):
    out = run({"path": path, "kind": "restore", "status": "completed", "started_at": "2026-01-15T10:00:00Z",
               "finished_at": "2026-01-15T11:00:00Z", "objectives": {"rto": "15m"}, "rpo_seconds": 5})
    rec = lines(path)[0]
    assert rec["rto_seconds"] == 3600.0 and rec["rto_met"] is False
    assert rec["rpo_met"] is None  # no rpo objective given
    assert out.payload["record"]["rto_met"] is False


def test_same_status_twice_is_unchanged_and_writes_nothing(path):
    first = run({"path": path, "id": "rb-fixed-0001", "kind": "rollback", "status": "started"})
    assert first.payload["changed"] is True
    size = os.path.getsize(path)
    again = run({"path": path, "id": "rb-fixed-0001", "kind": "rollback", "status": "started"})
    assert again.kind == "exit"
    assert again.payload["changed"] is False
    assert again.payload["event"] == "unchanged"
    assert os.path.getsize(path) == size
    run({"path": path, "id": "rb-fixed-0001", "status": "completed"})
    size = os.path.getsize(path)
    again = run({"path": path, "id": "rb-fixed-0001", "status": "completed"})
    assert again.payload["changed"] is False
    assert os.path.getsize(path) == size
    assert len(lines(path)) == 2


def test_backwards_move_is_refused_and_nothing_written(path):
    run({"path": path, "id": "rb-x", "kind": "rollback", "status": "started"})
    run({"path": path, "id": "rb-x", "status": "failed"})
    size = os.path.getsize(path)
    for status in ("started", "completed"):
        out = run({"path": path, "id": "rb-x", "status": status})
        assert out.kind == "fail"
        assert out.payload["error"] == "INVALID_TRANSITION"
        assert out.payload["changed"] is False
    assert os.path.getsize(path) == size


def test_kind_mismatch_is_refused(path):
    run({"path": path, "id": "rb-k", "kind": "rollback", "status": "started"})
    out = run({"path": path, "id": "rb-k", "kind": "failover", "status": "completed"})
    assert out.kind == "fail" and out.payload["error"] == "INVALID_ARGUMENT"


def test_check_mode_writes_nothing_and_returns_the_record(path):
    out = run({"path": path, "kind": "switch", "status": "started", "environment": "prod",
               "details": {"password": "hunter2"}}, check=True, diff=True)
    assert out.kind == "exit", out.payload
    assert out.payload["changed"] is True
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))
    assert out.payload["record"]["kind"] == "switch"
    assert out.payload["record"]["details"]["password"] == "********"
    assert [s["action"] for s in out.payload["steps"]] == ["append_record"]
    assert out.payload["steps"][0]["status"] == "planned"
    # a real run plans the same steps
    real = run({"path": path, "kind": "switch", "status": "started", "environment": "prod"})
    assert [(s["action"], s["target"]) for s in real.payload["steps"]] == [
        (s["action"], s["target"]) for s in out.payload["steps"]]
    # check mode on an existing record: transition predicted, nothing written
    size = os.path.getsize(path)
    dry = run({"path": path, "id": real.payload["id"], "status": "completed"}, check=True)
    assert dry.payload["changed"] is True and dry.payload["record"]["status"] == "completed"
    assert os.path.getsize(path) == size


def test_secrets_are_masked_in_the_file(path):
    run({"path": path, "kind": "failover", "status": "completed",
         "details": {"promote": {"pg_login_password": "s3cr3t-pw", "lsn": "0/3000060"},
                     "dsn": "postgresql://app:s3cr3t-pw@db:5432/app", "note": "ok"},
         "undo": {"target": "blue", "api_token": "tok-123"}})
    with open(path) as handle:
        text = handle.read()
    assert "s3cr3t-pw" not in text and "tok-123" not in text
    rec = json.loads(text)
    assert rec["details"]["promote"]["pg_login_password"] == "********"
    assert rec["details"]["promote"]["lsn"] == "0/3000060"
    assert rec["undo"] == {"target": "blue", "api_token": "********"}


def test_no_log_option_values_are_scrubbed_from_the_record(path):
    # a connection password given to the module must not leak into free text
    run({"path": path, "kind": "rollback", "status": "completed", "pg_login_password": "Zq9-very-secret",
         "reason": "retry after login Zq9-very-secret failed"})
    with open(path) as handle:
        assert "Zq9-very-secret" not in handle.read()


def test_tampered_older_line_is_named(path):
    ids = []
    for n in range(4):
        ids.append(run({"path": path, "kind": "drill", "status": "completed", "reason": "drill number %d" % n}).payload["id"])
    ok = run({"path": path, "action": "query", "verify_chain": True})
    assert ok.kind == "exit" and ok.payload["chain"] == {"valid": True, "checked": 4, "first_broken": None}
    with open(path, "rb") as handle:
        raw = bytearray(handle.read())
    offset = raw.index(b"drill number 1")
    raw[offset + len("drill number ")] = ord("7")  # one byte of line 2
    with open(path, "wb") as handle:
        handle.write(bytes(raw))
    out = run({"path": path, "action": "query", "verify_chain": True})
    assert out.kind == "fail"
    assert out.payload["error"] == "CHAIN_BROKEN"
    broken = out.payload["chain"]["first_broken"]
    assert broken["line"] == 2 and broken["id"] == ids[1]
    assert "line 2" in out.payload["msg"] and ids[1] in out.payload["msg"]
    # appending to a broken chain with verify_chain is refused
    size = os.path.getsize(path)
    refused = run({"path": path, "kind": "drill", "status": "started", "verify_chain": True})
    assert refused.kind == "fail" and refused.payload["error"] == "CHAIN_BROKEN"
    assert os.path.getsize(path) == size


def test_rehashed_line_is_caught_by_the_next_link(path):
    for n in range(3):
        run({"path": path, "kind": "drill", "status": "completed", "reason": "r%d" % n})
    with open(path, "rb") as handle:
        raw = handle.read().splitlines()
    event = json.loads(raw[0])
    event["reason"] = "forged"
    event["hash"] = _record_common.event_hash(event)
    raw[0] = _record_common.canonical(event).encode()
    result = check_lines(b"\n".join(raw) + b"\n")
    assert result["valid"] is False
    assert result["first_broken"]["line"] == 2
    assert "line 1 was changed" in result["first_broken"]["reason"]


def test_removed_line_and_partial_line_are_found(path):
    for n in range(3):
        run({"path": path, "kind": "drill", "status": "completed", "reason": "r%d" % n})
    with open(path, "rb") as handle:
        raw = handle.read().splitlines()
    assert check_lines(b"\n".join([raw[0], raw[2]]) + b"\n")["first_broken"]["line"] == 2
    partial = check_lines(b"\n".join(raw) + b"\n" + raw[0][:20])
    assert partial["valid"] is False and partial["first_broken"]["line"] == 4


def test_query_filters_and_latest_state(path):
    now = datetime.datetime.now(datetime.timezone.utc)

    def ts(days):
        return (now - datetime.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    run({"path": path, "id": "a", "kind": "failover", "status": "started", "environment": "prod", "started_at": ts(40)})
    run({"path": path, "id": "a", "status": "completed"})
    run({"path": path, "id": "b", "kind": "rollback", "status": "failed", "environment": "prod", "started_at": ts(10)})
    run({"path": path, "id": "c", "kind": "failover", "status": "started", "environment": "stage", "started_at": ts(5)})
    run({"path": path, "id": "d", "kind": "failover", "status": "completed", "environment": "prod", "started_at": ts(1)})

    def ids(**filters):
        args = {"path": path, "action": "query"}
        args.update(filters)
        out = run(args)
        assert out.kind == "exit", out.payload
        assert out.payload["changed"] is False
        assert out.payload["count"] == len(out.payload["records"])
        return [r["id"] for r in out.payload["records"]]

    assert ids() == ["a", "b", "c", "d"]
    assert ids(kind="failover") == ["a", "c", "d"]
    assert ids(environment="prod", status="completed") == ["a", "d"]
    assert ids(since="7d") == ["c", "d"]
    assert ids(until=ts(7)) == ["a", "b"]
    assert ids(kind="failover", last=2) == ["c", "d"]
    latest = run({"path": path, "action": "query", "kind": "failover", "environment": "prod", "last": 2}).payload["records"]
    assert latest[0]["id"] == "a" and latest[0]["status"] == "completed" and latest[0]["seq"] == 2


def test_query_on_missing_file_is_empty_and_creates_nothing(path):
    out = run({"path": path, "action": "query", "verify_chain": True})
    assert out.kind == "exit" and out.payload["records"] == [] and out.payload["chain"]["valid"] is True
    assert not os.path.exists(path)


def test_timeline_file_is_attached(path, tmp_path):
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"playbook": "failover.yml", "total_seconds": 3.5, "tasks": [
        {"task": "promote", "host": "db2", "seconds": 1.25, "status": "changed",
         "started_at": "2026-01-15T10:15:01.000Z"}]}))
    run({"path": path, "kind": "failover", "status": "completed", "timeline_file": str(timeline)})
    rec = lines(path)[0]
    assert rec["timeline"]["tasks"][0]["seconds"] == 1.25
    missing = run({"path": path, "kind": "failover", "status": "completed", "timeline_file": str(tmp_path / "nope")})
    assert missing.kind == "fail" and missing.payload["error"] == "NOT_FOUND"


def test_bad_arguments_fail_before_writing(path):
    out = run({"path": path, "kind": "rollback", "status": "completed", "objectives": {"rto": "soon"}})
    assert out.kind == "fail" and out.payload["error"] == "INVALID_ARGUMENT"
    out = run({"path": path, "kind": "rollback", "status": "completed", "started_at": "2026-01-15 10:00"})
    assert out.kind == "fail" and out.payload["error"] == "INVALID_ARGUMENT"
    out = run({"path": path, "status": "completed"})
    assert out.kind == "fail" and out.payload["error"] == "INVALID_ARGUMENT"
    assert not os.path.exists(path)


def _writer(args):
    path, number = args
    with patch_module_args({"path": path, "kind": "drill", "status": "completed", "reason": "writer %d" % number}):
        try:
            rollback_record.main()
        except Exit as exc:
            return exc.kind, exc.payload.get("id")
    return "none", None


def test_ten_concurrent_writers_keep_the_chain(path):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(10) as pool:
        results = pool.map(_writer, [(path, n) for n in range(10)])
    assert [r[0] for r in results] == ["exit"] * 10
    stored = lines(path)
    assert sorted(e["reason"] for e in stored) == sorted("writer %d" % n for n in range(10))
    assert sorted(e["id"] for e in stored) == sorted(r[1] for r in results)
    with open(path, "rb") as handle:
        assert check_lines(handle.read()) == {"valid": True, "checked": 10, "first_broken": None}


def test_generated_id_format():
    moment = datetime.datetime(2026, 1, 15, 10, 15, 0, tzinfo=datetime.timezone.utc)
    rid = _record_common.new_id(moment)
    assert rid.startswith("rb-20260115-101500-")
    assert len(rid) == len("rb-20260115-101500-ab12")


@pytest.mark.parametrize("old,new,ok", [
    ("started", "completed", True), ("started", "failed", True), ("started", "aborted", True),
    ("started", "started", True), ("completed", "completed", True),
    ("completed", "started", False), ("failed", "completed", False), ("aborted", "started", False),
])
def test_transitions(old, new, ok):
    assert (_record_common.check_transition("x", old, new) is None) is ok

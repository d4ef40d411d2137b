# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend file, through ansible: the JSON Lines file on disk is asserted.

``run_rr`` runs one module through ``ansible`` ad hoc with ``--tree`` (lablib.run_module
asks for an ``ansible.builtin.json`` stdout callback that ansible-core does not ship).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

from lablib import ROOT, VENV_BIN, ansible_env

MODULE = "resilience.dr.rollback_record"


def run_rr(args, check=False, diff=False, timeout=300, env=None):
    """Run rollback_record on localhost; return its result (``failed`` set on failure)."""
    tree = tempfile.mkdtemp(prefix="rr-tree-")
    try:
        cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
               "-t", tree, "-m", MODULE, "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(**(env or {})), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
        out_file = os.path.join(tree, "localhost")
        if not os.path.exists(out_file):
            raise AssertionError("ansible wrote no result (rc=%s):\n%s" % (proc.returncode, proc.stdout))
        with open(out_file) as handle:
            result = json.load(handle)
        result.setdefault("failed", proc.returncode != 0)
        result["_stdout"] = proc.stdout
        return result
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def read_lines(path):
    with open(path, "rb") as handle:
        return handle.read().splitlines()


def test_ten_writers_at_once_keep_every_record_and_the_chain(tmp_path):
    path = str(tmp_path / "records.jsonl")

    def one(number):
        return run_rr({"path": path, "kind": "drill", "status": "completed", "environment": "lab",
                       "reason": "writer %d" % number, "details": {"writer": number, "password": "pw-%d" % number}})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    assert [r["failed"] for r in results] == [False] * 10, [r.get("msg") for r in results]
    lines = read_lines(path)
    events = [json.loads(line) for line in lines]
    assert len(events) == 10
    assert sorted(e["details"]["writer"] for e in events) == list(range(10))
    assert sorted(e["id"] for e in events) == sorted(r["id"] for r in results)
    # the chain, recomputed here independently of the module
    prev = "0" * 64
    for line, event in zip(lines, events):
        assert event["prev_hash"] == prev
        body = dict(event)
        del body["hash"]
        assert event["hash"] == hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        prev = hashlib.sha256(line).hexdigest()
    assert all(e["details"]["password"] == "********" for e in events)
    assert b"pw-" not in b"\n".join(lines)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    verified = run_rr({"path": path, "action": "query", "verify_chain": True})
    assert verified["failed"] is False and verified["chain"]["valid"] is True and verified["chain"]["checked"] == 10


def test_five_steps_and_tamper_detection(tmp_path):
    path = str(tmp_path / "audit" / "records.jsonl")
    base = {"path": path, "id": "rb-20260115-101500-ab12", "kind": "rollback", "status": "started",
            "environment": "prod", "services": ["api"], "trigger": "error rate", "objectives": {"rto": "15m"},
            "details": {"db": {"password": "Sup3r-Secret!", "host": "db1"}}}
    # 1. check mode: nothing written
    dry = run_rr(base, check=True, diff=True)
    assert dry["failed"] is False and dry["changed"] is True, dry
    assert not os.path.exists(path)
    # 2. apply
    real = run_rr(base)
    assert real["changed"] is True and real["id"] == base["id"]
    assert [(s["action"], s["target"]) for s in real["steps"]] == [(s["action"], s["target"]) for s in dry["steps"]]
    # 3. independent read of the file
    first = json.loads(read_lines(path)[0])
    assert first["id"] == base["id"] and first["status"] == "started"
    assert first["details"]["db"] == {"password": "********", "host": "db1"}
    with open(path) as handle:
        assert "Sup3r-Secret!" not in handle.read()
    # 4. idempotent re-run, 5. check mode on the converged state
    assert run_rr(base)["changed"] is False
    assert run_rr(base, check=True)["changed"] is False
    assert len(read_lines(path)) == 1

    done = run_rr({"path": path, "id": base["id"], "status": "completed", "rto_seconds": 42})
    assert done["changed"] is True and done["record"]["rto_met"] is True
    back = run_rr({"path": path, "id": base["id"], "status": "started"})
    assert back["failed"] is True and back["error"] == "INVALID_TRANSITION"
    other = run_rr({"path": path, "kind": "switch", "status": "completed"})
    assert len(read_lines(path)) == 3

    # one byte of an older line changed
    with open(path, "rb") as handle:
        raw = bytearray(handle.read())
    at = raw.index(b'"trigger":"error rate"') + len('"trigger":"error r')
    raw[at] = ord("R")
    with open(path, "wb") as handle:
        handle.write(bytes(raw))
    broken = run_rr({"path": path, "action": "query", "verify_chain": True})
    assert broken["failed"] is True and broken["error"] == "CHAIN_BROKEN"
    assert broken["chain"]["first_broken"]["line"] == 1
    assert broken["chain"]["first_broken"]["id"] == base["id"]
    assert "line 1" in broken["msg"]
    assert other["id"] != base["id"]
